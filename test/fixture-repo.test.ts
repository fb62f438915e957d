/**
 * Format compatibility: fixtures/repo-v1 is a repository written by an
 * earlier build (scripts/make-fixture-repo.mjs). Reading it must keep working:
 * a change that breaks this test breaks every existing repository. Do not
 * regenerate the fixture to make this test pass; add a new fixtures/repo-vN
 * for a deliberate format change instead.
 *
 * The test works on a copy without empty folders (as a git checkout has it:
 * most data/XX folders and locks/ are missing).
 */
import { cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, openRepository, restore, isCofferError, type Repository } from '../dist/src/index.js';
import { check } from '../dist/src/checker/checker.js';
import { plainHash } from '../dist/src/crypto/hash.js';
import { ROOT, scratch } from './helpers.js';

const FIXTURE = path.join(ROOT, 'fixtures', 'repo-v1');
const PASSWORD = 'coffer-fixture';
const SRC = '/tmp/coffer-fixture-v1/src';
const FIRST = 'b6c76e17e7bb9a9b38e099dd1806d13ebb238cff8c2fa488deb62b69fb6056c8';
const SECOND = '1f4db7f6c3d8c5c1369b3db500b2ea616f16022e3df1ea95b356a98bd584d02b';
const T1 = Date.parse('2025-06-15T12:34:56.789Z');
const T2 = Date.parse('2025-07-01T00:00:00.000Z');

/** 40960 bytes: BLAKE3(u32le(i)) for i = 0..1279 (as in the script). */
function dataBin(): Buffer {
  return Buffer.concat(
    Array.from({ length: 1280 }, (_, i) => {
      const c = Buffer.alloc(4);
      c.writeUInt32LE(i);
      return plainHash(c);
    }),
  );
}

type Expected = { type: 'file'; mode: number; content: Buffer } | { type: 'dir'; mode: number } | { type: 'symlink'; target: string };

/** Expected tree, keyed by the hex of the raw relative path. */
function expected(second: boolean): Map<string, Expected> {
  const e: [Buffer | string, Expected][] = [
    ['docs', { type: 'dir', mode: 0o755 }],
    ['docs/nested', { type: 'dir', mode: 0o755 }],
    ['docs/nested/deep.txt', { type: 'file', mode: 0o644, content: Buffer.from('deep\n') }],
    ['docs/readme.md', { type: 'file', mode: 0o644, content: Buffer.from('# Fixture\n\n' + 'This line repeats to make the file compressible.\n'.repeat(100)) }],
    ['empty-dir', { type: 'dir', mode: 0o755 }],
    ['empty.txt', { type: 'file', mode: 0o600, content: Buffer.alloc(0) }],
    ['hello.txt', { type: 'file', mode: 0o644, content: Buffer.from(second ? 'hello again, coffer\n' : 'hello, coffer\n') }],
    [Buffer.from('caf\xe9-latin1.txt', 'latin1'), { type: 'file', mode: 0o644, content: Buffer.from('latin-1 name\n') }],
    ['ünïcødé-名前.txt', { type: 'file', mode: 0o644, content: Buffer.from('utf-8 name\n') }],
    ['data.bin', { type: 'file', mode: 0o644, content: dataBin() }],
    ['script.sh', { type: 'file', mode: 0o755, content: Buffer.from('#!/bin/sh\necho fixture\n') }],
    ['link', { type: 'symlink', target: 'docs/readme.md' }],
  ];
  if (second) e.push(['added.txt', { type: 'file', mode: 0o644, content: Buffer.from('added in the second snapshot\n') }]);
  return new Map(e.map(([k, v]) => [Buffer.from(k).toString('hex'), v]));
}

function compareRestored(dir: string, want: Map<string, Expected>, mtimeMs: number): void {
  const seen = new Set<string>();
  const walk = (abs: Buffer, rel: Buffer) => {
    for (const name of readdirSync(abs, { encoding: 'buffer' })) {
      const a = Buffer.concat([abs, Buffer.from('/'), name]);
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      const key = r.toString('hex');
      const w = want.get(key);
      const label = r.toString('latin1');
      expect(w, `unexpected ${label}`).toBeDefined();
      seen.add(key);
      const st = lstatSync(a);
      if (w!.type === 'symlink') {
        expect(st.isSymbolicLink(), label).toBe(true);
        expect(readlinkSync(a, { encoding: 'buffer' }).toString()).toBe(w!.target);
        continue;
      }
      expect(st.mode & 0o7777, label).toBe(w!.mode);
      expect(st.mtimeMs, label).toBe(mtimeMs);
      if (w!.type === 'dir') {
        expect(st.isDirectory(), label).toBe(true);
        walk(a, r);
      } else {
        expect(st.isFile(), label).toBe(true);
        expect(readFileSync(a).equals(w!.content), label).toBe(true);
      }
    }
  };
  walk(Buffer.from(dir), Buffer.alloc(0));
  expect([...seen].sort()).toEqual([...want.keys()].sort());
}

