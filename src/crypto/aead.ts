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
import { createRequire } from 'node:module';

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

/**
 * Without the native addon, `openInto` has node:crypto produce the plaintext
 * this many bytes per call: each call returns a new buffer, and pieces this
 * small (under glibc's mmap threshold) are recycled by malloc, where one
 * buffer per message of up to 8 MiB left worker threads' memory fragmented.
 */
const OPEN_PIECE = 64 << 10;

/**
 * AES-256-GCM decryption into the caller's buffers by coffer's native addon,
 * in two steps made back to back: `start` decrypts the first bytes
 * (unauthenticated) into `headOut`, `finish` the rest into `out` (same length
 * as `ctRest`) and checks the tag: false when not authentic (`out` zeroed).
 */
export interface AesGcm {
  start(key: Uint8Array, iv: Uint8Array, aad: Uint8Array, ctHead: Uint8Array, headOut: Uint8Array): void;
  finish(ctRest: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean;
}

/**
 * The addon, from this module's place in the build (dist/src/crypto/). Loaded
 * here, on first use, rather than through platform/native.ts, which commands
 * that open no blob should not have to import (start-up time).
 */
const ADDON = '../../../native/build/Release/coffer_native.node';
/** Must match COFFER_NATIVE_ABI in native/coffer_native.c (as platform/native.ts checks). */
const NATIVE_ABI = 1;
let gcm: AesGcm | null | undefined;

/** The addon's AES-GCM open-into, or undefined (no addon, an older one, or COFFER_NO_NATIVE=1): then node:crypto. */
export function nativeAesGcm(): AesGcm | undefined {
  gcm ??= loadAesGcm();
  return gcm ?? undefined;
}

function loadAesGcm(): AesGcm | null {
  const off = process.env.COFFER_NO_NATIVE;
  if (off !== undefined && off !== '' && off !== '0') return null;
  try {
    const b = createRequire(import.meta.url)(ADDON) as { abi?: number; aesGcmStart?: AesGcm['start']; aesGcmFinish?: AesGcm['finish'] };
    if (b.abi !== NATIVE_ABI || typeof b.aesGcmStart !== 'function' || typeof b.aesGcmFinish !== 'function') return null;
    return { start: b.aesGcmStart, finish: b.aesGcmFinish };
  } catch {
    return null;
  }
}

/**
 * Like open, but writes the plaintext into caller-chosen memory instead of
 * returning a new buffer: its first `head` bytes are decrypted and passed to
 * `into`, which returns where the remaining bytes go (a buffer of exactly
 * that length). Throws AuthenticationError on any mismatch; the destination
 * is zeroed then, and its content must not be used until this returns.
 * With the native addon, one OpenSSL call decrypts straight into place (no
 * decipher object, no intermediate buffers: docs/PERFORMANCE.md, "Session 5").
 */
export function openInto(key: Uint8Array, sealed: Uint8Array, aad: Uint8Array, head: number, into: (head: Buffer) => Buffer): void {
  if (sealed.length < SEAL_OVERHEAD + head) throw new AuthenticationError();
  const n = sealed.subarray(0, NONCE_BYTES);
  const end = sealed.length - TAG_BYTES;
  const sk = subkey(key, n);
  const gcm = nativeAesGcm();
  if (gcm) {
    let out: Buffer;
    try {
      const first = Buffer.allocUnsafe(head);
      gcm.start(sk, n.subarray(12, 24), aad, sealed.subarray(NONCE_BYTES, NONCE_BYTES + head), first);
      out = into(first);
    } finally {
      sk.fill(0);
    }
    if (out.length !== end - NONCE_BYTES - head) throw new RangeError('openInto: destination has the wrong length');
    if (!gcm.finish(sealed.subarray(NONCE_BYTES + head, end), sealed.subarray(end), out)) throw new AuthenticationError();
    return;
  }
  const d = createDecipheriv('aes-256-gcm', sk, n.subarray(12, 24));
  sk.fill(0);
  d.setAAD(aad);
  d.setAuthTag(sealed.subarray(end));
  let pos = NONCE_BYTES + head;
  const first = d.update(sealed.subarray(NONCE_BYTES, pos));
  const out = into(first);
  if (out.length !== end - pos) throw new RangeError('openInto: destination has the wrong length');
  let at = 0;
  while (pos < end) {
    const next = Math.min(end, pos + OPEN_PIECE);
    at += d.update(sealed.subarray(pos, next)).copy(out, at);
    pos = next;
  }
  try {
    d.final();
  } catch {
    out.fill(0);
    throw new AuthenticationError();
  }
  if (at !== out.length) throw new RangeError('openInto: short decryption');
}
