/**
 * File-system calls Node.js lacks, for full metadata fidelity on backup and
 * restore: nanosecond timestamps (utimensat), extended attributes, FIFOs and
 * device nodes.
 *
 * Backed by the optional native addon native/coffer_native.c (built at install
 * time by scripts/build-native.mjs into native/build/Release/coffer_native.node).
 * When the addon is missing, fails to load, or COFFER_NO_NATIVE=1 is set, a
 * pure-JS fallback with reduced fidelity is used instead (see each method).
 *
 * Errors are Node-style: an Error with `code` ('ENOENT', 'ENOTSUP', 'EPERM',
 * ...), `errno` (negative, as in Node's fs errors), `syscall` and `path` (the
 * string form of the path), so callers can switch on `err.code`.
 *
 * Paths may be strings or Buffers; Buffers are passed to the addon byte for
 * byte, so file names that are not valid UTF-8 work.
 */
import { spawn } from 'node:child_process';
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readSync, constants as fsc } from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import util from 'node:util';
import { usableBinding, type NativeBinding } from './addon.js';

export { nativeAddonStatus, type NativeAddonStatus } from './addon.js';

export interface Platform {
  readonly hasNative: boolean;
  /** Set atime/mtime with nanosecond precision (utimensat). followSymlinks=false sets the link's own times (AT_SYMLINK_NOFOLLOW). Fallback: fs.utimes / fs.lutimes with the best precision a double allows (microseconds; times before 1970 to the millisecond). */
  setTimes(path: string | Buffer, atimeNs: bigint, mtimeNs: bigint, followSymlinks: boolean): Promise<void>;
  /** user.* and other xattr names of the path itself (llistxattr, no follow). Fallback: returns [] . Returns [] if the fs doesn't support xattrs (ENOTSUP). */
  listXattrs(path: string | Buffer): Promise<Buffer[]>;
  /** lgetxattr (no follow). A missing attribute fails with ENODATA (Linux) / ENOATTR (macOS). Fallback throws ENOTSUP. */
  getXattr(path: string | Buffer, name: Buffer): Promise<Buffer>;
  /** lsetxattr (create or replace); fallback throws an Error with code 'ENOTSUP'. */
  setXattr(path: string | Buffer, name: Buffer, value: Buffer): Promise<void>;
  /** mkfifo(path, mode). The permission bits (mode & 0o7777) are applied exactly, not filtered by the umask (like `mkfifo -m`). Fallback: spawn `mkfifo -m MODE -- path`; a Buffer path that is not valid UTF-8 makes the fallback throw ENOTSUP. */
  mkfifo(path: string | Buffer, mode: number): Promise<void>;
  /** mknod for char/block devices (needs root); `mode` includes the file type bits (S_IFCHR/S_IFBLK); permission bits are applied exactly. Fallback throws ENOTSUP. */
  mknod(path: string | Buffer, mode: number, rdev: bigint): Promise<void>;
  /** lchown exists in Node already; not needed here. */
}


// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

function toBuffer(p: string | Buffer, what = 'path'): Buffer {
  if (typeof p === 'string') return Buffer.from(p, 'utf8');
  if (Buffer.isBuffer(p)) return p;
  const err = new TypeError(`The "${what}" argument must be of type string or Buffer`) as TypeError & { code: string };
  err.code = 'ERR_INVALID_ARG_TYPE';
  throw err;
}

function pathString(p: string | Buffer): string {
  return typeof p === 'string' ? p : Buffer.isBuffer(p) ? p.toString('utf8') : String(p);
}

export interface SystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path: string;
}

const UV_UNKNOWN = -4094;

/** A Node-style system error (same shape as fs errors). */
function systemError(code: string, syscall: string, p: string | Buffer, detail?: string): SystemError {
  const num = (os.constants.errno as Record<string, number | undefined>)[code];
  const errno = num === undefined ? UV_UNKNOWN : -num;
  const desc = detail ?? util.getSystemErrorMap().get(errno)?.[1] ?? 'unknown error';
  const ps = pathString(p);
  const err = new Error(`${code}: ${desc}, ${syscall} '${ps}'`) as SystemError;
  err.errno = errno;
  err.code = code;
  err.syscall = syscall;
  err.path = ps;
  return err;
}

function isNotSupported(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOTSUP' || code === 'EOPNOTSUPP';
}

function checkBigint(v: unknown, what: string): asserts v is bigint {
  if (typeof v !== 'bigint') {
    const err = new TypeError(`The "${what}" argument must be of type bigint`) as TypeError & { code: string };
    err.code = 'ERR_INVALID_ARG_TYPE';
    throw err;
  }
}

