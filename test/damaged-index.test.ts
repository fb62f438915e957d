/**
 * A damaged index file does not block opening the repository. The case it is
 * for: a server that writes objects in place (rclone's local backend does)
 * is killed while an index file is uploaded, and leaves it truncated. The
 * open skips the file and warns once; a backup stores the blobs it listed
 * again; `check` reports it (exit 13); prune and "repair snapshots" refuse
 * to run (the packs it lists would look like garbage and be deleted, its
 * blobs like lost data and be cut from snapshots), deleting nothing;
 * "repair index" rebuilds the index and everything works again.
 */
import { readdirSync, readFileSync, writeFileSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, randomFiles, scratch, SMALL_REPO } from './helpers.js';
import { compareScans, key, removeTree, scanTree, subScan } from './tree-fixture.js';
import { Repository, LocalBackend, backup, restore, isCofferError, check, planPrune, repairIndex, repairSnapshots } from '../dist/src/index.js';
import { StorageError, type Handle } from '../dist/src/storage/backend.js';

const PW = 'damaged index password';
let dir: string;

beforeAll(() => {
  ({ dir } = scratch('coffer-damaged-index-'));
});
afterAll(() => {
  if (dir) removeTree(dir);
});

const small = SMALL_REPO;
const tree = randomFiles;

/** Every file of the repository (relative path → bytes), to show that nothing was deleted or changed. */
function contents(repoDir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (d: string, rel: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.name === 'locks') continue;
      if (e.isDirectory()) walk(path.join(d, e.name), `${rel}${e.name}/`);
      else out.set(`${rel}${e.name}`, readFileSync(path.join(d, e.name)));
    }
  };
  walk(repoDir, '');
  return out;
}

/**
 * A local backend that writes index files in place, like rclone's local
 * backend, and whose server "dies" halfway through the first index upload:
 * half the bytes stay under the final name, and the write fails.
 */
function inPlaceDying(repoDir: string): LocalBackend {
  const inner = new LocalBackend(repoDir);
  let died = false;
  return Object.assign(Object.create(inner), {
    write: async (h: Handle, data: Buffer) => {
      if (h.type !== 'index' || died) return inner.write(h, data);
      died = true;
      writeFileSync(path.join(repoDir, 'index', h.name), data.subarray(0, Math.floor(data.length / 2)));
      throw new StorageError('io', 'connection reset: the server went away', h);
    },
  }) as LocalBackend;
}

async function open(repoDir: string, warnings: { file: string; message: string }[] = []): Promise<Repository> {
  return Repository.open(new LocalBackend(repoDir), Buffer.from(PW), { noCache: true, threads: 1, onWarning: (w) => warnings.push(w) });
}

