/**
 * Index files: the one place that seals a pack list and stores it, and that
 * reads one back. Version 2 (written by every current client) has two layers:
 *
 *   stored = small file (kind "idlist") under idListKey with body
 *            u32 2 ‖ u32 n ‖ n × (u8 type ‖ id[32]) ‖ u8 innerKind ‖ inner
 *   inner  = seal(metaKey, index body v2, "coffer-index-v2")                 (innerKind 0, full keys)
 *          = ephPub[32] ‖ seal(metaKey(K), index body v2, "coffer-index-v2")   (innerKind 1, write-only keys)
 *
 * The outer layer (blob ids only) is what a write-only key reads to
 * deduplicate; offsets, lengths and packs are only in the inner layer.
 * Version 1 files (sealed under metaKey, kind "index") are still read.
 */
import { open, seal, AuthenticationError } from '../crypto/aead.js';
import { openFromOwner, sealToOwner, wipeSealedKeys } from '../crypto/owner.js';
import { decodeFile, encodeFile, FileCorruptError } from '../format/file.js';
import { decodeIndex, encodeIndex, IndexCorruptError, type IndexedPack } from '../format/index-file.js';
import { BLOB_TYPE_CODE, blobTypeFromCode, type BlobType } from '../ids.js';
import { allEpochs, type RepoKeys } from '../crypto/keys.js';
import { plainHash } from '../crypto/hash.js';
import { StorageError, type Backend } from '../storage/backend.js';

const INNER_AAD = Buffer.from('coffer-index-v2');

/** Seals an index file for `packs`: under metaKey with full keys, to the owner (fresh ephemeral key) with a write-only key. */
export function encodeIndexFile(keys: RepoKeys, packs: IndexedPack[]): Buffer {
  const body = encodeIndex(packs, 2);
  let inner: Buffer[];
  if (keys.metaKey.length === 32) inner = [Buffer.from([0]), seal(keys.metaKey, body, INNER_AAD)];
  else {
    const { ephPub, keys: k } = sealToOwner(keys.ownerPub);
    inner = [Buffer.from([1]), ephPub, seal(k.metaKey, body, INNER_AAD)];
    wipeSealedKeys(k);
  }
  let n = 0;
  for (const p of packs) n += p.blobs.length;
  const ids = Buffer.allocUnsafe(8 + n * 33);
  ids.writeUInt32LE(2, 0);
  ids.writeUInt32LE(n, 4);
  let pos = 8;
  for (const p of packs) {
    for (const b of p.blobs) {
      ids[pos] = BLOB_TYPE_CODE[b.type];
      ids.write(b.id, pos + 1, 32, 'hex');
      pos += 33;
    }
  }
  return encodeFile(keys.idListKey, 'idlist', Buffer.concat([ids, ...inner]));
}

interface Outer {
  ids: { type: BlobType; id: string }[];
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
  if (8 + n * 33 + 1 > body.length) throw new IndexCorruptError('index id list is truncated');
  const ids: Outer['ids'] = [];
  for (let i = 0, pos = 8; i < n; i++, pos += 33) ids.push({ type: blobTypeFromCode(body[pos]), id: body.toString('hex', pos + 1, pos + 33) });
  const at = 8 + n * 33;
  return { ids, innerKind: body[at], inner: body.subarray(at + 1) };
}

/**
 * The blob ids an index file lists, as a write-only key sees them; undefined
 * for a version 1 file (sealed under metaKey, which a write-only key lacks).
 */
export function readIndexIds(idListKey: Buffer, stored: Buffer): { type: BlobType; id: string }[] | undefined {
  return decodeOuter(idListKey, stored)?.ids;
}

/** The key epoch of an index file (version 2), or undefined for version 1 or a file no epoch's key opens. */
export function indexFileEpoch(keys: RepoKeys, stored: Buffer): number | undefined {
  const epochs = allEpochs(keys);
  for (let e = epochs.length - 1; e >= 0; e--) if (decodeOuter(epochs[e].idListKey, stored)) return e;
  return undefined;
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
  let body: Buffer;
  try {
    if (outer.innerKind === 0) body = open(keys.metaKey, outer.inner, INNER_AAD);
    else if (outer.innerKind === 1 && outer.inner.length >= 32) {
      const k = openFromOwner(keys.ownerSecret, keys.ownerPub, outer.inner.subarray(0, 32));
      try {
        body = open(k.metaKey, outer.inner.subarray(32), INNER_AAD);
      } finally {
        wipeSealedKeys(k);
      }
    } else throw new IndexCorruptError('index has an unknown inner kind');
  } catch (e) {
    if (e instanceof AuthenticationError || e instanceof RangeError) throw new IndexCorruptError('index does not authenticate');
    throw e;
  }
  const packs = decodeIndex(body);
  // The id list and the packs must agree: a full reader checks what write-only readers trust.
  let i = 0;
  for (const p of packs) {
    for (const b of p.blobs) {
      const o = outer.ids[i++];
      if (!o || o.id !== b.id || o.type !== b.type) throw new IndexCorruptError('index id list does not match its packs');
    }
  }
  if (i !== outer.ids.length) throw new IndexCorruptError('index id list does not match its packs');
  return packs;
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
