/**
 * Content-defined chunker: FastCDC, "ronomon" variant.
 *
 * Algorithm (bit-for-bit the one in ronomon/deduplication and in the Rust
 * crate fastcdc-rs 1.x, which the `fastcdc-wasm` 0.1.0 package wraps; with
 * DEFAULT_GEAR our cut points are identical to `fastcdc-wasm`'s):
 *
 *   bits  = round(log2(avgSize))            (avg need not be a power of two)
 *   maskS = 2^(bits+1) - 1                  ("hard" mask, used before the centre)
 *   maskL = 2^(bits-1) - 1                  ("easy" mask, used after the centre)
 *   centre = avgSize - min(minSize + ceil(minSize/2), avgSize)
 *
 *   To cut a chunk starting at `s` with n bytes available:
 *   - if n <= minSize, the chunk is the n bytes (only happens at EOF);
 *   - size = min(n, maxSize); hash = 0;
 *   - for i in [s + minSize, s + min(centre, size)):  hash = (hash >>> 1) + gear[data[i]]
 *       (mod 2^32); if (hash & maskS) == 0 the chunk ends after byte i (length i - s + 1);
 *   - then for the remaining i < s + size the same with maskL;
 *   - otherwise the chunk is `size` bytes (max-size cut, or the tail at EOF).
 *
 *   The first minSize bytes of a chunk are skipped and the hash restarts at 0
 *   for every chunk. Note the ronomon quirk that `centre` is measured from the
 *   chunk start, not from minSize: when minSize >= avgSize / 2.5 (e.g. the
 *   coffer defaults 512 KiB / 1 MiB / 8 MiB) the maskS phase is empty and only
 *   maskL is used. We reproduce this exactly for compatibility.
 *
 * The decision for a chunk starting at s depends only on data[s, s + maxSize),
 * so `cut` can be used on a streaming window as long as the window holds at
 * least maxSize bytes or reaches EOF.
 *
 * Performance: the hash is kept as an int32 (`| 0`) and the gear table is
 * stored as an Int32Array, so V8 never leaves 32-bit integer arithmetic; the
 * unsigned `>>> 1` gives the same bits as Rust's u32 shift and the wrapping add
 * is the same modulo 2^32. The whole inner scan is `scanGear`, a small
 * self-contained function that a WebAssembly kernel can replace later.
 */

import { DEFAULT_GEAR } from './gear.js';
import { usableBinding, type NativeGearScan } from '../platform/addon.js';

/**
 * Content-defined chunking sizes in bytes (min ≤ avg ≤ max).
 * @example
 * ```ts
 * const c: ChunkerParams = { minSize: 256 << 10, avgSize: 512 << 10, maxSize: 4 << 20 };
 * ```
 */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/** Limits accepted by the ronomon variant (fastcdc-rs 1.x asserts the same). */
export const CHUNKER_LIMITS = Object.freeze({
  minSizeLower: 64,
  minSizeUpper: 64 * 1024 * 1024, // 67_108_864
  avgSizeLower: 256,
  avgSizeUpper: 256 * 1024 * 1024, // 268_435_456
  maxSizeLower: 1024,
  maxSizeUpper: 1024 * 1024 * 1024, // 1_073_741_824 = 2^30
});

function checkRange(name: string, v: unknown, lo: number, hi: number): void {
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw new RangeError(`chunker: ${name} must be an integer, got ${String(v)}`);
  }
  if (v < lo || v > hi) {
    throw new RangeError(`chunker: ${name} must be in [${lo}, ${hi}], got ${v}`);
  }
}

/**
 * Validate chunker sizes. Requirements (those of the ronomon variant /
 * fastcdc-rs 1.x, plus ordering):
 *   integers; 64 <= minSize <= 64 MiB; 256 <= avgSize <= 256 MiB;
 *   1024 <= maxSize <= 1 GiB; minSize <= avgSize <= maxSize.
 * Powers of two are NOT required (the masks use round(log2(avgSize))).
 * Throws RangeError with a descriptive message.
 */
export function validateChunkerParams(p: ChunkerParams): void {
  if (p === null || typeof p !== 'object') {
    throw new RangeError('chunker: params must be an object {minSize, avgSize, maxSize}');
  }
  const L = CHUNKER_LIMITS;
  checkRange('minSize', p.minSize, L.minSizeLower, L.minSizeUpper);
  checkRange('avgSize', p.avgSize, L.avgSizeLower, L.avgSizeUpper);
  checkRange('maxSize', p.maxSize, L.maxSizeLower, L.maxSizeUpper);
  if (p.minSize > p.avgSize) {
    throw new RangeError(`chunker: minSize (${p.minSize}) must be <= avgSize (${p.avgSize})`);
  }
  if (p.avgSize > p.maxSize) {
    throw new RangeError(`chunker: avgSize (${p.avgSize}) must be <= maxSize (${p.maxSize})`);
  }
}

