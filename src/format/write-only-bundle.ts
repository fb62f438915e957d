/**
 * What a write-only key slot wraps instead of the master secret: the owner's
 * public key, the keys to compute blob ids and cut points, read the blob-id
 * lists and take locks, a random key for its local cache, and the repository
 * parameters it needs. Never blobKey, metaKey or the master secret.
 */
import type { RepoConfig } from './config.js';

export interface WriteOnlyBundle {
  ownerPub: Buffer;
  blobIdKey: Buffer;
  chunkerKey: Buffer;
  idListKey: Buffer;
  lockKey: Buffer;
  /** Random per slot: seals and keys the write-only client's local state. */
  cacheKey: Buffer;
  config: RepoConfig;
  /** hex(H(stored config file)): the slot belongs to the repository whose config hashes to this. */
  configHash: string;
  /** Key epoch of ownerPub, idListKey and lockKey (0 until a key rotation). */
  epoch?: number;
}

const KEYS = ['ownerPub', 'blobIdKey', 'chunkerKey', 'idListKey', 'lockKey', 'cacheKey'] as const;

export function encodeBundle(b: WriteOnlyBundle): Buffer {
  const o: Record<string, unknown> = { v: 1, config: b.config, configHash: b.configHash, ...(b.epoch ? { epoch: b.epoch } : {}) };
  for (const k of KEYS) o[k] = b[k].toString('base64');
  return Buffer.from(JSON.stringify(o));
}

export function decodeBundle(bytes: Buffer): WriteOnlyBundle {
  const o = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  if (o?.v !== 1 || typeof o.configHash !== 'string' || !/^[0-9a-f]{64}$/.test(o.configHash) || typeof o.config !== 'object' || !o.config) {
    throw new RangeError('write-only key has unsupported contents');
  }
  const epoch = o.epoch ?? 0;
  if (!Number.isInteger(epoch) || (epoch as number) < 0 || (epoch as number) > 255) throw new RangeError('write-only key has unsupported contents');
  const out: Partial<WriteOnlyBundle> = { config: o.config as RepoConfig, configHash: o.configHash, epoch: epoch as number };
  for (const k of KEYS) {
    const v = typeof o[k] === 'string' ? Buffer.from(o[k] as string, 'base64') : undefined;
    if (!v || v.length !== 32) throw new RangeError('write-only key has unsupported contents');
    out[k] = v;
  }
  return out as WriteOnlyBundle;
}

export function wipeBundle(b: WriteOnlyBundle): void {
  for (const k of KEYS) b[k].fill(0);
}
