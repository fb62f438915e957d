/**
 * Library-level repository tests on the real filesystem with a real SQLite
 * cache in a scratch directory, through the public API of src/index.ts.
 */
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, initRepository, openRepository, restore, openBackend, Repository, isCofferError, type ErrorCode } from '../dist/src/index.js';
import { scratch } from './helpers.js';

const PASSWORD = 'correct horse battery staple';
const CHUNKER = { minSize: 16 * 1024, avgSize: 64 * 1024, maxSize: 256 * 1024 };

let root: string;
let cleanup: () => void;
let seq = 0;
const fresh = (label: string) => path.join(root, `${label}-${++seq}`);

/** Deterministic pseudo-random bytes (xorshift32). */
function prng(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const RAW_NAME = Buffer.from([0x72, 0x61, 0x77, 0x2d, 0xff, 0xfe, 0x2e, 0x62, 0x69, 0x6e]); // "raw-\xff\xfe.bin"

/** A small but varied source tree; returns its (absolute) path. */
function makeSource(label: string): string {
  const src = fresh(label);
  mkdirSync(path.join(src, 'docs', 'deep', 'deeper'), { recursive: true });
  mkdirSync(path.join(src, 'empty-dir'));
  writeFileSync(path.join(src, 'hello.txt'), 'hello, world\n');
  writeFileSync(path.join(src, 'empty'), '');
  writeFileSync(path.join(src, 'big.bin'), prng(1_500_000, 42)); // ~20 chunks
  writeFileSync(path.join(src, 'docs', 'notes.md'), '# Notes\n\n' + 'Lorem ipsum dolor sit amet. '.repeat(4000));
  writeFileSync(path.join(src, 'docs', 'deep', 'deeper', 'leaf.txt'), 'leaf\n');
  writeFileSync(Buffer.concat([Buffer.from(src + '/docs/'), RAW_NAME]), prng(3000, 7));
  writeFileSync(path.join(src, 'script.sh'), '#!/bin/sh\necho hi\n');
  chmodSync(path.join(src, 'script.sh'), 0o755);
  symlinkSync('docs/notes.md', path.join(src, 'link-to-notes'));
  symlinkSync(Buffer.from([0x2e, 0x2f, 0xe9, 0x74, 0xe9]), path.join(src, 'link-raw-target'));
  utimesSync(path.join(src, 'hello.txt'), new Date('2020-02-02T02:02:02.500Z'), new Date('2021-03-03T03:03:03.250Z'));
  return src;
}

interface Entry {
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  /** File content, base64. */
  data?: string;
  target?: string;
  mtimeMs?: number;
}

/** Everything restore must reproduce, keyed by the hex of the relative raw path. */
function snapshotOf(dir: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (abs: Buffer, rel: Buffer) => {
    for (const name of readdirSync(abs, { encoding: 'buffer' })) {
      const a = Buffer.concat([abs, Buffer.from('/'), name]);
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const st = lstatSync(a);
      const key = r.toString('hex');
      if (st.isDirectory()) {
        out.set(key, { kind: 'dir', mode: st.mode & 0o7777 });
        walk(a, r);
      } else if (st.isSymbolicLink()) {
        out.set(key, { kind: 'symlink', mode: 0, target: readlinkSync(a, { encoding: 'buffer' }).toString('hex') });
      } else {
        out.set(key, { kind: 'file', mode: st.mode & 0o7777, data: readFileSync(a).toString('base64'), mtimeMs: Math.floor(st.mtimeMs) });
      }
    }
  };
  walk(Buffer.from(dir), Buffer.alloc(0));
  return out;
}

function expectSameTree(restoredRoot: string, src: string): void {
  const want = snapshotOf(src);
  const got = snapshotOf(path.join(restoredRoot, src));
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, w] of want) expect(got.get(k), Buffer.from(k, 'hex').toString('latin1')).toEqual(w);
}