const NS_PER_S = 1_000_000_000n;

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n !== b < 0n ? q - 1n : q;
}

/**
 * A time argument for fs.utimes from nanoseconds. libuv truncates what it is
 * given to microseconds, and a double near 1.7e9 s is only precise to ~0.24 µs,
 * so we aim at the middle of the target microsecond: the result is then the
 * exact microsecond-truncated time. Node maps negative numbers to "now", so
 * times before 1970 go through a Date (millisecond precision).
 */
function fallbackTime(ns: bigint): number | Date {
  if (ns < 0n) return new Date(Number(floorDiv(ns, 1_000_000n)));
  const sec = ns / NS_PER_S;
  const micros = (ns % NS_PER_S) / 1000n;
  return Number(sec) + (Number(micros) * 1000 + 500) / 1e9;
}

/** C-locale strerror texts (glibc, musl, BSD) of the errors mkfifo can hit. */
const STRERROR_CODES: ReadonlyArray<readonly [string, string]> = [
  ['file exists', 'EEXIST'],
  ['no such file or directory', 'ENOENT'],
  ['permission denied', 'EACCES'],
  ['operation not permitted', 'EPERM'],
  ['not a directory', 'ENOTDIR'],
  ['is a directory', 'EISDIR'],
  ['read-only file system', 'EROFS'],
  ['no space left on device', 'ENOSPC'],
  ['disk quota exceeded', 'EDQUOT'],
  ['quota exceeded', 'EDQUOT'],
  ['file name too long', 'ENAMETOOLONG'],
  ['filename too long', 'ENAMETOOLONG'],
  ['too many levels of symbolic links', 'ELOOP'],
  ['symbolic link loop', 'ELOOP'],
  ['operation not supported', 'ENOTSUP'],
  ['not supported', 'ENOTSUP'],
  ['input/output error', 'EIO'],
  ['i/o error', 'EIO'],
  ['invalid argument', 'EINVAL'],
];

/** Map the stderr of a failed `mkfifo` (run with LC_ALL=C) to an errno code. */
function codeFromMessage(stderr: string): string {
  const line = (stderr.trim().split('\n').pop() ?? '').trim().toLowerCase();
  if (line === '') return 'UNKNOWN';
  for (const [text, code] of STRERROR_CODES) {
    if (line.endsWith(`: ${text}`)) return code;
  }
  // libuv's wording ("file already exists", ...) as a last resort
  for (const [name, desc] of util.getSystemErrorMap().values()) {
    if (line.endsWith(`: ${desc.toLowerCase()}`)) return name;
  }
  return 'UNKNOWN';
}

// ---------------------------------------------------------------------------
// implementations
// ---------------------------------------------------------------------------

class NativePlatform implements Platform {
  readonly hasNative = true;
  constructor(private readonly b: NativeBinding) {}

  async setTimes(p: string | Buffer, atimeNs: bigint, mtimeNs: bigint, followSymlinks: boolean): Promise<void> {
    this.b.setTimes(toBuffer(p), atimeNs, mtimeNs, followSymlinks);
  }

  async listXattrs(p: string | Buffer): Promise<Buffer[]> {
    try {
      return this.b.listXattrs(toBuffer(p));
    } catch (err) {
      if (isNotSupported(err)) return [];
      throw err;
    }
  }

  async getXattr(p: string | Buffer, name: Buffer): Promise<Buffer> {
    return this.b.getXattr(toBuffer(p), toBuffer(name, 'name'));
  }

  async setXattr(p: string | Buffer, name: Buffer, value: Buffer): Promise<void> {
    this.b.setXattr(toBuffer(p), toBuffer(name, 'name'), toBuffer(value, 'value'));
  }

  async mkfifo(p: string | Buffer, mode: number): Promise<void> {
    this.b.mkfifo(toBuffer(p), mode);
  }

  async mknod(p: string | Buffer, mode: number, rdev: bigint): Promise<void> {
    this.b.mknod(toBuffer(p), mode, rdev);
  }
}

class FallbackPlatform implements Platform {
  readonly hasNative = false;

  async setTimes(p: string | Buffer, atimeNs: bigint, mtimeNs: bigint, followSymlinks: boolean): Promise<void> {
    checkBigint(atimeNs, 'atimeNs');
    checkBigint(mtimeNs, 'mtimeNs');
    const target = toBuffer(p);
    const atime = fallbackTime(atimeNs);
    const mtime = fallbackTime(mtimeNs);
    if (followSymlinks) await fsp.utimes(target, atime, mtime);
    else await fsp.lutimes(target, atime, mtime);
  }

  async listXattrs(p: string | Buffer): Promise<Buffer[]> {
    toBuffer(p);
    return [];
  }

