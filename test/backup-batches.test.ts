// Small files are hashed and sealed in one worker task per batch, before the
// index is asked which chunks are new: duplicates within a batch, across
// batches and against the repository must still be stored once, and every
// file must restore.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup, initRepository, openRepository, restore } from '../dist/src/index.js';
import { check } from '../dist/src/checker/checker.js';
import { scratch } from './helpers.js';

const PASSWORD = 'batches';

describe('small-file batches', () => {
  const { dir, cleanup } = scratch('coffer-batches-');
  afterAll(cleanup);

  it('stores each distinct content once (within a batch, across batches, against the repository) and restores every file', async () => {
    const repoDir = path.join(dir, 'repo');
    await initRepository(repoDir, PASSWORD);
    const src = path.join(dir, 'src');
    const contents: Buffer[] = [];
    for (let i = 0; i < 40; i++) contents.push(i % 2 ? randomBytes(100 + i * 37) : Buffer.from(`text ${i} `.repeat(50 + i)));
    const files = new Map<string, Buffer>();
    // 700 files (more than one batch of 256) over 40 contents; an empty file too.
    for (let i = 0; i < 700; i++) {
      const d = path.join(src, `d${i % 7}`);
      mkdirSync(d, { recursive: true });
      const f = path.join(d, `f${i}`);
      files.set(f, contents[(i * 13) % contents.length]);
    }
    files.set(path.join(src, 'empty'), Buffer.alloc(0));
    for (const [f, b] of files) writeFileSync(f, b);

    const repo = await openRepository(repoDir, PASSWORD, { noCache: true, threads: 2 });
    try {
      const first = await backup(repo, { paths: [src], parent: null });
      expect(first.snapshot.summary.files_new).toBe(701);
      expect(first.snapshot.summary.data_blobs).toBe(contents.length);
      expect(first.snapshot.summary.data_added).toBeGreaterThanOrEqual(contents.reduce((s, b) => s + b.length, 0)); // (trees included)

      // A second tree: 30 files whose content the repository has, 2 new ones.
      const src2 = path.join(dir, 'src2');
      mkdirSync(src2);
      for (let i = 0; i < 30; i++) writeFileSync(path.join(src2, `old${i}`), contents[i]);
      const fresh = [randomBytes(500), Buffer.from('new '.repeat(300))];
      fresh.forEach((b, i) => writeFileSync(path.join(src2, `new${i}`), b));
      writeFileSync(path.join(src2, 'new0-again'), fresh[0]);
      const second = await backup(repo, { paths: [src2], parent: null });
      expect(second.snapshot.summary.data_blobs).toBe(2);

      const target = path.join(dir, 'restore');
      const r = await restore(repo, first.snapshot, { target });
      expect(r.errors).toBe(0);
      for (const [f, b] of files) expect(readFileSync(path.join(target, f)).equals(b)).toBe(true);
      const r2 = await restore(repo, second.snapshot, { target: path.join(dir, 'restore2') });
      expect(r2.errors).toBe(0);
      expect(readFileSync(path.join(dir, 'restore2', src2, 'new0-again')).equals(fresh[0])).toBe(true);
      expect(readFileSync(path.join(dir, 'restore2', src2, 'old7')).equals(contents[7])).toBe(true);
      expect((await check(repo, { readData: true })).problems).toEqual([]);
    } finally {
      await repo.close();
    }
  });
});
