import { describe, it, expect } from 'vitest';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  FastCdc,
  chunkLengths,
  validateChunkerParams,
  type ChunkerParams,
} from '../dist/src/chunker/fastcdc.js';
import { DEFAULT_GEAR, gearFromBytes } from '../dist/src/chunker/gear.js';

const require = createRequire(import.meta.url);
const wasm = require('fastcdc-wasm') as {
  get_chunks(bytes: Uint8Array, min: number, avg: number, max: number): Uint32Array;
};

const KiB = 1024;
const MiB = 1024 * 1024;

/** Deterministic PRNG (xorshift32) so failures are reproducible. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 0x9e3779b9;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
    out[i + 1] = x >>> 8;
    out[i + 2] = x >>> 16;
    out[i + 3] = x >>> 24;
  }
  for (; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x;
  }
  return out;
}

/** Chunk lengths according to fastcdc-wasm (which returns offsets 0, ..., len). */
function oracleLengths(data: Uint8Array, p: ChunkerParams): number[] {
  // fastcdc-wasm copies its output back into `bytes`; give it a copy to be safe.
  const offsets = wasm.get_chunks(data.slice(), p.minSize, p.avgSize, p.maxSize);
  const lens: number[] = [];
  for (let i = 1; i < offsets.length; i++) lens.push(offsets[i] - offsets[i - 1]);
  return lens;
}

function ours(data: Uint8Array, p: ChunkerParams, gear?: Uint32Array): number[] {
  return chunkLengths(new FastCdc(p, gear), data);
}

const P = (minSize: number, avgSize: number, maxSize: number): ChunkerParams => ({ minSize, avgSize, maxSize });

const PARAM_SETS: ChunkerParams[] = [
  P(64, 256, 1024),
  P(256, 1024, 4096),
  P(2048, 8192, 65536),
  P(4096, 16384, 65536),
  P(8192, 16384, 32768),
  P(16 * KiB, 64 * KiB, 256 * KiB),
  P(512 * KiB, 1 * MiB, 8 * MiB), // coffer defaults
  // non-power-of-two sizes (masks from round(log2(avg)))
  P(100, 300, 1000 + 24),
  P(1000, 1448, 5000), // log2(1448) = 10.4998... -> 10
  P(1000, 1449, 5000), // log2(1449) = 10.5008... -> 11
  P(4000, 12288, 50000),
  P(64, 24576, 100000),
  P(64, 256, 256 * KiB), // tiny min, huge max
  P(8192, 8192, 8192), // min == avg == max
];

describe('validateChunkerParams', () => {
  it('accepts valid parameter sets', () => {
    for (const p of PARAM_SETS) expect(() => validateChunkerParams(p)).not.toThrow();
    expect(() => validateChunkerParams(P(64 * MiB, 256 * MiB, 1024 * MiB))).not.toThrow();
  });
  it('rejects invalid ones with RangeError', () => {
    const bad: ChunkerParams[] = [
      P(63, 256, 1024),
      P(64, 255, 1024),
      P(64, 256, 1023),
      P(64 * MiB + 1, 128 * MiB, 512 * MiB),
      P(64, 256 * MiB + 1, 512 * MiB),
      P(64, 256, 1024 * MiB + 1),
      P(2048, 1024, 4096), // min > avg
      P(64, 4096, 2048), // avg > max
      P(64.5, 256, 1024),
      P(64, Number.NaN, 1024),
      P(64, 256, Infinity),
    ];
    for (const p of bad) {
      expect(() => validateChunkerParams(p), JSON.stringify(p)).toThrow(RangeError);
      expect(() => new FastCdc(p), JSON.stringify(p)).toThrow(RangeError);
    }
  });
  it('rejects bad gear tables', () => {
    expect(() => new FastCdc(P(64, 256, 1024), new Uint32Array(255))).toThrow(RangeError);
    expect(() => gearFromBytes(new Uint8Array(1023))).toThrow(RangeError);
  });
});

describe('gear tables', () => {
  it('DEFAULT_GEAR is the ronomon table', () => {
    expect(DEFAULT_GEAR).toBeInstanceOf(Uint32Array);
    expect(DEFAULT_GEAR.length).toBe(256);
    expect(DEFAULT_GEAR[0]).toBe(0x5c95c078);
    expect(DEFAULT_GEAR[255]).toBe(0x32e8ea7e);
    for (const v of DEFAULT_GEAR) expect(v).toBeLessThan(2 ** 31);
  });
  it('gearFromBytes reads little-endian u32s', () => {
    const b = new Uint8Array(1024);
    b.set([0x78, 0xc0, 0x95, 0xdc], 0);
    b.set([1, 2, 3, 4], 1020);
    const g = gearFromBytes(b);
    expect(g.length).toBe(256);
    expect(g[0]).toBe(0xdc95c078);
    expect(g[1]).toBe(0);
    expect(g[255]).toBe(0x04030201);
  });
});