/**
 * The inner scan (hot loop). Rolls the gear hash from `i`, using maskS while
 * i < mid and maskL while i < stop (requires i, mid, stop within data, and a
 * 256-entry gear). Returns the absolute index just past the byte whose hash
 * matched, or `stop` if no position matched. Unrolled x2.
 */
export function scanGear(
  data: Uint8Array,
  gear: Int32Array,
  i: number,
  mid: number,
  stop: number,
  maskS: number,
  maskL: number,
): number {
  let h = 0;
  // Phase 1: hard mask.
  const mid1 = mid - 1;
  while (i < mid1) {
    h = ((h >>> 1) + gear[data[i]]) | 0;
    if ((h & maskS) === 0) return i + 1;
    h = ((h >>> 1) + gear[data[i + 1]]) | 0;
    if ((h & maskS) === 0) return i + 2;
    i += 2;
  }
  if (i < mid) {
    h = ((h >>> 1) + gear[data[i]]) | 0;
    if ((h & maskS) === 0) return i + 1;
    i++;
  }
  // Phase 2: easy mask.
  const stop1 = stop - 1;
  while (i < stop1) {
    h = ((h >>> 1) + gear[data[i]]) | 0;
    if ((h & maskL) === 0) return i + 1;
    h = ((h >>> 1) + gear[data[i + 1]]) | 0;
    if ((h & maskL) === 0) return i + 2;
    i += 2;
  }
  if (i < stop) {
    h = ((h >>> 1) + gear[data[i]]) | 0;
    if ((h & maskL) === 0) return i + 1;
  }
  return stop;
}

export class FastCdc {
  readonly params: ChunkerParams;
  private readonly minSize: number;
  private readonly maxSize: number;
  /** avg - min(min + ceil(min/2), avg): end of the maskS phase, relative to chunk start. */
  private readonly centre: number;
  private readonly maskS: number;
  private readonly maskL: number;
  private readonly gear: Int32Array;
  /** The addon's scanGear (same results, ~2× faster) and the gear table as bytes for it; undefined without the addon. */
  private readonly nativeScan?: NativeGearScan;
  private readonly gearBytes: Buffer;

  constructor(params: ChunkerParams, gear: Uint32Array = DEFAULT_GEAR) {
    validateChunkerParams(params);
    if (!(gear instanceof Uint32Array) || gear.length !== 256) {
      throw new RangeError('chunker: gear table must be a Uint32Array of 256 entries');
    }
    const { minSize, avgSize, maxSize } = params;
    this.params = Object.freeze({ minSize, avgSize, maxSize });
    this.minSize = minSize;
    this.maxSize = maxSize;
    const offset = Math.min(minSize + Math.ceil(minSize / 2), avgSize);
    this.centre = avgSize - offset;
    const bits = Math.round(Math.log2(avgSize)); // 8..28 given the limits
    this.maskS = 2 ** (bits + 1) - 1;
    this.maskL = 2 ** (bits - 1) - 1;
    // Private copy, reinterpreted as int32 (same bits, keeps V8 in int32 land).
    this.gear = new Int32Array(Uint32Array.from(gear).buffer);
    this.gearBytes = Buffer.from(this.gear.buffer);
    this.nativeScan = usableBinding()?.gearScan;
  }

  /**
   * Length of the next chunk starting at data[start], looking only at
   * data[start, end). Returns a value in [1, min(maxSize, end - start)]
   * (0 only if start === end). Pure; no state between calls, no allocation.
   * When end - start < maxSize and the data goes on past `end`, a result
   * below end - start is still the final cut (the scan is sequential and
   * looks at nothing past the byte it cuts after), but a result of exactly
   * end - start is not: more data may move it.
   */
  cut(data: Uint8Array, start: number, end: number): number {
    if (!(start >= 0 && start <= end && end <= data.length && Number.isInteger(start) && Number.isInteger(end))) {
      throw new RangeError(`chunker: invalid range [${start}, ${end}) for data of length ${data.length}`);
    }
    const n = end - start;
    const minSize = this.minSize;
    if (n <= minSize) return n;
    const size = n > this.maxSize ? this.maxSize : n;
    const centre = this.centre < size ? this.centre : size;
    // The addon takes positions as u32: buffers past 2 GiB stay on the JavaScript loop.
    if (this.nativeScan && end <= 0x7fffffff) return this.nativeScan(data, this.gearBytes, start + minSize, start + centre, start + size, this.maskS, this.maskL) - start;
    return (
      scanGear(data, this.gear, start + minSize, start + centre, start + size, this.maskS, this.maskL) - start
    );
  }
}

/** Convenience: all chunk lengths of a whole buffer (used by tests/bench). */
export function chunkLengths(cdc: FastCdc, data: Uint8Array): number[] {
  const out: number[] = [];
  const len = data.length;
  let pos = 0;
  while (pos < len) {
    const n = cdc.cut(data, pos, len);
    out.push(n);
    pos += n;
  }
  return out;
}
