/**
 * Unchanged re-backups with a parent root the cache records as complete
 * (IndexCache.isCompleteTree): no per-blob index lookups, yet a change deep
 * in the tree is still found, and blobs gone from the index still force a
 * re-read once the cache has forgotten the index files that listed them.
 */
import { mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backup, check, initRepository, openRepository, repairIndex, restore, withLock, type Repository } from '../dist/src/index.js';
import { decodeTree } from '../dist/src/format/tree.js';
import { SMALL_REPO, scratch } from './helpers.js';

const PASSWORD = 'pw for rebackup';

let root: string;
let cleanup: () => void;
let seq = 0;
const fresh = (label: string) => path.join(root, `${label}-${++seq}`);

beforeAll(() => {
  ({ dir: root, cleanup } = scratch('coffer-rebackup-'));
});
afterAll(() => cleanup());

/** Files: a/b/c/d/leaf.txt deep down, a/sib/x.bin, top.txt, an empty file; 3 non-empty. */
function makeSource(): string {
  const src = fresh('src');
  mkdirSync(path.join(src, 'a', 'b', 'c', 'd'), { recursive: true });
  mkdirSync(path.join(src, 'a', 'sib'), { recursive: true });
  writeFileSync(path.join(src, 'a', 'b', 'c', 'd', 'leaf.txt'), 'leaf one\n');
  writeFileSync(path.join(src, 'a', 'sib', 'x.bin'), Buffer.alloc(40_000, 7));
  writeFileSync(path.join(src, 'top.txt'), 'top\n');
  writeFileSync(path.join(src, 'empty'), '');
  return src;
}

/**
 * The tree id of the backed-up directory `abs` in a snapshot. Not the root's:
 * the root holds the metadata of every ancestor (/tmp…), which other
 * processes change between two backups.
 */
async function treeAt(repo: Repository, root: string, abs: string): Promise<string> {
  let id = root;
  for (const part of abs.split('/').filter(Boolean)) {
    const node = decodeTree(await repo.loadBlob('tree', id)).find((n) => n.name.equals(Buffer.from(part)));
    if (!node?.subtree) throw new Error(`no directory ${part} in tree ${id}`);
    id = node.subtree;
  }
  return id;
}

async function setup(): Promise<{ src: string; dir: string; cache: string; repo: Repository }> {
  const src = makeSource();
  const dir = fresh('repo');
  await initRepository(dir, PASSWORD, SMALL_REPO);
  const cache = fresh('cache');
  return { src, dir, cache, repo: await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 }) };
}

describe('re-backup under a complete parent tree', () => {
  it('records the root as complete, reuses it unchanged, and still finds a same-size change deep down', async () => {
    const { src, repo } = await setup();
    try {
      const first = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(repo.cache.isCompleteTree(first.tree)).toBe(true);
      const second = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(await treeAt(repo, second.tree, src)).toBe(await treeAt(repo, first.tree, src));
      expect(second.summary.files_unmodified).toBe(4);
      expect(second.summary.data_blobs + second.summary.tree_blobs).toBe(0);

      // Same size, same mtime: only ctime (and the content) differ.
      const leaf = path.join(src, 'a', 'b', 'c', 'd', 'leaf.txt');
      const st = statSync(leaf);
      writeFileSync(leaf, 'leaf two\n');
      utimesSync(leaf, st.atime, st.mtime);
      const third = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(await treeAt(repo, third.tree, src)).not.toBe(await treeAt(repo, first.tree, src));
      expect(third.summary.files_changed).toBe(1);
      expect(third.summary.files_unmodified).toBe(3);
      expect(third.summary.data_blobs).toBe(1);
      expect(third.summary.dirs_unmodified).toBeGreaterThanOrEqual(1); // a/sib
      expect(repo.cache.isCompleteTree(third.tree)).toBe(true);
      const target = fresh('restore');
      await restore(repo, third, { target });
      expect(readFileSync(path.join(target, leaf), 'utf8')).toBe('leaf two\n');
    } finally {
      await repo.close();
    }
  });

  it('blobs gone from the index (lost packs, index rebuilt) are read again, although the parent root was complete', async () => {
    const { src, dir, cache, repo: r1 } = await setup();
    let first;
    let dataPacks: string[];
    try {
      first = (await backup(r1, { paths: [src], hostname: 'h' })).snapshot;
      expect(r1.cache.isCompleteTree(first.tree)).toBe(true);
      dataPacks = r1.cache.packs().map((p) => p.id).filter((id) => r1.cache.blobsInPack(id).every((b) => b.type === 'data'));
      expect(dataPacks.length).toBeGreaterThan(0);
      for (const id of dataPacks) rmSync(path.join(dir, 'data', id.slice(0, 2), id));
      await withLock(r1, true, () => repairIndex(r1));
    } finally {
      await r1.close();
    }
    // The next open finds the old index files gone: the record is dropped with them.
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      expect(repo.cache.isCompleteTree(first.tree)).toBe(false);
      const second = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      expect(second.parent).toBe(first.id);
      expect(second.summary.files_changed).toBe(3); // every non-empty file
      expect(second.summary.files_unmodified).toBe(1); // the empty one has no blobs
      expect(second.summary.data_blobs).toBeGreaterThanOrEqual(3);
      const target = fresh('restore');
      expect((await restore(repo, second, { target })).errors).toBe(0);
      expect(readFileSync(path.join(target, src, 'a', 'sib', 'x.bin')).equals(Buffer.alloc(40_000, 7))).toBe(true);
    } finally {
      await repo.close();
    }
    const again = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      const c = await check(again, {});
      expect(c.problems.filter((p) => !/unused|not used|unreferenced/i.test(p.message))).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it('loadBlob with a location hint that is wrong still finds the blob through the index', async () => {
    const { src, repo } = await setup();
    try {
      const snap = (await backup(repo, { paths: [src], hostname: 'h' })).snapshot;
      const good = await repo.loadBlob('tree', snap.tree);
      const loc = repo.lookupBlob('tree', snap.tree)!;
      for (const hint of [{ ...loc, offset: loc.offset + 1 }, { ...loc, packId: 'ab'.repeat(32) }]) {
        expect((await repo.loadBlob('tree', snap.tree, undefined, hint as typeof loc)).equals(good)).toBe(true);
      }
    } finally {
      await repo.close();
    }
  });

  it('a cache left by an older schema is rebuilt without its records', async () => {
    const { src, dir, cache, repo: r1 } = await setup();
    let first;
    let file: string;
    try {
      first = (await backup(r1, { paths: [src], hostname: 'h' })).snapshot;
      file = path.join(cache, r1.config.id, 'index.sqlite');
    } finally {
      await r1.close();
    }
    const Database = createRequire(import.meta.url)('better-sqlite3');
    const db = new Database(file);
    expect(db.prepare('SELECT COUNT(*) FROM complete_trees').pluck().get()).toBe(1);
    db.pragma('user_version = 2');
    db.close();
    const repo = await openRepository(dir, PASSWORD, { cacheDir: cache, threads: 2 });
    try {
      expect(repo.cache.isCompleteTree(first.tree)).toBe(false);
      expect(repo.cache.blobCount()).toBeGreaterThan(0);
    } finally {
      await repo.close();
    }
  });
});
