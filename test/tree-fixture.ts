/**
 * Test trees on the real file system: build one with every kind of entry
 * coffer promises to keep, scan a tree into a comparable description (raw
 * byte paths, types, sha256 of contents, mode, owner, nanosecond mtime,
 * symlink targets, xattrs, hard-link structure), and compare two scans.
 *
 * Paths are raw bytes throughout: keys of a scan are the relative path's
 * bytes as a latin1 string (one char per byte, lossless), so names that are
 * not valid UTF-8 survive.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants as fsc,
  lchownSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  writeSync,
  type BigIntStats,
} from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { platform } from '../dist/src/platform/native.js';

export const IS_ROOT = process.getuid?.() === 0;
export const HAS_NATIVE = platform.hasNative;
export { platform };

export type EntryType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

export interface FsEntry {
  /** Path relative to the scanned root, raw bytes ('' for the root itself). */
  rel: Buffer;
  type: EntryType;
  /** st_mode & 0o7777 */
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size: number;
  /** Bytes actually allocated (st_blocks * 512). */
  allocated: number;
  dev: bigint;
  ino: bigint;
  nlink: number;
  rdev: bigint;
  sha256?: string;
  linkTarget?: Buffer;
  /** [name, value] as hex, sorted by name. */
  xattrs: [string, string][];
}

export type Scan = Map<string, FsEntry>;

/** Map key for a raw relative path. */
export const key = (rel: Buffer | string): string => (typeof rel === 'string' ? Buffer.from(rel) : rel).toString('latin1');

