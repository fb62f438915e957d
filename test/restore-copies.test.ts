/**
 * Restore with several copies of a data blob in the index (two sessions that
 * stored the same data): a copy that fails to authenticate is passed over for
 * another one; only when every copy is damaged is the file lost, reported by
 * name (exit 3, README "Exit codes": some files could not be restored), and
 * nothing unauthenticated is written.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFromTwoSessions, coffer, scratch } from './helpers.js';
import { Repository, LocalBackend, backup } from '../dist/src/index.js';
import { prng } from '../dist/src/storage/faulty.js';

const PW = 'two copies of everything';
const small = { packSize: 64 * 1024, chunker: { minSize: 8 * 1024, avgSize: 16 * 1024, maxSize: 32 * 1024 } };
let s: ReturnType<typeof scratch>;
let repoDir: string;
let src: string;
/** Per file name: for each of its blobs, the locations of its copies. */
const copies = new Map<string, { packId: string; offset: number; length: number }[][]>();
const NAMES = ['one-blob.bin', 'many-blobs.bin', 'other.txt'];

function bytesFrom(rand: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

const packFile = (id: string) => path.join(repoDir, 'data', id.slice(0, 2), id);

/** Flips a byte in the middle of one stored copy; returns the undo. */
function damage(loc: { packId: string; offset: number; length: number }): () => void {
  const file = packFile(loc.packId);
  const original = readFileSync(file);
  const b = Buffer.from(original);
  b[loc.offset + (loc.length >> 1)] ^= 0x40;
  writeFileSync(file, b);
  return () => writeFileSync(file, original);
}

function restoreTo(name: string) {
  const target = path.join(s.dir, name);
  const r = coffer(['restore', 'latest', '--target', target], { COFFER_REPOSITORY: repoDir, COFFER_PASSWORD: PW, COFFER_CACHE_DIR: path.join(s.dir, 'cache') });
  return { ...r, out: path.join(target, src) };
}

beforeAll(async () => {
  s = scratch('coffer-restore-copies-');
  repoDir = path.join(s.dir, 'repo');
  src = path.join(s.dir, 'src');
  mkdirSync(src);
  const rand = prng(11);
  writeFileSync(path.join(src, NAMES[0]), bytesFrom(rand, 5_000));
  writeFileSync(path.join(src, NAMES[1]), bytesFrom(rand, 200_000));
  writeFileSync(path.join(src, NAMES[2]), 'not damaged\n');
  await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
  const open = () => Repository.open(new LocalBackend(repoDir), Buffer.from(PW), { noCache: true, threads: 1 });
  // Each session stores its own copy of every blob.
  await backupFromTwoSessions(repoDir, src, PW);
  const repo = await open();
  try {
    const snap = await repo.findSnapshot('latest');
    const { decodeTree } = await import('../dist/src/format/tree.js');
    let nodes = decodeTree(await repo.loadBlob('tree', snap.tree));
    for (const part of src.split('/').filter(Boolean)) nodes = decodeTree(await repo.loadBlob('tree', nodes.find((n) => n.name.toString() === part)!.subtree!));
    for (const n of nodes) copies.set(n.name.toString(), (n.content ?? []).map((id) => repo.cache.lookupAll('data', id)));
  } finally {
    await repo.close();
  }
});
afterAll(() => s?.cleanup());

describe('a data blob with several copies', () => {
  it('the index lists two copies of every blob of the test files', () => {
    for (const name of NAMES) {
      const blobs = copies.get(name)!;
      expect(blobs.length).toBeGreaterThan(0);
      for (const c of blobs) expect(new Set(c.map((l) => l.packId)).size).toBe(2);
    }
    expect(copies.get(NAMES[1])!.length).toBeGreaterThan(3);
  });

  it('one damaged copy: the other is used, everything is restored exactly (whichever copy was damaged)', () => {
    for (const which of [0, 1]) {
      const undo = [NAMES[0], NAMES[1]].flatMap((name) => copies.get(name)!.slice(0, 2).map((c) => damage(c[which])));
      try {
        const r = restoreTo(`one-damaged-${which}`);
        expect(r.stderr).toBe('');
        expect(r.code).toBe(0);
        for (const name of NAMES) expect(readFileSync(path.join(r.out, name)).equals(readFileSync(path.join(src, name))), name).toBe(true);
      } finally {
        for (const u of undo.reverse()) u();
      }
    }
  });

  it('every copy damaged: the file is named as damaged and not written, the rest is restored; exit 3', () => {
    const undo = copies.get(NAMES[1])![1].map((loc) => damage(loc));
    try {
      const r = restoreTo('all-damaged');
      expect(r.code, r.stderr).toBe(3);
      expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
      const lines = r.stderr.trim().split('\n').filter((l) => l.includes(path.join(r.out, NAMES[1])));
      expect(lines.length).toBe(1);
      expect(lines[0]).toMatch(/damaged.*file not restored/);
      expect(existsSync(path.join(r.out, NAMES[1]))).toBe(false);
      for (const name of [NAMES[0], NAMES[2]]) expect(readFileSync(path.join(r.out, name)).equals(readFileSync(path.join(src, name))), name).toBe(true);
    } finally {
      for (const u of undo.reverse()) u();
    }
  });
});
