/**
 * Key management on an open master secret: list, add (passphrase or
 * recovery), change the passphrase of the key in use, remove. Only key files
 * are written or removed; no data is ever re-encrypted.
 */
import { randomBytes } from 'node:crypto';
import { chunkerKeyFrom, deriveRepoKeys, wipeRepoKeys, type RepoKeys } from '../crypto/keys.js';
import { plainHash } from '../crypto/hash.js';
import { encodeBundle } from '../format/write-only-bundle.js';
import { decodeIndex } from '../format/index-file.js';
import { decodeFile } from '../format/file.js';
import type { IndexedPack } from '../format/index-file.js';
import { readIndexIds, writeIndexFile } from './index-files.js';
import { newRecoveryCode } from '../crypto/recovery.js';
import { decodeConfig } from '../format/config.js';
import { CofferError, integrityError } from '../errors.js';
import type { Backend } from '../storage/backend.js';
import { configOpens, readConfig, storageFailure, writeOnlyError } from './repository.js';
import { addKeyFile, addRecoveryKeyFile, listKeys, openMaster, verifyKeyFile, type KeyInfo, type RepoSecret } from './keyring.js';

/**
 * One key slot as {@link KeyAdmin.list} reports it: id, kind, label, creation time, and whether it is the one in use.
 * @example
 * ```ts
 * for (const k of await admin.list()) console.log(k.id.slice(0, 8), k.kind, k.current ? '*' : '');
 * ```
 */
export interface KeyListEntry extends KeyInfo {
  /** True for the key this session was opened with. */
  current: boolean;
}

/**
 * Key-slot management: list, add passwords and recovery keys, change the
 * password in use, remove slots. Never re-encrypts data.
 * @example
 * ```ts
 * const admin = await KeyAdmin.open(backend, Buffer.from(pw));
 * console.log(await admin.list());
 * ```
 */
export class KeyAdmin {
  /** True when the key slot in use has KDF settings below the creation floor. */
  weakKey = false;
  private constructor(
    readonly backend: Backend,
    private readonly master: Buffer,
    private readonly keys: RepoKeys,
    /** Name of the key file that opened the repository. */
    readonly keyName: string,
    private readonly configHash: string,
    private readonly config: ReturnType<typeof decodeConfig>,
  ) {}

  /** The keys, for taking a lock on the repository this admin works on. */
  get lockKeys(): { lockKey: Buffer; metaKey: Buffer } {
    return this.keys;
  }

