/**
 * The one authenticated-encryption primitive coffer uses for everything it
 * stores: AES-256-GCM from node:crypto with a 192-bit random nonce, extended
 * the way XChaCha/XAES extend theirs:
 *
 *   nonce    = 24 random bytes
 *   subkey   = BLAKE3-keyed(key, nonce[0..12])          (32 bytes)
 *   sealed   = nonce || AES-256-GCM(subkey, nonce[12..24], plaintext, aad) || tag(16)
 *
 * A (subkey, GCM nonce) pair repeats only if all 192 random bits repeat, so the
 * safe message count per key is ~2^80 (birthday bound with a 2^-32 margin),
 * far beyond anything a repository writes. See docs/FORMAT.md.
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { keyedHash, KEY_BYTES } from './hash.js';
import { nativeGcmSeal, type GcmSeal } from '../platform/native.js';

/** The addon's sealer (null: none; use node:crypto), looked up at the first sealInto. */
let gcmSeal: GcmSeal | null | undefined;
const EMPTY = new Uint8Array(0);

export const NONCE_BYTES = 24;
export const TAG_BYTES = 16;
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

export class AuthenticationError extends Error {
  constructor() {
    super('authentication failed');
    this.name = 'AuthenticationError';
  }
}

/**
 * Random nonce bytes drawn from the CSPRNG 4 KiB at a time: one
 * randomFillSync per 24-byte nonce cost ~2.5 µs (measured), a copy from the
 * pool ~0.15 µs. Each byte is handed out once; every thread has its own pool.
 */
const NONCE_POOL_BYTES = 4096;
const noncePool = Buffer.allocUnsafeSlow(NONCE_POOL_BYTES);
let noncePos = NONCE_POOL_BYTES;

function fillNonce(out: Buffer, offset: number): Buffer {
  if (noncePos + NONCE_BYTES > NONCE_POOL_BYTES) {
    randomFillSync(noncePool);
    noncePos = 0;
  }
  noncePool.copy(out, offset, noncePos, noncePos + NONCE_BYTES);
  noncePool.fill(0, noncePos, noncePos + NONCE_BYTES);
  noncePos += NONCE_BYTES;
  return out.subarray(offset, offset + NONCE_BYTES);
}

function subkey(key: Uint8Array, nonce: Uint8Array): Buffer {
  if (key.length !== KEY_BYTES) throw new RangeError('seal: key must be 32 bytes');
  return keyedHash(key, nonce.subarray(0, 12));
}

/**
 * Encrypt and authenticate `parts` (concatenated) with `aad` bound in.
 * `nonce` may be given only by tests that check vectors.
 */
export function seal(key: Uint8Array, parts: Uint8Array | Uint8Array[], aad: Uint8Array, nonce?: Uint8Array): Buffer {
  const list = Array.isArray(parts) ? parts : [parts];
  const n = nonce ?? fillNonce(Buffer.allocUnsafe(NONCE_BYTES), 0);
  if (n.length !== NONCE_BYTES) throw new RangeError('seal: nonce must be 24 bytes');
  const sk = subkey(key, n);
  const c = createCipheriv('aes-256-gcm', sk, n.subarray(12, 24));
  sk.fill(0);
  c.setAAD(aad);
  const out: Buffer[] = [Buffer.from(n)];
  for (const p of list) out.push(c.update(p));
  out.push(c.final(), c.getAuthTag());
  return Buffer.concat(out);
}

/**
 * Like seal, but writes into `out` at `offset` (which must have room for
 * SEAL_OVERHEAD + total plaintext bytes) and returns the bytes written.
 * Avoids one allocation and copy per message on the hot path.
 */
export function sealInto(key: Uint8Array, parts: Uint8Array[], aad: Uint8Array, out: Buffer, offset: number): number {
  const n = fillNonce(out, offset);
  const sk = subkey(key, n);
  gcmSeal ??= nativeGcmSeal() ?? null;
  if (gcmSeal && parts.length <= 2) {
    // The same AES-256-GCM, without node:crypto's objects per message (~10 µs each; docs/PERFORMANCE.md, "Session 5").
    try {
      return NONCE_BYTES + gcmSeal(sk, aad, parts[0] ?? EMPTY, parts.length > 1 ? parts[1] : null, out, offset);
    } finally {
      sk.fill(0);
    }
  }
  const c = createCipheriv('aes-256-gcm', sk, n.subarray(12, 24));
  sk.fill(0);
  c.setAAD(aad);
  let pos = offset + NONCE_BYTES;
  for (const p of parts) pos += c.update(p).copy(out, pos);
  pos += c.final().copy(out, pos);
  pos += c.getAuthTag().copy(out, pos);
  return pos - offset;
}

/** Decrypt and verify; throws AuthenticationError on any mismatch (wrong key, tampering, truncation). */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError();
  const n = sealed.subarray(0, NONCE_BYTES);
  const sk = subkey(key, n);
  const d = createDecipheriv('aes-256-gcm', sk, n.subarray(12, 24));
  sk.fill(0);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const body = d.update(sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES));
  try {
    d.final();
  } catch {
    body.fill(0);
    throw new AuthenticationError();
  }
  return body;
}
