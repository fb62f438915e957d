/** The worker pool's shared context: keys written once, read as copies, zeroed on close; a pool started before the keys. */
import { describe, it, expect } from 'vitest';
import { randomBytes } from 'node:crypto';
import { fillSharedContext, newSharedContext, readSharedContext, sharedContextFilled, wipeSharedContext } from '../dist/src/worker/context.js';
import { WorkerPool } from '../dist/src/worker/pool.js';
import { gearBytesFrom } from '../dist/src/crypto/keys.js';
import { DEFAULT_CHUNKER } from '../dist/src/repo/repository.js';

const ctx = () => ({ chunker: DEFAULT_CHUNKER, gearBytes: gearBytesFrom(randomBytes(32)), blobIdKey: randomBytes(32), blobKey: randomBytes(32), compressionLevel: 7 });

describe('shared worker context', () => {
  it('is empty until filled, then reads back as copies; filled once; wiped to zeros', () => {
    const sab = newSharedContext();
    expect(readSharedContext(sab)).toBeUndefined();
    expect(sharedContextFilled(sab)).toBe(false);
    const c = ctx();
    fillSharedContext(sab, c);
    expect(sharedContextFilled(sab)).toBe(true);
    const got = readSharedContext(sab)!;
    expect(got.chunker).toEqual(DEFAULT_CHUNKER);
    expect(got.compressionLevel).toBe(7);
    expect(Buffer.from(got.gearBytes).equals(c.gearBytes)).toBe(true);
    expect(Buffer.from(got.blobIdKey).equals(c.blobIdKey)).toBe(true);
    expect(Buffer.from(got.blobKey).equals(c.blobKey)).toBe(true);
    expect(got.blobKey.buffer).not.toBeInstanceOf(SharedArrayBuffer); // a copy in this thread's memory
    got.blobKey.fill(0);
    expect(Buffer.from(readSharedContext(sab)!.blobKey).equals(c.blobKey)).toBe(true);
    expect(() => fillSharedContext(sab, ctx())).toThrow(/already set/);
    expect(() => fillSharedContext(newSharedContext(), { ...c, blobKey: randomBytes(16) })).toThrow(RangeError);
    wipeSharedContext(sab);
    expect(new Uint8Array(sab).every((b) => b === 0)).toBe(true);
    expect(readSharedContext(sab)).toBeUndefined();
  });
});

describe('a pool started before the keys', () => {
  it('fails a task sent without them, works once they are given, and closes twice without harm', async () => {
    const pool = new WorkerPool(undefined, 1);
    try {
      expect(pool.hasContext).toBe(false);
      const data = randomBytes(200_000);
      const buf = () => Uint8Array.from(data).buffer;
      await expect(pool.hash(buf(), [{ start: 0, end: data.length, eof: true }])).rejects.toThrow(/worker context missing/);
      pool.setContext(ctx());
      expect(pool.hasContext).toBe(true);
      expect(() => pool.setContext(ctx())).toThrow(/already set/);
      const r = await pool.hash(buf(), [{ start: 0, end: data.length, eof: true }]);
      expect(r.results[0].lengths.reduce((a, b) => a + b, 0)).toBe(data.length);
      expect(r.results[0].ids.length).toBe(32 * r.results[0].lengths.length);
    } finally {
      await pool.close();
      await pool.close();
    }
  });
});
