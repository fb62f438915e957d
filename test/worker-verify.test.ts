import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { HotPath, type OpenItem } from '../dist/src/worker/tasks.js';
import { gearBytesFrom } from '../dist/src/crypto/keys.js';
import { computeBlobId, openBlobInto, BLOB_OVERHEAD } from '../dist/src/format/blob.js';
import { DEFAULT_CHUNKER } from '../dist/src/repo/repository.js';

const ctx = { chunker: DEFAULT_CHUNKER, gearBytes: gearBytesFrom(randomBytes(32)), blobIdKey: randomBytes(32), blobKey: randomBytes(32), compressionLevel: 3 };

/** Seals `plain` back to back with hot.seal, as a worker does for one batch. */
function sealAll(hot: HotPath, plain: Buffer[], probe = false) {
  const input = Buffer.concat(plain);
  let at = 0;
  const items = plain.map((p) => {
    const it = { offset: at, length: p.length, type: 'data' as const, id: computeBlobId(ctx.blobIdKey, p).toString('hex') };
    at += p.length;
    return it;
  });
  const out = Buffer.alloc(input.length + plain.length * BLOB_OVERHEAD);
  const lengths = hot.seal(input, items, out, probe);
  return { items, lengths, out };
}

// verifyPack asks its collector for a young-generation GC every 4 MiB of opened blobs (check --read-data's memory).
describe('HotPath.verifyPack', () => {
  function pack(hot: HotPath, sizes: number[]): { buf: Buffer; items: OpenItem[] } {
    const { items: seal, lengths, out } = sealAll(hot, sizes.map((n) => randomBytes(n)));
    let pos = 0;
    const items = seal.map((s, k) => {
      const it = { offset: pos, length: lengths[k], type: s.type, id: s.id, rawLength: sizes[k] };
      pos += lengths[k];
      return it;
    });
    return { buf: out.subarray(0, pos), items };
  }

  it('verifies every blob and collects once per 4 MiB opened', async () => {
    let collected = 0;
    const hot = new HotPath(ctx, () => collected++);
    const { buf, items } = pack(hot, [3 << 20, 3 << 20, 3 << 20, 1000]);
    const r = await hot.verifyPack(buf, items);
    expect(r.errors).toEqual([null, null, null, null]);
    expect(collected).toBe(1); // after the second 3 MiB blob
    // A damaged blob is still reported; the count carries over between packs.
    buf[items[0].offset + 40] ^= 1;
    const again = await hot.verifyPack(buf, items);
    expect(again.errors[0]).toMatch(/authenticate/);
    expect(again.errors.slice(1)).toEqual([null, null, null]);
    expect(collected).toBe(3);
  });

  it('works without a collector', async () => {
    const hot = new HotPath(ctx);
    const { buf, items } = pack(hot, [5 << 20, 10]);
    expect((await hot.verifyPack(buf, items)).errors).toEqual([null, null]);
  });
});

describe('HotPath.seal probe mode', () => {
  const hot = new HotPath(ctx);

  function seal(plain: Buffer[], probe: boolean): { lengths: number[]; out: Buffer } {
    const { items, lengths, out } = sealAll(hot, plain, probe);
    // Every blob opens to its plaintext, compressed or not.
    let pos = 0;
    lengths.forEach((n, k) => {
      const back = Buffer.alloc(plain[k].length);
      openBlobInto(ctx, 'data', items[k].id, out.subarray(pos, pos + n), back);
      expect(back.equals(plain[k])).toBe(true);
      pos += n;
    });
    return { lengths, out };
  }

  it('stores the rest raw when the first item does not compress, and compresses all when it does', () => {
    const text = Buffer.alloc(100_000, 'coffer ');
    const raw = seal([randomBytes(100_000), text, text], true);
    expect(raw.lengths).toEqual([100_000 + BLOB_OVERHEAD, 100_000 + BLOB_OVERHEAD, 100_000 + BLOB_OVERHEAD]);
    const tried = seal([text, randomBytes(100_000), Buffer.alloc(100_000, 'x')], true);
    expect(tried.lengths[0]).toBeLessThan(1000);
    expect(tried.lengths[1]).toBe(100_000 + BLOB_OVERHEAD);
    expect(tried.lengths[2]).toBeLessThan(1000);
    // Without probe mode every item is tried.
    expect(seal([randomBytes(100_000), text], false).lengths[1]).toBeLessThan(1000);
  });
});

describe('HotPath.chunkAndHash over windows of a stream', () => {
  it('windows that end mid-stream (the rest carried into the next, as readLarge does) give the chunks of the whole', () => {
    const hot = new HotPath(ctx);
    const data = randomBytes(40 << 20);
    const whole = hot.chunkAndHash(data, [{ start: 0, end: data.length, eof: true }])[0];
    const lengths: number[] = [];
    const ids: Buffer[] = [];
    // 16 MiB windows as in DataPipeline, filled from wherever the last one's chunks ended.
    const WINDOW = 16 << 20;
    let pos = 0;
    let windows = 0;
    while (pos < data.length) {
      const end = Math.min(data.length, pos + WINDOW);
      const win = data.subarray(pos, end);
      const r = hot.chunkAndHash(win, [{ start: 0, end: win.length, eof: end === data.length }])[0];
      windows++;
      expect(r.lengths.length).toBeGreaterThan(0);
      // Only the chunk running into the window's end is left over: under maxSize, and usually far under.
      const used = r.lengths.reduce((a, b) => a + b, 0);
      if (end < data.length) expect(win.length - used).toBeLessThan(DEFAULT_CHUNKER.maxSize);
      lengths.push(...r.lengths);
      ids.push(Buffer.from(r.ids));
      pos += used;
    }
    expect(lengths).toEqual(whole.lengths);
    expect(Buffer.concat(ids)).toEqual(Buffer.from(whole.ids));
    // 40 MiB in 16 MiB windows: only a partial chunk (about avgSize) is carried each time.
    expect(windows).toBe(3);
  });
});
