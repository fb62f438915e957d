// check's snapshot walk asks an in-memory IdSet, filled from the index cache in ranges (IndexCache.dataIds).
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { IdSet } from '../dist/src/checker/id-set.js';
import { IndexCache } from '../dist/src/cache/index-cache.js';
import type { PackId } from '../dist/src/ids.js';

describe('IdSet', () => {
  it('holds exactly the ids it was given, from several chunks, duplicates included', () => {
    const ids = Array.from({ length: 5000 }, () => randomBytes(32));
    // Ids that share their first 4 bytes (the hash) with another: probing must go on past them.
    const twin = Buffer.concat([ids[0].subarray(0, 4), randomBytes(28)]);
    const set = new IdSet([Buffer.concat(ids.slice(0, 2000)), Buffer.concat([...ids.slice(2000), ids[7], twin])]);
    expect(set.size).toBe(5002);
    for (const id of ids) expect(set.has(id)).toBe(true);
    expect(set.has(twin)).toBe(true);
    for (let k = 0; k < 5000; k++) expect(set.has(randomBytes(32))).toBe(false);
    const near = Buffer.from(ids[3]);
    near[31] ^= 1;
    expect(set.has(near)).toBe(false);
    expect(set.has(Buffer.concat([Buffer.from('xx'), ids[9]]), 2)).toBe(true);
    expect(set.has(ids[9].subarray(0, 31))).toBe(false);
    expect(new IdSet([]).has(ids[0])).toBe(false);
    expect(() => new IdSet([Buffer.alloc(33)])).toThrow(RangeError);
  });
});

describe('IndexCache.dataIds', () => {
  it('yields every data blob id once, ascending, in chunks, and no tree id', () => {
    const cache = IndexCache.open(undefined);
    try {
      const data = Array.from({ length: 10 }, () => randomBytes(32).toString('hex')).sort();
      const tree = randomBytes(32).toString('hex');
      const blob = (type: 'data' | 'tree', id: string, offset: number) => ({ type, id, offset, length: 10, rawLength: 10 });
      const pack = () => randomBytes(32).toString('hex') as PackId;
      cache.addIndexFile('i1', [
        { id: pack(), length: 100, blobs: data.slice(0, 6).map((id, k) => blob('data', id, k * 10)) },
        // Copies in a second pack, and a tree.
        { id: pack(), length: 100, blobs: [...data.slice(4).map((id, k) => blob('data', id, k * 10)), blob('tree', tree, 60)] },
      ]);
      expect(cache.dataBlobCount()).toBe(12);
      for (const chunk of [1, 3, 4, 10, 65_536]) {
        const chunks = [...cache.dataIds(chunk)];
        expect(chunks.every((c) => c.length <= chunk * 32)).toBe(true);
        const all = Buffer.concat(chunks);
        const got = Array.from({ length: all.length / 32 }, (_, k) => all.toString('hex', k * 32, k * 32 + 32));
        expect(got).toEqual(data);
      }
      expect([...IndexCache.open(undefined).dataIds()]).toEqual([]);
    } finally {
      cache.close();
    }
  });
});
