/**
 * Index files list, for each pack, the blobs it holds. Body (before the file
 * encoding of file.ts):
 *
 *   u32le version=1 || u32le packCount || packCount × pack
 *   pack  = packId[32] || u64le packLength || u32le blobCount || blobCount × blob
 *   blob  = u8 type || id[32] || u32le offset || u32le storedLength || u32le rawLength
 */
import { BLOB_TYPE_CODE, blobTypeFromCode, type BlobType, type PackId } from '../ids.js';
import type { PackEntry } from './pack.js';

export interface IndexedPack {
  id: PackId;
  length: number;
  blobs: PackEntry[];
  /**
   * Which keys seal the pack (a key reference, repo/key-ref.ts): undefined
   * for the repository's own keys of epoch 0; else the epoch (1 byte) and/or
   * the 32-byte ephemeral public key of the write-only session that wrote it.
   */
  ref?: Buffer;
}

const BLOB_BYTES = 1 + 32 + 12;

export class IndexCorruptError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'IndexCorruptError';
  }
}

/** Version 1 body (written before index version 2; still read). */
export function encodeIndex(packs: IndexedPack[]): Buffer {
  let size = 8;
  for (const p of packs) size += 44 + p.blobs.length * BLOB_BYTES;
  const b = Buffer.allocUnsafe(size);
  b.writeUInt32LE(1, 0);
  b.writeUInt32LE(packs.length, 4);
  let pos = 8;
  for (const p of packs) {
    if (p.ref?.length) throw new RangeError('a version 1 index cannot name pack keys');
    b.write(p.id, pos, 32, 'hex');
    b.writeBigUInt64LE(BigInt(p.length), pos + 32);
    b.writeUInt32LE(p.blobs.length, pos + 40);
    pos += 44;
    for (const e of p.blobs) {
      b[pos] = BLOB_TYPE_CODE[e.type];
      b.write(e.id, pos + 1, 32, 'hex');
      b.writeUInt32LE(e.offset, pos + 33);
      b.writeUInt32LE(e.length, pos + 37);
      b.writeUInt32LE(e.rawLength, pos + 41);
      pos += BLOB_BYTES;
    }
  }
  return b;
}

/**
 * Version 2, in two parts (FORMAT.md §10): the id list (every blob's type and
 * id, in order) and the body, which names packs and, per blob, only where it
 * lies; the body's blobs take their type and id from the id list, in order.
 *
 *   ids  = u32 2 ‖ u32 n ‖ n × (u8 type ‖ id[32])
 *   body = u32 2 ‖ u32 packCount ‖ packCount × (packId[32] ‖ u64 packLength ‖ u8 r ‖ ref[r] ‖ u32 blobCount ‖
 *                                                 blobCount × (u32 offset ‖ u32 storedLength ‖ u32 rawLength))
 */
export function encodeIndexV2(packs: IndexedPack[]): { ids: Buffer; body: Buffer } {
  let n = 0;
  let size = 8;
  for (const p of packs) {
    n += p.blobs.length;
    size += 45 + (p.ref?.length ?? 0) + p.blobs.length * 12;
  }
  const ids = Buffer.allocUnsafe(8 + n * 33);
  ids.writeUInt32LE(2, 0);
  ids.writeUInt32LE(n, 4);
  const b = Buffer.allocUnsafe(size);
  b.writeUInt32LE(2, 0);
  b.writeUInt32LE(packs.length, 4);
  let pos = 8;
  let ip = 8;
  for (const p of packs) {
    const ref = p.ref ?? Buffer.alloc(0);
    if (![0, 1, 32, 33].includes(ref.length)) throw new RangeError('pack key reference must be 0, 1, 32 or 33 bytes');
    b.write(p.id, pos, 32, 'hex');
    b.writeBigUInt64LE(BigInt(p.length), pos + 32);
    b[pos + 40] = ref.length;
    ref.copy(b, pos + 41);
    pos += 41 + ref.length;
    b.writeUInt32LE(p.blobs.length, pos);
    pos += 4;
    for (const e of p.blobs) {
      ids[ip] = BLOB_TYPE_CODE[e.type];
      ids.write(e.id, ip + 1, 32, 'hex');
      ip += 33;
      b.writeUInt32LE(e.offset, pos);
      b.writeUInt32LE(e.length, pos + 4);
      b.writeUInt32LE(e.rawLength, pos + 8);
      pos += 12;
    }
  }
  return { ids, body: b };
}

