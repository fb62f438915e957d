/**
 * Creating, opening, listing and removing key files: the secret side of the
 * key hierarchy. A key file wraps the master secret under a key-encryption
 * key derived from a passphrase (Argon2id) or from a recovery code (BLAKE3
 * derive_key; the code has 160 random bits). Nothing here re-encrypts data.
 */
import { randomBytes } from 'node:crypto';
import { calibrate, checkKdfStrength, deriveKek, MIN_PARAMS } from '../crypto/kdf.js';
import { forgetKey, plainHash } from '../crypto/hash.js';
import { recoveryKek } from '../crypto/recovery.js';
import { decodeKeyMeta, encodeKeyFile, isRecoveryKdf, parseKeyFile, unwrapSlot, type KeyFileJson, type KeyMeta, type SlotPayload } from '../format/keyfile.js';
import type { Backend, ReadBackend } from '../storage/backend.js';
import { CofferError, integrityError } from '../errors.js';
import { mark } from '../util/timing.js';

/**
 * What opens a repository: a passphrase, or the entropy of a decoded recovery code.
 * @example
 * ```ts
 * const secret: RepoSecret = { kind: 'passphrase', passphrase: Buffer.from(pw) };
 * ```
 */
export type RepoSecret = { kind: 'passphrase'; passphrase: Buffer } | { kind: 'recovery'; entropy: Buffer };

export function asSecret(s: Buffer | RepoSecret): RepoSecret {
  return Buffer.isBuffer(s) ? { kind: 'passphrase', passphrase: s } : s;
}

async function writeKeyFile(backend: Backend, stored: Buffer): Promise<string> {
  const name = plainHash(stored).toString('hex');
  await backend.write({ type: 'keys', name }, stored);
  return name;
}

/** Adds a passphrase slot wrapping `master` (or, with `writeOnly`, a write-only bundle). */
export async function addKeyFile(backend: Backend, passphrase: Buffer, master: Buffer, metaKey: Buffer, meta: KeyMeta, payload: SlotPayload = 'master'): Promise<string> {
  const kdf = await calibrate(randomBytes(16));
  checkKdfStrength(kdf);
  const kek = await deriveKek(passphrase, kdf);
  const stored = encodeKeyFile(kek, kdf, master, metaKey, meta, payload);
  forgetKey(kek);
  kek.fill(0);
  return writeKeyFile(backend, stored);
}

/** Writes a recovery slot for `entropy` (the decoded recovery code). */
export async function addRecoveryKeyFile(backend: Backend, entropy: Buffer, master: Buffer, metaKey: Buffer, meta: KeyMeta, payload: SlotPayload = 'master'): Promise<string> {
  const salt = randomBytes(16);
  const kek = recoveryKek(entropy, salt);
  const stored = encodeKeyFile(kek, { algorithm: 'recovery-v1', salt: salt.toString('base64') }, master, metaKey, meta, payload);
  forgetKey(kek);
  kek.fill(0);
  return writeKeyFile(backend, stored);
}

async function readKeyFile(backend: ReadBackend, name: string): Promise<KeyFileJson> {
  const stored = await backend.read({ type: 'keys', name });
  if (plainHash(stored).toString('hex') !== name) throw new Error('name mismatch');
  return parseKeyFile(stored);
}

/** What a slot opened to: the master secret, or a write-only bundle. */
export type SlotSecret = { master: Buffer; older?: Buffer[]; bundle?: undefined } | { bundle: Buffer; master?: undefined; older?: undefined };

/** What `secret` opens in key file `k`, else undefined (wrong secret, or a slot of the other kind). */
async function tryKeyFile(k: KeyFileJson, secret: RepoSecret, whileDeriving?: () => void): Promise<SlotSecret | undefined> {
  let kek: Buffer;
  if (isRecoveryKdf(k.kdf)) {
    if (secret.kind !== 'recovery') return undefined;
    kek = recoveryKek(secret.entropy, Buffer.from(k.kdf.salt, 'base64'));
  } else {
    if (secret.kind !== 'passphrase') return undefined;
    mark('kdf start');
    // The derivation runs on other threads from here on: the main thread is free.
    const deriving = deriveKek(secret.passphrase, k.kdf);
    whileDeriving?.();
    kek = await deriving;
    mark('kdf end');
  }
  const got = unwrapSlot(kek, k);
  forgetKey(kek);
  kek.fill(0);
  return got as SlotSecret | undefined;
}

/**
 * Tries the secret on every key file of its kind (the preferred one first)
 * and returns the master secret. A passphrase is only tried on passphrase
 * slots and a recovery code only on recovery slots. Damaged key files are
 * skipped; if none opens, the secret is wrong.
 */