  async getXattr(p: string | Buffer, _name: Buffer): Promise<Buffer> {
    throw systemError('ENOTSUP', 'lgetxattr', toBuffer(p));
  }

  async setXattr(p: string | Buffer, _name: Buffer, _value: Buffer): Promise<void> {
    throw systemError('ENOTSUP', 'lsetxattr', toBuffer(p));
  }

  async mkfifo(p: string | Buffer, mode: number): Promise<void> {
    const buf = toBuffer(p);
    if (typeof mode !== 'number' || !Number.isInteger(mode) || mode < 0) {
      const err = new TypeError('The "mode" argument must be a non-negative integer') as TypeError & { code: string };
      err.code = 'ERR_INVALID_ARG_TYPE';
      throw err;
    }
    if (process.platform === 'win32') throw systemError('ENOTSUP', 'mkfifo', buf);
    // spawn() only takes string arguments: the path must survive a UTF-8 round trip.
    const str = typeof p === 'string' ? p : buf.toString('utf8');
    if (!Buffer.from(str, 'utf8').equals(buf) || str.includes('\0')) {
      throw systemError('ENOTSUP', 'mkfifo', buf, 'path is not valid UTF-8 and the native addon is not available');
    }
    const perm = mode & 0o7777;
    await runMkfifo(str, (perm & 0o777).toString(8));
    // `mkfifo -m` only accepts permission bits; apply setuid/setgid/sticky afterwards.
    if (perm & 0o7000) await fsp.chmod(str, perm);
  }

  async mknod(p: string | Buffer, _mode: number, _rdev: bigint): Promise<void> {
    throw systemError('ENOTSUP', 'mknod', toBuffer(p));
  }
}

function runMkfifo(p: string, modeOctal: string): Promise<void> {
  return new Promise((resolve, reject) => {
    let stderr = '';
    const child = spawn('mkfifo', ['-m', modeOctal, '--', p], {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      windowsHide: true,
    });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    child.on('error', (err) => {
      reject(systemError('ENOTSUP', 'mkfifo', p, `cannot run mkfifo (${err.message})`));
    });
    child.on('close', (status, signal) => {
      if (status === 0) return resolve();
      const code = codeFromMessage(stderr);
      const detail = code === 'UNKNOWN' ? stderr.trim() || `mkfifo exited with ${status ?? signal}` : undefined;
      reject(systemError(code, 'mkfifo', p, detail));
    });
  });
}

// ---------------------------------------------------------------------------
// public
// ---------------------------------------------------------------------------

/**
 * A Platform. `native: true` uses the addon when it is built and loadable
 * (and COFFER_NO_NATIVE is not set), else the fallback; check `hasNative`.
 * `native: false` always returns the pure-JS fallback (for tests).
 */
export function createPlatform(opts: { native: boolean }): Platform {
  if (opts.native) {
    const binding = usableBinding();
    if (binding !== null) return new NativePlatform(binding);
  }
  return new FallbackPlatform();
}

/** The process-wide platform: native when available. */
export const platform: Platform = createPlatform({ native: true });

// ---------------------------------------------------------------------------
// backup walk: one call per directory, one per small file
// ---------------------------------------------------------------------------

const S_IFMT = 0o170000;

/**
 * The metadata of one directory entry that a backup records (what
 * `lstat` gives, without a Stats object per file), and the size of its
 * extended-attribute name list: 0 when it has none (or they cannot be
 * listed), -1 when not probed.
 */
export class EntryMeta {
  constructor(
    readonly mode: number,
    readonly uid: number,
    readonly gid: number,
    readonly nlink: number,
    readonly size: number,
    readonly mtimeNs: bigint,
    readonly ctimeNs: bigint,
    readonly ino: bigint,
    readonly dev: bigint,
    readonly rdev: bigint,
    readonly xattrSize: number,
  ) {}

  static fromStats(st: import('node:fs').BigIntStats): EntryMeta {
    return new EntryMeta(Number(st.mode), Number(st.uid), Number(st.gid), Number(st.nlink), Number(st.size), st.mtimeNs, st.ctimeNs, st.ino, st.dev, st.rdev, -1);
  }

  isFile(): boolean {
    return (this.mode & S_IFMT) === 0o100000;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === 0o040000;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === 0o120000;
  }
}

/** `lstat` of one path as an EntryMeta (throws like lstatSync). */
export function lstatMeta(p: Buffer): EntryMeta {
  return EntryMeta.fromStats(lstatSync(p, { bigint: true }));
}

const SCAN_NUM = 8;
const SCAN_BIG = 5;

