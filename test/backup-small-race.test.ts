// Small files are listed by the walk and opened and read later, by the worker
// that hashes their batch. Files that change in between (grown past the
// small limit or within it, shrunk, replaced by a FIFO, a symlink or nothing)
// must end up as a read made now would see them: new content restored
// exactly, or a warning and no node. Both batch paths are covered: hash+seal
// in one task (a fresh repository) and hash, ask the index, seal (most chunks
// known already).
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { backup, initRepository, openRepository, restore } from '../dist/src/index.js';
import type { BackupWarning } from '../dist/src/index.js';
import { check } from '../dist/src/checker/checker.js';
import { scratch } from './helpers.js';

const PASSWORD = 'race';

describe('small files that change between the listing and the read', () => {
  const { dir, cleanup } = scratch('coffer-small-race-');
  afterAll(cleanup);

  for (const known of [false, true]) {
    it(known ? 'most chunks already in the repository (hash, then seal)' : 'a fresh repository (hash and seal in one task)', async () => {
      const base = path.join(dir, known ? 'known' : 'fresh');
      const repoDir = path.join(base, 'repo');
      await initRepository(repoDir, PASSWORD);
      const src = path.join(base, 'src');
      // 600 files first ("a/"), so that with `known` the batches have switched to hash-then-seal
      // by the time the changing files ("z/") come.
      mkdirSync(path.join(src, 'a'), { recursive: true });
      for (let i = 0; i < 600; i++) writeFileSync(path.join(src, 'a', `f${i}`), `file ${i} `.repeat(20 + (i % 50)));
      const z = path.join(src, 'z');
      mkdirSync(z);
      const names = ['big', 'grow', 'shrink', 'fifo', 'gone', 'link', 'same', 'empty-grows'];
      for (const n of names) writeFileSync(path.join(z, n), `${n} `.repeat(100));
      writeFileSync(path.join(z, 'empty-grows'), '');

      const repo = await openRepository(repoDir, PASSWORD, { noCache: true, threads: 2 });
      try {
        if (known) {
          const first = await backup(repo, { paths: [src], parent: null });
          expect(first.incomplete).toBe(false);
        }
        const bigContent = Buffer.alloc(3 << 20);
        for (let i = 0; i < bigContent.length; i += 4) bigContent.writeUInt32LE((i * 2654435761) >>> 0, i);
        // The filter runs after the listing and before the file is read: change the files there.
        const filter = (p: Buffer | string): 'keep' => {
          const s = p.toString();
          if (path.dirname(s) !== z) return 'keep';
          const n = path.basename(s);
          if (n === 'big') writeFileSync(s, bigContent); // past the small limit: streamed instead
          if (n === 'grow') appendFileSync(s, 'more');
          if (n === 'shrink') truncateSync(s, 10);
          if (n === 'empty-grows') writeFileSync(s, 'now something');
          if (n === 'fifo') {
            rmSync(s);
            execFileSync('mkfifo', [s]);
          }
          if (n === 'gone') rmSync(s);
          if (n === 'link') {
            rmSync(s);
            symlinkSync('same', s);
          }
          return 'keep';
        };
        const warnings: BackupWarning[] = [];
        const r = await backup(repo, { paths: [src], parent: null, filter, onWarning: (w) => warnings.push(w) });
        expect(r.incomplete).toBe(true);
        const byName = new Map(warnings.map((w) => [path.basename(w.path), w.message]));
        expect(byName).toEqual(
          new Map([
            ['fifo', 'changed type during backup; skipped'],
            ['gone', 'vanished before it could be read'],
            ['link', 'cannot open: ELOOP'],
          ]),
        );
        expect(r.snapshot.summary.files_new).toBe(600 + 5);

        const target = path.join(base, 'restore');
        const res = await restore(repo, r.snapshot, { target });
        expect(res.errors).toBe(0);
        const got = (n: string) => readFileSync(path.join(target, z, n));
        expect(got('big').equals(bigContent)).toBe(true);
        for (const n of ['grow', 'shrink', 'same', 'empty-grows']) expect(got(n).equals(readFileSync(path.join(z, n)))).toBe(true);
        expect(got('shrink').length).toBe(10);
        for (let i = 0; i < 600; i += 37) expect(readFileSync(path.join(target, src, 'a', `f${i}`)).equals(readFileSync(path.join(src, 'a', `f${i}`)))).toBe(true);
        const c = await check(repo, { readData: true });
        expect(c.problems).toEqual([]);
      } finally {
        await repo.close();
      }
    });
  }
});
