/**
 * zstd via zstd-napi's low-level contexts (reused, writing into buffers we
 * size), so incompressible data costs little: "compress, keep if smaller".
 */
import { createRequire } from 'node:module';

interface CCtx { compress(dst: Uint8Array, src: Uint8Array, level: number): number }
interface DCtx { decompress(dst: Uint8Array, src: Uint8Array): number }
interface ZstdBinding {
  CCtx: new () => CCtx;
  DCtx: new () => DCtx;
  compressBound(n: number): number;
  getFrameContentSize(frame: Uint8Array): number | null;
}

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let binding: ZstdBinding | undefined;
const zstd = (): ZstdBinding => (binding ??= createRequire(import.meta.url)('zstd-napi/binding') as ZstdBinding);

let cctx: CCtx | undefined;
let dctx: DCtx | undefined;
let scratch = Buffer.allocUnsafe(0);

export const DEFAULT_LEVEL = 3;

/**
 * zstd of `src` into the shared scratch buffer at `at`, when that is smaller
 * than `src`: returns the frame's length, or -1 (too small to try, or it did
 * not shrink). The scratch also has room for `src` itself after `at`.
 */
function compressToScratch(src: Uint8Array, level: number, at: number): number {
  const bound = level > 0 && src.length >= 64 ? zstd().compressBound(src.length) : 0;
  const need = at + Math.max(bound, src.length);
  if (scratch.length < need) scratch = Buffer.allocUnsafe(Math.max(need, 1 << 20));
  if (bound === 0) return -1;
  cctx ??= new (zstd().CCtx)();
  const n = cctx.compress(scratch.subarray(at), src, level);
  return n < src.length ? n : -1;
}

/**
 * Returns the zstd frame if it is smaller than the input, else undefined.
 * The frame is a view of a scratch buffer shared with flaggedBody: valid only
 * until the next call of either.
 */
export function compressIfSmaller(src: Uint8Array, level = DEFAULT_LEVEL): Buffer | undefined {
  const n = compressToScratch(src, level, 0);
  return n < 0 ? undefined : scratch.subarray(0, n);
}

/**
 * A blob body for sealing: one flag byte, then either a zstd frame of `src`
 * (flag `zstdFlag`, when that is smaller) or `src` itself (flag `rawFlag`),
 * built in the scratch buffer so the cipher gets one contiguous input.
 * `level` 0: never compressed. Valid only until the next call (of this or
 * compressIfSmaller). Undefined: stored raw, but too large to be worth
 * copying (the caller seals flag and `src`).
 */
export function flaggedBody(src: Uint8Array, level: number, rawFlag: number, zstdFlag: number): Buffer | undefined {
  const n = compressToScratch(src, level, 1);
  if (n >= 0) {
    scratch[0] = zstdFlag;
    return scratch.subarray(0, 1 + n);
  }
  // Large raw bodies are not copied: the caller passes the flag and `src` as two parts.
  if (src.length > RAW_COPY_MAX) return undefined;
  scratch[0] = rawFlag;
  scratch.set(src, 1);
  return scratch.subarray(0, 1 + src.length);
}
const RAW_COPY_MAX = 64 << 10;

/** Decompresses one frame whose content size must equal `expectedLength`. Throws on any mismatch. */
export function decompressExact(frame: Uint8Array, expectedLength: number): Buffer {
  const out = Buffer.allocUnsafe(expectedLength);
  decompressInto(frame, out);
  return out;
}

/** Decompresses one frame into exactly all of `out`. Throws on any mismatch. */
export function decompressInto(frame: Uint8Array, out: Uint8Array): void {
  dctx ??= new (zstd().DCtx)();
  const declared = zstd().getFrameContentSize(frame);
  if (declared !== out.length) throw new RangeError('zstd frame size mismatch');
  const n = out.length === 0 ? 0 : dctx.decompress(out, frame);
  if (n !== out.length) throw new RangeError('zstd output size mismatch');
}

export function frameContentSize(frame: Uint8Array): number | null {
  try {
    return zstd().getFrameContentSize(frame);
  } catch {
    return null;
  }
}
