/**
 * Key files (`keys/<id>`): plaintext JSON holding the KDF parameters and two
 * sealed fields. Nothing in plaintext names a host or user.
 *
 *   kek     = Argon2id(passphrase, kdf)                 (passphrase slots)
 *           = KDF("coffer 2026-11 recovery key v1", entropy ‖ salt)   (recovery slots)
 *   wrapped = seal(kek, master, aad = "coffer-key-v1" || canonical JSON of kdf)
 *   meta    = file-encoded JSON {label, created, kind} under the metadata key
 */
import { open, seal, AuthenticationError } from '../crypto/aead.js';
import type { KdfParams } from '../crypto/kdf.js';
import { decodeJsonFile, encodeJsonFile } from './file.js';

export interface KeyMeta {
  label: string;
  created: string;
  kind: 'passphrase' | 'recovery' | 'write-only';
}

/** 4 GiB: more than any sane key, less than a denial of service. */
const MAX_MEMORY_KIB = 4 * 1024 * 1024;
const MAX_ITERATIONS = 1000;

/** The "kdf" of a recovery slot: the code's entropy is the key material. */
export interface RecoveryKdf {
  algorithm: 'recovery-v1';
  /** Base64 salt, 16 bytes. */
  salt: string;
}

export type KeyKdf = KdfParams | RecoveryKdf;

export function isRecoveryKdf(k: KeyKdf): k is RecoveryKdf {
  return k.algorithm === 'recovery-v1';
}

export interface KeyFileJson {
  coffer_key: 1;
  kdf: KeyKdf;
  wrapped: string;
  meta: string;
}

function kdfAad(kdf: KeyKdf): Buffer {
  const canon = isRecoveryKdf(kdf)
    ? JSON.stringify({ algorithm: kdf.algorithm, salt: kdf.salt })
    : JSON.stringify({ algorithm: kdf.algorithm, memoryKiB: kdf.memoryKiB, iterations: kdf.iterations, parallelism: kdf.parallelism, salt: kdf.salt });
  return Buffer.concat([Buffer.from('coffer-key-v1'), Buffer.from(canon)]);
}

/** Associated data of a write-only slot's wrapped bundle (so a bundle can never be taken for a master secret). */
function writeOnlyAad(kdf: KeyKdf): Buffer {
  return Buffer.concat([Buffer.from('coffer-key-wo-v1'), kdfAad(kdf).subarray('coffer-key-v1'.length)]);
}

/** Associated data of a slot that wraps a key chain M_0 ‖ … ‖ M_n (after key rotations). */
function chainAad(kdf: KeyKdf): Buffer {
  return Buffer.concat([Buffer.from('coffer-key-chain-v1'), kdfAad(kdf).subarray('coffer-key-v1'.length)]);
}

/** What a slot wraps: the master secret (M_0), a key chain (after rotations), or a write-only bundle. */
export type SlotPayload = 'master' | 'chain' | 'write-only';

/** `payload` says what `master` holds: the master secret, the chain M_0 ‖ … ‖ M_n, or a write-only bundle (FORMAT.md §6.3, §6.4). */
export function encodeKeyFile(kek: Uint8Array, kdf: KeyKdf, master: Uint8Array, metaKey: Uint8Array, meta: KeyMeta, payload: SlotPayload = 'master'): Buffer {
  const aad = payload === 'write-only' ? writeOnlyAad(kdf) : payload === 'chain' ? chainAad(kdf) : kdfAad(kdf);
  const k: KeyFileJson = {
    coffer_key: 1,
    kdf,
    wrapped: seal(kek, master, aad).toString('base64'),
    meta: encodeJsonFile(metaKey, 'keymeta', meta).toString('base64'),
  };
  return Buffer.from(JSON.stringify(k));
}

export class KeyFileError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'KeyFileError';
  }
}

export function parseKeyFile(stored: Buffer): KeyFileJson {
  let k: KeyFileJson;
  try {
    k = JSON.parse(stored.toString('utf8')) as KeyFileJson;
  } catch {
    throw new KeyFileError('key file is not valid JSON');
  }
  const d = k?.kdf;
  if (
    k?.coffer_key === 1 &&
    d?.algorithm === 'recovery-v1' &&
    typeof d.salt === 'string' &&
    typeof k.wrapped === 'string' &&
    typeof k.meta === 'string'
  ) {
    return k;
  }
  if (
    k?.coffer_key !== 1 ||
    !d ||
    d.algorithm !== 'argon2id' ||
    // Bounds keep a planted key file from forcing a huge allocation or a
    // near-endless derivation when the repository is opened.
    !(Number.isSafeInteger(d.memoryKiB) && d.memoryKiB >= 8 && d.memoryKiB <= MAX_MEMORY_KIB) ||
    !(Number.isSafeInteger(d.iterations) && d.iterations >= 1 && d.iterations <= MAX_ITERATIONS) ||
    !(Number.isSafeInteger(d.parallelism) && d.parallelism >= 1 && d.parallelism <= 16) ||
    typeof d.salt !== 'string' ||
    typeof k.wrapped !== 'string' ||
    typeof k.meta !== 'string'
  ) {
    throw new KeyFileError('key file has unsupported contents');
  }
  return k;
}

/** Returns the master secret, or undefined when the kek is wrong. */
export function unwrapMaster(kek: Uint8Array, k: KeyFileJson): Buffer | undefined {
  try {
    return open(kek, Buffer.from(k.wrapped, 'base64'), kdfAad(k.kdf));
  } catch (e) {
    if (e instanceof AuthenticationError) return undefined;
    throw e;
  }
}

/** What a slot wraps: the master secret, or (write-only slots) a bundle; undefined when the kek is wrong. */
export function unwrapSlot(kek: Uint8Array, k: KeyFileJson): { master: Buffer; older?: Buffer[] } | { bundle: Buffer } | undefined {
  const master = unwrapMaster(kek, k);
  if (master) return { master };
  const wrapped = Buffer.from(k.wrapped, 'base64');
  try {
    const chain = open(kek, wrapped, chainAad(k.kdf));
    if (chain.length < 64 || chain.length % 32 !== 0) throw new AuthenticationError();
    const all: Buffer[] = [];
    for (let i = 0; i < chain.length; i += 32) all.push(Buffer.from(chain.subarray(i, i + 32)));
    chain.fill(0);
    return { master: all.pop()!, older: all };
  } catch (e) {
    if (!(e instanceof AuthenticationError)) throw e;
  }
  try {
    return { bundle: open(kek, wrapped, writeOnlyAad(k.kdf)) };
  } catch (e) {
    if (e instanceof AuthenticationError) return undefined;
    throw e;
  }
}

export function decodeKeyMeta(metaKey: Uint8Array, k: KeyFileJson): KeyMeta {
  return decodeJsonFile(metaKey, 'keymeta', Buffer.from(k.meta, 'base64')) as KeyMeta;
}