/** Readable rendering of a raw path (invalid UTF-8 bytes shown as \xNN). */
export function show(rel: Buffer | string): string {
  const b = typeof rel === 'string' ? Buffer.from(rel, 'latin1') : rel;
  const s = b.toString('utf8');
  if (Buffer.from(s).equals(b)) return JSON.stringify(s);
  return JSON.stringify([...b].map((c) => (c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`)).join(''));
}

function join(dir: Buffer, name: Buffer): Buffer {
  return dir.length === 0 ? name : Buffer.concat([dir, Buffer.from('/'), name]);
}

function typeOf(st: BigIntStats): EntryType {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isFIFO()) return 'fifo';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'chardev';
  return 'blockdev';
}

function sha256File(p: Buffer): string {
  // O_NONBLOCK is harmless for regular files; the type was checked by lstat.
  const fd = openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
  try {
    const h = createHash('sha256');
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
    return h.digest('hex');
  } finally {
    closeSync(fd);
  }
}

async function xattrsOf(p: Buffer): Promise<[string, string][]> {
  let names: Buffer[];
  try {
    names = await platform.listXattrs(p);
  } catch {
    return [];
  }
  const out: [string, string][] = [];
  for (const n of names) {
    // Only user.* attributes are under the test's control (security.* may be
    // added by the system, e.g. SELinux labels).
    if (!n.toString('latin1').startsWith('user.')) continue;
    out.push([n.toString('hex'), (await platform.getXattr(p, n)).toString('hex')]);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Describes everything under `root` (root included, as ''). Never follows symlinks. */
export async function scanTree(root: string | Buffer): Promise<Scan> {
  const base = typeof root === 'string' ? Buffer.from(root) : root;
  const out: Scan = new Map();
  const visit = async (rel: Buffer): Promise<void> => {
    const abs = rel.length ? Buffer.concat([base, Buffer.from('/'), rel]) : base;
    const st = lstatSync(abs, { bigint: true });
    const type = typeOf(st);
    const e: FsEntry = {
      rel,
      type,
      mode: Number(st.mode & 0o7777n),
      uid: Number(st.uid),
      gid: Number(st.gid),
      mtimeNs: st.mtimeNs,
      size: Number(st.size),
      allocated: Number(st.blocks) * 512,
      dev: st.dev,
      ino: st.ino,
      nlink: Number(st.nlink),
      rdev: st.rdev,
      xattrs: await xattrsOf(abs),
    };
    if (type === 'file') e.sha256 = sha256File(abs);
    if (type === 'symlink') e.linkTarget = readlinkSync(abs, { encoding: 'buffer' });
    out.set(key(rel), e);
    if (type === 'dir') for (const name of readdirSync(abs, { encoding: 'buffer' })) await visit(join(rel, name));
  };
  await visit(Buffer.alloc(0));
  return out;
}

/** Entries below `rel` (inclusive), re-keyed relative to it. */
export function subScan(scan: Scan, rel: string | Buffer): Scan {
  const prefix = key(rel);
  const out: Scan = new Map();
  for (const [k, e] of scan) {
    if (k === prefix) out.set('', { ...e, rel: Buffer.alloc(0) });
    else if (k.startsWith(prefix + '/')) {
      const r = k.slice(prefix.length + 1);
      out.set(r, { ...e, rel: Buffer.from(r, 'latin1') });
    }
  }
  return out;
}

/** For every regular file: the sorted keys of all paths in the scan sharing its inode. */
function linkGroups(scan: Scan): Map<string, string> {
  const byInode = new Map<string, string[]>();
  for (const [k, e] of scan) {
    if (e.type !== 'file') continue;
    const id = `${e.dev}:${e.ino}`;
    let g = byInode.get(id);
    if (!g) byInode.set(id, (g = []));
    g.push(k);
  }
  const out = new Map<string, string>();
  for (const g of byInode.values()) {
    const desc = g.sort().map(show).join(' = ');
    for (const k of g) out.set(k, desc);
  }
  return out;
}

export interface CompareOptions {
  /** Compare uid/gid (default: only when running as root). */
  owner?: boolean;
  /** 'exact' nanoseconds, 'micro' (within 1 µs, the non-native fallback), or 'none'. Default by platform.hasNative. */
  mtime?: 'exact' | 'micro' | 'none';
  /** Compare user.* xattrs (default: platform.hasNative). */
  xattrs?: boolean;
  /** Source entries that are not expected in the copy (e.g. sockets). */
  notExpected?: (e: FsEntry) => boolean;
  /** Do not compare the metadata of the root entry itself. */
  skipRootMeta?: boolean;
}

/**
 * Differences between `expected` (the source) and `actual` (the restored
 * copy), one human-readable line each; [] when they match.
 */
export function compareScans(expected: Scan, actual: Scan, opts: CompareOptions = {}): string[] {
  const owner = opts.owner ?? IS_ROOT;
  const mtime = opts.mtime ?? (HAS_NATIVE ? 'exact' : 'micro');
  const xattrs = opts.xattrs ?? HAS_NATIVE;
  const diffs: string[] = [];
  const expLinks = linkGroups(new Map([...expected].filter(([, e]) => !opts.notExpected?.(e))));
  const actLinks = linkGroups(actual);
  for (const [k, e] of expected) {
    const a = actual.get(k);
    const name = show(k);
    if (opts.notExpected?.(e)) {
      if (a) diffs.push(`${name}: ${e.type} was not expected in the copy but exists`);
      continue;
    }
    if (!a) {
      diffs.push(`${name}: missing (${e.type})`);
      continue;
    }
    if (a.type !== e.type) {
      diffs.push(`${name}: type ${a.type}, expected ${e.type}`);
      continue;
    }
    if (e.type === 'file') {
      if (a.size !== e.size) diffs.push(`${name}: size ${a.size}, expected ${e.size}`);
      else if (a.sha256 !== e.sha256) diffs.push(`${name}: contents differ`);
      if (expLinks.get(k) !== actLinks.get(k)) diffs.push(`${name}: hard links ${actLinks.get(k)}, expected ${expLinks.get(k)}`);
    }
    if (e.type === 'symlink' && !a.linkTarget!.equals(e.linkTarget!)) diffs.push(`${name}: link target ${show(a.linkTarget!)}, expected ${show(e.linkTarget!)}`);
    if ((e.type === 'chardev' || e.type === 'blockdev') && a.rdev !== e.rdev) diffs.push(`${name}: rdev ${a.rdev}, expected ${e.rdev}`);
    if (k === '' && opts.skipRootMeta) continue;
    if (a.mode !== e.mode) diffs.push(`${name}: mode ${a.mode.toString(8)}, expected ${e.mode.toString(8)}`);
    if (owner && (a.uid !== e.uid || a.gid !== e.gid)) diffs.push(`${name}: owner ${a.uid}:${a.gid}, expected ${e.uid}:${e.gid}`);
    if (mtime === 'exact' && a.mtimeNs !== e.mtimeNs) diffs.push(`${name}: mtime ${a.mtimeNs}ns, expected ${e.mtimeNs}ns (${e.type})`);
    if (mtime === 'micro') {
      const d = a.mtimeNs - e.mtimeNs;
      // Before 1970 the fallback only has millisecond precision.
      const tol = e.mtimeNs < 0n ? 1_000_000n : 1000n;
      if (d >= tol || d <= -tol) diffs.push(`${name}: mtime ${a.mtimeNs}ns, expected ${e.mtimeNs}ns (${e.type})`);
    }
    if (xattrs && JSON.stringify(a.xattrs) !== JSON.stringify(e.xattrs)) diffs.push(`${name}: xattrs ${JSON.stringify(a.xattrs)}, expected ${JSON.stringify(e.xattrs)}`);
  }
  for (const [k, a] of actual) if (!expected.has(k)) diffs.push(`${show(k)}: unexpected ${a.type} in the copy`);
  return diffs;
}

// ---------------------------------------------------------------------------
// building
// ---------------------------------------------------------------------------

export interface BuiltTree {
  root: string;
  /** Relative paths (keys) of notable entries. */
  paths: {
    bigFile: string;
    hardlinks: [string, string];
    sparse: string;
    fifo: string;
    socket?: string;
    device?: string;
    deepLeaf: string;
    subtree: string;
    modified: string;
  };
  /** Regular file names in the tree (hard links counted per name). */
  regularFiles: number;
  /** What could not be created here (and why), for the test log. */
  skipped: string[];
  xattrsSupported: boolean;
}

const B = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s) : Buffer.from(s));

/** Creates a UNIX socket file that stays behind (the creating process is killed, so nobody unlinks it). */
function makeSocket(p: string): void {
  const r = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(process.argv[1], () => process.kill(process.pid, 'SIGKILL'))`, p], { timeout: 10_000 });
  if (r.error) throw r.error;
  if (!lstatSync(p).isSocket()) throw new Error(`could not create socket ${p}`);
}

/**
 * Builds the full-fidelity tree in `root` (created). Contents are random,
 * times are set last (deepest first) to distinct nanosecond values.
 */
export async function buildTree(root: string): Promise<BuiltTree> {
  const rootB = B(root);
  const abs = (rel: Buffer | string) => Buffer.concat([rootB, B('/'), typeof rel === 'string' ? B(rel) : rel]);
  const skipped: string[] = [];
  let regularFiles = 0;
  mkdirSync(root, { recursive: true });

  const file = (rel: Buffer | string, data: Buffer | string, mode = 0o644) => {
    writeFileSync(abs(rel), data);
    chmodSync(abs(rel), mode);
    regularFiles++;
  };
  const dir = (rel: Buffer | string, mode = 0o755) => {
    mkdirSync(abs(rel));
    chmodSync(abs(rel), mode);
  };

  // Regular files of every size class.
  dir('files');
  file('files/empty', '');
  file('files/one-byte', 'x');
  file('files/small.txt', 'hello, coffer\n'.repeat(100));
  file('files/random-3M.bin', randomBytes(3 << 20));
  // Larger than the chunker's max (1 MiB in the tests) and compressible.
  file('files/text-2M.txt', Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n'.repeat(40_000)));
  file('files/to-modify.txt', 'version 1\n');

  // Sparse: 64 MiB with a few bytes in the middle.
  {
    const p = abs('files/sparse.img');
    const fd = openSync(p, 'w', 0o644);
    writeSync(fd, Buffer.from('data in the middle of a hole'), 0, 28, 32 << 20);
    closeSync(fd);
    spawnSync('truncate', ['-s', String(64 << 20), p.toString()]);
    regularFiles++;
  }

  // Directories: empty, sticky world-writable, setgid, read-only with contents.
  dir('empty-dir');
  dir('sticky-dir', 0o1777);
  dir('setgid-dir', 0o2755);
  mkdirSync(abs('readonly-dir'));
  file('readonly-dir/inside.txt', 'in a read-only directory');
  chmodSync(abs('readonly-dir'), 0o555);
  dir('nested');
  dir('nested/a');
  dir('nested/a/b');
  file('nested/a/b/c.txt', 'nested file');
  dir('nested/empty');

  // Modes.
  dir('modes');
  file('modes/setuid', '#!/bin/sh\n', 0o4755);
  file('modes/setgid', '#!/bin/sh\n', 0o2755);
  file('modes/sticky-file', 'sticky', 0o1644);
  file('modes/exec', '#!/bin/sh\n', 0o755);
  file('modes/private', 'secret', 0o600);
  file('modes/readonly', 'ro', 0o444);
  file('modes/weird', 'weird', 0o7604);
  if (IS_ROOT) file('modes/no-perms', 'root can read this', 0o000);
  else skipped.push('modes/no-perms: a mode 000 file is unreadable without root');

  // Symlinks (never followed).
  dir('links');
  symlinkSync('../files/small.txt', abs('links/relative'));
  symlinkSync(path.join(root, 'files', 'small.txt'), abs('links/absolute'));
  symlinkSync('does/not/exist', abs('links/dangling'));
  symlinkSync('loop-b', abs('links/loop-a'));
  symlinkSync('loop-a', abs('links/loop-b'));
  symlinkSync('../nested', abs('links/to-dir'));
  symlinkSync('/', abs('links/to-root'));
  symlinkSync(B([0x74, 0x61, 0x72, 0xff, 0x67]), abs('links/invalid-utf8-target'));
  symlinkSync('a target with spaces and\nnewline', abs('links/odd-target'));

  // Hard links: two names, one inode (one of them in another directory).
  dir('hard');
  file('hard/first', randomBytes(100_000));
  linkSync(abs('hard/first'), abs('hard/second'));
  regularFiles++;
  linkSync(abs('hard/first'), abs('files/third-name-of-first'));
  regularFiles++;
  file('hard/single', 'not linked');
  file('hard/pair-a', 'two names, one inode');
  linkSync(abs('hard/pair-a'), abs('hard/pair-b'));
  regularFiles++;
  file('hard/linked-outside', 'the other name is outside the tree');
  linkSync(abs('hard/linked-outside'), `${root}-outside-link`);

  // Names.
  dir('names');
  const names: Buffer[] = [
    B('with space'),
    B('new\nline'),
    B('-leading-dash'),
    B('--'),
    B('tab\there'),
    B('back\\slash'),
    B('quote"s\'s'),
    B('*?[glob]'),
    B('x'.repeat(255)),
    B('é'.repeat(127) + 'x'), // 255 bytes
    B('caf\u00e9'), // NFC
    B('cafe\u0301'), // NFD: a different name with the same rendering
    B('日本語のファイル'),
    B('emoji-\u{1F600}'),
    B([0x66, 0xff, 0xfe]), // invalid UTF-8
    B([0xc3, 0x28]), // invalid 2-byte sequence
    B([0xed, 0xa0, 0x80]), // UTF-8-encoded surrogate (invalid)
    B('\u0001control'),
  ];
  for (const n of names) file(Buffer.concat([B('names/'), n]), Buffer.concat([B('name: '), n]));
  const badDir = Buffer.concat([B('names/dir-'), B([0xff, 0x80])]);
  dir(badDir);
  file(Buffer.concat([badDir, B('/inside-'), B([0xfe])]), 'inside a directory with an invalid UTF-8 name');

  // 100 levels deep.
  let deep = 'deep';
  dir(deep);
  for (let i = 0; i < 100; i++) {
    deep += `/l${i}`;
    dir(deep);
  }
  const deepLeaf = `${deep}/leaf.txt`;
  file(deepLeaf, 'at the bottom');

  // Special files.
  dir('special');
  await platform.mkfifo(abs('special/fifo'), 0o640);
  let socket: string | undefined = 'special/socket';
  try {
    makeSocket(abs(socket).toString());
  } catch (e) {
    skipped.push(`socket: ${(e as Error).message}`);
    socket = undefined;
  }
  let device: string | undefined;
  if (IS_ROOT) {
    try {
      await platform.mknod(abs('special/null-dev'), fsc.S_IFCHR | 0o666, (1n << 8n) | 3n);
      device = 'special/null-dev';
    } catch (e) {
      skipped.push(`device node: ${(e as Error).message}`);
    }
  } else skipped.push('device node: needs root');

  // Extended attributes.
  let xattrsSupported = true;
  try {
    await platform.setXattr(abs('files/small.txt'), B('user.coffer.test'), B('value'));
    await platform.setXattr(abs('files/small.txt'), B('user.binary'), B([0, 1, 2, 255, 0]));
    await platform.setXattr(abs('nested'), B('user.on-dir'), B('dir value'));
    await platform.setXattr(abs('files/empty'), B('user.empty-value'), Buffer.alloc(0));
    await platform.setXattr(abs('hard/first'), B('user.on-hardlink'), B('shared'));
    // On read-only entries (without root, setting user.* xattrs needs write permission).
    chmodSync(abs('modes/readonly'), 0o644);
    await platform.setXattr(abs('modes/readonly'), B('user.on-readonly'), B('ro'));
    chmodSync(abs('modes/readonly'), 0o444);
    chmodSync(abs('readonly-dir'), 0o755);
    await platform.setXattr(abs('readonly-dir'), B('user.on-readonly-dir'), B('ro dir'));
    chmodSync(abs('readonly-dir'), 0o555);
  } catch (e) {
    xattrsSupported = false;
    skipped.push(`xattrs: ${(e as { code?: string }).code ?? (e as Error).message}`);
  }

  // Ownership (root only), after modes would clear setuid: set modes again.
  if (IS_ROOT) {
    chownSync(abs('modes/setuid'), 1234, 5678);
    chmodSync(abs('modes/setuid'), 0o4755);
    chownSync(abs('modes/setgid'), 1234, 5678);
    chmodSync(abs('modes/setgid'), 0o2755);
    chownSync(abs('nested/a'), 1234, 5678);
    lchownSync(abs('links/relative'), 4321, 8765);
    chownSync(abs('special/fifo'), 1234, 5678);
    chownSync(abs('hard/first'), 2000, 2000);
  } else skipped.push('ownership: needs root');

  // Times last, deepest first, each distinct with nanoseconds.
  const all = await scanTree(root);
  const keys = [...all.keys()].sort((a, b) => b.split('/').length - a.split('/').length);
  let t = 1_700_000_000_123_456_789n;
  const special: Record<string, bigint> = {
    [key('files/one-byte')]: -123_456_789_012_345_678n, // 1966
    [key('files/small.txt')]: 4_102_444_800_987_654_321n, // 2100
    [key('files/empty')]: 0n,
  };
  for (const k of keys) {
    t += 1_000_001_001n;
    const m = special[k] ?? t;
    await platform.setTimes(k === '' ? rootB : abs(Buffer.from(k, 'latin1')), m, m, false);
  }

  return {
    root,
    paths: {
      bigFile: 'files/random-3M.bin',
      hardlinks: ['hard/first', 'hard/second'],
      sparse: 'files/sparse.img',
      fifo: 'special/fifo',
      socket,
      device,
      deepLeaf,
      subtree: 'nested',
      modified: 'files/to-modify.txt',
    },
    regularFiles,
    skipped,
    xattrsSupported,
  };
}

/** A tree of `count` random files totalling about `totalBytes` (for kill tests). */
export function buildRandomTree(root: string, count: number, totalBytes: number): void {
  mkdirSync(root, { recursive: true });
  const each = Math.floor(totalBytes / count);
  for (let i = 0; i < count; i++) {
    const d = path.join(root, `d${i % 4}`);
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, `f${i}.bin`), randomBytes(each + i * 977));
  }
  writeFileSync(path.join(root, 'small.txt'), 'small');
  mkdirSync(path.join(root, 'empty'));
}

/** Removes a tree even when it contains read-only directories (non-root). */
export function removeTree(p: string): void {
  const fix = (d: Buffer) => {
    let st;
    try {
      st = lstatSync(d);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    try {
      chmodSync(d, 0o700);
      for (const n of readdirSync(d, { encoding: 'buffer' })) fix(Buffer.concat([d, B('/'), n]));
    } catch {
      // best effort
    }
  };
  if (!IS_ROOT) fix(B(p));
  rmSync(p, { recursive: true, force: true });
}

/** Reads a whole file (helper for tests that inspect contents). */
export function read(p: string | Buffer): Buffer {
  return readFileSync(p);
}