describe('a damaged index file', () => {
  it('an index upload cut off by an in-place server: the open skips the file, prune refuses, repair index fixes it', async () => {
    const repoDir = path.join(dir, 'in-place');
    const src = path.join(dir, 'src-in-place');
    tree(src, 12, 40_000);
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);

    // The interrupted backup: packs stored, the index upload cut off.
    const dying = await Repository.open(inPlaceDying(repoDir), Buffer.from(PW), { noCache: true, threads: 1 });
    try {
      await expect(backup(dying, { paths: [src] })).rejects.toMatchObject({ code: 'STORAGE' });
    } finally {
      await dying.close();
    }
    const truncated = readdirSync(path.join(repoDir, 'index'));
    expect(truncated).toHaveLength(1);
    expect(readdirSync(path.join(repoDir, 'snapshots'))).toHaveLength(0);

    // The open succeeds and warns once, naming the file.
    const warnings: { file: string; message: string }[] = [];
    let repo = await open(repoDir, warnings);
    let firstSnapshot: string;
    try {
      expect(warnings).toEqual([{ file: `index/${truncated[0]}`, message: expect.stringMatching(/damaged or truncated\) and was skipped.*coffer repair index/) }]);
      expect(repo.damagedIndexFiles.map((d) => d.name)).toEqual(truncated);
      expect(repo.cache.packs()).toHaveLength(0);
      await repo.syncIndex(); // a later sync (as under a lock) does not warn again
      expect(warnings).toHaveLength(1);

      // A backup stores the blobs again (they are unknown) and is restorable.
      const b = await backup(repo, { paths: [src] });
      firstSnapshot = b.snapshot.id;
      expect(b.snapshot.summary?.data_added).toBeGreaterThan(12 * 40_000);
      const target = path.join(dir, 'restore-in-place-1');
      expect((await restore(repo, b.snapshot, { target })).errors).toBe(0);
      expect(compareScans(await scanTree(src), subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);

      // check reports the file.
      const c = await check(repo);
      expect(c.problems).toEqual([{ object: `index/${truncated[0]}`, message: expect.stringMatching(/damaged or truncated.*coffer repair index/) }]);

      // prune and repair snapshots refuse, deleting and writing nothing.
      const before = contents(repoDir);
      const err = await planPrune(repo).catch((e: unknown) => e);
      expect(isCofferError(err) && err.code).toBe('INTEGRITY');
      expect((err as Error).message).toMatch(new RegExp(`index/${truncated[0]} is damaged; prune refuses .*coffer repair index`));
      await expect(repairSnapshots(repo, await repo.listSnapshots())).rejects.toMatchObject({ code: 'INTEGRITY' });
      expect(contents(repoDir)).toEqual(before);
    } finally {
      await repo.close();
    }

    // repair index: the packs of the cut-off backup are indexed again; nothing is damaged any more.
    repo = await Repository.open(new LocalBackend(repoDir), Buffer.from(PW), { noCache: true, threads: 1, skipIndex: true });
    try {
      const r = await repairIndex(repo);
      expect(r.damaged).toEqual([]);
      expect(r.oldIndexFiles).toBe(2);
    } finally {
      await repo.close();
    }
    warnings.length = 0;
    repo = await open(repoDir, warnings);
    try {
      expect(warnings).toEqual([]);
      expect(repo.damagedIndexFiles).toEqual([]);
      expect((await check(repo)).problems).toEqual([]);
      // Now prune runs: the blobs stored twice leave one copy.
      const plan = await planPrune(repo, { maxUnused: { percent: 0 } });
      expect(plan.remove.length + plan.repack.length).toBeGreaterThan(0);
      const { executePrune } = await import('../dist/src/index.js');
      await executePrune(repo, plan);
      expect((await check(repo, { readData: true })).problems).toEqual([]);
      const target = path.join(dir, 'restore-in-place-2');
      expect((await restore(repo, await repo.findSnapshot(firstSnapshot), { target })).errors).toBe(0);
      expect(compareScans(await scanTree(src), subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
    } finally {
      await repo.close();
    }
  }, 60_000);

  it('through the CLI: one warning line at open, check exits 13 naming it, prune exits 13, repair index repairs', () => {
    const repoDir = path.join(dir, 'cli');
    const src = path.join(dir, 'src-cli');
    tree(path.join(src, 'a'), 3, 30_000);
    tree(path.join(src, 'b'), 3, 30_000);
    const env = { COFFER_PASSWORD: PW, COFFER_REPOSITORY: repoDir, COFFER_CACHE_DIR: path.join(dir, 'cache-cli') };
    const run = (args: string[]) => coffer(args, env);
    expect(run(['init']).code).toBe(0);
    expect(run(['backup', path.join(src, 'a')]).code).toBe(0);
    const first = readdirSync(path.join(repoDir, 'index'));
    expect(run(['backup', src]).code).toBe(0);
    expect(readdirSync(path.join(repoDir, 'index'))).toHaveLength(2);
    truncateSync(path.join(repoDir, 'index', first[0]), 37);
    const warning = new RegExp(`^warning: index/${first[0]} does not match its name \\(damaged or truncated\\) and was skipped: .*"coffer repair index"`);

    // A cold cache: the file is read (and skipped) at open.
    const s = coffer(['snapshots', '--no-cache'], env);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr.trimEnd().split('\n')).toEqual([expect.stringMatching(warning)]);
    const j = coffer(['snapshots', '--no-cache', '--json'], env);
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stderr)).toEqual({ message_type: 'warning', message: expect.stringContaining(`index/${first[0]} does not match its name`) });

    const c = run(['check']);
    expect(c.code, c.stderr).toBe(13);
    const lines = c.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^error: index/${first[0]}: .*coffer repair index`));
    expect(lines.filter((l) => !l.startsWith('error: '))).toEqual([]); // no warning besides the error
    expect(c.stdout).toMatch(/not in any readable index \("coffer repair index" indexes them again\)/);

    const before = contents(repoDir);
    const p = coffer(['prune', '--no-cache'], env);
    expect(p.code, p.stderr).toBe(13);
    expect(p.stderr).toMatch(new RegExp(`^coffer: integrity check failed: index/${first[0]} is damaged; prune refuses`, 'm'));
    const fp = coffer(['forget', '--keep-last', '1', '--prune', '--no-cache'], env);
    expect(fp.code, fp.stderr).toBe(13);
    expect(fp.stderr).toMatch(new RegExp(`^coffer: integrity check failed: index/${first[0]} is damaged; forget --prune refuses`, 'm'));
    const rs = coffer(['repair', 'snapshots', '--no-cache'], env);
    expect(rs.code, rs.stderr).toBe(13);
    expect(contents(repoDir)).toEqual(before);

    const r = run(['repair', 'index']);
    expect(r.code, r.stderr).toBe(0);
    const c2 = run(['check']);
    expect([c2.code, c2.stderr]).toEqual([0, '']);
    const s2 = coffer(['snapshots', '--no-cache'], env);
    expect([s2.code, s2.stderr]).toEqual([0, '']);
    expect(coffer(['prune', '--no-cache'], env).code).toBe(0);
  }, 60_000);
});
