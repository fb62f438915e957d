/**
 * Branded id types: a 32-byte identifier kept as lowercase hex. The brand keeps
 * a pack id from being passed where a blob id belongs.
 */
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

/**
 * Keyed BLAKE3 of a blob's plaintext.
 * @example
 * ```ts
 * const id = node.content![0] as BlobId;
 * ```
 */
export type BlobId = Brand<string, 'BlobId'>;
/**
 * BLAKE3 of a pack file's stored bytes (its file name).
 * @example
 * ```ts
 * const packs: PackId[] = repo.cache.packs().map((p) => p.id);
 * ```
 */
export type PackId = Brand<string, 'PackId'>;
/**
 * BLAKE3 of a snapshot file's stored bytes (its file name).
 * @example
 * ```ts
 * const id: SnapshotId = snapshot.id;
 * ```
 */
export type SnapshotId = Brand<string, 'SnapshotId'>;

export const ID_BYTES = 32;
const HEX_ID = /^[0-9a-f]{64}$/;

export function isHexId(s: string): boolean {
  return HEX_ID.test(s);
}

export function blobId(bytes: Uint8Array): BlobId {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex') as BlobId;
}

export function idBytes(id: string): Buffer {
  return Buffer.from(id, 'hex');
}

export type BlobType = 'data' | 'tree';
export const BLOB_TYPE_CODE: Record<BlobType, number> = { data: 0, tree: 1 };
export function blobTypeFromCode(code: number): BlobType {
  if (code === 0) return 'data';
  if (code === 1) return 'tree';
  throw new RangeError(`unknown blob type code ${code}`);
}