describe('FastCdc vs published vectors', () => {
  it('SekienAkashita.jpg at 8192/16384/32768', () => {
    const img = new Uint8Array(readFileSync(fileURLToPath(new URL('../fixtures/SekienAkashita.jpg', import.meta.url))));
    expect(img.length).toBe(109466);
    const p = P(8192, 16384, 32768);
    expect(ours(img, p)).toEqual([22366, 8282, 16303, 18696, 32768, 11051]);
    expect(oracleLengths(img, p)).toEqual([22366, 8282, 16303, 18696, 32768, 11051]);
  });
  it('all zeros at 64/256/1024 gives max-size chunks (fastcdc-rs test)', () => {
    expect(ours(new Uint8Array(10240), P(64, 256, 1024))).toEqual(new Array(10).fill(1024));
  });
});

describe('FastCdc matches fastcdc-wasm exactly', () => {
  for (const p of PARAM_SETS) {
    const name = `${p.minSize}/${p.avgSize}/${p.maxSize}`;
    it(`random data, edge sizes, ${name}`, () => {
      const sizes = new Set([
        0,
        1,
        p.minSize - 1,
        p.minSize,
        p.minSize + 1,
        p.avgSize,
        p.maxSize - 1,
        p.maxSize,
        p.maxSize + 1,
        2 * p.maxSize + 7,
      ]);
      let seed = 1;
      for (const n of sizes) {
        const d = randomBytes(n, seed++);
        expect(ours(d, p), `n=${n}`).toEqual(oracleLengths(d, p));
      }
    });
    it(`random data, several MB, ${name}`, () => {
      const n = Math.max(6 * MiB + 12345, 5 * p.maxSize + 777);
      const d = randomBytes(n, 0xc0ffee ^ p.avgSize);
      const got = ours(d, p);
      expect(got).toEqual(oracleLengths(d, p));
      expect(got.reduce((a, b) => a + b, 0)).toBe(n);
    });
    it(`low-entropy data, ${name}`, () => {
      const n = 3 * p.maxSize + 1000;
      const zeros = new Uint8Array(n);
      const zl = ours(zeros, p);
      expect(zl).toEqual(oracleLengths(zeros, p));
      const pat = new Uint8Array(n);
      const motif = [0x41, 0x42, 0x43, 0x00, 0xff, 0x10, 0x20];
      for (let i = 0; i < n; i++) pat[i] = motif[i % motif.length];
      expect(ours(pat, p)).toEqual(oracleLengths(pat, p));
      const ff = new Uint8Array(n).fill(0xff);
      expect(ours(ff, p)).toEqual(oracleLengths(ff, p));
      // random blocks separated by long zero runs
      const mixed = new Uint8Array(n);
      for (let off = 0; off < n; off += 3 * p.minSize + 99) {
        mixed.set(randomBytes(Math.min(p.minSize, n - off), off + 5), off);
      }
      expect(ours(mixed, p)).toEqual(oracleLengths(mixed, p));
    });
  }

  it('many small random inputs around min/max boundaries, 64/256/1024', () => {
    const p = P(64, 256, 1024);
    for (let n = 0; n < 3000; n += 37) {
      const d = randomBytes(n, n + 1000);
      expect(ours(d, p), `n=${n}`).toEqual(oracleLengths(d, p));
    }
  });
});

