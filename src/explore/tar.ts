/**
 * A small POSIX tar (pax) writer for `coffer dump` of a directory: ustar
 * headers, with pax extended headers for long or non-ASCII names, big sizes
 * and sub-second times. Output is a stream of buffers the caller writes out.
 */

const BLOCK = 512;

function octal(n: number | bigint, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

function paxRecord(key: string, value: Buffer | string): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export interface TarEntry {
  /** Relative path inside the archive (raw bytes). */
  name: Buffer;
  /** `hardlink`: a second name for the file `linkTarget` (an earlier entry's name). */
  type: 'file' | 'dir' | 'symlink' | 'hardlink';
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size: number;
  linkTarget?: Buffer;
}

function isPlain(b: Buffer, max: number): boolean {
  if (b.length > max) return false;
  for (const c of b) if (c < 0x20 || c >= 0x7f) return false;
  return true;
}

function rawHeader(name: Buffer, typeflag: string, e: { mode: number; uid: number; gid: number; mtime: bigint; size: number; link?: Buffer }): Buffer {
  const h = Buffer.alloc(BLOCK);
  name.copy(h, 0, 0, Math.min(100, name.length));
  h.write(octal(e.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(Math.min(e.uid, 0o7777777), 8), 108, 'ascii');
  h.write(octal(Math.min(e.gid, 0o7777777), 8), 116, 'ascii');
  h.write(octal(Math.min(e.size, 0o77777777777), 12), 124, 'ascii');
  h.write(octal(e.mtime < 0n ? 0n : e.mtime, 12), 136, 'ascii');
  h.write(typeflag, 156, 'ascii');
  if (e.link) e.link.copy(h, 157, 0, Math.min(100, e.link.length));
  h.write('ustar\x0000', 257, 'binary');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const c of h) sum += c;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

function pad(n: number): Buffer {
  const r = n % BLOCK;
  return Buffer.alloc(r === 0 ? 0 : BLOCK - r);
}

/** The header block(s) of one entry; file contents (padded with {@link tarPadding}) follow. */
export function tarHeader(e: TarEntry): Buffer {
  const name = e.type === 'dir' && e.name[e.name.length - 1] !== 0x2f ? Buffer.concat([e.name, Buffer.from('/')]) : e.name;
  const size = e.type === 'file' ? e.size : 0;
  const mtime = e.mtimeNs / 1_000_000_000n;
  const records: Buffer[] = [];
  if (!isPlain(name, 100)) records.push(paxRecord('path', name));
  if (e.linkTarget && !isPlain(e.linkTarget, 100)) records.push(paxRecord('linkpath', e.linkTarget));
  if (size > 0o77777777777) records.push(paxRecord('size', String(size)));
  if (e.uid > 0o7777777) records.push(paxRecord('uid', String(e.uid)));
  if (e.gid > 0o7777777) records.push(paxRecord('gid', String(e.gid)));
  const frac = e.mtimeNs % 1_000_000_000n;
  if (frac !== 0n) records.push(paxRecord('mtime', `${mtime}.${frac.toString().padStart(9, '0')}`));
  const typeflag = { file: '0', hardlink: '1', symlink: '2', dir: '5' }[e.type];
  const main = rawHeader(isPlain(name, 100) ? name : Buffer.from('././@PaxHeader-name'), typeflag, { ...e, mtime, size, link: e.linkTarget });
  if (records.length === 0) return main;
  const body = Buffer.concat(records);
  const pax = rawHeader(Buffer.from('././@PaxHeader'), 'x', { mode: 0o644, uid: 0, gid: 0, mtime, size: body.length });
  return Buffer.concat([pax, body, pad(body.length), main]);
}

/** Zero bytes that bring `size` bytes of contents to a whole block. */
export function tarPadding(size: number): Buffer {
  return pad(size);
}

/** The end-of-archive marker: two zero blocks. */
export function tarEnd(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}
