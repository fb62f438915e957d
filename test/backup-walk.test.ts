/**
 * The backup walk's native fast paths (platform/native.ts scanDir and
 * readSmallFile) against plain Node fs calls, with and without the addon,
 * and the directory prefetch (archiver/prefetch.ts).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_REGULAR, lstatMeta, nativeAddonStatus, platform, readSmallFile, scanDir, scanDirAsync, scanHasAsync, scanHasMeta } from '../dist/src/platform/native.js';
import { Lookahead, lookahead, prefetchListings } from '../dist/src/archiver/prefetch.js';
import { createFilter } from '../dist/src/archiver/select.js';
import { deriveRepoKeys } from '../dist/src/crypto/keys.js';

const native = nativeAddonStatus().loaded;
let tmp: string;
let dir: Buffer;
const odd = Buffer.from([0x6f, 0x64, 0x64, 0xff, 0x0a, 0x20, 0x6e, 0x61, 0x6d, 0x65]); // "odd\xff\n name": not UTF-8
let xattrs = false;

function withoutNative<T>(f: () => T): T {
  const before = process.env.COFFER_NO_NATIVE;
  process.env.COFFER_NO_NATIVE = '1';
  try {
    return f();
  } finally {
    if (before === undefined) delete process.env.COFFER_NO_NATIVE;
    else process.env.COFFER_NO_NATIVE = before;
  }
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'coffer-walk-test-'));
  const d = path.join(tmp, 'tree');
  fs.mkdirSync(path.join(d, 'sub', 'deeper'), { recursive: true });
  fs.mkdirSync(path.join(d, 'skipme'));
  fs.writeFileSync(path.join(d, 'small.txt'), 'hello world\n');
  fs.writeFileSync(path.join(d, 'empty'), '');
  fs.writeFileSync(path.join(d, 'big.bin'), Buffer.alloc(70_000, 7));
  fs.writeFileSync(path.join(d, 'sub', 'deeper', 'x'), 'x');
  fs.writeFileSync(path.join(d, 'skipme', 'y'), 'y');
  fs.linkSync(path.join(d, 'small.txt'), path.join(d, 'hardlink'));
  fs.symlinkSync('small.txt', path.join(d, 'link'));
  execFileSync('mkfifo', [path.join(d, 'fifo')]);
  dir = Buffer.from(d);
  fs.writeFileSync(Buffer.concat([dir, Buffer.from('/'), odd]), 'odd');
  try {
    await platform.setXattr(path.join(d, 'small.txt'), Buffer.from('user.coffer'), Buffer.from('v'));
    xattrs = (await platform.listXattrs(path.join(d, 'small.txt'))).length === 1;
  } catch {
    xattrs = false; // no xattr support here: the probe is then checked for 0 only
  }
});
afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('scanDir', () => {
  it('lists the same names as readdir and, with the addon, the same metadata as lstat', () => {
    const scan = scanDir(dir);
    const expected = fs.readdirSync(dir, { encoding: 'buffer' });
    expect(scan.names.map((n) => n.toString('hex')).sort()).toEqual(expected.map((n) => n.toString('hex')).sort());
    expect(scan.count).toBe(expected.length);
    expect(scan.names.some((n) => n.equals(odd))).toBe(true);
    expect(scanHasMeta()).toBe(native);
    for (let i = 0; i < scan.count; i++) {
      const p = Buffer.concat([dir, Buffer.from('/'), scan.names[i]]);
      const st = fs.lstatSync(p, { bigint: true });
      const m = scan.meta(i);
      expect(scan.isDirectory(i)).toBe(native && st.isDirectory());
      if (!native) {
        expect(m).toBeUndefined();
        continue;
      }
      expect(m).toBeDefined();
      expect({ mode: m!.mode, uid: m!.uid, gid: m!.gid, nlink: m!.nlink, size: m!.size, mtimeNs: m!.mtimeNs, ctimeNs: m!.ctimeNs, ino: m!.ino, dev: m!.dev }).toEqual({
        mode: Number(st.mode),
        uid: Number(st.uid),
        gid: Number(st.gid),
        nlink: Number(st.nlink),
        size: Number(st.size),
        mtimeNs: st.mtimeNs,
        ctimeNs: st.ctimeNs,
        ino: st.ino,
        dev: st.dev,
      });
      expect([m!.isFile(), m!.isDirectory(), m!.isSymbolicLink()]).toEqual([st.isFile(), st.isDirectory(), st.isSymbolicLink()]);
      const name = scan.names[i].toString('latin1');
      // The xattr probe: non-zero exactly for the file that has one.
      expect(m!.xattrSize > 0).toBe(xattrs && (name === 'small.txt' || name === 'hardlink'));
      // lstatMeta (the walk's path for targets) agrees, without a probe.
      const l = lstatMeta(p);
      expect([l.mode, l.ino, l.mtimeNs, l.xattrSize]).toEqual([m!.mode, m!.ino, m!.mtimeNs, -1]);
    }
  });

  it('without the addon: names only, the caller lstats', () => {
    const scan = withoutNative(() => scanDir(dir));
    expect(scan.count).toBe(fs.readdirSync(dir).length);
    expect(scan.meta(0)).toBeUndefined();
    expect(withoutNative(() => scanHasMeta())).toBe(false);
  });

  it('fails like readdir for a missing directory', () => {
    for (const f of [() => scanDir(Buffer.from(path.join(tmp, 'nope'))), () => withoutNative(() => scanDir(Buffer.from(path.join(tmp, 'nope'))))]) {
      expect(f).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    }
  });
});

describe('scanDirAsync', () => {
  it.skipIf(!native)('lists on another thread exactly what scanDir lists', async () => {
    expect(scanHasAsync()).toBe(true);
    const a = await scanDirAsync(dir)!;
    const b = scanDir(dir);
    expect(a.count).toBe(b.count);
    expect(a.names.map((n) => n.toString('hex'))).toEqual(b.names.map((n) => n.toString('hex')));
    for (let i = 0; i < a.count; i++) {
      const [x, y] = [a.meta(i)!, b.meta(i)!];
      expect([x.mode, x.size, x.ino, x.mtimeNs, x.ctimeNs, x.dev, x.xattrSize]).toEqual([y.mode, y.size, y.ino, y.mtimeNs, y.ctimeNs, y.dev, y.xattrSize]);
    }
  });

  it.skipIf(!native)('rejects like scanDir throws', async () => {
    await expect(scanDirAsync(Buffer.from(path.join(tmp, 'nope')))!).rejects.toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'scandir' }));
    await expect(scanDirAsync(Buffer.from(path.join(dir.toString(), 'small.txt')))!).rejects.toThrow(expect.objectContaining({ code: 'ENOTDIR' }));
  });

  it('is not offered without the addon', () => {
    expect(withoutNative(() => scanDirAsync(dir))).toBeUndefined();
    expect(withoutNative(() => lookahead())).toBeUndefined();
  });
});

describe('Lookahead', () => {
  const sub = (...p: string[]) => Buffer.from(path.join(dir.toString(), ...p));
  const sorted = (s: ReturnType<typeof scanDir>) => s.names.map((_, i) => i).sort((a, b) => Buffer.compare(s.names[a], s.names[b]));

  it.skipIf(!native)('lists the subdirectories the walk will enter, each taken once, honouring the filter', async () => {
    const la = new Lookahead(createFilter({ exclude: ['skipme'] }));
    const top = scanDir(dir);
    const keys = la.ahead(dir, top, sorted(top), lstatMeta(dir).dev);
    expect(keys.map((k) => path.basename(Buffer.from(k, 'latin1').toString()))).toEqual(['sub']); // skipme is excluded, files are not listed
    const s = await la.take(sub('sub'))!;
    expect(s.names.map(String)).toEqual(['deeper']);
    expect(la.take(sub('sub'))).toBeUndefined(); // once
    expect(la.take(sub('skipme'))).toBeUndefined();
    const deeper = la.ahead(sub('sub'), s, sorted(s), lstatMeta(dir).dev);
    la.forget(deeper); // the walk left sub/ without entering deeper/: dropped
    expect(la.take(sub('sub', 'deeper'))).toBeUndefined();
    la.forget(keys);
  });

  it.skipIf(!native)('a failed listing is the walk\'s to report', async () => {
    const la = new Lookahead(undefined);
    const top = scanDir(dir);
    la.ahead(dir, top, sorted(top), lstatMeta(dir).dev);
    fs.renameSync(sub('skipme'), sub('skipme2'));
    try {
      const p = la.take(sub('skipme'));
      // Started before or after the rename: either the listing or its error.
      if (p) await p.then((x) => expect(x.names.map(String)).toEqual(['y']), (e) => expect(e.code).toBe('ENOENT'));
    } finally {
      fs.renameSync(sub('skipme2'), sub('skipme'));
    }
  });

  it.skipIf(!native)('skips directories the key-derivation prefetch has listed', async () => {
    const pf = prefetchListings([dir.toString()])!;
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
    pf.stop();
    const la = new Lookahead(undefined, pf);
    const top = pf.take(dir)!;
    expect(la.ahead(dir, top, sorted(top), lstatMeta(dir).dev)).toEqual([]);
  });
});

describe('readSmallFile', () => {
  const modes = [
    ['addon (if built)', <T>(f: () => T) => f()],
    ['fallback', withoutNative],
  ] as const;
  for (const [label, run] of modes) {
    describe(label, () => {
      const p = (name: string) => Buffer.from(path.join(dir.toString(), name));

      it('reads a small file whole at the offset and closes it', () => {
        const buf = Buffer.alloc(100, 0xee);
        expect(run(() => readSmallFile(p('small.txt'), buf, 10, 50))).toBe(12);
        expect(buf.subarray(10, 22).toString()).toBe('hello world\n');
        expect(buf[9]).toBe(0xee);
        expect(run(() => readSmallFile(p('empty'), buf, 0, 50))).toBe(0);
      });

      it('leaves a file of `want` bytes or more open (fd = -result - 2)', () => {
        const buf = Buffer.alloc(1000);
        const r = run(() => readSmallFile(p('big.bin'), buf, 0, 1000));
        expect(r).toBeLessThanOrEqual(-2);
        const fd = -r - 2;
        try {
          expect(fs.fstatSync(fd).size).toBe(70_000);
        } finally {
          fs.closeSync(fd);
        }
      });

      it('reports a FIFO (without blocking) as not regular', () => {
        expect(run(() => readSmallFile(p('fifo'), Buffer.alloc(10), 0, 10))).toBe(NOT_REGULAR);
      });

      it('does not follow symlinks; errors name the failing call', () => {
        expect(() => run(() => readSmallFile(p('link'), Buffer.alloc(10), 0, 10))).toThrow(expect.objectContaining({ code: 'ELOOP', syscall: 'open' }));
        expect(() => run(() => readSmallFile(p('missing'), Buffer.alloc(10), 0, 10))).toThrow(expect.objectContaining({ code: 'ENOENT', syscall: 'open' }));
        expect(run(() => readSmallFile(p('sub'), Buffer.alloc(10), 0, 10))).toBe(NOT_REGULAR); // a directory: checked before any read
      });
    });
  }
});

describe('prefetchListings', () => {
  async function settle(): Promise<void> {
    for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  }

  it.skipIf(!native)('lists the tree ahead of the walk, each directory once, honouring the filter', async () => {
    const filter = createFilter({ exclude: ['skipme'] });
    const pf = prefetchListings([dir.toString()], filter)!;
    expect(pf).toBeDefined();
    await settle();
    pf.stop();
    const top = pf.take(dir)!;
    expect(top.names.map((n) => n.toString('hex')).sort()).toEqual(fs.readdirSync(dir, { encoding: 'buffer' }).map((n) => n.toString('hex')).sort());
    expect(pf.take(dir)).toBeUndefined(); // once
    expect(pf.take(Buffer.from(path.join(dir.toString(), 'sub')))!.names.map(String)).toEqual(['deeper']);
    expect(pf.take(Buffer.from(path.join(dir.toString(), 'sub', 'deeper')))!.names.map(String)).toEqual(['x']);
    expect(pf.take(Buffer.from(path.join(dir.toString(), 'skipme')))).toBeUndefined(); // excluded: not entered
  });

  it.skipIf(!native)('stops at its entry budget and when told to', async () => {
    const pf = prefetchListings([dir.toString()], undefined, 3)!;
    await settle();
    expect(pf.take(dir)).toBeDefined();
    expect(pf.take(Buffer.from(path.join(dir.toString(), 'sub')))).toBeUndefined();
    const stopped = prefetchListings([dir.toString()])!;
    stopped.stop();
    await settle();
    expect(stopped.take(dir)).toBeUndefined();
  });

  it('is not used without the addon or for long path lists', () => {
    expect(withoutNative(() => prefetchListings([dir.toString()]))).toBeUndefined();
    expect(prefetchListings(Array.from({ length: 65 }, (_, i) => path.join(tmp, `f${i}`)))).toBeUndefined();
  });
});

describe('Packer tree packs', () => {
  it('closes tree packs at 4 MiB (a larger tree blob gets its own), data packs at the pack size', async () => {
    const { LocalBackend } = await import('../dist/src/storage/local.js');
    const { Packer } = await import('../dist/src/repo/packer.js');
    const repoDir = path.join(tmp, 'packer-repo');
    const backend = new LocalBackend(repoDir);
    await backend.create();
    const written: { blobs: { type: string }[]; length: number }[] = [];
    const keys = deriveRepoKeys(Buffer.alloc(32, 1));
    const packer = new Packer(backend, { pack: { blobKey: keys.blobKey, metaKey: keys.metaKey }, repo: keys }, 16 << 20, {}, { packWritten: (p: { blobs: { type: string }[]; length: number }) => written.push(p) });
    const MiB = 1 << 20;
    let n = 0;
    const id = () => (++n).toString(16).padStart(64, '0');
    for (let i = 0; i < 5; i++) await packer.add('tree', id(), Buffer.alloc(1.5 * MiB, i), 1.5 * MiB);
    await packer.add('tree', id(), Buffer.alloc(5 * MiB, 9), 5 * MiB);
    for (let i = 0; i < 6; i++) await packer.add('data', id(), Buffer.alloc(1.5 * MiB, i), 1.5 * MiB);
    await packer.flush();
    const trees = written.filter((p) => p.blobs[0].type === 'tree').map((p) => p.blobs.length).sort();
    const data = written.filter((p) => p.blobs[0].type === 'data').map((p) => p.blobs.length);
    // 1.5 MiB blobs: two per 4 MiB tree pack (2 + 2 + 1); the 5 MiB one alone; data: all six in one 16 MiB pack.
    expect(trees).toEqual([1, 1, 2, 2]);
    expect(data).toEqual([6]);
    expect(written.every((p) => p.blobs.every((b) => b.type === p.blobs[0].type))).toBe(true);
  });
});
