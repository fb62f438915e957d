/**
 * `coffer key …`: list, add (passphrase, --recovery or --write-only), passwd,
 * remove (key files only), rotate (a new master secret) and reencrypt (data
 * of older key epochs). Every key command holds the repository lock: shared
 * for list, exclusive for the others.
 */
import { openBackend } from '../storage/location.js';
import { KeyAdmin, type KeyListEntry } from '../repo/key-admin.js';
import type { RepoSecret } from '../repo/keyring.js';
import { localTime, table } from './format.js';
import { readNewPassword } from './password.js';
import { lowCostKdfAllowed } from '../crypto/kdf.js';
import { openRepo, Output, readSecret, repoLocation, warnIfWeakKey, wipeSecret, type GlobalOptions } from './context.js';
import { lockRepository, withLock, type RepoLock } from '../repo/lock.js';
import { reencrypt } from '../lifecycle/reencrypt.js';
import { CofferError } from '../errors.js';
import { StorageError } from '../storage/backend.js';

/**
 * Opens the key admin and holds the repository lock (exclusive, or shared)
 * while `f` runs. With `newPassword`, the new password is read (and checked)
 * before the lock is taken, so a missing password file fails the same way
 * whoever holds the lock; it is wiped after `f`.
 */
async function withAdmin<T>(
  g: GlobalOptions,
  f: (a: KeyAdmin, newPassword: Buffer) => Promise<T>,
  exclusive = true,
  newPassword?: { file: string | undefined },
  /** Checks that fail without the lock (bad arguments), run before it is taken. */
  precheck?: (a: KeyAdmin) => Promise<unknown>,
): Promise<T> {
  const backend = openBackend(repoLocation(g));
  const secret = await readSecret(g);
  let admin: KeyAdmin;
  try {
    admin = await KeyAdmin.open(backend, secret);
  } finally {
    wipeSecret(secret);
  }
  warnIfWeakKey(g, admin.weakKey);
  let lock: RepoLock | undefined;
  let pw: Buffer = Buffer.alloc(0);
  try {
    if (precheck) await precheck(admin);
    if (newPassword) pw = await readNewPassword(newPassword.file);
    try {
      lock = await lockRepository({ backend, keys: admin.lockKeys }, { exclusive });
    } catch (e) {
      // Listing keys on read-only storage: go on without a lock.
      const readOnly = e instanceof CofferError && e.cause instanceof StorageError && e.cause.kind === 'permission';
      if (exclusive || !readOnly) throw e;
    }
    const r = await f(admin, pw);
    lock?.throwIfLost();
    return r;
  } finally {
    pw.fill(0);
    await lock?.release();
    admin.close();
  }
}

function keyJson(k: KeyListEntry) {
  return { id: k.id, short_id: k.id.slice(0, 8), label: k.label, created: k.created, kind: k.kind, current: k.current };
}

export async function cmdKeyList(g: GlobalOptions): Promise<number> {
  const out = new Output(g);
  const keys = await withAdmin(g, (a) => a.list(), false);
  if (out.json) {
    out.emit(keys.map(keyJson));
    return 0;
  }
  const rows = keys.map((k) => [(k.current ? '*' : ' ') + k.id.slice(0, 8), k.kind, k.created ? localTime(k.created) : '', k.label]);
  process.stdout.write(table([' ID', 'Kind', 'Created', 'Label'], rows) + '\n');
  process.stdout.write(`${keys.length} key${keys.length === 1 ? '' : 's'} (* = the key in use)\n`);
  return 0;
}

const RECOVERY_WARNING = [
  'Write this recovery key down and keep it somewhere safe, away from this computer.',
  'It is shown only this once. Anyone who has it can open the repository, and without',
  'it or a password nobody can - not you, not the storage provider, not the coffer authors.',
];

export async function cmdKeyAdd(g: GlobalOptions, o: { label?: string; recovery?: boolean; writeOnly?: boolean; newPasswordFile?: string }): Promise<number> {
  const out = new Output(g);
  if (o.recovery && o.writeOnly) throw new CofferError('INVALID_ARGUMENT', '--recovery and --write-only cannot be combined');
  if (o.writeOnly) {
    const r = await withAdmin(g, (a, pw) => a.addWriteOnly(pw, o.label ?? 'write-only key'), true, { file: o.newPasswordFile });
    if (lowCostKdfAllowed()) out.warn('COFFER_TEST_LOW_KDF=1: the new key uses the weak test KDF setting; never use it for real data');
    if (out.json) out.emit({ message_type: 'key_added', id: r.id, kind: 'write-only', upgraded_index_files: r.upgradedIndexFiles });
    else {
      out.info(`added write-only key ${r.id.slice(0, 8)}: it can back up, but not read, restore or delete anything`);
      if (r.upgradedIndexFiles) out.info(`rewrote ${r.upgradedIndexFiles} older index files so that write-only keys can deduplicate against them`);
      out.info('to keep a host with this key from deleting data, give it storage that only allows adding (e.g. rest-server --append-only)');
    }
    return 0;
  }
  if (o.recovery) {
    const { id, code } = await withAdmin(g, (a) => a.addRecovery(o.label ?? 'recovery key'));
    if (out.json) {
      out.emit({ message_type: 'key_added', id, kind: 'recovery', recovery_key: code, warning: RECOVERY_WARNING.join(' ') });
    } else {
      // The code goes to stdout even with --quiet: it exists nowhere else.
      process.stdout.write(`added recovery key ${id.slice(0, 8)}\n\n    ${code}\n\n${RECOVERY_WARNING.join('\n')}\n`);
    }
    return 0;
  }
  const id = await withAdmin(g, (a, pw) => a.addPassphrase(pw, o.label ?? 'passphrase key'), true, { file: o.newPasswordFile });
  if (lowCostKdfAllowed()) out.warn('COFFER_TEST_LOW_KDF=1: the new key uses the weak test KDF setting; never use it for real data');
  if (out.json) out.emit({ message_type: 'key_added', id, kind: 'passphrase' });
  else out.info(`added key ${id.slice(0, 8)}`);
  return 0;
}

