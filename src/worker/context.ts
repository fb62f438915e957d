/**
 * A worker pool's context (chunker settings and keys) in one
 * SharedArrayBuffer. The pool is given the buffer as workerData when it
 * starts, which can be before the keys exist (a repository starts its
 * workers while the key is derived); the keys are written into it once they
 * do, before the first task is sent. One copy serves every thread, and the
 * pool zeroes it when it closes (no copy of the keys travels in a message).
 */
import type { WorkerContext } from './tasks.js';

/** Header (int32 each): state (0 empty, 1 filled), minSize, avgSize, maxSize, compressionLevel. */
const HEADER_INTS = 5;
const GEAR_BYTES = 1024;
const KEY_BYTES = 32;
const GEAR_AT = HEADER_INTS * 4;
const ID_KEY_AT = GEAR_AT + GEAR_BYTES;
const BLOB_KEY_AT = ID_KEY_AT + KEY_BYTES;
const SIZE = BLOB_KEY_AT + KEY_BYTES;

export function newSharedContext(): SharedArrayBuffer {
  return new SharedArrayBuffer(SIZE);
}

/** Writes `ctx` into `sab` and marks it filled (once: a pool's context never changes). */
export function fillSharedContext(sab: SharedArrayBuffer, ctx: WorkerContext): void {
  const head = new Int32Array(sab, 0, HEADER_INTS);
  if (Atomics.load(head, 0) !== 0) throw new Error('worker context already set');
  if (ctx.gearBytes.length !== GEAR_BYTES || ctx.blobIdKey.length !== KEY_BYTES || ctx.blobKey.length !== KEY_BYTES) throw new RangeError('worker context: bad key sizes');
  const bytes = new Uint8Array(sab);
  bytes.set(ctx.gearBytes, GEAR_AT);
  bytes.set(ctx.blobIdKey, ID_KEY_AT);
  bytes.set(ctx.blobKey, BLOB_KEY_AT);
  head[1] = ctx.chunker.minSize;
  head[2] = ctx.chunker.avgSize;
  head[3] = ctx.chunker.maxSize;
  head[4] = ctx.compressionLevel;
  // Last, and atomically: a worker that sees 1 sees everything written before.
  Atomics.store(head, 0, 1);
}

/** True once the context has been written. */
export function sharedContextFilled(sab: SharedArrayBuffer): boolean {
  return Atomics.load(new Int32Array(sab, 0, HEADER_INTS), 0) === 1;
}

/**
 * The context in `sab`, or undefined while it has not been written. The keys
 * are copied into the calling thread's own memory (crypto code may refuse
 * shared memory), as workerData copied them before.
 */
export function readSharedContext(sab: SharedArrayBuffer): WorkerContext | undefined {
  const head = new Int32Array(sab, 0, HEADER_INTS);
  if (Atomics.load(head, 0) !== 1) return undefined;
  return {
    chunker: { minSize: head[1], avgSize: head[2], maxSize: head[3] },
    compressionLevel: head[4],
    gearBytes: new Uint8Array(sab, GEAR_AT, GEAR_BYTES).slice(),
    blobIdKey: new Uint8Array(sab, ID_KEY_AT, KEY_BYTES).slice(),
    blobKey: new Uint8Array(sab, BLOB_KEY_AT, KEY_BYTES).slice(),
  };
}

/** Zeroes the whole buffer, keys included (the pool's threads are gone by then). */
export function wipeSharedContext(sab: SharedArrayBuffer): void {
  new Uint8Array(sab).fill(0);
}
