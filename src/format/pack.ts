/**
 * Pack files: many sealed blobs of one type, then an encrypted header, random
 * padding and a fixed-size encrypted trailer:
 *
 *   blob_0 … blob_{n-1} | header | random padding | trailer (56 bytes)
 *
 *   header  = seal(metaKey, u32le count || count × entry, "coffer-pack-header-v1")
 *   entry   = u8 type || id[32] || u32le storedLength || u32le rawLength
 *             (blob i starts where blob i-1 ends; blob 0 at offset 0)
 *   trailer = seal(metaKey, u32le version=1 || u64le headerOffset || u32le headerLength,
 *                  "coffer-pack-trailer-v1")
 *
 * The total length is Padmé(unpadded length), so neither the number nor the
 * sizes of the blobs appear in any plaintext field or in the object size
 * beyond O(log log L) bits. The pack id (its file name) is BLAKE3 of all bytes.
 */
import { randomFillSync } from 'node:crypto';
import { open, seal, AuthenticationError, SEAL_OVERHEAD } from '../crypto/aead.js';
import { BLOB_TYPE_CODE, blobTypeFromCode, type BlobType } from '../ids.js';
import { padme } from './padding.js';

export const TRAILER_PLAIN = 16;
export const TRAILER_BYTES = TRAILER_PLAIN + SEAL_OVERHEAD;
/** Trailer of a pack written with a write-only key: also carries the session's ephemeral public key. */
export const OWNER_TRAILER_BYTES = TRAILER_PLAIN + 32 + SEAL_OVERHEAD;
const OWNER_TRAILER_AAD = Buffer.from('coffer-pack-trailer-wo-v1');
const ENTRY_BYTES = 1 + 32 + 4 + 4;
const HEADER_AAD = Buffer.from('coffer-pack-header-v1');
const TRAILER_AAD = Buffer.from('coffer-pack-trailer-v1');

export interface PackEntry {
  type: BlobType;
  id: string;
  offset: number;
  length: number;
  rawLength: number;
}

export class PackCorruptError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'PackCorruptError';
  }
}

/**
 * Header + padding + trailer that follow `blobsLength` bytes of sealed blobs.
 * With `owner` (a write-only key's pack), the header is sealed under the
 * session's metaKey(K) and the trailer, sealed under wrapKey, also holds ephPub:
 *   trailer = seal(wrapKey, u32 2 ‖ u64 headerOffset ‖ u32 headerLength ‖ ephPub[32], "coffer-pack-trailer-wo-v1")  (88 bytes)
 */
export function encodePackTail(metaKey: Uint8Array, entries: PackEntry[], blobsLength: number, owner?: { wrapKey: Uint8Array; ephPub: Uint8Array }): Buffer {
  const plain = Buffer.allocUnsafe(4 + entries.length * ENTRY_BYTES);
  plain.writeUInt32LE(entries.length, 0);
  let pos = 4;
  let expect = 0;
  for (const e of entries) {
    if (e.offset !== expect) throw new RangeError('pack entries must be contiguous');
    plain[pos] = BLOB_TYPE_CODE[e.type];
    plain.write(e.id, pos + 1, 32, 'hex');
    plain.writeUInt32LE(e.length, pos + 33);
    plain.writeUInt32LE(e.rawLength, pos + 37);
    pos += ENTRY_BYTES;
    expect += e.length;
  }
  if (expect !== blobsLength) throw new RangeError('pack entries do not cover the blobs');
  const header = seal(metaKey, plain, HEADER_AAD);
  const unpadded = blobsLength + header.length + (owner ? OWNER_TRAILER_BYTES : TRAILER_BYTES);
  const padding = padme(unpadded) - unpadded;
  const t = Buffer.alloc(owner ? TRAILER_PLAIN + 32 : TRAILER_PLAIN);
  t.writeUInt32LE(owner ? 2 : 1, 0);
  t.writeBigUInt64LE(BigInt(blobsLength), 4);
  t.writeUInt32LE(header.length, 12);
  if (owner) Buffer.from(owner.ephPub).copy(t, 16);
  const trailer = owner ? seal(owner.wrapKey, t, OWNER_TRAILER_AAD) : seal(metaKey, t, TRAILER_AAD);
  return Buffer.concat([header, randomFillSync(Buffer.allocUnsafe(padding)), trailer]);
}

