/**
 * BLAKE3 in its three modes (plain, keyed, derive-key), via the native
 * @napi-rs/blake-hash binding (measured fastest; see docs/PERFORMANCE.md).
 * Pure, synchronous, safe to call inside worker threads.
 */
import { createRequire } from 'node:module';
import type * as BlakeHash from '@napi-rs/blake-hash';

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let native: typeof BlakeHash | undefined;
/** The binding, loaded on first use. */
export const blakeHash = (): typeof BlakeHash => (native ??= createRequire(import.meta.url)('@napi-rs/blake-hash') as typeof BlakeHash);

export const KEY_BYTES = 32;

/**
 * The binding's types say Buffer, but it accepts any Uint8Array (N-API's
 * buffer check is "is an ArrayBufferView" since Node 10); avoid a wrapper
 * object per call on the hot path.
 */
const asBuffer = (u: Uint8Array): Buffer => u as Buffer;

/** Unkeyed BLAKE3-256 of the stored bytes: used only for object names (of ciphertext). */
export function plainHash(data: Uint8Array): Buffer {
  return blakeHash().blake3(asBuffer(data));
}

/**
 * A reusable keyed hasher. Creating a native hasher per call leaves garbage
 * the worker's GC does not see as large (native state lives outside the JS
 * heap); with 100,000 small files that grew the process by hundreds of MB.
 */
export class KeyedHasher {
  private readonly h: BlakeHash.Blake3Hasher;
  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new RangeError('keyed hash: key must be 32 bytes');
    this.h = blakeHash().Blake3Hasher.newKeyed(Buffer.from(key));
  }
  hash(data: Uint8Array): Buffer {
    this.h.reset();
    return this.h.update(asBuffer(data)).digestBuffer();
  }
  /**
   * The hash as lowercase hex. A plain JS string: digestBuffer's native
   * buffer is freed only by a finalizer that waits for the event loop, so
   * a long synchronous loop of digestBuffer calls (a worker opening a pack's
   * blobs) kept ~350 bytes each until it ended, and cost 1.7× the time
   * (docs/PERFORMANCE.md, "Session 5"). Not for secrets: a string cannot be wiped.
   */
  hashHex(data: Uint8Array): string {
    this.h.reset();
    return this.h.update(asBuffer(data)).digest('hex');
  }
}

const hashers = new WeakMap<Uint8Array, { copy: Buffer; hasher: KeyedHasher }>();

/**
 * Keyed BLAKE3-256 (a PRF/MAC). Reuses one native hasher per key object
 * (keys are long-lived buffers). The entry is checked against the key's
 * current bytes, so a key changed or wiped in place is never served stale;
 * forgetKey() drops it explicitly when a key is wiped.
 */
export function keyedHash(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const e = hasherFor(key);
  return parts.length === 1 ? e.hash(parts[0]) : e.hash(Buffer.concat(parts));
}

/** keyedHash of one part as lowercase hex (see KeyedHasher.hashHex: for ids, not secrets). */
export function keyedHashHex(key: Uint8Array, data: Uint8Array): string {
  return hasherFor(key).hashHex(data);
}

function hasherFor(key: Uint8Array): KeyedHasher {
  let e = hashers.get(key);
  if (!e || !e.copy.equals(key)) {
    e?.copy.fill(0);
    e = { copy: Buffer.from(key), hasher: new KeyedHasher(key) };
    hashers.set(key, e);
  }
  return e.hasher;
}

/** Drops the cached hasher of a key that is about to be wiped. */
export function forgetKey(key: Uint8Array): void {
  hashers.get(key)?.copy.fill(0);
  hashers.delete(key);
}

/** BLAKE3 derive_key mode: a 32-byte working key from key material and a context string. */
export function deriveKey(context: string, keyMaterial: Uint8Array): Buffer {
  return blakeHash().Blake3Hasher.deriveKey(context, asBuffer(keyMaterial));
}
