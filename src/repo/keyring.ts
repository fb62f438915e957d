/**
 * Creating and opening key files: the passphrase side of the key hierarchy.
 */
import { randomBytes } from 'node:crypto';
import { calibrate, checkKdfStrength, deriveKek } from '../crypto/kdf.js';
import { forgetKey, plainHash } from '../crypto/hash.js';
import { encodeKeyFile, parseKeyFile, unwrapMaster, type KeyMeta } from '../format/keyfile.js';
import type { Backend, ReadBackend } from '../storage/backend.js';
import { CofferError } from '../errors.js';

export async function addKeyFile(backend: Backend, passphrase: Buffer, master: Buffer, metaKey: Buffer, meta: KeyMeta): Promise<string> {
  const kdf = await calibrate(randomBytes(16));
  checkKdfStrength(kdf);
  const kek = await deriveKek(passphrase, kdf);
  const stored = encodeKeyFile(kek, kdf, master, metaKey, meta);
  forgetKey(kek);
  kek.fill(0);
  const name = plainHash(stored).toString('hex');
  await backend.write({ type: 'keys', name }, stored);
  return name;
}

/**
 * Tries the passphrase on every key file (the last-used one first) and
 * returns the master secret. Damaged key files are skipped; if none opens,
 * the passphrase is wrong.
 */
export async function openMaster(backend: ReadBackend, passphrase: Buffer, preferred?: string): Promise<{ master: Buffer; keyName: string }> {
  const names = (await backend.list('keys')).map((k) => k.name).sort();
  if (names.length === 0) throw new CofferError('REPO_INVALID', `${backend.location} has no key files`);
  if (preferred && names.includes(preferred)) names.unshift(...names.splice(names.indexOf(preferred), 1));
  let damaged = 0;
  for (const name of names) {
    let k;
    try {
      const stored = await backend.read({ type: 'keys', name });
      if (plainHash(stored).toString('hex') !== name) throw new Error('name mismatch');
      k = parseKeyFile(stored);
    } catch {
      damaged++;
      continue;
    }
    let kek: Buffer;
    try {
      kek = await deriveKek(passphrase, k.kdf);
    } catch {
      damaged++; // parameters the KDF refuses (e.g. a salt too short)
      continue;
    }
    const master = unwrapMaster(kek, k);
    forgetKey(kek);
    kek.fill(0);
    if (master) return { master, keyName: name };
  }
  if (damaged === names.length) throw new CofferError('REPO_INVALID', 'every key file in the repository is damaged');
  throw new CofferError('WRONG_PASSWORD', 'wrong password or no key file for it');
}