export async function cmdKeyPasswd(g: GlobalOptions, o: { newPasswordFile?: string }): Promise<number> {
  const out = new Output(g);
  const r = await withAdmin(g, (a, pw) => a.changePassphrase(pw), true, { file: o.newPasswordFile });
  if (lowCostKdfAllowed()) out.warn('COFFER_TEST_LOW_KDF=1: the new key uses the weak test KDF setting; never use it for real data');
  if (out.json) out.emit({ message_type: 'key_changed', old_id: r.oldId, new_id: r.newId });
  else out.info(`password changed: key ${r.oldId.slice(0, 8)} replaced by ${r.newId.slice(0, 8)}`);
  return 0;
}

export async function cmdKeyRemove(g: GlobalOptions, ref: string): Promise<number> {
  const out = new Output(g);
  // An id that names no key fails before the lock is taken (then again under it, as the slots may change).
  const k = await withAdmin(g, (a) => a.remove(ref), true, undefined, (a) => a.resolve(ref));
  if (out.json) out.emit({ message_type: 'key_removed', id: k.id });
  else out.info(`removed key ${k.id.slice(0, 8)}${k.label ? ` (${k.label})` : ''}`);
  return 0;
}

const ROTATE_NOTE = [
  'Key rotation draws a new master secret: everything written from now on is sealed with it, so an old',
  'passphrase, recovery key or copied key file cannot read it. It writes one new key slot (the new password)',
  'and removes every other slot: add recovery keys, other passwords and write-only keys again afterwards.',
  'Data already stored stays readable with the old secrets until re-encrypted ("coffer key reencrypt").',
];

export async function cmdKeyRotate(g: GlobalOptions, o: { label?: string; yes?: boolean; reencrypt?: boolean; newPasswordFile?: string }, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  let newPw: Buffer | undefined;
  try {
    return await rotateWith(g, o, signal, out, (pw) => (newPw = pw));
  } finally {
    newPw?.fill(0);
  }
}

async function rotateWith(
  g: GlobalOptions,
  o: { label?: string; yes?: boolean; reencrypt?: boolean; newPasswordFile?: string },
  signal: AbortSignal,
  out: Output,
  keep: (pw: Buffer) => void,
): Promise<number> {
  let pwKept: Buffer | undefined;
  const r = await withAdmin(g, async (a) => {
    const others = (await a.list()).filter((k) => !k.current);
    if (others.length && !o.yes) {
      const names = others.map((k) => `${k.id.slice(0, 8)} (${k.kind}${k.label ? `, ${k.label}` : ''})`).join(', ');
      throw new CofferError('INVALID_ARGUMENT', `key rotate removes every other key slot (${names}); run it again with --yes to go on`);
    }
    const pw = await readNewPassword(o.newPasswordFile);
    keep(pw);
    pwKept = pw;
    return a.rotate(pw, o.label ?? 'rotated key');
  });
  if (lowCostKdfAllowed()) out.warn('COFFER_TEST_LOW_KDF=1: the new key uses the weak test KDF setting; never use it for real data');
  if (out.json && !o.reencrypt) out.emit({ message_type: 'key_rotated', id: r.newId, epoch: r.epoch, removed: r.removed.map((k) => k.id), index_files_rewritten: r.indexFilesRewritten });
  else {
    for (const line of ROTATE_NOTE) out.info(line);
    out.info(`rotated to key epoch ${r.epoch}: new key ${r.newId.slice(0, 8)}; removed ${r.removed.length} old key slot${r.removed.length === 1 ? '' : 's'}; rewrote ${r.indexFilesRewritten} index files`);
  }
  if (!o.reencrypt) return 0;
  // The new password opens the repository from here on.
  return cmdKeyReencrypt(g, signal, { kind: 'passphrase', passphrase: Buffer.from(pwKept!) });
}

export async function cmdKeyReencrypt(g: GlobalOptions, signal: AbortSignal, secret?: RepoSecret): Promise<number> {
  const out = new Output(g);
  const repo = await openRepo(g, { secret });
  try {
    const r = await withLock(repo, true, (lock) => reencrypt(repo, { signal: AbortSignal.any([signal, lock.signal]), onPhase: () => lock.throwIfLost() }));
    if (out.json) out.emit({ message_type: 'key_reencrypted', epoch: repo.keys.epoch, packs_repacked: r.plan.repack.length, snapshots_rewritten: r.snapshots });
    else out.info(`re-encrypted under key epoch ${repo.keys.epoch}: ${r.plan.repack.length} packs repacked, ${r.snapshots} snapshot files rewritten`);
    return 0;
  } finally {
    await repo.close();
  }
}
