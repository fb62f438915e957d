/**
 * Index files: the one place that seals a pack list and stores it, and that
 * reads one back. Version 2 (written by every current client) has two layers
 * (FORMAT.md §10):
 *
 *   stored = small file (kind "idlist") under idListKey with body  ids ‖ u8 innerKind ‖ inner
 *   ids    = u32 2 ‖ u32 n ‖ n × (u8 type ‖ id[32])
 *   inner  = seal(metaKey, z, "coffer-index-v2" ‖ H(ids))                  (innerKind 0, full keys)
 *          = ephPub[32] ‖ seal(metaKey(K), z, "coffer-index-v2" ‖ H(ids))  (innerKind 1, write-only keys)
 *   z      = u8 0 ‖ body  or  u8 1 ‖ zstd frame of body (when smaller)
 *
 * The outer layer (blob ids only) is what a write-only key reads to
 * deduplicate; packs, offsets and lengths are only in the inner layer, which
 * takes each blob's type and id from the outer list (bound by H(ids)).
 * Version 1 files (sealed under metaKey, kind "index") are still read.
 */
import { open, seal, AuthenticationError } from '../crypto/aead.js';
import { openFromOwner, sealToOwner, wipeSealedKeys } from '../crypto/owner.js';
import { compressIfSmaller, decompressExact, frameContentSize } from '../compress.js';
import { decodeFile, encodeFile, FileCorruptError } from '../format/file.js';
import { decodeIndex, decodeIndexIds, decodeIndexV2, encodeIndexV2, IndexCorruptError, type IndexedPack } from '../format/index-file.js';
import type { BlobType } from '../ids.js';
import { allEpochs, type RepoKeys } from '../crypto/keys.js';
import { plainHash } from '../crypto/hash.js';
import { StorageError, type Backend } from '../storage/backend.js';
import { integrityError } from '../errors.js';
import { storageFailure } from './repository.js';

const INNER_AAD = Buffer.from('coffer-index-v2');
const MAX_BODY = 1 << 30;

function innerAad(ids: Buffer): Buffer {
  return Buffer.concat([INNER_AAD, plainHash(ids)]);
}

/** Seals an index file for `packs`: under metaKey with full keys, to the owner (fresh ephemeral key) with a write-only key. */
export function encodeIndexFile(keys: RepoKeys, packs: IndexedPack[]): Buffer {
  const { ids, body } = encodeIndexV2(packs);
  const zstd = compressIfSmaller(body, 3);
  const z = zstd ? [Buffer.from([1]), zstd] : [Buffer.from([0]), body];
  let inner: Buffer[];
  if (keys.metaKey.length === 32) inner = [Buffer.from([0]), seal(keys.metaKey, z, innerAad(ids))];
  else {
    const { ephPub, keys: k } = sealToOwner(keys.ownerPub);
    inner = [Buffer.from([1]), ephPub, seal(k.metaKey, z, innerAad(ids))];
    wipeSealedKeys(k);
  }
  return encodeFile(keys.idListKey, 'idlist', Buffer.concat([ids, ...inner]));
}

interface Outer {
  ids: Buffer;
  innerKind: number;
  inner: Buffer;
}

function decodeOuter(idListKey: Buffer, stored: Buffer): Outer | undefined {
  let body: Buffer;
  try {
    body = decodeFile(idListKey, 'idlist', stored);
  } catch (e) {
    if (e instanceof FileCorruptError && e.message.endsWith('does not authenticate')) return undefined;
    throw new IndexCorruptError((e as Error).message);
  }
  if (body.length < 9 || body.readUInt32LE(0) !== 2) throw new IndexCorruptError('index id list has an unknown version');
  const n = body.readUInt32LE(4);
  const at = 8 + n * 33;
  if (at + 1 > body.length) throw new IndexCorruptError('index id list is truncated');
  return { ids: body.subarray(0, at), innerKind: body[at], inner: body.subarray(at + 1) };
}

/**
 * The blob ids an index file lists, as a write-only key sees them; undefined
 * for a version 1 file (sealed under metaKey, which a write-only key lacks)
 * or one of another key epoch.
 */
export function readIndexIds(idListKey: Buffer, stored: Buffer): { type: BlobType; id: string }[] | undefined {
  const outer = decodeOuter(idListKey, stored);
  return outer && decodeIndexIds(outer.ids);
}

/** The key epoch of an index file (version 2), or undefined for version 1 or a file no epoch's key opens. */
export function indexFileEpoch(keys: RepoKeys, stored: Buffer): number | undefined {
  const epochs = allEpochs(keys);
  for (let e = epochs.length - 1; e >= 0; e--) if (decodeOuter(epochs[e].idListKey, stored)) return e;
  return undefined;
}

function unframe(z: Buffer): Buffer {
  if (z.length < 1) throw new IndexCorruptError('index is truncated');
  if (z[0] === 0) return z.subarray(1);
  if (z[0] !== 1) throw new IndexCorruptError('index has an unknown encoding');
  const size = frameContentSize(z.subarray(1));
  if (size === null || size > MAX_BODY) throw new IndexCorruptError('index has a bad compressed body');
  try {
    return decompressExact(z.subarray(1), size);
  } catch {
    throw new IndexCorruptError('index does not decompress');
  }
}