/**
 * A directory's entry names (in readdir order) and, with the native addon,
 * the metadata of each taken right after the listing; `meta(i)` is
 * undefined when entry i must be `lstat`ed by the caller (no addon, or the
 * call failed for that entry: the caller's own `lstat` reports why).
 */
export class DirScan {
  private namesCache?: Buffer[];
  private readonly num?: Float64Array;
  private readonly big?: BigInt64Array;

  constructor(
    /** Number of entries. */
    readonly count: number,
    private readonly raw: Buffer | Buffer[],
    stats?: ArrayBuffer,
  ) {
    if (stats) {
      this.num = new Float64Array(stats, 0, count * SCAN_NUM);
      this.big = new BigInt64Array(stats, count * SCAN_NUM * 8, count * SCAN_BIG);
    }
  }

  /** The entry names (views of one buffer with the native addon). */
  get names(): Buffer[] {
    if (Array.isArray(this.raw)) return this.raw;
    if (!this.namesCache) {
      const names: Buffer[] = new Array(this.count);
      let off = 0;
      for (let i = 0; i < this.count; i++) {
        const end = this.raw.indexOf(0, off);
        names[i] = this.raw.subarray(off, end);
        off = end + 1;
      }
      this.namesCache = names;
    }
    return this.namesCache;
  }

  /** Entry i is a directory (by the listing's metadata; false when there is none). */
  isDirectory(i: number): boolean {
    const num = this.num;
    return num !== undefined && num[i * SCAN_NUM] === 0 && (num[i * SCAN_NUM + 1] & S_IFMT) === 0o040000;
  }

  meta(i: number): EntryMeta | undefined {
    const num = this.num;
    const big = this.big;
    if (!num || !big) return undefined;
    const n = i * SCAN_NUM;
    if (num[n] !== 0) return undefined;
    const g = i * SCAN_BIG;
    const mode = num[n + 1];
    const t = mode & S_IFMT;
    // rdev only matters for devices: no BigInt for the others.
    return new EntryMeta(mode, num[n + 2], num[n + 3], num[n + 4], num[n + 5], big[g], big[g + 1], big[g + 2], big[g + 3], t === 0o020000 || t === 0o060000 ? big[g + 4] : 0n, num[n + 6]);
  }
}

/** True when scanDir gets each entry's metadata with the listing (the native addon is in use). */
export function scanHasMeta(): boolean {
  const b = usableBinding();
  return b !== null && typeof b.scanDir === 'function';
}

/** Lists a directory (throws like readdirSync). */
export function scanDir(dir: Buffer): DirScan {
  const b = usableBinding();
  if (!b || typeof b.scanDir !== 'function') {
    const names = readdirSync(dir, { encoding: 'buffer' });
    return new DirScan(names.length, names);
  }
  const [buf, ab, count] = b.scanDir(dir);
  return new DirScan(count, buf, ab);
}

/** True when scanDirAsync is available (an addon with scanDir and scanDirAsync). */
export function scanHasAsync(): boolean {
  const b = usableBinding();
  return b !== null && typeof b.scanDir === 'function' && typeof b.scanDirAsync === 'function';
}

/**
 * scanDir made on one of libuv's threads (the walk lists the directories it
 * will enter next meanwhile); rejects as scanDir throws. Undefined when the
 * addon cannot (no addon, or an older one): list synchronously then.
 */
export function scanDirAsync(dir: Buffer): Promise<DirScan> | undefined {
  const b = usableBinding();
  if (!b || typeof b.scanDirAsync !== 'function') return undefined;
  return b.scanDirAsync(dir).then(([buf, ab, count]) => new DirScan(count, buf, ab));
}

/** Result of readSmallFile that is not a byte count. */
export const NOT_REGULAR = -1;

/**
 * Reads a regular file of fewer than `want` bytes whole into
 * `buf[offset, offset + want)`: opens it (O_NOFOLLOW | O_NONBLOCK), checks
 * it is a regular file, reads to its end and closes it. Returns the bytes
 * read; NOT_REGULAR (closed) if it is not a regular file; or, when it holds
 * `want` bytes or more, `-fd - 2` with the file left open (read from 0 again).
 * Errors carry `syscall` "open", "fstat" or "read"; the file is closed.
 */
export function readSmallFile(p: Buffer, buf: Buffer, offset: number, want: number): number {
  const b = usableBinding();
  if (b && typeof b.readSmall === 'function') return b.readSmall(p, buf, offset, want);
  const fd = openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
  let n = 0;
  try {
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      return NOT_REGULAR;
    }
    for (;;) {
      const r = readSync(fd, buf, offset + n, want - n, n);
      if (r === 0) break;
      n += r;
      if (n === want) return -fd - 2;
    }
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  closeSync(fd);
  return n;
}
