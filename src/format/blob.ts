/**
 * A blob as stored in a pack:
 *
 *   seal(blobKey, flag || payload, aad = "coffer-blob-v1" || type || id)
 *
 * flag 0: payload is the plaintext; flag 1: payload is a zstd frame of it.
 * Binding type and id into the AAD means a blob cannot be moved to another
 * id or relabelled (data ↔ tree) without failing authentication; the reader
 * also re-hashes the plaintext and compares it with the id.
 */
import { openInto, seal, sealInto, AuthenticationError, SEAL_OVERHEAD } from '../crypto/aead.js';
import { keyedHash, keyedHashHex } from '../crypto/hash.js';
import { compressIfSmaller, decompressInto } from '../compress.js';
import { BLOB_TYPE_CODE, type BlobType, idBytes } from '../ids.js';

export const BLOB_OVERHEAD = SEAL_OVERHEAD + 1;
const AAD_PREFIX = Buffer.from('coffer-blob-v1');
const FLAG_RAW = Buffer.from([0]);
const FLAG_ZSTD = Buffer.from([1]);

function blobAad(type: BlobType, id: Uint8Array): Buffer {
  return Buffer.concat([AAD_PREFIX, Buffer.from([BLOB_TYPE_CODE[type]]), id]);
}

export function computeBlobId(blobIdKey: Uint8Array, plaintext: Uint8Array): Buffer {
  return keyedHash(blobIdKey, plaintext);
}

/**
 * Compresses (when that helps) and seals one blob into `out` at `offset`;
 * returns the stored length (at most plaintext length + BLOB_OVERHEAD).
 */
export function sealBlobInto(
  blobKey: Uint8Array,
  type: BlobType,
  id: Uint8Array,
  plaintext: Uint8Array,
  level: number,
  out: Buffer,
  offset: number,
): number {
  const z = level > 0 ? compressIfSmaller(plaintext, level) : undefined;
  return sealInto(blobKey, z ? [FLAG_ZSTD, z] : [FLAG_RAW, plaintext], blobAad(type, id), out, offset);
}

/** Compresses (when that helps) and seals one blob. `level` 0 disables compression. */
export function sealBlob(blobKey: Uint8Array, type: BlobType, id: Uint8Array, plaintext: Uint8Array, level: number): Buffer {
  const z = level > 0 ? compressIfSmaller(plaintext, level) : undefined;
  return z ? seal(blobKey, [FLAG_ZSTD, z], blobAad(type, id)) : seal(blobKey, [FLAG_RAW, plaintext], blobAad(type, id));
}

export class BlobCorruptError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'BlobCorruptError';
  }
}

/** Opens a stored blob, checks its id. Throws BlobCorruptError on any problem. */
export function openBlob(
  keys: { blobKey: Uint8Array; blobIdKey: Uint8Array },
  type: BlobType,
  id: string,
  stored: Uint8Array,
  rawLength: number,
): Buffer {
  const out = Buffer.allocUnsafe(rawLength);
  openBlobInto(keys, type, id, stored, out);
  return out;
}

/**
 * Opens a stored blob into exactly all of `out` (whose length is the indexed
 * raw length) and checks its id. On failure `out` holds garbage and a
 * BlobCorruptError is thrown.
 */
export function openBlobInto(keys: { blobKey: Uint8Array; blobIdKey: Uint8Array }, type: BlobType, id: string, stored: Uint8Array, out: Buffer): void {
  const idb = idBytes(id);
  // Decrypted in place where it ends up: a raw blob straight into `out`, a
  // compressed one into this thread's scratch and decompressed from there.
  // A wrong flag or length is reported only once the blob authenticates
  // (until then the flag is unauthenticated): its bytes go to the scratch.
  let frame: Buffer | undefined;
  let bad: string | undefined;
  try {
    openInto(keys.blobKey, stored, blobAad(type, idb), 1, (flag) => {
      const n = stored.length - BLOB_OVERHEAD;
      if (flag[0] === 0 && n === out.length) return out;
      if (flag[0] === 0) bad = 'blob has the wrong length';
      else if (flag[0] !== 1) bad = 'unknown blob encoding';
      frame = n <= MAX_FRAME_SCRATCH ? frameScratch(n) : Buffer.allocUnsafe(n);
      return frame;
    });
  } catch (e) {
    if (e instanceof AuthenticationError) throw new BlobCorruptError('blob does not authenticate');
    throw e;
  }
  if (bad) throw new BlobCorruptError(bad);
  if (frame) {
    try {
      decompressInto(frame, out);
    } catch {
      throw new BlobCorruptError('blob does not decompress');
    }
  }
  // Compared as hex: no native buffer per blob (see KeyedHasher.hashHex).
  const got = keyedHashHex(keys.blobIdKey, out);
  if (got !== id && got !== id.toLowerCase()) throw new BlobCorruptError('blob content does not match its id');
}

/** Compressed blobs up to this size are decrypted into a per-thread scratch buffer (kept); larger ones into their own. */
const MAX_FRAME_SCRATCH = 16 << 20;
let scratch: Buffer | undefined;
function frameScratch(n: number): Buffer {
  if (!scratch || scratch.length < n) scratch = Buffer.allocUnsafeSlow(Math.max(n, 1 << 20));
  return scratch.subarray(0, n);
}
