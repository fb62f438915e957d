/**
 * The blob index at scale: coffer's real SQLite cache (dist/src/cache/
 * index-cache.js) filled through addIndexFile, as a backup or an index sync
 * fills it, with a simulated repository of many blobs. Asserts that memory
 * stays bounded while the database grows far past that bound (the index is on
 * disk, not in memory), and that lookups stay correct. Speed is not asserted:
 * bench/scale.ts measures it (npm run bench:scale, 10 million blobs).
 *
 * Default: 1,000,000 blobs with ascending ids (fast: SQLite appends to the
 * right edge of its B-trees) plus 100,000 with random ids (random pages all
 * over a large tree). COFFER_SCALE_TEST=1 makes it 10,000,000 + 1,000,000
 * (about 2 GB of database in the temp dir, about 2 minutes here).
 */
import { describe, expect, it } from 'vitest';
import { createCipheriv, randomBytes } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { IndexCache } from '../dist/src/cache/index-cache.js';
import type { IndexedPack } from '../dist/src/format/index-file.js';
import type { PackEntry } from '../dist/src/format/pack.js';
import type { PackId } from '../dist/src/ids.js';
import { scratch } from './helpers.js';

const BIG = process.env.COFFER_SCALE_TEST === '1';
const SORTED = BIG ? 10_000_000 : 1_000_000;
const RANDOM = BIG ? 1_000_000 : 100_000;
const PER_PACK = 64;
const PER_INDEX_FILE = 32 * PER_PACK; // the packer writes an index file every 32 packs
const MiB = 1 << 20;
/** Allowed RSS growth from the end of the warm-up to the end of the fill. */
const RSS_BOUND_MIB = 48;

/** Ascending ids: blob i's id starts with i (64-bit big-endian), the rest is filler. */
function sortedId(i: number): string {
  const b = Buffer.alloc(32, 0x5a);
  b.writeBigUInt64BE(BigInt(i), 0);
  return b.toString('hex');
}
/** Random-looking ids that can be recomputed (not stored): blob i is AES-CTR keystream blocks 2i, 2i+1. */
const KEY = randomBytes(32);
const ZERO = Buffer.alloc(32 * 4096);
function randomIds(first: number, count: number): string[] {
  const iv = Buffer.alloc(16);
  iv.writeBigUInt64BE(BigInt(first) * 2n, 8);
  const ks = createCipheriv('aes-256-ctr', KEY, iv).update(ZERO.subarray(0, count * 32));
  return Array.from({ length: count }, (_, k) => ks.toString('hex', k * 32, k * 32 + 32));
}
const packId = (p: number): PackId => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(0xc0ffee, 0);
  b.writeUInt32BE(p, 28);
  return b.toString('hex') as PackId;
};
/** Where blob number i lives: a pure function of i, so any lookup can be checked. */
const loc = (i: number) => ({ pack: Math.floor(i / PER_PACK), offset: (i % PER_PACK) * 300_000, length: 1000 + (i % 250_000) });

function indexFile(first: number, count: number, idOf: (i: number) => string): IndexedPack[] {
  const packs: IndexedPack[] = [];
  for (let i = first; i < first + count; ) {
    const p = loc(i).pack;
    const blobs: PackEntry[] = [];
    for (; i < first + count && loc(i).pack === p; i++) {
      const l = loc(i);
      blobs.push({ type: 'data', id: idOf(i), offset: l.offset, length: l.length, rawLength: l.length + 17 });
    }
    packs.push({ id: packId(p), length: PER_PACK * 300_000, blobs });
  }
  return packs;
}

const rssMiB = () => process.memoryUsage().rss / MiB;
const dbBytes = (f: string) => [f, `${f}-wal`].reduce((n, x) => n + (existsSync(x) ? statSync(x).size : 0), 0);