export async function openMaster(
  backend: ReadBackend,
  secretOrPassphrase: Buffer | RepoSecret,
  preferred?: string,
  /** Checks a candidate master (or bundle) against this repository (its config); a slot that fails is skipped. */
  belongs?: (got: SlotSecret) => boolean,
  /**
   * Keep looking past write-only slots for a full one (a passphrase given to
   * both); if only write-only slots open, the first of them is returned.
   */
  preferFull = false,
  /**
   * Called once, right after the first key derivation has started (and not
   * at all if none is needed): work that needs no key can overlap it.
   * Must not throw (an exception is ignored).
   */
  whileDeriving?: () => void,
): Promise<SlotSecret & { keyName: string; weak: boolean }> {
  const secret = asSecret(secretOrPassphrase);
  const once = () => {
    const hook = whileDeriving;
    whileDeriving = undefined;
    try {
      hook?.();
    } catch {
      // Documented not to throw; a failure must not pass for a damaged key file.
    }
  };
  const names = (await backend.list('keys')).map((k) => k.name).filter((n) => /^[0-9a-f]{64}$/.test(n)).sort();
  if (names.length === 0) throw new CofferError('REPO_INVALID', `${backend.location} has no key files`);
  if (preferred && names.includes(preferred)) names.unshift(...names.splice(names.indexOf(preferred), 1));
  let damaged = 0;
  let ofKind = 0;
  let writeOnly: (SlotSecret & { keyName: string; weak: boolean }) | undefined;
  let foreign = 0;
  for (const name of names) {
    let k;
    try {
      k = await readKeyFile(backend, name);
    } catch {
      damaged++;
      continue;
    }
    if (isRecoveryKdf(k.kdf) === (secret.kind === 'recovery')) ofKind++;
    let got;
    try {
      got = await tryKeyFile(k, secret, once);
    } catch {
      damaged++; // parameters the KDF refuses (e.g. a salt too short)
      continue;
    }
    if (got && belongs && !belongs(got)) {
      (got.master ?? got.bundle).fill(0);
      for (const m of got.older ?? []) m.fill(0);
      foreign++;
      continue;
    }
    if (got?.bundle && preferFull) {
      if (writeOnly) got.bundle.fill(0);
      else writeOnly = { ...got, keyName: name, weak: isWeak(k) };
      continue;
    }
    if (got) {
      if (writeOnly) writeOnly.bundle!.fill(0);
      return { ...got, keyName: name, weak: isWeak(k) };
    }
  }
  if (writeOnly) return writeOnly;
  if (foreign > 0) {
    throw integrityError('the config file is damaged, or the key file that opened belongs to another repository', { file: 'config' });
  }
  if (damaged === names.length) throw new CofferError('REPO_INVALID', 'every key file in the repository is damaged');
  // A damaged slot may have been the one for this secret: say so rather than blame the secret alone.
  const note = damaged ? `; ${damaged} of ${names.length} key files ${damaged === 1 ? 'is' : 'are'} damaged and may have been the one for it` : '';
  if (secret.kind === 'recovery') {
    if (ofKind === 0 && !damaged) throw new CofferError('WRONG_PASSWORD', 'this repository has no recovery key');
    throw new CofferError('WRONG_PASSWORD', `wrong recovery key (it is well-formed but opens no recovery key slot of this repository)${note}`);
  }
  throw new CofferError('WRONG_PASSWORD', `wrong password or no key file for it${note}`);
}

/** A passphrase slot below the creation floor (e.g. made with COFFER_TEST_LOW_KDF=1). */
function isWeak(k: KeyFileJson): boolean {
  return !isRecoveryKdf(k.kdf) && (k.kdf.memoryKiB < MIN_PARAMS.memoryKiB || k.kdf.iterations < MIN_PARAMS.iterations);
}

export interface KeyInfo {
  /** The key file's name (64 hex). */
  id: string;
  label: string;
  created: string;
  kind: KeyMeta['kind'] | 'unreadable';
}

/**
 * Every key file with its (decrypted) metadata. A key file that does not
 * parse or whose metadata does not open under `metaKey` is listed as
 * "unreadable" (damaged, or planted by someone without the master secret).
 */
export async function listKeys(backend: ReadBackend, metaKeys: Buffer | Buffer[]): Promise<KeyInfo[]> {
  const candidates = Array.isArray(metaKeys) ? metaKeys : [metaKeys];
  const names = (await backend.list('keys')).map((k) => k.name).filter((n) => /^[0-9a-f]{64}$/.test(n));
  const out: KeyInfo[] = [];
  for (const id of names) {
    try {
      const k = await readKeyFile(backend, id);
      let m: KeyMeta | undefined;
      for (const key of candidates) {
        try {
          m = decodeKeyMeta(key, k);
          break;
        } catch {
          // sealed under another epoch's metaKey
        }
      }
      if (!m) throw new Error('unreadable');
      const kind = isRecoveryKdf(k.kdf) ? 'recovery' : m.kind === 'write-only' ? 'write-only' : 'passphrase';
      out.push({ id, label: String(m.label ?? ''), created: String(m.created ?? ''), kind });
    } catch {
      out.push({ id, label: '', created: '', kind: 'unreadable' });
    }
  }
  return out.sort((a, b) => a.created.localeCompare(b.created) || a.id.localeCompare(b.id));
}

/** Checks that key file `name` opens with `secret` and yields `payload` (the master, the chain M_0 ‖ … ‖ M_n, or a bundle), read back from storage. */
export async function verifyKeyFile(backend: ReadBackend, name: string, secret: RepoSecret, payload: Buffer, kind: SlotPayload = 'master'): Promise<boolean> {
  const k = await readKeyFile(backend, name);
  const got = await tryKeyFile(k, secret);
  const value = kind === 'write-only' ? got?.bundle : kind === 'chain' ? (got?.older ? Buffer.concat([...got.older, got.master!]) : undefined) : got?.older ? undefined : got?.master;
  const ok = value !== undefined && value.equals(payload);
  value?.fill(0);
  (got?.master ?? got?.bundle)?.fill(0);
  for (const m of got?.older ?? []) m.fill(0);
  return ok;
}
