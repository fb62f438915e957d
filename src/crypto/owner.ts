/**
 * The owner key pair for write-only backup keys: X25519 (node:crypto, i.e.
 * OpenSSL; as fast as @noble/curves here and no new dependency, see
 * docs/SECURITY.md). The owner's secret is derived from the master secret, so
 * nothing new is stored; write-only slots hold only the public half.
 *
 *   ownerSecret = KDF("coffer 2026-11 write-only owner x25519 v1", M)   (clamped by X25519)
 *   wrapKey     = KDF("coffer 2026-11 write-only wrap v1", ownerPub)
 *   K           = KDF("coffer 2026-11 write-only object v1", X25519(eph, ownerPub) ‖ ephPub ‖ ownerPub)
 *   blobKey(K)  = KDF("coffer 2026-11 write-only blob v1", K)
 *   metaKey(K)  = KDF("coffer 2026-11 write-only meta v1", K)
 */
import { createPrivateKey, createPublicKey, diffieHellman, randomBytes } from 'node:crypto';
import { deriveKey, forgetKey } from './hash.js';

const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

export const OWNER_CONTEXTS = {
  owner: 'coffer 2026-11 write-only owner x25519 v1',
  wrap: 'coffer 2026-11 write-only wrap v1',
  object: 'coffer 2026-11 write-only object v1',
  blob: 'coffer 2026-11 write-only blob v1',
  meta: 'coffer 2026-11 write-only meta v1',
} as const;

function privateKey(secret: Uint8Array) {
  if (secret.length !== 32) throw new RangeError('x25519: secret must be 32 bytes');
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, secret]), format: 'der', type: 'pkcs8' });
}

/** The X25519 public key of a 32-byte secret. */
export function x25519Public(secret: Uint8Array): Buffer {
  const der = createPublicKey(privateKey(secret)).export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(SPKI_PREFIX.length));
}

/** X25519(secret, pub); refuses an all-zero result (a low-order public key). */
export function x25519(secret: Uint8Array, pub: Uint8Array): Buffer {
  if (pub.length !== 32) throw new RangeError('x25519: public key must be 32 bytes');
  const publicKey = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, pub]), format: 'der', type: 'spki' });
  const shared = diffieHellman({ privateKey: privateKey(secret), publicKey });
  if (shared.every((b) => b === 0)) throw new RangeError('x25519: low-order public key');
  return shared;
}

export function ownerSecretFrom(master: Uint8Array): Buffer {
  return deriveKey(OWNER_CONTEXTS.owner, master);
}

export function wrapKeyFrom(ownerPub: Uint8Array): Buffer {
  return deriveKey(OWNER_CONTEXTS.wrap, ownerPub);
}

/** Keys of one object (or one backup session's packs) sealed to the owner. */
export interface SealedKeys {
  blobKey: Buffer;
  metaKey: Buffer;
}

function keysFromShared(shared: Buffer, ephPub: Uint8Array, ownerPub: Uint8Array): SealedKeys {
  const k = deriveKey(OWNER_CONTEXTS.object, Buffer.concat([shared, ephPub, ownerPub]));
  shared.fill(0);
  const out = { blobKey: deriveKey(OWNER_CONTEXTS.blob, k), metaKey: deriveKey(OWNER_CONTEXTS.meta, k) };
  k.fill(0);
  return out;
}

/**
 * Writer side: a fresh ephemeral key pair; returns its public half and the
 * keys it shares with the owner. The ephemeral secret is wiped at once, so
 * the writer cannot recompute the keys once it drops them.
 */
export function sealToOwner(ownerPub: Uint8Array, ephSecret: Uint8Array = randomBytes(32)): { ephPub: Buffer; keys: SealedKeys } {
  const ephPub = x25519Public(ephSecret);
  const keys = keysFromShared(x25519(ephSecret, ownerPub), ephPub, ownerPub);
  ephSecret.fill(0);
  return { ephPub, keys };
}

/** Owner side: the keys of an object whose ephemeral public key is `ephPub`. */
export function openFromOwner(ownerSecret: Uint8Array, ownerPub: Uint8Array, ephPub: Uint8Array): SealedKeys {
  return keysFromShared(x25519(ownerSecret, ephPub), ephPub, ownerPub);
}

export function wipeSealedKeys(k: SealedKeys): void {
  for (const key of [k.blobKey, k.metaKey]) {
    forgetKey(key);
    key.fill(0);
  }
}