describe('FastCdc.cut contract', () => {
  it('streaming windows (end - start >= maxSize or EOF) give the same lengths', () => {
    for (const p of [P(64, 256, 1024), P(2048, 8192, 65536), P(512 * KiB, 1 * MiB, 8 * MiB)]) {
      const cdc = new FastCdc(p);
      const d = randomBytes(20 * MiB + 3, 77 ^ p.maxSize);
      const whole = chunkLengths(cdc, d);
      // Simulate a reader that refills a window of random extra length beyond maxSize.
      let rng = 12345;
      const next = () => ((rng = (Math.imul(rng, 1103515245) + 12345) >>> 0) % (p.maxSize + 1));
      const streamed: number[] = [];
      let pos = 0;
      while (pos < d.length) {
        const end = Math.min(d.length, pos + p.maxSize + next());
        // Also exercise cutting from a copied window (as a real stream buffer would hold).
        const window = d.subarray(pos, end);
        const a = cdc.cut(d, pos, end);
        const b = cdc.cut(window, 0, window.length);
        expect(b).toBe(a);
        expect(a).toBeGreaterThanOrEqual(1);
        expect(a).toBeLessThanOrEqual(Math.min(p.maxSize, end - pos));
        streamed.push(a);
        pos += a;
      }
      expect(streamed).toEqual(whole);
    }
  });
  it('windows shorter than maxSize (more data follows): a cut below the end is the final cut', () => {
    for (const p of [P(64, 256, 1024), P(2048, 8192, 65536), P(512 * KiB, 1 * MiB, 8 * MiB)]) {
      const cdc = new FastCdc(p);
      const d = randomBytes(12 * MiB + 5, 91 ^ p.maxSize);
      const whole = chunkLengths(cdc, d);
      // Windows of 1 .. 2*maxSize bytes; a chunk that runs into a window's end is retried from the same start with the next window.
      let rng = 777;
      const next = () => 1 + ((rng = (Math.imul(rng, 1103515245) + 12345) >>> 0) % (2 * p.maxSize));
      const streamed: number[] = [];
      let pos = 0;
      let final = 0;
      while (pos < d.length) {
        const end = Math.min(d.length, pos + next());
        const n = cdc.cut(d, pos, end);
        if (end < d.length && n === end - pos && n < p.maxSize) continue; // not final: needs more data
        if (end < d.length && end - pos < p.maxSize) final++;
        streamed.push(n);
        pos += n;
      }
      expect(streamed).toEqual(whole);
      expect(final).toBeGreaterThan(0);
    }
  });
  it('returns 0 for an empty range and rejects out-of-bounds ranges', () => {
    const cdc = new FastCdc(P(64, 256, 1024));
    const d = randomBytes(100, 3);
    expect(cdc.cut(d, 50, 50)).toBe(0);
    expect(cdc.cut(d, 50, 100)).toBe(50);
    expect(() => cdc.cut(d, 0, 101)).toThrow(RangeError);
    expect(() => cdc.cut(d, -1, 10)).toThrow(RangeError);
    expect(() => cdc.cut(d, 10, 5)).toThrow(RangeError);
    expect(() => cdc.cut(d, 0.5, 10)).toThrow(RangeError);
  });
  it('params are exposed and immutable', () => {
    const cdc = new FastCdc(P(2048, 8192, 65536));
    expect(cdc.params).toEqual({ minSize: 2048, avgSize: 8192, maxSize: 65536 });
    expect(Object.isFrozen(cdc.params)).toBe(true);
  });
});

describe('custom gear tables', () => {
  it('change the cut points but keep sizes within [min, max]', () => {
    const secret = randomBytes(1024, 0xdeadbeef);
    const gear = gearFromBytes(secret);
    expect(gear.some((v) => v >= 2 ** 31)).toBe(true); // full 32-bit values are fine
    for (const p of [P(64, 256, 1024), P(2048, 8192, 65536), P(512 * KiB, 1 * MiB, 8 * MiB)]) {
      const d = randomBytes(Math.max(8 * MiB, 20 * p.maxSize) + 123, 4242);
      const def = ours(d, p);
      const cus = ours(d, p, gear);
      expect(cus).not.toEqual(def);
      expect(cus.reduce((a, b) => a + b, 0)).toBe(d.length);
      for (let i = 0; i < cus.length; i++) {
        expect(cus[i]).toBeLessThanOrEqual(p.maxSize);
        if (i < cus.length - 1) expect(cus[i]).toBeGreaterThanOrEqual(p.minSize);
      }
      // Content-defined cuts (not just max-size) still happen with the custom table.
      expect(cus.filter((n) => n < p.maxSize).length).toBeGreaterThan(cus.length / 2);
      // Distinct secret -> distinct cut points; same secret -> same cut points.
      expect(ours(d, p, gearFromBytes(secret.slice()))).toEqual(cus);
      const set = new Set<number>();
      let off = 0;
      for (const n of def) set.add((off += n));
      let shared = 0;
      off = 0;
      for (const n of cus) if (set.has((off += n))) shared++;
      expect(shared).toBeLessThan(cus.length); // at least the final offset is shared
    }
  });
});

describe('native gearScan (the addon)', () => {
  it('cuts exactly where the JavaScript scanGear does', () => {
    const probe = new FastCdc({ minSize: 64, avgSize: 256, maxSize: 1024 });
    if (!(probe as unknown as { nativeScan?: unknown }).nativeScan) return; // no addon in this build: nothing to compare
    const data = new Uint8Array(6 * MiB);
    data.set(randomBytes(4 * MiB, 7), 0); // then 2 MiB of zeros: max-size cuts
    const gear = gearFromBytes(randomBytes(1024, 99));
    const cases: ChunkerParams[] = [
      { minSize: 512 * KiB, avgSize: MiB, maxSize: 8 * MiB },
      { minSize: 2 * KiB, avgSize: 8 * KiB, maxSize: 64 * KiB }, // maskS phase used
      { minSize: 1000, avgSize: 3000, maxSize: 9000 },
    ];
    for (const p of cases) {
      for (const g of [DEFAULT_GEAR, gear]) {
        const native = new FastCdc(p, g);
        const js = new FastCdc(p, g);
        Object.defineProperty(js, 'nativeScan', { value: undefined });
        const a = chunkLengths(native, data);
        expect(a.length).toBeGreaterThan(1);
        expect(a).toEqual(chunkLengths(js, data));
      }
    }
  });
});
