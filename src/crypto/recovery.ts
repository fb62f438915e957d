/**
 * Recovery codes: 160 random bits a person can write down and type back.
 *
 *   entropy  = 20 random bytes
 *   check    = first 20 bits of H("coffer-recovery-v1" ‖ entropy)
 *   code     = Crockford base32 of (entropy ‖ check) — 36 characters,
 *              printed as 9 groups of 4 joined by "-"
 *
 * Crockford's alphabet has no I, L, O or U; when reading, I and L count as 1,
 * O as 0, case, spaces and hyphens are ignored. The checksum makes a typo an
 * explicit "checksum mismatch" instead of a confusing "wrong key": a random
 * error passes it with probability 2^-20. See docs/FORMAT.md §6.
 *
 * The key-encryption key is derived with BLAKE3 derive_key, not Argon2id: the
 * code already carries 160 bits of entropy, so a slow KDF would add nothing
 * an attacker could feel (2^160 guesses are out of reach at any speed).
 */
import { randomBytes } from 'node:crypto';
import { deriveKey, plainHash } from './hash.js';

export const RECOVERY_ENTROPY_BYTES = 20;
export const RECOVERY_CONTEXT = 'coffer 2026-11 recovery key v1';
const CHECK_PREFIX = Buffer.from('coffer-recovery-v1');
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
/** 160 entropy bits + 20 check bits = 180 bits = 36 base32 characters. */
const CODE_CHARS = 36;

/**
 * A typed-in recovery code that cannot be right: a bad character, a wrong
 * length, or a checksum mismatch (a typo), as opposed to a wrong key.
 * @example
 * ```ts
 * try { decodeRecoveryCode(code); } catch (e) { if (e instanceof RecoveryCodeError) console.error(e.message); }
 * ```
 */
export class RecoveryCodeError extends Error {
  constructor(
    message: string,
    readonly reason: 'malformed' | 'checksum',
  ) {
    super(message);
    this.name = 'RecoveryCodeError';
  }
}

function checkBits(entropy: Uint8Array): number {
  const h = plainHash(Buffer.concat([CHECK_PREFIX, entropy]));
  return (h[0] << 12) | (h[1] << 4) | (h[2] >> 4);
}

/** 180 bits (entropy ‖ 20-bit check) as 36 base32 digits, most significant first. */
function toDigits(entropy: Uint8Array): number[] {
  let bits = 0n;
  for (const b of entropy) bits = (bits << 8n) | BigInt(b);
  bits = (bits << 20n) | BigInt(checkBits(entropy));
  const digits: number[] = [];
  for (let i = CODE_CHARS - 1; i >= 0; i--) digits.push(Number((bits >> BigInt(5 * i)) & 31n));
  return digits;
}

/**
 * Encodes 20 bytes of recovery-key entropy as the human-transcribable code
 * (9 groups of 4 Crockford base32 characters, with a checksum).
 * @example
 * ```ts
 * const code = encodeRecoveryCode(crypto.getRandomValues(new Uint8Array(20)));
 * ```
 */
export function encodeRecoveryCode(entropy: Uint8Array): string {
  if (entropy.length !== RECOVERY_ENTROPY_BYTES) throw new RangeError('recovery entropy must be 20 bytes');
  const chars = toDigits(entropy).map((d) => ALPHABET[d]).join('');
  return chars.match(/.{4}/g)!.join('-');
}

/** A fresh code and its entropy (the caller wipes the entropy). */
export function newRecoveryCode(): { code: string; entropy: Buffer } {
  const entropy = randomBytes(RECOVERY_ENTROPY_BYTES);
  return { code: encodeRecoveryCode(entropy), entropy };
}

/**
 * Parses a typed-in code (case, spaces and hyphens ignored); throws
 * RecoveryCodeError for bad characters, a wrong length or a checksum mismatch.
 * @example
 * ```ts
 * const repo = await Repository.open(backend, { kind: 'recovery', entropy: decodeRecoveryCode(code) });
 * ```
 */
export function decodeRecoveryCode(code: string): Buffer {
  const clean = code.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
  let bits = 0n;
  for (let i = 0; i < clean.length; i++) {
    const d = ALPHABET.indexOf(clean[i]);
    // The message names the position, never the character (the code is a secret).
    if (d < 0) throw new RecoveryCodeError(`recovery code character ${i + 1} is not one of 0-9 A-Z (without I L O U)`, 'malformed');
    bits = (bits << 5n) | BigInt(d);
  }
  if (clean.length !== CODE_CHARS) {
    throw new RecoveryCodeError(`recovery code has ${clean.length} characters; expected ${CODE_CHARS} (9 groups of 4)`, 'malformed');
  }
  const check = Number(bits & 0xfffffn);
  bits >>= 20n;
  const entropy = Buffer.alloc(RECOVERY_ENTROPY_BYTES);
  for (let i = RECOVERY_ENTROPY_BYTES - 1; i >= 0; i--) {
    entropy[i] = Number(bits & 0xffn);
    bits >>= 8n;
  }
  if (checkBits(entropy) !== check) {
    entropy.fill(0);
    throw new RecoveryCodeError('recovery code checksum mismatch: the code was mistyped (check each group)', 'checksum');
  }
  return entropy;
}

/** kek = KDF("coffer 2026-11 recovery key v1", entropy ‖ salt). */
export function recoveryKek(entropy: Uint8Array, salt: Uint8Array): Buffer {
  const material = Buffer.concat([entropy, salt]);
  const kek = deriveKey(RECOVERY_CONTEXT, material);
  material.fill(0);
  return kek;
}
