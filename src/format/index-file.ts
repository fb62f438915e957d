/**
 * Index files list, for each pack, the blobs it holds. Body (before the file
 * encoding of file.ts):
 *
 *   u32le version=1 || u32le packCount || packCount × pack
 *   pack  = packId[32] || u64le packLength || u32le blobCount || blobCount × blob
 *   blob  = u8 type || id[32] || u32le offset || u32le storedLength || u32le rawLength
 */
import { BLOB_TYPE_CODE, blobTypeFromCode, type PackId } from '../ids.js';
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

/**
 * Version 1 (legacy, read only in practice) or version 2, which adds per pack
 * `u8 refLength (0 or 32) ‖ ref` between packLength and blobCount.
 */
export function encodeIndex(packs: IndexedPack[], version: 1 | 2 = 1): Buffer {
  let size = 8;
  for (const p of packs) size += 44 + p.blobs.length * BLOB_BYTES + (version === 2 ? 1 + (p.ref?.length ?? 0) : 0);
  const b = Buffer.allocUnsafe(size);
  b.writeUInt32LE(version, 0);
  b.writeUInt32LE(packs.length, 4);
  let pos = 8;
  for (const p of packs) {
    b.write(p.id, pos, 32, 'hex');
    b.writeBigUInt64LE(BigInt(p.length), pos + 32);
    if (version === 2) {
      const ref = p.ref ?? Buffer.alloc(0);
      if (![0, 1, 32, 33].includes(ref.length)) throw new RangeError('pack key reference must be 0, 1, 32 or 33 bytes');
      b[pos + 40] = ref.length;
      ref.copy(b, pos + 41);
      pos += 1 + ref.length;
    } else if (p.ref?.length) throw new RangeError('a version 1 index cannot name pack keys');
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
  const version = b.readUInt32LE(0);
  if (version !== 1 && version !== 2) throw new IndexCorruptError('index has an unknown version');
  const count = b.readUInt32LE(4);
  const packs: IndexedPack[] = [];
  let pos = 8;
  for (let i = 0; i < count; i++) {
    need(44, pos);
    const id = b.toString('hex', pos, pos + 32) as PackId;
    const length = Number(b.readBigUInt64LE(pos + 32));
    let ref: Buffer | undefined;
    if (version === 2) {
      const r = b[pos + 40];
      if (r !== 0 && r !== 1 && r !== 32 && r !== 33) throw new IndexCorruptError('index has a bad pack key reference');
      need(45 + r, pos);
      if (r) ref = Buffer.from(b.subarray(pos + 41, pos + 41 + r));
      pos += 1 + r;
    }
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
    packs.push(ref ? { id, length, blobs, ref } : { id, length, blobs });
  }
  if (pos !== b.length) throw new IndexCorruptError('index has trailing bytes');
  return packs;
}