let tmp: string;
let cleanup: () => void;
let repoDir: string;

beforeAll(() => {
  ({ dir: tmp, cleanup } = scratch('coffer-fixture-test-'));
  repoDir = path.join(tmp, 'repo');
  cpSync(FIXTURE, repoDir, { recursive: true });
  const prune = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) prune(path.join(d, e.name));
    if (d !== repoDir && readdirSync(d).length === 0) rmdirSync(d);
  };
  prune(repoDir);
});
afterAll(() => cleanup());

describe('fixtures/repo-v1 (format version 1)', () => {
  it('is small, has no empty folders, and its objects are named by their BLAKE3', () => {
    let total = 0;
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else {
          const b = readFileSync(p);
          total += b.length;
          if (e.name !== 'config') expect(plainHash(b).toString('hex'), p).toBe(e.name);
        }
      }
    };
    walk(repoDir);
    expect(total).toBeLessThan(200 * 1024);
    expect(existsSync(path.join(repoDir, 'locks'))).toBe(false);
    expect(readdirSync(path.join(repoDir, 'data')).length).toBeLessThan(256);
    expect(readFileSync(path.join(repoDir, 'config')).subarray(0, 8).toString('latin1')).toBe('COFFER\x00\x01');
  });

  it('refuses a wrong password', async () => {
    let err: unknown;
    await openRepository(repoDir, 'coffer-fixturE', { noCache: true }).catch((e) => (err = e));
    expect(isCofferError(err, 'WRONG_PASSWORD')).toBe(true);
  });

  it('opens, lists both snapshots, restores them exactly, and passes check --read-data', async () => {
    const repo: Repository = await openRepository(repoDir, PASSWORD, { cacheDir: path.join(tmp, 'cache'), threads: 2 });
    try {
      expect(repo.config).toMatchObject({ version: 1, chunker: { minSize: 2048, avgSize: 8192, maxSize: 65536 }, compressionLevel: 3, packSize: 65536 });
      const snaps = await repo.listSnapshots();
      expect(snaps.map((s) => s.id)).toEqual([FIRST, SECOND]);
      expect(snaps.map((s) => s.time)).toEqual(['2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z']);
      expect(snaps.map((s) => s.tags)).toEqual([['first'], ['second']]);
      for (const s of snaps) {
        expect(s.hostname).toBe('fixture-host');
        expect(s.paths).toEqual([SRC]);
        expect(s.version).toBe(1);
        expect(s.summary.errors).toBe(0);
      }
      expect(snaps[0].parent).toBeUndefined();
      expect(snaps[1].parent).toBe(FIRST);
      expect((await repo.findSnapshot('latest')).id).toBe(SECOND);
      expect((await repo.findSnapshot(FIRST.slice(0, 8))).id).toBe(FIRST);

      for (const [s, second, t] of [
        [snaps[0], false, T1],
        [snaps[1], true, T2],
      ] as const) {
        const target = path.join(tmp, `restore-${s.id.slice(0, 8)}`);
        const r = await restore(repo, s, { target });
        expect(r.errors).toBe(0);
        compareRestored(path.join(target, SRC), expected(second), t);
      }

      const c = await check(repo, { readData: true });
      expect(c.problems).toEqual([]);
      expect(c.snapshots).toBe(2);
      expect(c.packs).toBe(4);
      expect(c.unindexedPacks).toBe(0);
    } finally {
      await repo.close();
    }
  });

  it('takes a new backup: identical data deduplicates against the old blobs (same keys, chunker and ids)', async () => {
    const src = path.join(tmp, 'new-src');
    mkdirSync(src);
    writeFileSync(path.join(src, 'copy-of-data.bin'), dataBin());
    writeFileSync(path.join(src, 'new.txt'), 'written by the current build\n');
    const repo = await openRepository(repoDir, PASSWORD, { noCache: true, threads: 2 });
    let id: string;
    try {
      const { snapshot } = await backup(repo, { paths: [src], hostname: 'today', parent: null });
      id = snapshot.id;
      expect(snapshot.summary.files_new).toBe(2);
      expect(snapshot.summary.data_blobs).toBe(1); // only new.txt: data.bin's chunks are all in the old packs
    } finally {
      await repo.close();
    }
    const again = await openRepository(repoDir, PASSWORD, { noCache: true });
    try {
      expect((await again.listSnapshots()).map((s) => s.id)).toContain(id);
      const target = path.join(tmp, 'restore-new');
      await restore(again, await again.findSnapshot(id), { target });
      expect(readFileSync(path.join(target, src, 'copy-of-data.bin')).equals(dataBin())).toBe(true);
      expect(readFileSync(path.join(target, src, 'new.txt'), 'utf8')).toBe('written by the current build\n');
      expect((await check(again, { readData: true })).problems).toEqual([]);
    } finally {
      await again.close();
    }
  });
});
