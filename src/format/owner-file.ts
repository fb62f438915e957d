/**
 * Objects written with a write-only key are sealed to the owner's X25519
 * public key. The ephemeral public key that lets the owner recover the keys
 * travels with the object inside an "ephemeral box", sealed under
 * wrapKey = KDF(wrap, ownerPub), so the stored bytes stay uniformly random
 * (an X25519 public key's top bit is always 0) and unlinkable:
 *
 *   ephBox     = seal(wrapKey, ephPub, "coffer-wo-eph-v1")              (72 bytes)
 *   small file = ephBox ‖ seal(metaKey(K), framed body, "coffer-file-v1:" ‖ kind)   (padded so the whole is Padmé)
 */
import { open, seal, AuthenticationError, SEAL_OVERHEAD } from '../crypto/aead.js';
import { openFromOwner, sealToOwner, wipeSealedKeys, type SealedKeys } from '../crypto/owner.js';
import { decodeFile, encodeFile, FileCorruptError, type FileKind } from './file.js';

export const EPH_BOX_BYTES = 32 + SEAL_OVERHEAD;
const EPH_AAD = Buffer.from('coffer-wo-eph-v1');

export function sealEphBox(wrapKey: Uint8Array, ephPub: Uint8Array): Buffer {
  return seal(wrapKey, ephPub, EPH_AAD);
}

/** The ephemeral public key in a box, or undefined when it does not open under `wrapKey`. */
export function openEphBox(wrapKey: Uint8Array, box: Uint8Array): Buffer | undefined {
  if (box.length !== EPH_BOX_BYTES || wrapKey.length !== 32) return undefined;
  try {
    return open(wrapKey, box, EPH_AAD);
  } catch (e) {
    if (e instanceof AuthenticationError) return undefined;
    throw e;
  }
}

/** Seals a small file to the owner with a fresh ephemeral key pair (forgotten afterwards). */
export function encodeFileToOwner(ownerPub: Uint8Array, wrapKey: Uint8Array, kind: FileKind, body: Uint8Array): Buffer {
  const { ephPub, keys } = sealToOwner(ownerPub);
  try {
    return Buffer.concat([sealEphBox(wrapKey, ephPub), encodeFile(keys.metaKey, kind, body, EPH_BOX_BYTES)]);
  } finally {
    wipeSealedKeys(keys);
  }
}

export interface OwnerKeys {
  ownerSecret: Uint8Array;
  ownerPub: Uint8Array;
  wrapKey: Uint8Array;
}

/** Opens a small file sealed to the owner; throws FileCorruptError when it is not one (or is damaged). */
export function decodeFileFromOwner(k: OwnerKeys, kind: FileKind, stored: Uint8Array): Buffer {
  const ephPub = openEphBox(k.wrapKey, stored.subarray(0, EPH_BOX_BYTES));
  if (!ephPub || k.ownerSecret.length !== 32) throw new FileCorruptError(kind, 'does not authenticate');
  let keys: SealedKeys;
  try {
    keys = openFromOwner(k.ownerSecret, k.ownerPub, ephPub);
  } catch {
    throw new FileCorruptError(kind, 'does not authenticate');
  }
  try {
    return decodeFile(keys.metaKey, kind, stored.subarray(EPH_BOX_BYTES));
  } finally {
    wipeSealedKeys(keys);
  }
}

type EpochLike = OwnerKeys & { metaKey: Uint8Array };

/**
 * A small file written by either kind of key, in any key epoch: sealed under
 * metaKey, else sealed to the owner; `k.past` holds earlier epochs' keys
 * (after key rotations), tried newest first.
 */
export function decodeAnyFile(k: EpochLike & { past?: readonly EpochLike[] }, kind: FileKind, stored: Uint8Array): Buffer {
  const epochs = [k, ...[...(k.past ?? [])].reverse()];
  let first: unknown;
  for (const e of epochs) {
    try {
      return decodeFile(e.metaKey, kind, stored);
    } catch (err) {
      if (!(err instanceof FileCorruptError)) throw err;
      first ??= err;
    }
    if (stored.length < EPH_BOX_BYTES + SEAL_OVERHEAD) continue;
    try {
      return decodeFileFromOwner(e, kind, stored);
    } catch (err) {
      if (!(err instanceof FileCorruptError)) throw err;
    }
  }
  throw first;
}

export function decodeAnyJsonFile(k: EpochLike & { past?: readonly EpochLike[] }, kind: FileKind, stored: Uint8Array): unknown {
  const body = decodeAnyFile(k, kind, stored);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new FileCorruptError(kind, 'is not valid JSON');
  }
}