/** The blob types and ids of a version 2 id list. */
export function decodeIndexIds(ids: Buffer): { type: BlobType; id: string }[] {
  if (ids.length < 8 || ids.readUInt32LE(0) !== 2) throw new IndexCorruptError('index id list has an unknown version');
  const n = ids.readUInt32LE(4);
  if (ids.length !== 8 + n * 33) throw new IndexCorruptError('index id list has a bad length');
  const out: { type: BlobType; id: string }[] = [];
  for (let i = 0, pos = 8; i < n; i++, pos += 33) out.push({ type: blobTypeFromCode(ids[pos]), id: ids.toString('hex', pos + 1, pos + 33) });
  return out;
}

/** Packs of a version 2 body, with the types and ids of `ids` (its id list). */
export function decodeIndexV2(ids: Buffer, b: Buffer): IndexedPack[] {
  try {
    const list = decodeIndexIds(ids);
    const need = (n: number, pos: number) => {
      if (pos + n > b.length) throw new IndexCorruptError('index is truncated');
    };
    need(8, 0);
    if (b.readUInt32LE(0) !== 2) throw new IndexCorruptError('index has an unknown version');
    const count = b.readUInt32LE(4);
    const packs: IndexedPack[] = [];
    let pos = 8;
    let k = 0;
    for (let i = 0; i < count; i++) {
      need(41, pos);
      const id = b.toString('hex', pos, pos + 32) as PackId;
      const length = Number(b.readBigUInt64LE(pos + 32));
      const r = b[pos + 40];
      if (r !== 0 && r !== 1 && r !== 32 && r !== 33) throw new IndexCorruptError('index has a bad pack key reference');
      need(45 + r, pos);
      const ref = r ? Buffer.from(b.subarray(pos + 41, pos + 41 + r)) : undefined;
      pos += 41 + r;
      const n = b.readUInt32LE(pos);
      pos += 4;
      need(n * 12, pos);
      if (k + n > list.length) throw new IndexCorruptError('index id list does not match its packs');
      const blobs: PackEntry[] = [];
      for (let j = 0; j < n; j++, pos += 12, k++) {
        blobs.push({ type: list[k].type, id: list[k].id, offset: b.readUInt32LE(pos), length: b.readUInt32LE(pos + 4), rawLength: b.readUInt32LE(pos + 8) });
      }
      packs.push(ref ? { id, length, blobs, ref } : { id, length, blobs });
    }
    if (pos !== b.length) throw new IndexCorruptError('index has trailing bytes');
    if (k !== list.length) throw new IndexCorruptError('index id list does not match its packs');
    return packs;
  } catch (e) {
    if (e instanceof IndexCorruptError) throw e;
    throw new IndexCorruptError(`index is malformed (${(e as Error).message})`);
  }
}

export function decodeIndex(b: Buffer): IndexedPack[] {
  try {
    return decodeIndexUnchecked(b);
  } catch (e) {
    if (e instanceof IndexCorruptError) throw e;
    throw new IndexCorruptError(`index is malformed (${(e as Error).message})`);
  }
}

function decodeIndexUnchecked(b: Buffer): IndexedPack[] {
  const need = (n: number, pos: number) => {
    if (pos + n > b.length) throw new IndexCorruptError('index is truncated');
  };
  need(8, 0);
  if (b.readUInt32LE(0) !== 1) throw new IndexCorruptError('index has an unknown version');
  const count = b.readUInt32LE(4);
  const packs: IndexedPack[] = [];
  let pos = 8;
  for (let i = 0; i < count; i++) {
    need(44, pos);
    const id = b.toString('hex', pos, pos + 32) as PackId;
    const length = Number(b.readBigUInt64LE(pos + 32));
    const n = b.readUInt32LE(pos + 40);
    pos += 44;
    need(n * BLOB_BYTES, pos);
    const blobs: PackEntry[] = [];
    for (let j = 0; j < n; j++, pos += BLOB_BYTES) {
      blobs.push({
        type: blobTypeFromCode(b[pos]),
        id: b.toString('hex', pos + 1, pos + 33),
        offset: b.readUInt32LE(pos + 33),
        length: b.readUInt32LE(pos + 37),
        rawLength: b.readUInt32LE(pos + 41),
      });
    }
    packs.push({ id, length, blobs });
  }
  if (pos !== b.length) throw new IndexCorruptError('index has trailing bytes');
  return packs;
}
