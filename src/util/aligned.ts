/**
 * Large buffers for the backup pipeline. Memory-aligned ones for direct
 * I/O: a local repository writes large pack bodies with O_DIRECT
 * (storage/local.ts), which needs the buffer's address, the file offset and
 * the length aligned to the device's block size; JavaScript cannot see
 * addresses, so the addon reports them. And huge-page backed ones.
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

/**
 * `new ArrayBuffer(size)`, advised (through the addon, on Linux) to be backed
 * by transparent huge pages: the pipeline's pooled windows, seal outputs and
 * packs are ~110 MiB touched once each, and with 4 KiB pages their first
 * touch was ~28k page faults (docs/PERFORMANCE.md, "Session 6: backup of big").
 */
export function hugeArrayBuffer(size: number): ArrayBuffer {
  const ab = new ArrayBuffer(size);
  const b = usableBinding();
  if (size >= 2 << 20 && b && typeof b.adviseHugePages === 'function') b.adviseHugePages(Buffer.from(ab));
  return ab;
}
