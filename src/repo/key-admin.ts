/**
 * Key management on an open master secret (or key chain): list, add
 * (passphrase, recovery or write-only), change the passphrase of the key in
 * use, remove, and rotate the master secret. Only key files and index files
 * are written or removed; pack data is never re-encrypted here.
 */
import { randomBytes } from 'node:crypto';
import { allEpochs, chunkerKeyFrom, deriveRepoKeys, epochKeys, newMasterSecret, wipeRepoKeys, type RepoKeys } from '../crypto/keys.js';
import { plainHash } from '../crypto/hash.js';
import { encodeBundle } from '../format/write-only-bundle.js';
import type { SlotPayload } from '../format/keyfile.js';
import { rewriteIndexFiles } from './index-files.js';
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
 * password in use, remove slots, rotate the master secret (key slots and
 * index files only; `reencrypt` re-encrypts pack data).
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
    /** M_0 … M_n (one entry until the first rotation). */
    private readonly chain: Buffer[],
    private readonly keys: RepoKeys,
    /** Name of the key file that opened the repository. */
    readonly keyName: string,
    private readonly configHash: string,
    private readonly config: ReturnType<typeof decodeConfig>,
  ) {}

  static async open(backend: Backend, secret: Buffer | RepoSecret): Promise<KeyAdmin> {
    const stored = await readConfig(backend);
    const got = await openMaster(backend, secret, undefined, (m) => configOpens(m, stored), true).catch((e) => {
      throw storageFailure(e);
    });
    const { keyName, weak } = got;
    if (!got.master) {
      got.bundle.fill(0);
      throw writeOnlyError();
    }
    const chain = [...(got.older ?? []), got.master];
    const keys = deriveRepoKeys(chain);
    let config;
    try {
      config = decodeConfig(epochKeys(keys, 0)!.metaKey, stored);
    } catch {
      for (const m of chain) m.fill(0);
      wipeRepoKeys(keys);
      throw integrityError('the config file is damaged', { file: 'config' });
    }
    const admin = new KeyAdmin(backend, chain, keys, keyName, plainHash(stored).toString('hex'), config);
    admin.weakKey = weak;
    return admin;
  }

  /** The key epoch new objects are written in (0 until the first rotation). */
  get epoch(): number {
    return this.keys.epoch;
  }

  /** The keys, for taking a lock on the repository this admin works on. */
  get lockKeys(): RepoKeys {
    return this.keys;
  }

  /** What a full slot wraps: the master secret, or the whole chain after rotations. */
  private payload(): { bytes: Buffer; kind: SlotPayload } {
    return this.chain.length > 1 ? { bytes: Buffer.concat(this.chain), kind: 'chain' } : { bytes: Buffer.from(this.chain[0]), kind: 'master' };
  }

  async list(): Promise<KeyListEntry[]> {
    try {
      const metaKeys = allEpochs(this.keys)
        .map((e) => e.metaKey)
        .reverse();
      return (await listKeys(this.backend, metaKeys)).map((k) => ({ ...k, current: k.id === this.keyName }));
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
    const p = this.payload();
    let id: string;
    try {
      id = await addKeyFile(this.backend, passphrase, p.bytes, this.keys.metaKey, meta, p.kind);
      if (!(await verifyKeyFile(this.backend, id, { kind: 'passphrase', passphrase }, p.bytes, p.kind))) {
        throw integrityError(`keys/${id} did not read back correctly`);
      }
    } catch (e) {
      throw storageFailure(e);
    } finally {
      p.bytes.fill(0);
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
    const p = this.payload();
    try {
      const id = await addRecoveryKeyFile(this.backend, entropy, p.bytes, this.keys.metaKey, meta, p.kind);
      if (!(await verifyKeyFile(this.backend, id, { kind: 'recovery', entropy }, p.bytes, p.kind))) {
        throw integrityError(`keys/${id} did not read back correctly`);
      }
      return { id, code };
    } catch (e) {
      throw storageFailure(e);
    } finally {
      entropy.fill(0);
      p.bytes.fill(0);
    }
  }

  /**
   * Adds a write-only slot: its passphrase wraps a bundle (owner public key,
   * blob-id and chunker keys, id-list and lock keys, a fresh local-cache key,
   * the config) — never the master secret, blobKey or metaKey. Returns its id.
   * Then rewrites index files of older versions or key epochs (whose blob ids
   * a write-only key cannot read) in the current one; call it under an
   * exclusive lock.
   */
  async addWriteOnly(passphrase: Buffer, label: string): Promise<{ id: string; upgradedIndexFiles: number }> {
    if (passphrase.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
    const meta = { label, created: new Date().toISOString(), kind: 'write-only' as const };
    const chunkerKey = chunkerKeyFrom(this.chain[0]);
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
      epoch: this.keys.epoch,
    });
    chunkerKey.fill(0);
    cacheKey.fill(0);
    let id: string;
    try {
      id = await addKeyFile(this.backend, passphrase, bundle, this.keys.metaKey, meta, 'write-only');
      if (!(await verifyKeyFile(this.backend, id, { kind: 'passphrase', passphrase }, bundle, 'write-only'))) {
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
   * Rewrites index files of version 1 or of an older key epoch in the current
   * one (new files first, then the old ones removed, as prune does), so that
   * write-only keys see their blob ids and leaked older keys cannot read the
   * id lists. Returns how many files were replaced.
   */
  async upgradeIndexFiles(keys: RepoKeys = this.keys): Promise<number> {
    try {
      return await rewriteIndexFiles(this.backend, keys);
    } catch (e) {
      throw storageFailure(e);
    }
  }

  /**
   * Rotates the master secret: draws M_{n+1}, writes a new passphrase slot
   * (with `passphrase`) wrapping M_0 … M_{n+1} and checks it, removes every
   * other slot (they wrap only older masters: passphrases, recovery and
   * write-only keys must be added again), then rewrites the index files in
   * the new epoch. Blob ids and the gear table stay M_0's. A crash before the
   * new slot exists changes nothing; after it, the new slot opens everything
   * and old slots (until removed) open what was written before. Call it under
   * an exclusive lock. `afterStep` is for fault-injection tests.
   */
  async rotate(
    passphrase: Buffer,
    label: string,
    afterStep?: (step: 'slot-written' | 'slots-removed') => Promise<void>,
  ): Promise<{ newId: string; epoch: number; removed: KeyListEntry[]; indexFilesRewritten: number }> {
    if (passphrase.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
    if (this.chain.length >= 256) throw new CofferError('INVALID_ARGUMENT', 'this repository has been rotated 255 times; no more epochs');
    const before = await this.list();
    const next = [...this.chain.map((m) => Buffer.from(m)), newMasterSecret()];
    const nextKeys = deriveRepoKeys(next);
    const payload = Buffer.concat(next);
    const meta = { label, created: new Date().toISOString(), kind: 'passphrase' as const };
    let newId: string;
    try {
      try {
        newId = await addKeyFile(this.backend, passphrase, payload, nextKeys.metaKey, meta, 'chain');
        if (!(await verifyKeyFile(this.backend, newId, { kind: 'passphrase', passphrase }, payload, 'chain'))) {
          throw integrityError(`keys/${newId} did not read back correctly`);
        }
      } catch (e) {
        throw storageFailure(e);
      }
      await afterStep?.('slot-written');
      for (const k of before) await this.removeFile(k.id);
      await afterStep?.('slots-removed');
      const indexFilesRewritten = await this.upgradeIndexFiles(nextKeys);
      return { newId, epoch: nextKeys.epoch, removed: before, indexFilesRewritten };
    } finally {
      payload.fill(0);
      for (const m of next) m.fill(0);
      wipeRepoKeys(nextKeys);
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
    // (write-only slots cannot open the repository for reading, so they never count as readers.)
    const readers = (await this.list()).filter((x) => x.kind === 'passphrase' || x.kind === 'recovery');
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
    for (const m of this.chain) m.fill(0);
    wipeRepoKeys(this.keys);
  }
}
