/**
 * The key hierarchy. One random 32-byte master secret per repository; every
 * working key is derived from it with BLAKE3's derive_key mode and a distinct
 * context string, so no two purposes ever share a key.
 */
import { randomBytes } from 'node:crypto';
import { deriveKey, forgetKey, keyedHash } from './hash.js';
import { ownerSecretFrom, wrapKeyFrom, x25519Public } from './owner.js';

export const MASTER_BYTES = 32;

export const CONTEXTS = {
  blobId: 'coffer 2026-11 blob id v1',
  chunker: 'coffer 2026-11 chunker gear table v1',
  blobEncryption: 'coffer 2026-11 blob encryption v1',
  metadataEncryption: 'coffer 2026-11 metadata encryption v1',
  idList: 'coffer 2026-11 index id list v1',
  lock: 'coffer 2026-11 lock v1',
} as const;

export interface RepoKeys {
  /** Keyed-BLAKE3 key for blob ids (never an unkeyed hash of user data). */
  readonly blobIdKey: Buffer;
  /** 1024 bytes that become the per-repository FastCDC gear table. */
  readonly gearBytes: Buffer;
  /** Seals blobs (file contents and trees) in packs. */
  readonly blobKey: Buffer;
  /** Seals config, key metadata, pack headers, index and snapshot files. */
  readonly metaKey: Buffer;
  /** Seals the outer layer of index files (the blob-id lists write-only keys read). */
  readonly idListKey: Buffer;
  /** Seals lock files (write-only keys hold it too). */
  readonly lockKey: Buffer;
  /** X25519 secret of the owner key pair (empty for a write-only key). */
  readonly ownerSecret: Buffer;
  readonly ownerPub: Buffer;
  /** Seals the ephemeral public keys of objects written with a write-only key: KDF(wrap, ownerPub). */
  readonly wrapKey: Buffer;
}

/** True when the keys can read the repository (not a write-only key's subset). */
export function canRead(k: RepoKeys): boolean {
  return k.metaKey.length === 32 && k.blobKey.length === 32;
}

export function newMasterSecret(): Buffer {
  return randomBytes(MASTER_BYTES);
}

/** 256 × u32 gear table bytes: BLAKE3-keyed(chunkerKey, u32le(i)) for i = 0..31, concatenated. */
export function gearBytesFrom(chunkerKey: Uint8Array): Buffer {
  const out = Buffer.alloc(1024);
  const counter = Buffer.alloc(4);
  for (let i = 0; i < 32; i++) {
    counter.writeUInt32LE(i, 0);
    keyedHash(chunkerKey, counter).copy(out, i * 32);
  }
  forgetKey(chunkerKey);
  return out;
}

export function deriveRepoKeys(master: Uint8Array): RepoKeys {
  if (master.length !== MASTER_BYTES) throw new RangeError('master secret must be 32 bytes');
  const chunkerKey = deriveKey(CONTEXTS.chunker, master);
  const ownerSecret = ownerSecretFrom(master);
  const ownerPub = x25519Public(ownerSecret);
  const keys: RepoKeys = {
    blobIdKey: deriveKey(CONTEXTS.blobId, master),
    gearBytes: gearBytesFrom(chunkerKey),
    blobKey: deriveKey(CONTEXTS.blobEncryption, master),
    metaKey: deriveKey(CONTEXTS.metadataEncryption, master),
    idListKey: deriveKey(CONTEXTS.idList, master),
    lockKey: deriveKey(CONTEXTS.lock, master),
    ownerSecret,
    ownerPub,
    wrapKey: wrapKeyFrom(ownerPub),
  };
  chunkerKey.fill(0);
  return keys;
}

/** The chunker key (what the gear table is made from): given to write-only slots. */
export function chunkerKeyFrom(master: Uint8Array): Buffer {
  return deriveKey(CONTEXTS.chunker, master);
}

/** What a write-only slot holds, as working keys: no blobKey, metaKey or owner secret (empty buffers, so any use fails). */
export function writeOnlyRepoKeys(w: { blobIdKey: Buffer; chunkerKey: Buffer; idListKey: Buffer; lockKey: Buffer; ownerPub: Buffer }): RepoKeys {
  return {
    blobIdKey: w.blobIdKey,
    gearBytes: gearBytesFrom(Buffer.from(w.chunkerKey)),
    blobKey: Buffer.alloc(0),
    metaKey: Buffer.alloc(0),
    idListKey: w.idListKey,
    lockKey: w.lockKey,
    ownerSecret: Buffer.alloc(0),
    ownerPub: w.ownerPub,
    wrapKey: wrapKeyFrom(w.ownerPub),
  };
}

/** Overwrites key material in place (best effort: JS may have copied it). */
export function wipeRepoKeys(k: RepoKeys): void {
  for (const key of [k.blobIdKey, k.gearBytes, k.blobKey, k.metaKey, k.idListKey, k.lockKey, k.ownerSecret, k.wrapKey]) {
    forgetKey(key);
    key.fill(0);
  }
}
