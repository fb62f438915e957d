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
  /** Key epoch these keys write in: 0 until the first `key rotate`. */
  readonly epoch: number;
  /** The keys of earlier epochs (index = epoch), for reading what they wrote. Empty for a write-only key. */
  readonly past: readonly EpochKeys[];
}

/** The keys that change with each master-key rotation (blob ids and the gear table never do). */
export type EpochKeys = Pick<RepoKeys, 'blobKey' | 'metaKey' | 'idListKey' | 'lockKey' | 'ownerSecret' | 'ownerPub' | 'wrapKey'>;

/** Every epoch's keys, oldest first (the current ones last). */
export function allEpochs(k: RepoKeys): EpochKeys[] {
  return [...k.past, k];
}

/** The keys of epoch `e`, or undefined when there is no such epoch. */
export function epochKeys(k: RepoKeys, e: number): EpochKeys | undefined {
  return e === k.epoch ? k : k.past[e];
}

function deriveEpoch(master: Uint8Array): EpochKeys {
  const ownerSecret = ownerSecretFrom(master);
  const ownerPub = x25519Public(ownerSecret);
  return {
    blobKey: deriveKey(CONTEXTS.blobEncryption, master),
    metaKey: deriveKey(CONTEXTS.metadataEncryption, master),
    idListKey: deriveKey(CONTEXTS.idList, master),
    lockKey: deriveKey(CONTEXTS.lock, master),
    ownerSecret,
    ownerPub,
    wrapKey: wrapKeyFrom(ownerPub),
  };
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

/**
 * Working keys from the master secret, or from a key chain `[M_0, …, M_n]`
 * after rotations: blob ids and the gear table come from M_0 (so
 * deduplication spans every epoch), everything else from M_n; the keys of
 * M_0 … M_{n-1} are kept for reading older objects.
 */
export function deriveRepoKeys(master: Uint8Array | readonly Uint8Array[]): RepoKeys {
  const chain = master instanceof Uint8Array ? [master] : master;
  if (chain.length === 0 || chain.some((m) => m.length !== MASTER_BYTES)) throw new RangeError('master secret must be 32 bytes');
  const first = chain[0];
  const chunkerKey = deriveKey(CONTEXTS.chunker, first);
  const keys: RepoKeys = {
    blobIdKey: deriveKey(CONTEXTS.blobId, first),
    gearBytes: gearBytesFrom(chunkerKey),
    ...deriveEpoch(chain[chain.length - 1]),
    epoch: chain.length - 1,
    past: chain.slice(0, -1).map(deriveEpoch),
  };
  chunkerKey.fill(0);
  return keys;
}

/** The chunker key (what the gear table is made from): given to write-only slots. */
export function chunkerKeyFrom(master: Uint8Array): Buffer {
  return deriveKey(CONTEXTS.chunker, master);
}

/** What a write-only slot holds, as working keys: no blobKey, metaKey or owner secret (empty buffers, so any use fails). */
export function writeOnlyRepoKeys(w: { blobIdKey: Buffer; chunkerKey: Buffer; idListKey: Buffer; lockKey: Buffer; ownerPub: Buffer; epoch?: number }): RepoKeys {
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
    epoch: w.epoch ?? 0,
    past: [],
  };
}

/** Overwrites key material in place (best effort: JS may have copied it). */
export function wipeRepoKeys(k: RepoKeys): void {
  for (const e of allEpochs(k)) {
    for (const key of [e.blobKey, e.metaKey, e.idListKey, e.lockKey, e.ownerSecret, e.wrapKey]) {
      forgetKey(key);
      key.fill(0);
    }
  }
  for (const key of [k.blobIdKey, k.gearBytes]) {
    forgetKey(key);
    key.fill(0);
  }
}