describe(`index cache at scale (${(SORTED + RANDOM).toLocaleString('en-US')} blobs)`, () => {
  it('keeps memory bounded while the on-disk index grows, and finds every blob', { timeout: BIG ? 1_800_000 : 180_000 }, () => {
    const { dir, cleanup } = scratch('coffer-index-scale-');
    try {
      const file = path.join(dir, 'index.sqlite');
      let cache = IndexCache.open(file);
      // Blobs 0 .. SORTED-1 have ascending ids, SORTED .. SORTED+RANDOM-1 random ones.
      const idOf = (i: number) => (i < SORTED ? sortedId(i) : randomIds(i, 1)[0]);
      let files = 0;
      const add = (from: number, to: number) => {
        for (let i = from; i < to; i += PER_INDEX_FILE) {
          const n = Math.min(PER_INDEX_FILE, to - i);
          const ids = i >= SORTED ? randomIds(i, n) : undefined;
          cache.addIndexFile(`index-${files++}`, indexFile(i, n, ids ? (j) => ids[j - i] : sortedId));
        }
      };

      // Warm-up: statement caches, SQLite's page cache filled to its limit (better-sqlite3's
      // default is 16 MB; random inserts touch pages all over the tree), the JS heap settled.
      // Then the fill: sorted blobs, random ones, sorted again.
      const tenth = (n: number) => Math.max(PER_INDEX_FILE, Math.floor(n / 10 / PER_INDEX_FILE) * PER_INDEX_FILE);
      const s1 = tenth(SORTED);
      const r1 = SORTED + tenth(RANDOM);
      const s2 = Math.floor(SORTED / 2 / PER_INDEX_FILE) * PER_INDEX_FILE;
      add(0, s1);
      add(SORTED, r1);
      const rss0 = rssMiB();
      const db0 = dbBytes(file);
      let rssMax = rss0;
      const fill = (from: number, to: number, step: number) => {
        for (let i = from; i < to; i += step) {
          add(i, Math.min(to, i + step));
          rssMax = Math.max(rssMax, rssMiB());
        }
      };
      fill(s1, s2, 20 * PER_INDEX_FILE);
      fill(r1, SORTED + RANDOM, 5 * PER_INDEX_FILE);
      fill(s2, SORTED, 20 * PER_INDEX_FILE);
      const dbGrowthMiB = (dbBytes(file) - db0) / MiB;
      const rssGrowthMiB = rssMax - rss0;

      expect(cache.blobCount()).toBe(SORTED + RANDOM);
      // The data written is several times the memory bound: had the index been
      // held in memory (or SQLite's cache been unbounded), RSS would have grown with it.
      expect(dbGrowthMiB).toBeGreaterThan(2 * RSS_BOUND_MIB);
      expect(rssGrowthMiB, `RSS grew ${rssGrowthMiB.toFixed(1)} MiB while the database grew ${dbGrowthMiB.toFixed(0)} MiB`).toBeLessThan(RSS_BOUND_MIB);

      const check = () => {
        for (let k = 0; k < 2000; k++) {
          const i = k % 2 === 0 ? Math.floor(Math.random() * SORTED) : SORTED + Math.floor(Math.random() * RANDOM);
          const l = loc(i);
          expect(cache.lookup('data', idOf(i))).toEqual({ packId: packId(l.pack), offset: l.offset, length: l.length, rawLength: l.length + 17 });
          expect(cache.has('data', idOf(i))).toBe(true);
          expect(cache.has('tree', idOf(i))).toBe(false);
        }
        for (let k = 0; k < 2000; k++) {
          const absent = randomBytes(32).toString('hex');
          expect(cache.has('data', absent)).toBe(false);
          expect(cache.lookup('data', absent)).toBeUndefined();
        }
        expect(cache.blobsInPack(packId(loc(SORTED - 1).pack)).length).toBe(PER_PACK);
      };
      check();
      // Reopened (empty SQLite cache, as in the next backup): still all there.
      cache.close();
      cache = IndexCache.open(file);
      expect(cache.indexFiles().size).toBe(files);
      check();
      cache.close();
    } finally {
      cleanup();
    }
  });
});
