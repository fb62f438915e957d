import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, copyFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPlatform, nativeAddonStatus, platform, type Platform } from '../dist/src/platform/native.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const addonPath = path.join(root, 'native', 'build', 'Release', 'coffer_native.node');
const compiledModule = path.join(root, 'dist', 'src', 'platform', 'native.js');
const noNativeEnv = !!process.env.COFFER_NO_NATIVE && process.env.COFFER_NO_NATIVE !== '0';
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

const nativePlatform = createPlatform({ native: true });
const fallbackPlatform = createPlatform({ native: false });

let tmp: string;
let seq = 0;
const fresh = (label: string): string => path.join(tmp, `${label}-${++seq}`);

beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'coffer-native-test-'));
});
afterAll(async () => {
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<NodeJS.ErrnoException> {
  try {
    await p;
  } catch (err) {
    return err as NodeJS.ErrnoException;
  }
  throw new Error('expected the promise to reject');
}

function expectSystemError(err: NodeJS.ErrnoException, code: string, p: string): void {
  expect(err).toBeInstanceOf(Error);
  expect(err.code).toBe(code);
  expect(err.errno).toBe(-(os.constants.errno as Record<string, number>)[code]);
  expect(typeof err.syscall).toBe('string');
  expect(err.path).toBe(p);
  expect(err.message).toContain(code);
}

describe('loader', () => {
  it('uses the addon when it is built', () => {
    if (noNativeEnv) {
      expect(platform.hasNative).toBe(false);
      expect(nativeAddonStatus().disabled).toBe(true);
    } else if (existsSync(addonPath)) {
      expect(nativeAddonStatus().error).toBeNull();
      expect(platform.hasNative).toBe(true);
      expect(nativePlatform.hasNative).toBe(true);
      expect(nativeAddonStatus().path).toBe(addonPath);
    } else {
      expect(platform.hasNative).toBe(false);
    }
  });

  it('createPlatform({ native: false }) is the fallback', () => {
    expect(fallbackPlatform.hasNative).toBe(false);
  });

  it('COFFER_NO_NATIVE=1 forces the fallback', () => {
    const code = `import { platform, createPlatform } from ${JSON.stringify(pathToFileURL(compiledModule).href)};
      console.log(JSON.stringify([platform.hasNative, createPlatform({ native: true }).hasNative]));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
      env: { ...process.env, COFFER_NO_NATIVE: '1' },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual([false, false]);
  });
});

describe.skipIf(!nativePlatform.hasNative)('native addon', () => {
  const p: Platform = nativePlatform;

  it('round-trips nanosecond atime/mtime', async () => {
    const f = fresh('file');
    await fs.writeFile(f, 'x');
    await p.setTimes(f, 1600000000987654321n, 1700000000123456789n, true);
    const st = await fs.lstat(f, { bigint: true });
    expect(st.mtimeNs).toBe(1700000000123456789n);
    expect(st.atimeNs).toBe(1600000000987654321n);
  });

  it('accepts Buffer paths, including names that are not valid UTF-8', async () => {
    const f = Buffer.concat([Buffer.from(fresh('bad') + '-'), Buffer.from([0xff, 0xfe, 0x80])]);
    await fs.writeFile(f, 'x');
    await p.setTimes(f, 1n, 1700000000000000001n, true);
    expect((await fs.lstat(f, { bigint: true })).mtimeNs).toBe(1700000000000000001n);
  });

  it('sets times before 1970', async () => {
    const f = fresh('old');
    await fs.writeFile(f, 'x');
    await p.setTimes(f, -1n, -1500000001n, true);
    const st = await fs.lstat(f, { bigint: true });
    expect(st.mtimeNs).toBe(-1500000001n);
    expect(st.atimeNs).toBe(-1n);
  });

  it('sets a symlink’s own times with followSymlinks=false', async () => {
    const target = fresh('target');
    const link = fresh('link');
    await fs.writeFile(target, 'x');
    await fs.symlink(target, link);
    await p.setTimes(target, 1500000000000000000n, 1500000000000000000n, true);
    await p.setTimes(link, 1700000000111111111n, 1700000000222222222n, false);
    const l = await fs.lstat(link, { bigint: true });
    expect(l.isSymbolicLink()).toBe(true);
    expect(l.mtimeNs).toBe(1700000000222222222n);
    expect(l.atimeNs).toBe(1700000000111111111n);
    const t = await fs.stat(target, { bigint: true });
    expect(t.mtimeNs).toBe(1500000000000000000n);
    // followSymlinks=true goes through the link
    await p.setTimes(link, 1n, 1600000000000000007n, true);
    expect((await fs.stat(target, { bigint: true })).mtimeNs).toBe(1600000000000000007n);
    expect((await fs.lstat(link, { bigint: true })).mtimeNs).toBe(1700000000222222222n);
  });

  it('round-trips xattrs (user.test)', async (ctx) => {
    const f = fresh('xattr');
    await fs.writeFile(f, 'x');
    const name = Buffer.from('user.test');
    const value = Buffer.from([0, 1, 2, 0xff, 0x00, 0x41]);
    try {
      await p.setXattr(f, name, value);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTSUP') return ctx.skip();
      throw err;
    }
    const names = (await p.listXattrs(f)).map((b) => b.toString('latin1'));
    expect(names).toContain('user.test');
    expect(await p.getXattr(f, name)).toEqual(value);
    expect(await p.getXattr(Buffer.from(f), name)).toEqual(value);

    // replace, empty value, second attribute
    await p.setXattr(f, name, Buffer.alloc(0));
    expect((await p.getXattr(f, name)).length).toBe(0);
    await p.setXattr(f, Buffer.from('user.other'), Buffer.from('v'));
    expect((await p.listXattrs(f)).map(String).sort()).toEqual(expect.arrayContaining(['user.other', 'user.test']));

    // missing attribute
    const err = await rejection(p.getXattr(f, Buffer.from('user.missing')));
    expect(['ENODATA', 'ENOATTR']).toContain(err.code);
    expect(err.syscall).toBe('lgetxattr');
    expect(err.path).toBe(f);

    // no follow: the link itself has no user.test
    const link = fresh('xlink');
    await fs.symlink(f, link);
    expect((await p.listXattrs(link)).map(String)).not.toContain('user.test');
  });

  it('mkfifo creates a FIFO with the exact mode', async () => {
    const f = fresh('fifo');
    await p.mkfifo(f, 0o666);
    const st = await fs.lstat(f);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o666);

    const g = Buffer.concat([Buffer.from(fresh('fifo') + '-'), Buffer.from([0xc3, 0x28])]);
    await p.mkfifo(g, 0o600);
    const sg = await fs.lstat(g);
    expect(sg.isFIFO()).toBe(true);
    expect(sg.mode & 0o7777).toBe(0o600);

    expectSystemError(await rejection(p.mkfifo(f, 0o644)), 'EEXIST', f);
  });

  it('mknod creates a character device (root) or fails with EPERM', async (ctx) => {
    const f = fresh('dev');
    const rdev = (1n << 8n) | 3n; // 1:3, like /dev/null (Linux encoding for small numbers)
    const S_IFCHR = fs.constants.S_IFCHR;
    if (!isRoot) {
      expect((await rejection(p.mknod(f, S_IFCHR | 0o600, rdev))).code).toBe('EPERM');
      return;
    }
    try {
      await p.mknod(f, S_IFCHR | 0o640, rdev);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EPERM') return ctx.skip(); // container without CAP_MKNOD
      throw err;
    }
    const st = await fs.lstat(f, { bigint: true });
    expect(st.isCharacterDevice()).toBe(true);
    if (process.platform === 'linux') expect(st.rdev).toBe(rdev);
    expect(st.mode & 0o7777n).toBe(0o640n);
  });

  it('throws Node-style errors (ENOENT) on a missing path', async () => {
    const missing = path.join(tmp, 'does-not-exist', 'x');
    for (const call of [
      () => p.setTimes(missing, 0n, 0n, true),
      () => p.setTimes(missing, 0n, 0n, false),
      () => p.listXattrs(missing),
      () => p.getXattr(missing, Buffer.from('user.test')),
      () => p.setXattr(missing, Buffer.from('user.test'), Buffer.from('v')),
      () => p.mkfifo(missing, 0o644),
    ]) {
      expectSystemError(await rejection(call()), 'ENOENT', missing);
    }
    const err = await rejection(p.setTimes(missing, 0n, 0n, true));
    expect(err.message).toBe(`ENOENT: no such file or directory, utimensat '${missing}'`);
  });

  it('reports non-UTF-8 paths in string form', async () => {
    const missing = Buffer.concat([Buffer.from(path.join(tmp, 'nope') + '-'), Buffer.from([0xff])]);
    const err = await rejection(p.setTimes(missing, 0n, 0n, true));
    expect(err.code).toBe('ENOENT');
    expect(err.path).toBe(missing.toString('utf8'));
  });

  it('rejects bad arguments', async () => {
    expect((await rejection(p.setTimes('a\0b', 0n, 0n, true))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect((await rejection(p.getXattr(fresh('f'), Buffer.from('user.a\0b')))).code).toBe('ERR_INVALID_ARG_VALUE');
    expect((await rejection(p.setTimes(fresh('f'), 1 as unknown as bigint, 0n, true))).code).toBe('ERR_INVALID_ARG_TYPE');
    expect((await rejection(p.setTimes(fresh('f'), 1n << 70n, 0n, true))).code).toBe('ERR_OUT_OF_RANGE');
  });
});

describe('JS fallback', () => {
  const p: Platform = fallbackPlatform;

  it('sets times with microsecond precision', async () => {
    const f = fresh('ffile');
    await fs.writeFile(f, 'x');
    await p.setTimes(f, 1600000000987654321n, 1700000000123456789n, true);
    const st = await fs.lstat(f, { bigint: true });
    expect(st.mtimeNs).toBe(1700000000123456000n);
    expect(st.atimeNs).toBe(1600000000987654000n);
    // values close to a microsecond boundary are not rounded up or down by double error
    await p.setTimes(f, 1700000000000000999n, 1700000000999999999n, true);
    const st2 = await fs.lstat(f, { bigint: true });
    expect(st2.mtimeNs).toBe(1700000000999999000n);
    expect(st2.atimeNs).toBe(1700000000000000000n);
  });

  it('sets times before 1970 (millisecond precision)', async () => {
    const f = fresh('fold');
    await fs.writeFile(f, 'x');
    await p.setTimes(f, -1000000000n, -1500000000n, true);
    const st = await fs.lstat(f, { bigint: true });
    expect(st.mtimeNs).toBe(-1500000000n);
    expect(st.atimeNs).toBe(-1000000000n);
  });

  it('sets a symlink’s own times with followSymlinks=false', async () => {
    const target = fresh('ftarget');
    const link = fresh('flink');
    await fs.writeFile(target, 'x');
    await fs.symlink(target, link);
    await p.setTimes(target, 1500000000000000000n, 1500000000000000000n, true);
    await p.setTimes(link, 1700000000111111111n, 1700000000222222222n, false);
    expect((await fs.lstat(link, { bigint: true })).mtimeNs).toBe(1700000000222222000n);
    expect((await fs.stat(target, { bigint: true })).mtimeNs).toBe(1500000000000000000n);
  });

  it('has no xattrs', async () => {
    const f = fresh('fx');
    await fs.writeFile(f, 'x');
    expect(await p.listXattrs(f)).toEqual([]);
    expectSystemError(await rejection(p.setXattr(f, Buffer.from('user.test'), Buffer.from('v'))), 'ENOTSUP', f);
    expectSystemError(await rejection(p.getXattr(f, Buffer.from('user.test'))), 'ENOTSUP', f);
  });

  it('mkfifo creates a FIFO with the exact mode', async () => {
    const f = fresh('-ffifo'); // leading '-' in the name must not become an option
    await p.mkfifo(f, 0o666);
    const st = await fs.lstat(f);
    expect(st.isFIFO()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o666);

    const g = Buffer.from(fresh('ffifo-ü'));
    await p.mkfifo(g, 0o1640);
    const sg = await fs.lstat(g);
    expect(sg.isFIFO()).toBe(true);
    expect(sg.mode & 0o7777).toBe(0o1640);

    expectSystemError(await rejection(p.mkfifo(f, 0o644)), 'EEXIST', f);
    const missing = path.join(tmp, 'does-not-exist', 'fifo');
    expectSystemError(await rejection(p.mkfifo(missing, 0o644)), 'ENOENT', missing);
  });

  it('mkfifo refuses paths that are not valid UTF-8', async () => {
    const bad = Buffer.concat([Buffer.from(fresh('fbad') + '-'), Buffer.from([0xff])]);
    expect((await rejection(p.mkfifo(bad, 0o644))).code).toBe('ENOTSUP');
    await expect(fs.lstat(bad)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('mknod is not supported', async () => {
    const f = fresh('fdev');
    expectSystemError(await rejection(p.mknod(f, fs.constants.S_IFCHR | 0o600, 259n)), 'ENOTSUP', f);
  });

  it('throws ENOENT on a missing path', async () => {
    const missing = path.join(tmp, 'does-not-exist', 'x');
    expectSystemError(await rejection(p.setTimes(missing, 0n, 0n, true)), 'ENOENT', missing);
    expectSystemError(await rejection(p.setTimes(missing, 0n, 0n, false)), 'ENOENT', missing);
  });
});

describe('scripts/build-native.mjs', () => {
  // Run a copy, so that a failed build cannot clobber the real native/build.
  function copyProject(): string {
    const dir = fresh('buildcopy');
    mkdirSync(path.join(dir, 'scripts'), { recursive: true });
    mkdirSync(path.join(dir, 'native'), { recursive: true });
    copyFileSync(path.join(root, 'scripts', 'build-native.mjs'), path.join(dir, 'scripts', 'build-native.mjs'));
    copyFileSync(path.join(root, 'native', 'binding.gyp'), path.join(dir, 'native', 'binding.gyp'));
    copyFileSync(path.join(root, 'native', 'coffer_native.c'), path.join(dir, 'native', 'coffer_native.c'));
    return dir;
  }

  function run(dir: string, env: Record<string, string>) {
    return spawnSync(process.execPath, [path.join(dir, 'scripts', 'build-native.mjs')], {
      cwd: dir,
      env: { ...process.env, COFFER_NATIVE_BUILD_VERBOSE: '', COFFER_SKIP_NATIVE_BUILD: '', ...env },
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  it('exits 0 with one warning line when the compiler is missing', () => {
    const dir = copyProject();
    const r = run(dir, { CC: '/nonexistent/cc', CXX: '/nonexistent/c++' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/^coffer: warning: native addon not built/);
    expect(existsSync(path.join(dir, 'native', 'build', 'Release', 'coffer_native.node'))).toBe(false);
  }, 120_000);

  it('exits 0 without building when no local Node headers are configured', () => {
    const dir = copyProject();
    const r = run(dir, { npm_config_nodedir: path.join(dir, 'no-such-nodedir') });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^coffer: warning: native addon not built \(no local Node\.js headers/);
    expect(existsSync(path.join(dir, 'native', 'build'))).toBe(false);
  });

  it('exits 0 when native sources are missing', () => {
    const dir = fresh('empty');
    mkdirSync(path.join(dir, 'scripts'), { recursive: true });
    copyFileSync(path.join(root, 'scripts', 'build-native.mjs'), path.join(dir, 'scripts', 'build-native.mjs'));
    const r = run(dir, {});
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/binding\.gyp is missing/);
  });
});
