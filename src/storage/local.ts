/**
 * A repository in a local directory. Objects are written to a temporary name,
 * fsynced, then hard-linked into place (which fails rather than overwrite) and
 * the directory fsynced, so an object is either absent or complete.
 *
 * Large objects whose first part starts at an aligned address (the packer's
 * pack buffers, see util/aligned.ts) are written with O_DIRECT where the file
 * system allows it: the bytes go from the buffer to the device without being
 * copied into the page cache, which was the largest single CPU cost of
 * backing up a large file (docs/PERFORMANCE.md, "Session 6: backup of big").
 * The durability steps are the same (fsync of the file, link, fsync of the
 * directory).
 */
import { promises as fs, constants as fsc, openSync, readSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { CofferError, errnoCode } from '../errors.js';
import { type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange, StorageError, describe, FILE_TYPES } from './backend.js';
import { IO_ALIGN, isIoAligned } from '../util/aligned.js';

const TMP_PREFIX = '.tmp-';
const SYNC_READ_LIMIT = 256 * 1024;
/** Objects whose first part is at least this long (and aligned) are written with O_DIRECT. */
const DIRECT_MIN = 1 << 20;
/** O_DIRECT where the platform has it (Linux); 0 elsewhere. */
const O_DIRECT: number = (fsc as Record<string, number | undefined>).O_DIRECT ?? 0;

function readRangeSync(p: string, range: ReadRange): Buffer {
  const fd = openSync(p, 'r');
  try {
    const buf = Buffer.allocUnsafe(range.length);
    let done = 0;
    while (done < range.length) {
      const n = readSync(fd, buf, done, range.length - done, range.offset + done);
      if (n === 0) break;
      done += n;
    }
    return done === range.length ? buf : buf.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

function toStorageError(e: unknown, h: Handle | undefined, action: string): StorageError {
  const code = errnoCode(e);
  const what = h ? describe(h) : 'repository';
  switch (code) {
    case 'ENOENT':
      return new StorageError('notFound', `${what} does not exist`, h, { cause: e });
    case 'EEXIST':
      return new StorageError('exists', `${what} already exists`, h, { cause: e });
    case 'ENOSPC':
    case 'EDQUOT':
      return new StorageError('noSpace', `no space left on device while ${action} ${what}`, h, { cause: e });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new StorageError('permission', `permission denied while ${action} ${what}`, h, { cause: e });
    default:
      return new StorageError('io', `I/O error while ${action} ${what}: ${code ?? String(e)}`, h, { cause: e });
  }
}

/**
 * Storage in a local directory (atomic writes by rename, fsync before success).
 * @example
 * ```ts
 * const b = new LocalBackend('/mnt/backup/repo');
 * ```
 */
export class LocalBackend implements Backend {
  readonly location: string;
  private readonly madeDirs = new Set<string>();
  /** Cleared once the file system refuses O_DIRECT (tmpfs on older kernels, some FUSE): then every write goes through the page cache. */
  private direct = O_DIRECT !== 0;

  constructor(dir: string) {
    this.location = path.resolve(dir);
  }

  private dirOf(h: Handle): string {
    if (h.type === 'config') return this.location;
    if (h.type === 'data') return path.join(this.location, 'data', h.name.slice(0, 2));
    return path.join(this.location, h.type);
  }

  private pathOf(h: Handle): string {
    if (h.type === 'config') return path.join(this.location, 'config');
    if (!/^[0-9a-f]{64}$/.test(h.name)) throw new RangeError(`bad object name ${h.name}`);
    return path.join(this.dirOf(h), h.name);
  }

  async create(): Promise<void> {
    try {
      await fs.mkdir(this.location, { recursive: true }).catch((e) => {
        if (errnoCode(e) === 'EEXIST' || errnoCode(e) === 'ENOTDIR') throw new CofferError('INVALID_ARGUMENT', `${this.location} is not a directory`);
        throw e;
      });
      const existing = await fs.readdir(this.location);
      if (existing.length > 0) throw new StorageError('exists', `${this.location} is not empty`);
      for (const t of FILE_TYPES) if (t !== 'config') await fs.mkdir(path.join(this.location, t));
      for (let i = 0; i < 256; i++) await fs.mkdir(path.join(this.location, 'data', i.toString(16).padStart(2, '0')));
    } catch (e) {
      if (e instanceof StorageError || e instanceof CofferError) throw e;
      throw toStorageError(e, undefined, 'creating');
    }
  }

  async read(h: Handle, range?: ReadRange): Promise<Buffer> {
    const p = this.pathOf(h);
    try {
      if (!range) return await fs.readFile(p);
      // Small ranged reads (trees, headers) are done synchronously: a local
      // read of a few KiB is faster than a round trip through the thread pool.
      if (range.length <= SYNC_READ_LIMIT) return readRangeSync(p, range);
      const fh = await fs.open(p, 'r');
      try {
        const buf = Buffer.allocUnsafe(range.length);
        let done = 0;
        while (done < range.length) {
          const { bytesRead } = await fh.read(buf, done, range.length - done, range.offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done === range.length ? buf : buf.subarray(0, done);
      } finally {
        await fh.close();
      }
    } catch (e) {
      // A file where a directory of the path should be (a repository path that is a file): the object is not there.
      if (errnoCode(e) === 'ENOTDIR') throw new StorageError('notFound', `${describe(h)} does not exist`, h, { cause: e });
      throw toStorageError(e, h, 'reading');
    }
  }

  async readInto(h: Handle, into: Uint8Array, range?: ReadRange): Promise<number> {
    const p = this.pathOf(h);
    try {
      const fh = await fs.open(p, 'r');
      try {
        const offset = range?.offset ?? 0;
        const length = range ? range.length : (await fh.stat()).size;
        if (length > into.length) throw new RangeError(`readInto: buffer of ${into.length} bytes for ${length}`);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(into, done, length - done, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      } finally {
        await fh.close();
      }
    } catch (e) {
      if (e instanceof RangeError) throw e;
      if (errnoCode(e) === 'ENOTDIR') throw new StorageError('notFound', `${describe(h)} does not exist`, h, { cause: e });
      throw toStorageError(e, h, 'reading');
    }
  }

  async stat(h: Handle): Promise<ObjectInfo | undefined> {
    try {
      const st = await fs.stat(this.pathOf(h));
      return { name: h.name, size: st.size };
    } catch (e) {
      if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') return undefined;
      throw toStorageError(e, h, 'inspecting');
    }
  }

  async list(type: FileType): Promise<ObjectInfo[]> {
    if (type === 'config') {
      const st = await this.stat({ type, name: 'config' });
      return st ? [st] : [];
    }
    const dirs =
      type === 'data'
        ? (await this.readdirSafe(path.join(this.location, 'data'))).filter((d) => /^[0-9a-f]{2}$/.test(d)).map((d) => path.join(this.location, 'data', d))
        : [path.join(this.location, type)];
    const out: ObjectInfo[] = [];
    for (const d of dirs) {
      for (const name of await this.readdirSafe(d)) {
        if (!/^[0-9a-f]{64}$/.test(name)) continue;
        try {
          const st = await fs.stat(path.join(d, name));
          out.push({ name, size: st.size });
        } catch (e) {
          if (errnoCode(e) !== 'ENOENT') throw toStorageError(e, { type, name }, 'listing');
        }
      }
    }
    return out;
  }

  private async readdirSafe(d: string): Promise<string[]> {
    try {
      return await fs.readdir(d);
    } catch (e) {
      if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ENOTDIR') return [];
      throw toStorageError(e, undefined, 'listing');
    }
  }

  async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const parts = data instanceof Uint8Array ? [data] : data;
    const final = this.pathOf(h);
    const dir = this.dirOf(h);
    const tmp = path.join(dir, `${TMP_PREFIX}${randomBytes(8).toString('hex')}`);
    try {
      if (!this.madeDirs.has(dir)) {
        await fs.mkdir(dir, { recursive: true });
        this.madeDirs.add(dir);
      }
      if (!(await this.writeDirect(tmp, parts))) await writeBuffered(tmp, parts);
      await fs.link(tmp, final);
      await fs.unlink(tmp);
      await syncDir(dir);
    } catch (e) {
      await fs.unlink(tmp).catch(() => undefined);
      throw toStorageError(e, h, 'writing');
    }
  }

  /**
   * Writes and fsyncs `tmp` with the aligned head of parts[0] through
   * O_DIRECT and the rest (under one block, plus the other parts) through
   * the page cache. False, with nothing left at `tmp`, when this object is
   * not suitable or the file system refuses direct I/O (then never tried
   * again on this backend): the caller writes it the ordinary way.
   */
  private async writeDirect(tmp: string, parts: readonly Uint8Array[]): Promise<boolean> {
    const first = parts[0];
    if (!this.direct || first === undefined || first.length < DIRECT_MIN || !isIoAligned(first)) return false;
    const head = first.length - (first.length % IO_ALIGN);
    let fh;
    try {
      fh = await fs.open(tmp, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY | O_DIRECT, 0o600);
    } catch (e) {
      if (errnoCode(e) !== 'EINVAL') throw e;
      this.direct = false;
      return false;
    }
    try {
      try {
        await writeFully(fh, first.subarray(0, head), 0);
      } catch (e) {
        // EINVAL: the device needs a larger alignment, or the file system only pretends to support O_DIRECT.
        if (errnoCode(e) !== 'EINVAL') throw e;
        this.direct = false;
        await fh.close();
        fh = undefined;
        await fs.unlink(tmp);
        return false;
      }
      // The tail through the page cache, on a second descriptor of the same
      // file (its range starts at a block boundary, so no page is shared with
      // the direct writes); fsync covers the whole file whichever descriptor.
      await writeBuffered(tmp, [first.subarray(head), ...parts.slice(1)], head);
      return true;
    } finally {
      await fh?.close();
    }
  }

  async remove(h: Handle): Promise<void> {
    try {
      await fs.unlink(this.pathOf(h));
    } catch (e) {
      throw toStorageError(e, h, 'removing');
    }
  }
}

/**
 * Writes `parts` back to back into `file` from `at` and fsyncs it. `at` 0:
 * the file is created (and must not exist); else it exists and is extended.
 */
async function writeBuffered(file: string, parts: readonly Uint8Array[], at = 0): Promise<void> {
  const fh = await fs.open(file, at === 0 ? fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY : fsc.O_WRONLY, 0o600);
  try {
    let pos = at;
    for (const part of parts) {
      await writeFully(fh, part, pos);
      pos += part.length;
    }
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes all of `buf` at `pos` (write may take less than asked). */
async function writeFully(fh: fs.FileHandle, buf: Uint8Array, pos: number): Promise<void> {
  for (let done = 0; done < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
    done += bytesWritten;
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } catch (e) {
    // Some filesystems refuse fsync on directories; the data itself is synced.
    if (errnoCode(e) !== 'EINVAL' && errnoCode(e) !== 'EBADF') throw e;
  } finally {
    await fh.close();
  }
}
