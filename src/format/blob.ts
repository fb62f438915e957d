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
import { openInto, sealInto, AuthenticationError, SEAL_OVERHEAD } from '../crypto/aead.js';
import { keyedHash, keyedHashHex } from '../crypto/hash.js';
import { decompressInto, flaggedBody } from '../compress.js';
import { BLOB_TYPE_CODE, type BlobType, idBytes } from '../ids.js';

export const BLOB_OVERHEAD = SEAL_OVERHEAD + 1;
const AAD_PREFIX = Buffer.from('coffer-blob-v1');
const FLAG_RAW = Buffer.from([0]);
const FLAG_ZSTD = Buffer.from([1]);

function blobAad(type: BlobType, id: Uint8Array): Buffer {
  return Buffer.concat([AAD_PREFIX, Buffer.from([BLOB_TYPE_CODE[type]]), id]);
}

/**
 * blobAad into a buffer reused per type (the cipher takes the AAD at once and
 * keeps no reference): sealing a batch of small blobs built a fresh one each.
 */
const aadScratch = new Map<BlobType, Buffer>();
function blobAadScratch(type: BlobType, id: Uint8Array): Buffer {
  let b = aadScratch.get(type);
  if (!b) aadScratch.set(type, (b = blobAad(type, Buffer.alloc(32))));
  if (id.length !== 32) return blobAad(type, id);
  b.set(id, AAD_PREFIX.length + 1);
  return b;
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
  const body = flaggedBody(plaintext, level, FLAG_RAW[0], FLAG_ZSTD[0]);
  return sealInto(blobKey, body ? [body] : [FLAG_RAW, plaintext], blobAadScratch(type, id), out, offset);
}

/** Compresses (when that helps) and seals one blob. `level` 0 disables compression. */
export function sealBlob(blobKey: Uint8Array, type: BlobType, id: Uint8Array, plaintext: Uint8Array, level: number): Buffer {
  // Through sealBlobInto: the addon's cipher when there is one (tree blobs are sealed on the main thread).
  const out = Buffer.allocUnsafe(plaintext.length + BLOB_OVERHEAD);
  const n = sealBlobInto(blobKey, type, id, plaintext, level, out, 0);
  return n < out.length >> 1 ? Buffer.from(out.subarray(0, n)) : out.subarray(0, n);
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
 * Per-thread buffer for the decrypted body (flag + payload) before it is
 * copied or decompressed into the caller's output: a fresh buffer per blob
 * cost a page-faulted allocation per chunk (restore, check).
 */
let bodyScratch = Buffer.allocUnsafeSlow(0);
const SCRATCH_MIN = 1 << 20;

/**
 * Opens a stored blob into exactly all of `out` (whose length is the indexed
 * raw length) and checks its id. On failure `out` holds garbage and a
 * BlobCorruptError is thrown.
 */

export function openBlobInto(keys: { blobKey: Uint8Array; blobIdKey: Uint8Array }, type: BlobType, id: string, stored: Uint8Array, out: Buffer): void {
  const idb = idBytes(id);
  const bodyLength = stored.length - SEAL_OVERHEAD;
  if (bodyLength < 1) throw new BlobCorruptError('blob does not authenticate');
  if (bodyScratch.length < bodyLength) bodyScratch = Buffer.allocUnsafeSlow(Math.max(bodyLength, SCRATCH_MIN));
  const body = bodyScratch.subarray(0, bodyLength);
  try {
    openInto(keys.blobKey, stored, blobAadScratch(type, idb), body, 0);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new BlobCorruptError('blob does not authenticate');
    throw e;
  }
  if (body[0] === 0) {
    if (body.length - 1 !== out.length) throw new BlobCorruptError('blob has the wrong length');
    body.copy(out, 0, 1);
  } else if (body[0] === 1) {
    try {
      decompressInto(body.subarray(1), out);
    } catch {
      throw new BlobCorruptError('blob does not decompress');
    }
  } else throw new BlobCorruptError('unknown blob encoding');
  // Compared as hex: no native digest buffer per blob (see KeyedHasher.hashHex).
  const got = keyedHashHex(keys.blobIdKey, out);
  if (got !== id && got !== id.toLowerCase()) throw new BlobCorruptError('blob content does not match its id');
}