  /**
   * Adds a write-only slot: its passphrase wraps a bundle (owner public key,
   * blob-id and chunker keys, id-list and lock keys, a fresh local-cache key,
   * the config) — never the master secret, blobKey or metaKey. Returns its id.
   * Then rewrites index files older than version 2 (whose blob ids a
   * write-only key cannot read) as version 2; call it under an exclusive lock.
   */
  async addWriteOnly(passphrase: Buffer, label: string): Promise<{ id: string; upgradedIndexFiles: number }> {
    if (passphrase.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
    const meta = { label, created: new Date().toISOString(), kind: 'write-only' as const };
    const chunkerKey = chunkerKeyFrom(this.master);
    const cacheKey = randomBytes(32);
    const bundle = encodeBundle({
      ownerPub: this.keys.ownerPub,
      blobIdKey: this.keys.blobIdKey,
      chunkerKey,
      idListKey: this.keys.idListKey,
      lockKey: this.keys.lockKey,
      cacheKey,
      config: this.config,
      configHash: this.configHash,
    });
    chunkerKey.fill(0);
    cacheKey.fill(0);
    let id: string;
    try {
      id = await addKeyFile(this.backend, passphrase, bundle, this.keys.metaKey, meta, true);
      if (!(await verifyKeyFile(this.backend, id, { kind: 'passphrase', passphrase }, bundle, true))) {
        throw integrityError(`keys/${id} did not read back correctly`);
      }
    } catch (e) {
      throw storageFailure(e);
    } finally {
      bundle.fill(0);
    }
    return { id, upgradedIndexFiles: await this.upgradeIndexFiles() };
  }

  /**
   * Rewrites version 1 index files as version 2 (new files first, then the
   * old ones removed, as prune does), so write-only keys see their blob ids.
   */
  async upgradeIndexFiles(): Promise<number> {
    try {
      const names = (await this.backend.list('index')).map((f) => f.name).filter((n) => /^[0-9a-f]{64}$/.test(n));
      const old: string[] = [];
      let packs: IndexedPack[] = [];
      for (const name of names) {
        const stored = await this.backend.read({ type: 'index', name });
        if (plainHash(stored).toString('hex') !== name) throw integrityError(`index/${name} does not match its name (damaged or truncated)`);
        if (readIndexIds(this.keys.idListKey, stored)) continue;
        try {
          packs.push(...decodeIndex(decodeFile(this.keys.metaKey, 'index', stored)));
        } catch {
          throw integrityError(`index/${name} is damaged`, { file: `index/${name}` });
        }
        old.push(name);
        if (packs.length >= 1000) {
          await writeIndexFile(this.backend, this.keys, packs);
          packs = [];
        }
      }
      if (packs.length) await writeIndexFile(this.backend, this.keys, packs);
      for (const name of old) await this.backend.remove({ type: 'index', name });
      return old.length;
    } catch (e) {
      throw storageFailure(e);
    }
  }

  static async open(backend: Backend, secret: Buffer | RepoSecret): Promise<KeyAdmin> {
    const stored = await readConfig(backend);
    const got = await openMaster(backend, secret, undefined, (m) => configOpens(m, stored)).catch((e) => {
      throw storageFailure(e);
    });
    const { keyName, weak } = got;
    if (!got.master) {
      got.bundle.fill(0);
      throw writeOnlyError();
    }
    const master = got.master;
    const keys = deriveRepoKeys(master);
    try {
      decodeConfig(keys.metaKey, stored);
    } catch {
      master.fill(0);
      wipeRepoKeys(keys);
      throw integrityError('the config file is damaged', { file: 'config' });
    }
    const admin = new KeyAdmin(backend, master, keys, keyName, plainHash(stored).toString('hex'), decodeConfig(keys.metaKey, stored));
    admin.weakKey = weak;
    return admin;
  }

  async list(): Promise<KeyListEntry[]> {
    try {
      return (await listKeys(this.backend, this.keys.metaKey)).map((k) => ({ ...k, current: k.id === this.keyName }));
    } catch (e) {
      throw storageFailure(e);
    }
  }

  /** Resolves a full key id or a unique prefix. */
  async resolve(ref: string): Promise<KeyListEntry> {
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new CofferError('INVALID_ARGUMENT', `"${ref}" is not a key id (hex)`);
    const hits = (await this.list()).filter((k) => k.id.startsWith(ref));
    if (hits.length === 0) throw new CofferError('INVALID_ARGUMENT', `no key with id ${ref}`);
    if (hits.length > 1) throw new CofferError('INVALID_ARGUMENT', `key id prefix ${ref} is ambiguous (${hits.length} matches); give more characters`);
    return hits[0];
  }

  /** Adds a passphrase slot; returns its id. The new slot is read back and checked before this returns. */
  async addPassphrase(passphrase: Buffer, label: string): Promise<string> {
    if (passphrase.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
    const meta = { label, created: new Date().toISOString(), kind: 'passphrase' as const };
    let id: string;
    try {
      id = await addKeyFile(this.backend, passphrase, this.master, this.keys.metaKey, meta);
      if (!(await verifyKeyFile(this.backend, id, { kind: 'passphrase', passphrase }, this.master))) {
        throw integrityError(`keys/${id} did not read back correctly`);
      }
    } catch (e) {
      throw storageFailure(e);
    }
    return id;
  }

  /**
   * Adds a recovery slot under a fresh recovery code. Returns the code, which
   * exists nowhere else: the caller shows it once and forgets it.
   */
  async addRecovery(label: string): Promise<{ id: string; code: string }> {
    const { code, entropy } = newRecoveryCode();
    const meta = { label, created: new Date().toISOString(), kind: 'recovery' as const };
    try {
      const id = await addRecoveryKeyFile(this.backend, entropy, this.master, this.keys.metaKey, meta);
      if (!(await verifyKeyFile(this.backend, id, { kind: 'recovery', entropy }, this.master))) {
        throw integrityError(`keys/${id} did not read back correctly`);
      }
      return { id, code };
    } catch (e) {
      throw storageFailure(e);
    } finally {
      entropy.fill(0);
    }
  }

  /**
   * Changes the passphrase of the key in use: writes a new key file (same
   * label), checks that it opens, then removes the old one. A crash in
   * between leaves both files, each opening with its own passphrase.
   */
  async changePassphrase(passphrase: Buffer): Promise<{ oldId: string; newId: string }> {
    const current = (await this.list()).find((k) => k.current);
    if (!current) throw new CofferError('INTERNAL', 'the key in use is no longer listed');
    if (current.kind !== 'passphrase') {
      throw new CofferError('INVALID_ARGUMENT', 'the repository was opened with a recovery key; use "coffer key add" to add a passphrase');
    }
    const newId = await this.addPassphrase(passphrase, current.label);
    await this.removeFile(current.id);
    return { oldId: current.id, newId };
  }

  /** Removes a key slot; refuses the key in use and the last key that can read the repository. */
  async remove(ref: string): Promise<KeyListEntry> {
    const k = await this.resolve(ref);
    if (k.current) throw new CofferError('INVALID_ARGUMENT', `key ${k.id.slice(0, 8)} is the key in use; open the repository with another key to remove it`);
    const readers = (await this.list()).filter((x) => x.kind === 'passphrase' || x.kind === 'recovery');
    // (write-only slots cannot open the repository for reading, so they never count as readers.)
    if (k.kind !== 'unreadable' && readers.filter((x) => x.id !== k.id).length === 0) {
      throw new CofferError('INVALID_ARGUMENT', `key ${k.id.slice(0, 8)} is the last key that can open the repository`);
    }
    await this.removeFile(k.id);
    return k;
  }

  private async removeFile(id: string): Promise<void> {
    try {
      await this.backend.remove({ type: 'keys', name: id });
    } catch (e) {
      throw storageFailure(e);
    }
  }

  close(): void {
    this.master.fill(0);
    wipeRepoKeys(this.keys);
  }
}
