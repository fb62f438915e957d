/**
 * Metadata cache layer: a read-through, write-through copy on local disk of
 * what a remote repository reads again and again: key files, index files,
 * snapshot files (whole objects) and tree blobs (ranges of data packs that
 * the reader marks `metadata`). Object names are content hashes, so a cached
 * object never goes stale; entries are dropped when a listing no longer
 * shows the object or when it is removed through this layer.
 *
 * Everything cached is stored exactly as in the repository (encrypted).
 * Whole objects are checked against their name on every cache hit, ranges
 * against a BLAKE3 hash stored in front of them; a damaged entry is deleted
 * and read from the backend again. A failing cache never fails an
 * operation: it is skipped.
 */
import { promises as fs } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { plainHash } from '../crypto/hash.js';
import type { Backend, FileType, Handle, ObjectInfo, ReadRange } from './backend.js';

const WHOLE: ReadonlySet<FileType> = new Set(['keys', 'index', 'snapshots']);
const HASH_BYTES = 32;
const NAME = /^[0-9a-f]{64}$/;

export class CacheBackend implements Backend {
  readonly location: string;
  readonly connections?: number;
  /** Counters, for tests and verbose output. */
  readonly stats = { hits: 0, misses: 0 };

  constructor(
    private readonly inner: Backend,
    readonly dir: string,
  ) {
    this.location = inner.location;
    this.connections = inner.connections;
  }

  private wholePath(h: Handle): string | undefined {
    return WHOLE.has(h.type) && NAME.test(h.name) ? path.join(this.dir, h.type, h.name) : undefined;
  }

  private rangePath(h: Handle, r: ReadRange): string | undefined {
    return h.type === 'data' && r.metadata && NAME.test(h.name) ? path.join(this.dir, 'trees', h.name.slice(0, 2), `${h.name}.${r.offset}.${r.length}`) : undefined;
  }

  async read(h: Handle, range?: ReadRange): Promise<Buffer> {
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
    const p = this.rangePath(h, range);
    if (!p) return this.inner.read(h, range);
    const cached = await readOrUndefined(p);
    if (cached && cached.length >= HASH_BYTES) {
      const body = cached.subarray(HASH_BYTES);
      if (plainHash(body).equals(cached.subarray(0, HASH_BYTES))) {
        this.stats.hits++;
        return body;
      }
    }
    if (cached) await fs.unlink(p).catch(() => undefined);
    this.stats.misses++;
    const data = await this.inner.read(h, range);
    if (data.length === range.length) await store(p, [plainHash(data), data]);
    return data;
  }

  stat(h: Handle): Promise<ObjectInfo | undefined> {
    return this.inner.stat(h);
  }

  async list(type: FileType): Promise<ObjectInfo[]> {
    const listed = await this.inner.list(type);
    if (WHOLE.has(type)) {
      const names = new Set(listed.map((o) => o.name));
      for (const f of await readdirOrEmpty(path.join(this.dir, type))) {
        if (!names.has(f)) await fs.rm(path.join(this.dir, type, f), { force: true }).catch(() => undefined);
      }
    } else if (type === 'data') {
      const names = new Set(listed.map((o) => o.name));
      for (const sub of await readdirOrEmpty(path.join(this.dir, 'trees'))) {
        for (const f of await readdirOrEmpty(path.join(this.dir, 'trees', sub))) {
          if (!names.has(f.slice(0, 64))) await fs.rm(path.join(this.dir, 'trees', sub, f), { force: true }).catch(() => undefined);
        }
      }
    }
    return listed;
  }

  create(): Promise<void> {
    return this.inner.create();
  }

  async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    await this.inner.write(h, data);
    const p = this.wholePath(h);
    if (p) await store(p, data instanceof Uint8Array ? [data] : data);
  }

  async remove(h: Handle): Promise<void> {
    const p = this.wholePath(h);
    if (p) await fs.rm(p, { force: true }).catch(() => undefined);
    await this.inner.remove(h);
  }

  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

async function readOrUndefined(p: string): Promise<Buffer | undefined> {
  try {
    return await fs.readFile(p);
  } catch {
    return undefined;
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
