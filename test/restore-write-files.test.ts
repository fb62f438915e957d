/**
 * Restore's small-file fast path in the workers (src/worker/write-files.ts):
 * the addon's one-call restoreFile and the node:fs path it replaces must
 * leave the same file (content, hole, mode, owner, nanosecond mtime), and on
 * any failure nothing at the path, with the errno code reported.
 */
import { mkdtempSync, rmSync, lstatSync, readFileSync, writeFileSync, symlinkSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { usableBinding } from '../dist/src/platform/addon.js';
import { writeTargets, type FileTarget } from '../dist/src/worker/write-files.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'coffer-write-files-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const isRoot = process.getuid?.() === 0;
const restoreFile = usableBinding()?.restoreFile;
let seq = 0;
const fresh = (label: string): string => path.join(tmp, `${label}-${++seq}`);

function target(p: string, over: Partial<FileTarget> = {}): FileTarget {
  return { path: Buffer.from(p).toString('latin1'), mode: 0o640, createMode: 0o600, chmod: true, chown: false, uid: 0, gid: 0, mtimeNs: 1_234_567_890_123_456_789n, ...over };
}

async function write(plain: Buffer, ts: FileTarget[]): Promise<(string | null)[]> {
  const r = await writeTargets([plain.length], [null], plain, [ts]);
  return r[0]!;
}

describe('writeTargets (fast path)', () => {
  it('creates each file with its content, mode and nanosecond mtime', async () => {
    const a = fresh('a');
    const b = fresh('b');
    const plain = Buffer.from('hello, restore\n'.repeat(100));
    expect(await write(plain, [target(a), target(b, { mode: 0o755, createMode: 0o755, chmod: false })])).toEqual([null, null]);
    for (const [p, mode] of [
      [a, 0o640],
      [b, 0o755 & ~process.umask()],
    ] as const) {
      expect(readFileSync(p)).toEqual(plain);
      const st = lstatSync(p, { bigint: true });
      expect(Number(st.mode & 0o7777n)).toBe(mode);
      // Without the addon, times are set through node:fs with microsecond precision.
      expect(st.mtimeNs).toBe(usableBinding() ? 1_234_567_890_123_456_789n : 1_234_567_890_123_456_000n);
    }
  });

  it('leaves an all-zero content as a hole of the right size', async () => {
    const p = fresh('zero');
    const plain = Buffer.alloc(1 << 20);
    expect(await write(plain, [target(p)])).toEqual([null]);
    const st = lstatSync(p);
    expect(st.size).toBe(1 << 20);
    expect(st.blocks * 512).toBeLessThan(1 << 20);
    expect(readFileSync(p).equals(plain)).toBe(true);
  });

  it('reports EEXIST and leaves an existing file or symlink untouched', async () => {
    const f = fresh('exists');
    writeFileSync(f, 'keep');
    const l = fresh('link');
    const victim = fresh('victim');
    writeFileSync(victim, 'victim');
    symlinkSync(victim, l);
    expect(await write(Buffer.from('new'), [target(f), target(l)])).toEqual(['EEXIST', 'EEXIST']);
    expect(readFileSync(f, 'utf8')).toBe('keep');
    expect(readFileSync(victim, 'utf8')).toBe('victim');
    expect(lstatSync(l).isSymbolicLink()).toBe(true);
  });

  it('reports ENOENT when the directory is missing', async () => {
    const p = path.join(fresh('nodir'), 'f');
    expect(await write(Buffer.from('x'), [target(p)])).toEqual(['ENOENT']);
  });

  it('keeps raw (non UTF-8) name bytes', async () => {
    const dir = fresh('raw');
    mkdirSync(dir);
    const name = Buffer.concat([Buffer.from(dir + '/'), Buffer.from([0x66, 0xff, 0xfe])]);
    expect(await writeTargets([1], [null], Buffer.from('x'), [[{ ...target(''), path: name.toString('latin1') }]])).toEqual([[null]]);
    expect(existsSync(name)).toBe(true);
  });

  it.skipIf(!isRoot)('as root, gives the file its owner before its mode (set-ID bits survive)', async () => {
    const p = fresh('owned');
    expect(await write(Buffer.from('x'), [target(p, { chown: true, uid: 1234, gid: 5678, mode: 0o4750 })])).toEqual([null]);
    const st = lstatSync(p);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1234, 5678, 0o4750]);
  });
});

describe.skipIf(!restoreFile)('addon restoreFile', () => {
  it('returns errno numbers, creating nothing on failure', () => {
    const f = fresh('n');
    expect(restoreFile!(Buffer.from(f).toString('latin1'), Buffer.from('abc'), false, 0o600, -1, -1, -1, 0n)).toBe(0);
    expect(readFileSync(f, 'utf8')).toBe('abc');
    expect(restoreFile!(Buffer.from(f).toString('latin1'), Buffer.from('xyz'), false, 0o600, -1, -1, -1, 0n)).toBe(os.constants.errno.EEXIST);
    expect(readFileSync(f, 'utf8')).toBe('abc');
    expect(restoreFile!(`${f}\u0000x`, Buffer.from('x'), false, 0o600, -1, -1, -1, 0n)).toBe(os.constants.errno.EINVAL);
    expect(restoreFile!('', Buffer.from('x'), false, 0o600, -1, -1, -1, 0n)).toBe(os.constants.errno.ENOENT);
    expect(restoreFile!('/'.repeat(5000), Buffer.from('x'), false, 0o600, -1, -1, -1, 0n)).toBe(os.constants.errno.ENAMETOOLONG);
  });

  it.skipIf(isRoot)('a failing fchown removes the file', () => {
    const f = fresh('chown');
    expect(restoreFile!(Buffer.from(f).toString('latin1'), Buffer.from('abc'), false, 0o600, -1, 0, 0, 0n)).toBe(os.constants.errno.EPERM);
    expect(existsSync(f)).toBe(false);
  });

  it('rejects bad arguments', () => {
    expect(() => restoreFile!(Buffer.from('x') as never, Buffer.from('x'), false, 0o600, -1, -1, -1, 0n)).toThrow();
    expect(() => restoreFile!(fresh('bad'), Buffer.from('x'), false, 0o600, -1, -1, -1, 0 as never)).toThrow();
  });
});
