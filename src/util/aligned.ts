/**
 * Memory-aligned buffers for direct I/O. A local repository writes large
 * pack bodies with O_DIRECT (storage/local.ts), which needs the buffer's
 * address, the file offset and the length aligned to the device's block
 * size; JavaScript cannot see addresses, so the addon reports them.
 */
import { usableBinding } from '../platform/addon.js';

/** Alignment used for direct I/O: the page size, a multiple of every common logical block size. */
export const IO_ALIGN = 4096;

function alignGap(u: Uint8Array): number | undefined {
  const b = usableBinding();
  return b && typeof b.alignGap === 'function' ? b.alignGap(u, IO_ALIGN) : undefined;
}

/**
 * A `length`-byte view of `ab` (at least length + IO_ALIGN bytes) starting
 * at an IO_ALIGN boundary in memory; at offset 0 when the addon cannot tell
 * (the buffer is then simply written through the page cache).
 */
export function alignedView(ab: ArrayBuffer, length: number): Buffer {
  if (ab.byteLength < length + IO_ALIGN) throw new RangeError('alignedView: buffer too small');
  const whole = Buffer.from(ab);
  const gap = alignGap(whole) ?? 0;
  return whole.subarray(gap, gap + length);
}

/** True when `u`'s data starts at an IO_ALIGN boundary (false when the addon cannot tell). */
export function isIoAligned(u: Uint8Array): boolean {
  return alignGap(u) === 0;
}
