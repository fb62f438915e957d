/**
 * A repository behind restic's REST protocol, version 2 (rest-server,
 * `rclone serve restic`). Coffer's layout maps 1:1 onto it: `config`,
 * `keys/`, `data/`, `index/`, `snapshots/`, `locks/`; objects are
 * `<type>/<name>` in URLs (the server stores data under `data/<2 hex>/`,
 * like coffer's local layout).
 *
 * The protocol lets a POST replace an existing object, so write() asks first
 * (HEAD) and refuses with `exists`; as names are content hashes, the rare
 * race between two writers of one name writes the same bytes.
 */
import { type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange, StorageError, describe } from './backend.js';
import type { HttpRequest, HttpResponse, HttpTransport } from './http.js';

const V2 = 'application/vnd.x.restic.rest.v2';
const NAME = /^[0-9a-f]{64}$/;

export class RestBackend implements Backend {
  constructor(
    private readonly http: HttpTransport,
    /** Shown to users; must not contain credentials. */
    readonly location: string,
    readonly connections = 5,
  ) {}

  private pathOf(h: Handle): string {
    if (h.type === 'config') return 'config';
    if (!NAME.test(h.name)) throw new RangeError(`bad object name ${h.name}`);
    return `${h.type}/${h.name}`;
  }

  private async send(req: HttpRequest): Promise<HttpResponse> {
    return this.http.request(req);
  }

  async create(): Promise<void> {
    if (await this.stat({ type: 'config', name: 'config' })) throw new StorageError('exists', `${this.location} already holds a repository`);
    const res = await this.send({ method: 'POST', path: '?create=true' });
    if (res.status !== 200) throw httpError(res, undefined, 'creating', this.location);
  }

  async read(h: Handle, range?: ReadRange): Promise<Buffer> {
    const headers: Record<string, string> = {};
    if (range) {
      if (range.length === 0) return Buffer.alloc(0);
      headers.range = `bytes=${range.offset}-${range.offset + range.length - 1}`;
    }
    const res = await this.send({ method: 'GET', path: this.pathOf(h), headers });
    if (range && res.status === 416) return Buffer.alloc(0); // starts at or past the end, like a short local read
    if (res.status === 200) return range ? res.body.subarray(range.offset, range.offset + range.length) : res.body;
    if (res.status === 206 && range) return res.body;
    throw httpError(res, h, 'reading', this.location);
  }

  async stat(h: Handle): Promise<ObjectInfo | undefined> {
    const res = await this.send({ method: 'HEAD', path: this.pathOf(h) });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw httpError(res, h, 'inspecting', this.location);
    return { name: h.name, size: Number(res.header('content-length') ?? 0) };
  }

  async list(type: FileType): Promise<ObjectInfo[]> {
    if (type === 'config') {
      const st = await this.stat({ type, name: 'config' });
      return st ? [st] : [];
    }
    const res = await this.send({ method: 'GET', path: `${type}/`, headers: { accept: V2 } });
    if (res.status === 404) return [];
    if (res.status !== 200) throw httpError(res, undefined, `listing ${type} in`, this.location);
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new StorageError('io', `${this.location}: the listing of ${type}/ is not JSON`);
    }
    if (!Array.isArray(parsed)) throw new StorageError('io', `${this.location}: the listing of ${type}/ is not a list`);
    const out: ObjectInfo[] = [];
    for (const e of parsed as unknown[]) {
      if (typeof e === 'string') {
        // Protocol v1 (names only): ask for each size.
        if (!NAME.test(e)) continue;
        const st = await this.stat({ type, name: e });
        if (st) out.push(st);
      } else if (e && typeof e === 'object') {
        const { name, size } = e as { name?: unknown; size?: unknown };
        if (typeof name === 'string' && NAME.test(name) && typeof size === 'number') out.push({ name, size });
      }
    }
    return out;
  }

  async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    // The parts go out as they are (a pack's buffers): no joined copy.
    const body = data;
    if (await this.stat(h)) throw new StorageError('exists', `${describe(h)} already exists`, h);
    const res = await this.send({ method: 'POST', path: this.pathOf(h), headers: { 'content-type': 'application/octet-stream' }, body });
    if (res.status !== 200) throw httpError(res, h, 'writing', this.location);
  }

  async remove(h: Handle): Promise<void> {
    const res = await this.send({ method: 'DELETE', path: this.pathOf(h) });
    if (res.status === 200 || res.status === 204) return;
    if (res.status === 403) {
      throw new StorageError('permission', `the server refused to delete ${describe(h)} (403 Forbidden): it is append-only or does not allow deleting`, h);
    }
    throw httpError(res, h, 'removing', this.location);
  }

  async close(): Promise<void> {
    await this.http.close?.();
  }
}

/** Classifies an HTTP failure: 5xx, 408 and 429 are transient, the rest permanent. */
export function httpError(res: HttpResponse, h: Handle | undefined, action: string, location: string): StorageError {
  const what = h ? describe(h) : location;
  const s = res.status;
  const detail = res.body.toString('utf8').trim().split('\n')[0].slice(0, 200);
  const msg = `HTTP ${s} while ${action} ${what}${detail ? ` (${detail})` : ''}`;
  if (s === 404) return new StorageError('notFound', `${what} does not exist`, h);
  if (s === 401) return new StorageError('permission', `${location}: authentication failed (HTTP 401); check the user name and password`, h);
  if (s === 403) return new StorageError('permission', `the server refused ${action} ${what} (403 Forbidden)`, h);
  if (s === 507) return new StorageError('noSpace', `no space left on the server while ${action} ${what}`, h);
  if (s >= 500 || s === 408 || s === 429) return new StorageError('transient', msg, h);
  return new StorageError('io', msg, h);
}
