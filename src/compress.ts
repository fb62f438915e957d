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
 * Returns the zstd frame if it is smaller than the input, else undefined.
 * The frame is a view of a scratch buffer: valid only until the next call.
 */
export function compressIfSmaller(src: Uint8Array, level = DEFAULT_LEVEL): Buffer | undefined {
  if (src.length < 64) return undefined;
  cctx ??= new (zstd().CCtx)();
  const bound = zstd().compressBound(src.length);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(Math.max(bound, 1 << 20));
  const n = cctx.compress(scratch, src, level);
  if (n >= src.length) return undefined;
  return scratch.subarray(0, n);
}

/**
 * A blob body for sealing: one flag byte, then either a zstd frame of `src`
 * (flag `zstdFlag`, when that is smaller) or `src` itself (flag `rawFlag`),
 * built in a reused scratch buffer so the cipher gets one contiguous input.
 * `level` 0: never compressed. Valid only until the next call. Undefined:
 * stored raw, but too large to be worth copying (the caller seals flag and `src`).
 */
export function flaggedBody(src: Uint8Array, level: number, rawFlag: number, zstdFlag: number): Buffer | undefined {
  const bound = level > 0 && src.length >= 64 ? zstd().compressBound(src.length) : 0;
  const need = 1 + Math.max(bound, src.length);
  if (bodyScratch.length < need) bodyScratch = Buffer.allocUnsafe(Math.max(need, 1 << 20));
  if (bound > 0) {
    cctx ??= new (zstd().CCtx)();
    const n = cctx.compress(bodyScratch.subarray(1), src, level);
    if (n < src.length) {
      bodyScratch[0] = zstdFlag;
      return bodyScratch.subarray(0, 1 + n);
    }
  }
  // Large raw bodies are not copied: the caller passes the flag and `src` as two parts.
  if (src.length > RAW_COPY_MAX) return undefined;
  bodyScratch[0] = rawFlag;
  bodyScratch.set(src, 1);
  return bodyScratch.subarray(0, 1 + src.length);
}
let bodyScratch = Buffer.allocUnsafe(0);
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