/** Reads the trailer (the last TRAILER_BYTES of the pack); returns where the header is. */
export function decodePackTrailer(metaKey: Uint8Array, trailer: Uint8Array, packLength: number): { offset: number; length: number } {
  if (trailer.length !== TRAILER_BYTES) throw new PackCorruptError('pack is truncated');
  let t: Buffer;
  try {
    t = open(metaKey, trailer, TRAILER_AAD);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new PackCorruptError('pack trailer does not authenticate');
    throw e;
  }
  if (t.readUInt32LE(0) !== 1) throw new PackCorruptError('pack has an unknown version');
  const offset = Number(t.readBigUInt64LE(4));
  const length = t.readUInt32LE(12);
  if (offset + length + TRAILER_BYTES > packLength) throw new PackCorruptError('pack header lies outside the pack');
  return { offset, length };
}

/**
 * Reads either trailer from the last OWNER_TRAILER_BYTES (or fewer) of a
 * pack: a normal one under metaKey, else a write-only one under wrapKey
 * (then `ephPub` names the keys of the header and blobs).
 */
export function decodeAnyPackTrailer(
  keys: { metaKey: Uint8Array; wrapKey: Uint8Array } | readonly { metaKey: Uint8Array; wrapKey: Uint8Array }[],
  tail: Uint8Array,
  packLength: number,
): { offset: number; length: number; ephPub?: Buffer; epoch: number } {
  // Several key epochs (after key rotations): newest first; `epoch` says which one opened it.
  if (Array.isArray(keys)) {
    let first: unknown;
    for (let e = keys.length - 1; e >= 0; e--) {
      try {
        return { ...decodeAnyPackTrailer(keys[e], tail, packLength), epoch: e };
      } catch (err) {
        first ??= err;
      }
    }
    throw first;
  }
  return { ...decodeOneEpochTrailer(keys as { metaKey: Uint8Array; wrapKey: Uint8Array }, tail, packLength), epoch: 0 };
}

function decodeOneEpochTrailer(keys: { metaKey: Uint8Array; wrapKey: Uint8Array }, tail: Uint8Array, packLength: number): { offset: number; length: number; ephPub?: Buffer } {
  if (tail.length < TRAILER_BYTES) throw new PackCorruptError('pack is truncated');
  try {
    return decodePackTrailer(keys.metaKey, tail.subarray(tail.length - TRAILER_BYTES), packLength);
  } catch (e) {
    if (!(e instanceof PackCorruptError) || tail.length < OWNER_TRAILER_BYTES) throw e;
  }
  let t: Buffer;
  try {
    t = open(keys.wrapKey, tail.subarray(tail.length - OWNER_TRAILER_BYTES), OWNER_TRAILER_AAD);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new PackCorruptError('pack trailer does not authenticate');
    throw e;
  }
  if (t.readUInt32LE(0) !== 2) throw new PackCorruptError('pack has an unknown version');
  const offset = Number(t.readBigUInt64LE(4));
  const length = t.readUInt32LE(12);
  if (offset + length + OWNER_TRAILER_BYTES > packLength) throw new PackCorruptError('pack header lies outside the pack');
  return { offset, length, ephPub: Buffer.from(t.subarray(16, 48)) };
}

export function decodePackHeader(metaKey: Uint8Array, header: Uint8Array, headerOffset: number): PackEntry[] {
  let plain: Buffer;
  try {
    plain = open(metaKey, header, HEADER_AAD);
  } catch (e) {
    if (e instanceof AuthenticationError) throw new PackCorruptError('pack header does not authenticate');
    throw e;
  }
  if (plain.length < 4) throw new PackCorruptError('pack header is too short');
  const count = plain.readUInt32LE(0);
  if (plain.length !== 4 + count * ENTRY_BYTES) throw new PackCorruptError('pack header has a bad length');
  const entries: PackEntry[] = [];
  let offset = 0;
  for (let i = 0, pos = 4; i < count; i++, pos += ENTRY_BYTES) {
    const length = plain.readUInt32LE(pos + 33);
    entries.push({
      type: blobTypeFromCode(plain[pos]),
      id: plain.toString('hex', pos + 1, pos + 33),
      offset,
      length,
      rawLength: plain.readUInt32LE(pos + 37),
    });
    offset += length;
  }
  if (offset !== headerOffset) throw new PackCorruptError('pack header does not match the blobs');
  return entries;
}