async function expectCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  let err: unknown;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${code}`).toBeDefined();
  expect(isCofferError(err), String(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

async function newRepo(label = 'repo'): Promise<{ repo: string; cache: string }> {
  const repo = fresh(label);
  await initRepository(repo, PASSWORD, { chunker: CHUNKER, packSize: 256 * 1024 });
  return { repo, cache: fresh('cache') };
}

beforeAll(() => {
  ({ dir: root, cleanup } = scratch('coffer-repo-test-'));
});
afterAll(() => cleanup());

describe('init and open', () => {
  it('creates a repository and opens it with the right password', async () => {
    const dir = fresh('repo');
    const id = await initRepository(dir, PASSWORD);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    for (const d of ['keys', 'index', 'snapshots', 'locks', 'data/00', 'data/ff']) expect(existsSync(path.join(dir, d))).toBe(true);
    expect(readFileSync(path.join(dir, 'config')).subarray(0, 8).toString('latin1')).toBe('COFFER\x00\x01');
    const repo = await openRepository(dir, PASSWORD, { cacheDir: fresh('cache') });
    try {
      expect(repo.config.id).toBe(id);
      expect(repo.config.chunker).toEqual({ minSize: 512 * 1024, avgSize: 1024 * 1024, maxSize: 8 * 1024 * 1024 });
      expect(await repo.listSnapshots()).toEqual([]);
      await expectCode(repo.findSnapshot('latest'), 'SNAPSHOT_NOT_FOUND');
    } finally {
      await repo.close();
    }
  });

  it('accepts a password given as bytes (not UTF-8)', async () => {
    const dir = fresh('repo');
    const pw = Buffer.from([0xff, 0x00, 0x41, 0xfe]);
    await initRepository(dir, pw);
    const repo = await openRepository(dir, Uint8Array.from(pw), { noCache: true });
    await repo.close();
    await expectCode(openRepository(dir, 'A', { noCache: true }), 'WRONG_PASSWORD');
  });

  it('WRONG_PASSWORD for a wrong password (also one differing in case or by a trailing newline)', async () => {
    const { repo } = await newRepo();
    for (const pw of ['wrong', PASSWORD.toUpperCase(), PASSWORD + '\n', PASSWORD.slice(0, -1)]) {
      await expectCode(openRepository(repo, pw, { noCache: true }), 'WRONG_PASSWORD');
    }
  });

  it('whileDeriving runs once per open, the key derivation started; with workers: true the pool started at the open backs up and restores, and a failed open stops it', async () => {
    const { repo: dir, cache } = await newRepo();
    const src = makeSource('src');
    let calls = 0;
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2, workers: true, whileDeriving: () => calls++ });
    try {
      expect(calls).toBe(1);
      const { snapshot } = await backup(repo, { paths: [src] });
      expect(snapshot.summary.files_new).toBe(7);
      const target = fresh('restore');
      expect((await restore(repo, snapshot, { target })).errors).toBe(0);
      expectSameTree(target, src);
    } finally {
      await repo.close();
    }
    // The threads of a pool started for an open that then fails are stopped
    // (counted as the process's own threads, where /proc shows them).
    const threads = () => readdirSync('/proc/self/task').length;
    const hasProc = existsSync('/proc/self/task');
    const settle = async (atMost: number) => {
      for (let i = 0; i < 200 && threads() > atMost; i++) await new Promise((r) => setTimeout(r, 50));
      return threads();
    };
    const base = hasProc ? await settle(Infinity) : 0;
    calls = 0;
    await expectCode(openRepository(dir, 'wrong', { noCache: true, threads: 3, workers: true, whileDeriving: () => calls++ }), 'WRONG_PASSWORD');
    expect(calls).toBe(1);
    if (hasProc) expect(await settle(base)).toBeLessThanOrEqual(base);
    // The pool starts once the key is derived: an open failing after that (an index file cannot be read) stops it too.
    const unreadable = path.join(dir, 'index', 'ab'.repeat(32));
    mkdirSync(unreadable);
    try {
      await expectCode(openRepository(dir, PASSWORD, { noCache: true, threads: 3, workers: true }), 'STORAGE');
    } finally {
      rmSync(unreadable, { recursive: true });
    }
    if (hasProc) expect(await settle(base)).toBeLessThanOrEqual(base);
    // Without a derivation to overlap (nothing opens), the hook is not called.
    calls = 0;
    await expectCode(openRepository(fresh('missing'), PASSWORD, { whileDeriving: () => calls++ }), 'REPO_NOT_FOUND');
    expect(calls).toBe(0);
  });

  it('REPO_EXISTS on a second init, and on a non-empty directory', async () => {
    const { repo } = await newRepo();
    await expectCode(initRepository(repo, PASSWORD), 'REPO_EXISTS');
    await expectCode(initRepository(repo, 'another password'), 'REPO_EXISTS');
    const nonEmpty = fresh('nonempty');
    mkdirSync(nonEmpty);
    writeFileSync(path.join(nonEmpty, 'precious.txt'), 'do not touch');
    await expectCode(initRepository(nonEmpty, PASSWORD), 'REPO_EXISTS');
    expect(readdirSync(nonEmpty)).toEqual(['precious.txt']);
  });

  it('REPO_NOT_FOUND on an empty or missing directory; REPO_INVALID on a foreign config', async () => {
    const empty = fresh('empty');
    mkdirSync(empty);
    await expectCode(openRepository(empty, PASSWORD), 'REPO_NOT_FOUND');
    await expectCode(openRepository(fresh('missing'), PASSWORD), 'REPO_NOT_FOUND');
    const foreign = fresh('foreign');
    mkdirSync(foreign);
    writeFileSync(path.join(foreign, 'config'), '[core]\n\tbare = true\n');
    await expectCode(openRepository(foreign, PASSWORD), 'REPO_INVALID');
  });

  it('refuses an empty password and bad options', async () => {
    await expectCode(initRepository(fresh('repo'), ''), 'NO_PASSWORD');
    await expectCode(initRepository(fresh('repo'), PASSWORD, { compressionLevel: 20 }), 'INVALID_ARGUMENT');
    await expectCode(initRepository(fresh('repo'), PASSWORD, { packSize: 1000 }), 'INVALID_ARGUMENT');
    await expect(initRepository(fresh('repo'), PASSWORD, { chunker: { minSize: 1, avgSize: 2, maxSize: 3 } })).rejects.toThrow();
  });
});

describe('backup and restore', () => {
  it('round-trips a tree with raw names, symlinks, modes and mtimes', async () => {
    const src = makeSource('src');
    const { repo: dir, cache } = await newRepo();
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      const { snapshot, incomplete } = await backup(repo, { paths: [src], hostname: 'test-host', tags: ['t1'] });
      expect(incomplete).toBe(false);
      expect(snapshot.id).toMatch(/^[0-9a-f]{64}$/);
      expect(snapshot.paths).toEqual([src]);
      expect(snapshot.hostname).toBe('test-host');
      expect(snapshot.tags).toEqual(['t1']);
      expect(snapshot.summary.files_new).toBe(7);
      expect(snapshot.summary.errors).toBe(0);
      expect(snapshot.summary.data_added).toBeGreaterThan(1_500_000);
      expect(snapshot.summary.data_added_packed).toBeLessThan(snapshot.summary.data_added); // notes.md compresses
      expect(existsSync(path.join(dir, 'snapshots', snapshot.id))).toBe(true);

      const target = fresh('restore');
      const r = await restore(repo, snapshot, { target });
      expect(r.errors).toBe(0);
      expect(r.bytesRestored).toBe(1_500_000 + 3000 + 13 + 5 + 18 + Buffer.byteLength('# Notes\n\n' + 'Lorem ipsum dolor sit amet. '.repeat(4000)));
      expectSameTree(target, src);
      expect(lstatSync(path.join(target, src, 'hello.txt')).mtime.toISOString()).toBe('2021-03-03T03:03:03.250Z');

      // include: only one subtree
      const partial = fresh('restore-partial');
      await restore(repo, snapshot, { target: partial, include: [path.join(src, 'docs', 'deep')] });
      expect(readFileSync(path.join(partial, src, 'docs', 'deep', 'deeper', 'leaf.txt'), 'utf8')).toBe('leaf\n');
      expect(existsSync(path.join(partial, src, 'hello.txt'))).toBe(false);
    } finally {
      await repo.close();
    }
  });

  it('a second backup with the parent reads nothing new; changed files are detected', async () => {
    const src = makeSource('src');
    const { repo: dir, cache } = await newRepo();
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      const first = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      const second = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(second.parent).toBe(first.id);
      expect(second.summary.files_unmodified).toBe(7);
      expect(second.summary.files_new + second.summary.files_changed).toBe(0);
      expect(second.summary.data_blobs).toBe(0);
      writeFileSync(path.join(src, 'hello.txt'), 'hello, changed world\n');
      const third = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(third.summary.files_changed).toBe(1);
      expect(third.summary.data_blobs).toBe(1);
      const target = fresh('restore');
      await restore(repo, third, { target });
      expectSameTree(target, src);
      const old = fresh('restore-old');
      await restore(repo, await repo.findSnapshot(first.id), { target: old });
      expect(readFileSync(path.join(old, src, 'hello.txt'), 'utf8')).toBe('hello, world\n');
    } finally {
      await repo.close();
    }
  });
});

describe('the local cache', () => {
  it('deleted between runs: rebuilt from the index files, and still deduplicates', async () => {
    const src = makeSource('src');
    const { repo: dir, cache } = await newRepo();
    let repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    await backup(repo, { paths: [src], hostname: 'h' });
    const blobCount = repo.cache.blobCount();
    expect(blobCount).toBeGreaterThan(20);
    const repoId = repo.config.id;
    await repo.close();
    const cacheFile = path.join(cache, repoId, 'index.sqlite');
    expect(existsSync(cacheFile)).toBe(true);

    rmSync(cache, { recursive: true, force: true });
    repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      expect(existsSync(cacheFile)).toBe(true);
      expect(repo.cache.blobCount()).toBe(blobCount);
      const target = fresh('restore');
      expect((await restore(repo, await repo.findSnapshot('latest'), { target })).errors).toBe(0);
      expectSameTree(target, src);
      const again = (await backup(repo, { paths: [src], hostname: 'h', parent: null })).snapshot;
      expect(again.summary.data_blobs).toBe(0);
      expect(again.summary.data_added).toBeLessThan(20_000); // at most a few changed skeleton trees
      expect(again.summary.files_new).toBe(7);
    } finally {
      await repo.close();
    }
  });

  it('a corrupt cache file does not stop the repository from opening', async () => {
    const src = makeSource('src');
    const { repo: dir, cache } = await newRepo();
    let repo = await openRepository(dir, PASSWORD, { cacheDir: cache });
    await backup(repo, { paths: [src], hostname: 'h' });
    const cacheFile = path.join(cache, repo.config.id, 'index.sqlite');
    await repo.close();
    for (const f of [cacheFile, cacheFile + '-wal', cacheFile + '-shm']) rmSync(f, { force: true });
    writeFileSync(cacheFile, 'this is not an sqlite database, not even close '.repeat(100));
    repo = await openRepository(dir, PASSWORD, { cacheDir: cache });
    try {
      const target = fresh('restore');
      expect((await restore(repo, await repo.findSnapshot('latest'), { target })).errors).toBe(0);
      expectSameTree(target, src);
    } finally {
      await repo.close();
    }
  });

  it('a second client sees the index files the first one writes (and dedups against them)', async () => {
    const src = makeSource('src');
    const { repo: dir } = await newRepo();
    const cacheA = fresh('cacheA');
    const cacheB = fresh('cacheB');
    const a = await openRepository(dir, PASSWORD, { cacheDir: cacheA, threads: 2 });
    const b = await openRepository(dir, PASSWORD, { cacheDir: cacheB, threads: 2 });
    try {
      expect(b.cache.blobCount()).toBe(0);
      const first = (await backup(a, { paths: [src], hostname: 'client-a' })).snapshot;
      const dataAdded = first.summary.data_added;
      expect(dataAdded).toBeGreaterThan(1_500_000);
      // B's cache is stale until it syncs.
      expect(b.cache.blobCount()).toBe(0);
      await b.syncIndex();
      expect(b.cache.blobCount()).toBe(a.cache.blobCount());
      expect((await b.listSnapshots()).map((s) => s.id)).toEqual([first.id]);
      // Same data from the other client, no parent: nothing but (maybe) a few tree bytes is new.
      const second = (await backup(b, { paths: [src], hostname: 'client-b' })).snapshot;
      expect(second.parent).toBeUndefined();
      expect(second.summary.files_new).toBe(7);
      expect(second.summary.data_blobs).toBe(0);
      expect(second.summary.data_added).toBeLessThan(dataAdded / 100);
    } finally {
      await a.close();
      await b.close();
    }
    // A client reopening with its old cache picks up the other client's new index files.
    const c = await openRepository(dir, PASSWORD, { cacheDir: cacheA, threads: 2 });
    try {
      expect((await c.listSnapshots()).length).toBe(2);
      const target = fresh('restore');
      await restore(c, await c.findSnapshot('latest'), { target });
      expectSameTree(target, src);
    } finally {
      await c.close();
    }
  });

  it('--no-cache mode keeps the index in memory only and works end to end', async () => {
    const src = makeSource('src');
    const { repo: dir, cache } = await newRepo();
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, noCache: true, threads: 2 });
    try {
      const { snapshot } = await backup(repo, { paths: [src], hostname: 'h' });
      const target = fresh('restore');
      await restore(repo, snapshot, { target });
      expectSameTree(target, src);
    } finally {
      await repo.close();
    }
    expect(existsSync(cache)).toBe(false);
    const again = await openRepository(dir, PASSWORD, { noCache: true, threads: 2 });
    try {
      expect(again.cache.blobCount()).toBeGreaterThan(20);
      const s2 = (await backup(again, { paths: [src], hostname: 'h' })).snapshot;
      expect(s2.summary.data_blobs).toBe(0);
      expect(s2.summary.files_unmodified).toBe(7);
    } finally {
      await again.close();
    }
  });
});

describe('findSnapshot', () => {
  it('resolves latest, full ids and unique prefixes; reports ambiguous and unknown refs', async () => {
    const src = fresh('small-src');
    mkdirSync(src);
    writeFileSync(path.join(src, 'f'), 'x');
    const { repo: dir, cache } = await newRepo();
    const repo = await Repository.open(openBackend(dir), Buffer.from(PASSWORD), { cacheDir: cache });
    try {
      const base = (await backup(repo, { paths: [src], hostname: 'h', time: new Date('2030-01-01T00:00:00Z') })).snapshot;
      expect((await repo.findSnapshot('latest')).id).toBe(base.id);
      // More snapshot files (same tree, earlier times) until two ids share a first hex digit.
      const ids = [base.id as string];
      for (let i = 0; i < 17 && new Set(ids.map((x) => x[0])).size === ids.length; i++) {
        const { id: _id, ...data } = base;
        ids.push(await repo.saveSnapshot({ ...data, time: new Date(Date.UTC(2029, 0, 1 + i)).toISOString(), tags: [`n${i}`] }));
      }
      const all = await repo.listSnapshots();
      expect(all.length).toBe(ids.length);
      expect(all.map((s) => s.time)).toEqual([...all.map((s) => s.time)].sort());
      expect((await repo.findSnapshot('latest')).id).toBe(base.id); // newest time, not newest write

      for (const id of ids) {
        expect((await repo.findSnapshot(id)).id).toBe(id);
        // the shortest unique prefix works
        let n = 1;
        while (ids.filter((x) => x.startsWith(id.slice(0, n))).length > 1) n++;
        expect((await repo.findSnapshot(id.slice(0, n))).id).toBe(id);
      }
      const shared = ids.map((x) => x[0]).find((c, i, arr) => arr.indexOf(c) !== i)!;
      await expectCode(repo.findSnapshot(shared), 'SNAPSHOT_AMBIGUOUS');

      let unknown = '';
      for (const c of '0123456789abcdef') if (!ids.some((x) => x.startsWith(`${c}${c}${c}`))) unknown = `${c}${c}${c}`;
      await expectCode(repo.findSnapshot(unknown), 'SNAPSHOT_NOT_FOUND');
      await expectCode(repo.findSnapshot('0'.repeat(64) === base.id ? '1'.repeat(64) : '0'.repeat(64)), 'SNAPSHOT_NOT_FOUND');
      for (const bad of ['xyz', 'LATEST', base.id.toUpperCase(), '', base.id + '0', '../etc']) await expectCode(repo.findSnapshot(bad), 'INVALID_ARGUMENT');

      // A filter narrows the candidates (e.g. by host) before "latest" and prefixes apply.
      expect((await repo.findSnapshot('latest', (s) => s.tags.includes('n0'))).id).toBe(ids[1]);
      await expectCode(repo.findSnapshot('latest', () => false), 'SNAPSHOT_NOT_FOUND');
    } finally {
      await repo.close();
    }
  });
});
