/**
 * Metadata cache layer: a read-through, write-through copy on local disk of
 * what a remote repository reads again and again: key files, index files,
 * snapshot files, and tree packs. A pack holds blobs of one type, so when the
 * reader marks a range `metadata` (a tree blob), the whole pack is fetched
 * once and later tree reads from it are served locally — one download per
 * tree pack instead of one request per directory. Object names are content
 * hashes, so a cached object never goes stale; entries are dropped when a
 * listing no longer shows the object or when it is removed through this layer.
 *
 * Everything cached is stored exactly as in the repository (encrypted) and
 * checked against its name: small files on every hit, packs once per process
 * before their first use. A damaged entry is deleted and fetched again. A
 * failing cache never fails an operation: it is skipped.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { plainHash } from '../crypto/hash.js';
import type { Backend, FileType, Handle, ObjectInfo, ReadRange } from './backend.js';
import { BackendLayer } from './layer.js';

const WHOLE: ReadonlySet<FileType> = new Set(['keys', 'index', 'snapshots']);
const NAME = /^[0-9a-f]{64}$/;

export class CacheBackend extends BackendLayer {
  /** Counters, for tests and verbose output. */
  readonly stats = { hits: 0, misses: 0 };

  constructor(
    inner: Backend,
    readonly dir: string,
  ) {
    super(inner);
  }

  private wholePath(h: Handle): string | undefined {
    return WHOLE.has(h.type) && NAME.test(h.name) ? path.join(this.dir, h.type, h.name) : undefined;
  }

  private packPath(h: Handle, r: ReadRange): string | undefined {
    return h.type === 'data' && r.metadata && NAME.test(h.name) ? path.join(this.dir, 'packs', h.name.slice(0, 2), h.name) : undefined;
  }

  /** Packs whose cached copy was checked against its name in this process. */
  private readonly verified = new Set<string>();
  /** Whole-pack downloads in flight (several trees of one pack are often asked for at once). */
  private readonly loading = new Map<string, Promise<Buffer>>();

  private async readTreePack(h: Handle, range: ReadRange, p: string): Promise<Buffer> {
    if (this.verified.has(h.name)) {
      const got = await readRange(p, range);
      if (got) {
        this.stats.hits++;
        return got;
      }
      this.verified.delete(h.name);
    }
    let load = this.loading.get(h.name);
    if (!load) {
      load = this.loadPack(h, p);
      this.loading.set(h.name, load);
      void load.finally(() => this.loading.delete(h.name)).catch(() => undefined);
    }
    const whole = await load;
    return whole.subarray(range.offset, range.offset + range.length);
  }

  private async loadPack(h: Handle, p: string): Promise<Buffer> {
    const cached = await readOrUndefined(p);
    if (cached && plainHash(cached).toString('hex') === h.name) {
      this.verified.add(h.name);
      this.stats.hits++;
      return cached;
    }
    if (cached) await fs.unlink(p).catch(() => undefined);
    this.stats.misses++;
    const data = await this.inner.read(h);
    // A pack that does not match its name is not cached; the reader finds the damage.
    if (plainHash(data).toString('hex') === h.name) {
      await store(p, [data]);
      this.verified.add(h.name);
    }
    return data;
  }

  override async read(h: Handle, range?: ReadRange): Promise<Buffer> {
    if (!range) {
      const p = this.wholePath(h);
      if (!p) return this.inner.read(h);
      const cached = await readOrUndefined(p);
      if (cached && plainHash(cached).toString('hex') === h.name) {
        this.stats.hits++;
        return cached;
      }
      if (cached) await fs.unlink(p).catch(() => undefined);
      this.stats.misses++;
      const data = await this.inner.read(h);
      if (plainHash(data).toString('hex') === h.name) await store(p, [data]);
      return data;
    }
    const p = this.packPath(h, range);
    return p ? this.readTreePack(h, range, p) : this.inner.read(h, range);
  }

  override async list(type: FileType): Promise<ObjectInfo[]> {
    const listed = await this.inner.list(type);
    if (WHOLE.has(type)) {
      const names = new Set(listed.map((o) => o.name));
      for (const f of await readdirOrEmpty(path.join(this.dir, type))) {
        if (!names.has(f)) await fs.rm(path.join(this.dir, type, f), { force: true }).catch(() => undefined);
      }
    } else if (type === 'data') {
      const names = new Set(listed.map((o) => o.name));
      for (const sub of await readdirOrEmpty(path.join(this.dir, 'packs'))) {
        for (const f of await readdirOrEmpty(path.join(this.dir, 'packs', sub))) {
          if (!names.has(f)) {
            this.verified.delete(f);
            await fs.rm(path.join(this.dir, 'packs', sub, f), { force: true }).catch(() => undefined);
          }
        }
      }
    }
    return listed;
  }

  override async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    await this.inner.write(h, data);
    const p = this.wholePath(h);
    if (p) await store(p, data instanceof Uint8Array ? [data] : data);
  }

  override async remove(h: Handle): Promise<void> {
    const p = h.type === 'data' ? this.packPath(h, { offset: 0, length: 0, metadata: true }) : this.wholePath(h);
    if (p) await fs.rm(p, { force: true }).catch(() => undefined);
    this.verified.delete(h.name);
    await this.inner.remove(h);
  }
}

async function readOrUndefined(p: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(p);
  } catch {
    return undefined;
  }
}

/** A range of a cached file (short at its end), or undefined when the file is gone. */
async function readRange(p: string, r: ReadRange): Promise<Buffer | undefined> {
  let fh;
  try {
    fh = await fs.open(p, 'r');
    const buf = Buffer.allocUnsafe(r.length);
    let done = 0;
    while (done < r.length) {
      const { bytesRead } = await fh.read(buf, done, r.length - done, r.offset + done);
      if (bytesRead === 0) break;
      done += bytesRead;
    }
    return buf.subarray(0, done);
  } catch {
    return undefined;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

async function readdirOrEmpty(d: string): Promise<string[]> {
  try {
    return await fs.readdir(d);
  } catch {
    return [];
  }
}

/** Writes a cache entry atomically (temporary name, rename); failures are ignored. */
async function store(p: string, parts: readonly Uint8Array[]): Promise<void> {
  const tmp = `${p}.tmp-${randomBytes(6).toString('hex')}`;
  try {
    await fs.mkdir(path.dirname(p), { recursive: true, mode: 0o700 });
    await fs.writeFile(tmp, Buffer.concat(parts), { mode: 0o600 });
    await fs.rename(tmp, p);
  } catch {
    await fs.rm(tmp, { force: true }).catch(() => undefined);
  }
}
