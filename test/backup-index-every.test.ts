// A backup writes an index file every `blobsPerIndex` new blobs (20,000;
// lowered here) and then forgets those blobs (the index cache lists them):
// copies met later in the same backup must still be found through the cache
// and stored once, and restore.
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup, initRepository, openRepository, restore } from '../dist/src/index.js';
import { backupTuning } from '../dist/src/archiver/archiver.js';
import { check } from '../dist/src/checker/checker.js';
import { scratch } from './helpers.js';

const PASSWORD = 'index-every';
const FILES = 1500;
const COPIES = 200;

describe('index files during a backup', () => {
  const { dir, cleanup } = scratch('coffer-index-every-');
  const saved = backupTuning.blobsPerIndex;
  afterAll(() => {
    backupTuning.blobsPerIndex = saved;
    cleanup();
  });

  it('writes an index file every blobsPerIndex new blobs; later copies of forgotten blobs are stored once', async () => {
    const repoDir = path.join(dir, 'repo');
    // 64 KiB packs of 400-byte random blobs: ~160 blobs a pack, so packs (and index files) are written while the walk goes on.
    await initRepository(repoDir, PASSWORD, { packSize: 64 * 1024 });
    const src = path.join(dir, 'src');
    const contents: Buffer[] = [];
    for (let i = 0; i < FILES; i++) {
      const d = path.join(src, `a${String(Math.floor(i / 100)).padStart(2, '0')}`);
      if (i % 100 === 0) mkdirSync(d, { recursive: true });
      contents.push(randomBytes(400));
      writeFileSync(path.join(d, `f${i}`), contents[i]);
    }
    // Walked last (names sort after "a..."): copies of the first files, whose blobs are in the first index file by then.
    mkdirSync(path.join(src, 'z'));
    for (let i = 0; i < COPIES; i++) writeFileSync(path.join(src, 'z', `copy${i}`), contents[i]);

    backupTuning.blobsPerIndex = 200;
    const repo = await openRepository(repoDir, PASSWORD, { noCache: true, threads: 2 });
    try {
      const r = await backup(repo, { paths: [src], parent: null });
      expect(r.snapshot.summary.files_new).toBe(FILES + COPIES);
      expect(r.snapshot.summary.data_blobs).toBe(FILES);
      expect(readdirSync(path.join(repoDir, 'index')).length).toBeGreaterThanOrEqual(4);

      const target = path.join(dir, 'restore');
      const res = await restore(repo, r.snapshot, { target });
      expect(res.errors).toBe(0);
      for (let i = 0; i < FILES; i += 97) {
        const d = `a${String(Math.floor(i / 100)).padStart(2, '0')}`;
        expect(readFileSync(path.join(target, src, d, `f${i}`)).equals(contents[i])).toBe(true);
      }
      for (let i = 0; i < COPIES; i++) expect(readFileSync(path.join(target, src, 'z', `copy${i}`)).equals(contents[i])).toBe(true);
      expect((await check(repo, { readData: true })).problems).toEqual([]);
    } finally {
      await repo.close();
    }
  });
});
