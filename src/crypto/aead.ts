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
 *
 * Subkey and GCM run in the native addon when it is built (BLAKE3 for the
 * one-block subkey, Node's own OpenSSL for GCM, straight into the caller's
 * buffer: several µs less per message than keyedHash + a node:crypto
 * Cipheriv, and no output buffer per call), else in JS + node:crypto.
 * Both give the same bytes (tested).
 */
import { createCipheriv, createDecipheriv, randomFillSync } from 'node:crypto';
import { nativeGcm } from '../platform/addon.js';
import { keyedHash, KEY_BYTES } from './hash.js';

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

function checkKey(key: Uint8Array): void {
  if (key.length !== KEY_BYTES) throw new RangeError('seal: key must be 32 bytes');
}

/** MAC(key, nonce[0..12)): the message's AES key (the addon derives it itself). */
function subkey(key: Uint8Array, nonce: Uint8Array): Buffer {
  checkKey(key);
  return keyedHash(key, nonce.subarray(0, 12));
}

let gcm: ReturnType<typeof nativeGcm> | undefined;
const native = (): ReturnType<typeof nativeGcm> => (gcm === undefined ? (gcm = agreesWithNodeCrypto(nativeGcm())) : gcm);
const EMPTY = new Uint8Array(0);

/**
 * Known-answer check before a thread trusts the addon: one fixed message
 * sealed and opened both ways must give the same bytes (a mis-built addon or
 * an unexpected OpenSSL in the process then costs speed, not correctness).
 */
function agreesWithNodeCrypto(g: ReturnType<typeof nativeGcm>): ReturnType<typeof nativeGcm> {
  if (!g) return null;
  try {
    const key = Buffer.alloc(KEY_BYTES, 0x5c);
    const nonce = Buffer.from('coffer known-answer nonc');
    const aad = Buffer.from('aad');
    const msg = Buffer.from('coffer: a message of thirty-seven by');
    const c = createCipheriv('aes-256-gcm', keyedHash(key, nonce.subarray(0, 12)), nonce.subarray(12, 24));
    c.setAAD(aad);
    const want = Buffer.concat([c.update(msg.subarray(0, 5)), c.update(msg.subarray(5)), c.final(), c.getAuthTag()]);
    const got = Buffer.alloc(want.length);
    const back = Buffer.alloc(msg.length);
    const ok =
      g.gcmSeal(key, nonce, aad, msg.subarray(0, 5), msg.subarray(5), got, 0) === want.length &&
      got.equals(want) &&
      g.gcmOpen(key, nonce, aad, want.subarray(0, msg.length), want.subarray(msg.length), back, 0) &&
      back.equals(msg);
    return ok ? g : null;
  } catch {
    return null;
  }
}

/**
 * Encrypt and authenticate `parts` (concatenated) with `aad` bound in.
 * `nonce` may be given only by tests that check vectors.
 */
export function seal(key: Uint8Array, parts: Uint8Array | Uint8Array[], aad: Uint8Array, nonce?: Uint8Array): Buffer {
  const list = Array.isArray(parts) ? parts : [parts];
  if (nonce !== undefined && nonce.length !== NONCE_BYTES) throw new RangeError('seal: nonce must be 24 bytes');
  const out = Buffer.allocUnsafe(SEAL_OVERHEAD + list.reduce((a, p) => a + p.length, 0));
  if (nonce) out.set(nonce, 0);
  else fillNonce(out, 0);
  sealAfterNonce(key, list, aad, out, 0);
  return out;
}

/**
 * Like seal, but writes into `out` at `offset` (which must have room for
 * SEAL_OVERHEAD + total plaintext bytes) and returns the bytes written.
 * Avoids one allocation and copy per message on the hot path.
 */
export function sealInto(key: Uint8Array, parts: Uint8Array[], aad: Uint8Array, out: Buffer, offset: number): number {
  if (offset + SEAL_OVERHEAD + parts.reduce((a, p) => a + p.length, 0) > out.length) throw new RangeError('seal: output buffer too small');
  fillNonce(out, offset);
  return sealAfterNonce(key, parts, aad, out, offset);
}

/** Seals `parts` behind the nonce already at out[offset..offset+24); returns the sealed length. */
function sealAfterNonce(key: Uint8Array, parts: Uint8Array[], aad: Uint8Array, out: Buffer, offset: number): number {
  const n = out.subarray(offset, offset + NONCE_BYTES);
  const g = native();
  if (g && parts.length <= 2) {
    checkKey(key);
    return NONCE_BYTES + g.gcmSeal(key, n, aad, parts[0] ?? EMPTY, parts[1] ?? null, out, offset + NONCE_BYTES);
  }
  const sk = subkey(key, n);
  try {
    const c = createCipheriv('aes-256-gcm', sk, n.subarray(12, 24));
    c.setAAD(aad);
    let pos = offset + NONCE_BYTES;
    for (const p of parts) pos += c.update(p).copy(out, pos);
    pos += c.final().copy(out, pos);
    pos += c.getAuthTag().copy(out, pos);
    return pos - offset;
  } finally {
    sk.fill(0);
  }
}

/** Decrypt and verify; throws AuthenticationError on any mismatch (wrong key, tampering, truncation). */
export function open(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError();
  const body = Buffer.allocUnsafe(sealed.length - SEAL_OVERHEAD);
  openInto(key, sealed, aad, body, 0);
  return body;
}

/**
 * Like open, but writes the plaintext into `out` at `offset` and returns its
 * length. On an authentication failure the output range is wiped and
 * AuthenticationError is thrown.
 */
export function openInto(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array, out: Uint8Array, offset: number): number {
  if (sealed.length < SEAL_OVERHEAD) throw new AuthenticationError();
  const len = sealed.length - SEAL_OVERHEAD;
  if (offset + len > out.length) throw new RangeError('open: output buffer too small');
  const n = sealed.subarray(0, NONCE_BYTES);
  const ct = sealed.subarray(NONCE_BYTES, sealed.length - TAG_BYTES);
  const tag = sealed.subarray(sealed.length - TAG_BYTES);
  const g = native();
  if (g) {
    checkKey(key);
    if (!g.gcmOpen(key, n, aad, ct, tag, out, offset)) throw new AuthenticationError();
    return len;
  }
  const sk = subkey(key, n);
  try {
    const d = createDecipheriv('aes-256-gcm', sk, n.subarray(12, 24));
    d.setAAD(aad);
    d.setAuthTag(tag);
    const body = d.update(ct);
    try {
      d.final();
    } catch {
      body.fill(0);
      out.fill(0, offset, offset + len);
      throw new AuthenticationError();
    }
    out.set(body, offset);
    body.fill(0);
    return len;
  } finally {
    sk.fill(0);
  }
}
