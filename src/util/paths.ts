/** Raw-byte path helpers: file names are bytes, not strings, and may be invalid UTF-8. */
const SLASH = 0x2f;

export function joinPath(dir: Buffer, name: Buffer): Buffer {
  if (dir.length > 0 && dir[dir.length - 1] === SLASH) return Buffer.concat([dir, name]);
  return Buffer.concat([dir, Buffer.from('/'), name]);
}

/** For messages only: lossy UTF-8 rendering. */
export function displayPath(p: Buffer | string): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}