/** The packs an index file lists (either version, either writer, any key epoch). Throws IndexCorruptError or FileCorruptError when damaged. */
export function decodeIndexFile(allKeys: RepoKeys, stored: Buffer): IndexedPack[] {
  const epochs = allEpochs(allKeys);
  let outer: Outer | undefined;
  let keys = epochs[epochs.length - 1];
  for (let e = epochs.length - 1; e >= 0 && !outer; e--) {
    outer = decodeOuter(epochs[e].idListKey, stored);
    keys = epochs[e];
  }
  // Version 1 files predate key rotation: always epoch 0.
  if (!outer) return decodeIndex(decodeFile(epochs[0].metaKey, 'index', stored));
  let z: Buffer;
  try {
    if (outer.innerKind === 0) z = open(keys.metaKey, outer.inner, innerAad(outer.ids));
    else if (outer.innerKind === 1 && outer.inner.length >= 32) {
      const k = openFromOwner(keys.ownerSecret, keys.ownerPub, outer.inner.subarray(0, 32));
      try {
        z = open(k.metaKey, outer.inner.subarray(32), innerAad(outer.ids));
      } finally {
        wipeSealedKeys(k);
      }
    } else throw new IndexCorruptError('index has an unknown inner kind');
  } catch (e) {
    if (e instanceof AuthenticationError || e instanceof RangeError) throw new IndexCorruptError('index does not authenticate');
    throw e;
  }
  return decodeIndexV2(outer.ids, unframe(z));
}

/**
 * Rewrites index files of version 1 or of an older key epoch in the current
 * one: new files first, then the old ones removed (as prune does), so a crash
 * leaves both generations, each complete. Returns how many were replaced.
 * The caller holds an exclusive lock.
 */
export async function rewriteIndexFiles(backend: Backend, keys: RepoKeys): Promise<number> {
  const names = (await backend.list('index')).map((f) => f.name).filter((n) => /^[0-9a-f]{64}$/.test(n));
  const old: string[] = [];
  let packs: IndexedPack[] = [];
  let blobs = 0;
  for (const name of names) {
    const stored = await backend.read({ type: 'index', name });
    if (plainHash(stored).toString('hex') !== name) throw integrityError(`index/${name} does not match its name (damaged or truncated)`, { file: `index/${name}` });
    if (indexFileEpoch(keys, stored) === keys.epoch) continue;
    let listed: IndexedPack[];
    try {
      listed = decodeIndexFile(keys, stored);
    } catch {
      throw integrityError(`index/${name} is damaged`, { file: `index/${name}` });
    }
    packs.push(...listed);
    for (const p of listed) blobs += p.blobs.length;
    old.push(name);
    if (blobs >= BLOBS_PER_INDEX_FILE) {
      await writeIndexFile(backend, keys, packs);
      packs = [];
      blobs = 0;
    }
  }
  if (packs.length) await writeIndexFile(backend, keys, packs);
  for (const name of old) {
    try {
      await backend.remove({ type: 'index', name });
    } catch (e) {
      if (!(e instanceof StorageError && e.kind === 'notFound')) throw e;
    }
  }
  return old.length;
}

/**
 * Seals an index file listing `packs`, stores it under the hash of its
 * bytes, and returns that name. `exists` counts as done: a name is the hash
 * of the stored bytes, so an object already there holds the same file (a
 * write whose answer was lost).
 */
export async function writeIndexFile(backend: Backend, keys: RepoKeys, packs: IndexedPack[]): Promise<string> {
  const stored = encodeIndexFile(keys, packs);
  const name = plainHash(stored).toString('hex');
  try {
    await backend.write({ type: 'index', name }, stored);
  } catch (e) {
    if (!(e instanceof StorageError && e.kind === 'exists')) throw e;
  }
  return name;
}

/** Blobs per index file written by an IndexBatcher (about 2.5 MB of index file). */
export const BLOBS_PER_INDEX_FILE = 50_000;

/**
 * Lists packs that are already stored in index files of about `maxBlobs`
 * blobs each, for the commands that re-index many packs at once (prune's
 * kept packs, "repair index"). A file is written once the packs added since
 * the last one hold `maxBlobs` blobs, and by flush(). Storage failures come
 * out as CofferErrors (see storageFailure).
 */
export class IndexBatcher {
  private batch: IndexedPack[] = [];
  private blobs = 0;
  /** Names of the index files written so far, in order. */
  readonly written: string[] = [];

  constructor(
    private readonly backend: Backend,
    private readonly keys: RepoKeys,
    private readonly maxBlobs = BLOBS_PER_INDEX_FILE,
  ) {}

  async add(pack: IndexedPack): Promise<void> {
    this.batch.push(pack);
    this.blobs += pack.blobs.length;
    if (this.blobs >= this.maxBlobs) await this.flush();
  }

  /** Writes the packs added since the last index file, if any. */
  async flush(): Promise<void> {
    if (!this.batch.length) return;
    try {
      this.written.push(await writeIndexFile(this.backend, this.keys, this.batch));
    } catch (e) {
      throw storageFailure(e);
    }
    this.batch = [];
    this.blobs = 0;
  }
}
