/**
 * A repository opened with a key: config, derived keys, the blob index
 * (through the local cache), blob reads, snapshot files. The engines
 * (archiver, restorer) build on this; it knows nothing about file trees.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { CofferError, integrityError } from '../errors.js';
import { allEpochs, canRead, deriveRepoKeys, epochKeys, newMasterSecret, wipeRepoKeys, writeOnlyRepoKeys, type RepoKeys } from '../crypto/keys.js';
import { decodeKeyRef, encodeKeyRef } from './key-ref.js';
import { openFromOwner, sealToOwner, wipeSealedKeys, type SealedKeys } from '../crypto/owner.js';
import { decodeBundle, type WriteOnlyBundle } from '../format/write-only-bundle.js';
import { decodeAnyJsonFile, encodeFileToOwner } from '../format/owner-file.js';
import { decodeIndexFile, readIndexIds } from './index-files.js';
import type { PackWriteKeys, WriteKeys } from './packer.js';
import { plainHash } from '../crypto/hash.js';
import { validateChunkerParams, type ChunkerParams } from '../chunker/fastcdc.js';
import { decodeConfig, encodeConfig, hasConfigMagic, FORMAT_VERSION, type RepoConfig } from '../format/config.js';
import { encodeJsonFile } from '../format/file.js';
import type { IndexedPack } from '../format/index-file.js';
import { openBlob } from '../format/blob.js';
import { decodeAnyPackTrailer, decodePackHeader, OWNER_TRAILER_BYTES, PackCorruptError, TRAILER_BYTES, type PackEntry } from '../format/pack.js';
import { validateSnapshot, type Snapshot, type SnapshotData } from '../format/snapshot.js';
import { IndexCache, type BlobLocation } from '../cache/index-cache.js';
import { StorageError, describe, type Backend, type Handle, type ObjectInfo } from '../storage/backend.js';
import { WorkerPool, defaultThreads } from '../worker/pool.js';
import { addKeyFile, listKeys, openMaster, type RepoSecret } from './keyring.js';
import type { BlobType, SnapshotId } from '../ids.js';
import { compareTimes } from '../util/time.js';
import { mark } from '../util/timing.js';

/** Blobs of new index files added to the cache per transaction by syncIndex (bounds the decoded entries held). */
const SYNC_BATCH_BLOBS = 65_536;

/**
 * Default content-defined chunk sizes: 512 KiB minimum, 1 MiB average, 8 MiB maximum.
 * @example
 * ```ts
 * await initRepository(dir, pw, { chunker: { ...DEFAULT_CHUNKER, avgSize: 2 << 20, maxSize: 16 << 20 } });
 * ```
 */
export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 512 * 1024, avgSize: 1024 * 1024, maxSize: 8 * 1024 * 1024 };
/**
 * Default target size of pack files (16 MiB).
 * @example
 * ```ts
 * await initRepository(dir, pw, { packSize: DEFAULT_PACK_SIZE * 2 });
 * ```
 */
export const DEFAULT_PACK_SIZE = 16 * 1024 * 1024;
export const DEFAULT_COMPRESSION_LEVEL = 3;

/**
 * Options for `initRepository`: chunk sizes, zstd level (0 disables), pack size, first key label.
 * @example
 * ```ts
 * await initRepository(dir, pw, { compressionLevel: 0, keyLabel: 'laptop' });
 * ```
 */
export interface InitOptions {
  chunker?: ChunkerParams;
  compressionLevel?: number;
  packSize?: number;
  /** Label stored (encrypted) with the first key. */
  keyLabel?: string;
}

/**
 * Options for `openRepository`: cache directory, memory-only index, worker threads.
 * @example
 * ```ts
 * const repo = await openRepository(dir, pw, { noCache: true, threads: 2 });
 * ```
 */
export interface OpenOptions {
  /** Directory for the local cache; default $XDG_CACHE_HOME/coffer. */
  cacheDir?: string;
  /** Keep the index only in memory. */
  noCache?: boolean;
  threads?: number;
  /** Do not load the index files (for "repair index", which rebuilds them). */
  skipIndex?: boolean;
  /** Accept a write-only key (only `backup` does); otherwise such a key fails with WRITE_ONLY_KEY. */
  allowWriteOnly?: boolean;
  /**
   * Told once per damaged index file the open (or a later index sync) skipped:
   * `file` is "index/NAME". Opening does not fail on one; see
   * `Repository.damagedIndexFiles`.
   */
  onWarning?(w: { file: string; message: string }): void;
  /**
   * Called once while the key is derived (right after the derivation has
   * started; not at all when none is needed, as with a recovery key): the
   * caller's own work that needs no key, such as loading the code it runs
   * next, overlaps it. Must not throw.
   */
  whileDeriving?(): void;
  /**
   * The caller will use worker threads ({@link Repository.workers}): their
   * code is loaded while the key is derived, and they start (loading theirs)
   * as soon as it is, while the rest of the open runs.
   */
  workers?: boolean;
}

/** The one error every command but backup gives for a write-only key. */
export function writeOnlyError(): CofferError {
  return new CofferError('WRITE_ONLY_KEY', 'this key is write-only: it can only back up');
}

/**
 * The default local cache directory: `$XDG_CACHE_HOME/coffer`, else `~/.cache/coffer`.
 * @example
 * ```ts
 * const repo = await openRepository(dir, pw, { cacheDir: path.join(defaultCacheDir(), 'alt') });
 * ```
 */
export function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return path.join(xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache'), 'coffer');
}

/** Maps a storage failure to the user-facing error. */
export function storageFailure(e: unknown): CofferError {
  if (e instanceof CofferError) return e;
  if (e instanceof StorageError) {
    if (e.kind === 'noSpace') return new CofferError('NO_SPACE', e.message, {}, { cause: e });
    if (e.kind === 'notFound' && e.handle) return integrityError(`${describe(e.handle)} is missing`, { cause: e });
    return new CofferError('STORAGE', e.message, {}, { cause: e });
  }
  return new CofferError('INTERNAL', e instanceof Error ? e.message : String(e), {}, { cause: e });
}

export async function readConfig(backend: Backend): Promise<Buffer> {
  let stored: Buffer;
  try {
    stored = await backend.read({ type: 'config', name: 'config' });
  } catch (e) {
    if (e instanceof StorageError && e.kind === 'notFound') {
      throw new CofferError('REPO_NOT_FOUND', `no repository at ${backend.location} (run "coffer init" first)`);
    }
    throw storageFailure(e);
  }
  if (!hasConfigMagic(stored)) throw new CofferError('REPO_INVALID', `${backend.location} is not a coffer repository`);
  return stored;
}

/** True if what a slot opened to belongs to this repository: the master opens the config, or the bundle names its hash. */
export function configOpens(got: { master?: Buffer; older?: Buffer[]; bundle?: Buffer }, stored: Buffer): boolean {
  if (got.bundle) {
    try {
      return decodeBundle(got.bundle).configHash === plainHash(stored).toString('hex');
    } catch {
      return false;
    }
  }
  // The config is sealed under epoch 0's metaKey for good (it is never rewritten).
  const keys = deriveRepoKeys(got.older?.[0] ?? got.master!);
  try {
    decodeConfig(keys.metaKey, stored);
    return true;
  } catch {
    return false;
  } finally {
    wipeRepoKeys(keys);
  }
}

/**
 * An open repository: config, derived keys, the blob index (through the local cache), blob reads and snapshot files. Get one with `openRepository`; always `close()` it.
 * @example
 * ```ts
 * const repo = await openRepository('/mnt/backup/repo', pw);
 * try { console.log((await repo.listSnapshots()).length); } finally { await repo.close(); }
 * ```
 */
export class Repository {
  private pool?: WorkerPool;
  /** The index listing started while the KDF ran (see open); used once by the first syncIndex. */
  private prefetchedIndexList?: Promise<ObjectInfo[]>;
  /** True when the key slot that opened the repository has KDF settings below the creation floor. */
  weakKey = false;
  /**
   * Blobs written (or being written) in this session, by type. Keyed by the
   * id strings themselves (no "type:id" string built per lookup: less
   * garbage, and the keys share memory with the ids the trees hold).
   */
  private readonly sessionBlobs: Record<BlobType, Set<string>> = { data: new Set(), tree: new Set() };
  /** Keys of packs written with write-only keys, by ephemeral public key (hex). */
  private readonly ownerKeys = new Map<string, SealedKeys>();
  /** A write-only session's pack keys (one ephemeral key pair per session), made on first use. */
  private session?: PackWriteKeys;
  /** Index files a write-only key could not read (written by coffer before index version 2). */
  legacyIndexFiles = 0;
  /** A write-only key's folder for its local backup state (undefined with --no-cache). */
  writeOnlyStateDir?: string;
  /** Index files the last sync skipped as damaged: name → why. */
  private damagedIndex = new Map<string, string>();
  /** Damaged index files already reported through onWarning. */
  private readonly warnedIndex = new Set<string>();
  private onWarning?: OpenOptions['onWarning'];

  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
    readonly keys: RepoKeys,
    readonly cache: IndexCache,
    readonly keyName: string,
    private readonly threads?: number,
    /** Set for a write-only key: its local cache key (names and seals its local state). */
    readonly writeOnlyCacheKey?: Buffer,
  ) {}

  /** True when the repository was opened with a write-only key. */
  get writeOnly(): boolean {
    return !canRead(this.keys);
  }

  /** Fails with WRITE_ONLY_KEY unless the key can read. */
  requireReadable(): void {
    if (this.writeOnly) throw writeOnlyError();
  }

  /** What new packs and index files are sealed with. */
  writeKeys(): WriteKeys {
    const epoch = this.keys.epoch;
    if (!this.writeOnly) return { pack: { blobKey: this.keys.blobKey, metaKey: this.keys.metaKey, ref: encodeKeyRef({ epoch }) }, repo: this.keys };
    if (!this.session) {
      const { ephPub, keys } = sealToOwner(this.keys.ownerPub);
      this.session = { blobKey: keys.blobKey, metaKey: keys.metaKey, ref: encodeKeyRef({ epoch, ephPub }), ephPub, wrapKey: this.keys.wrapKey };
    }
    return { pack: this.session, repo: this.keys };
  }

  /** The keys that open a pack's blobs and header, from its key reference (undefined: the repository's own). */
  keysForRef(ref: Buffer | undefined): { blobKey: Buffer; metaKey: Buffer } {
    this.requireReadable();
    let r;
    try {
      r = decodeKeyRef(ref);
    } catch {
      throw integrityError('a pack key reference is malformed');
    }
    const ek = epochKeys(this.keys, r.epoch);
    if (!ek) throw integrityError(`a pack is sealed with keys of epoch ${r.epoch}, which this key does not hold`);
    if (!r.ephPub) return ek;
    const hex = ref!.toString('hex');
    let k = this.ownerKeys.get(hex);
    if (!k) {
      try {
        k = openFromOwner(ek.ownerSecret, ek.ownerPub, r.ephPub);
      } catch {
        throw integrityError(`a pack key reference (${hex.slice(0, 12)}) is not a valid public key`);
      }
      this.ownerKeys.set(hex, k);
    }
    return k;
  }

  /** A pack's blob key for the workers: undefined for the repository's own (the workers hold it). */
  blobKeyFor(packId: string): Buffer | undefined {
    const k = this.keysForPack(packId).blobKey;
    return k === this.keys.blobKey ? undefined : k;
  }

  /**
   * Reads a pack's header through its trailer, without the index: either
   * trailer kind (section 9 of FORMAT.md). `ref` is the ephemeral public key
   * of a write-only key's pack.
   */
  async readPackHeader(id: string, size: number): Promise<{ entries: PackEntry[]; ref?: Buffer }> {
    if (size < TRAILER_BYTES) throw new PackCorruptError('pack is truncated');
    const n = Math.min(size, OWNER_TRAILER_BYTES);
    const tail = await this.backend.read({ type: 'data', name: id }, { offset: size - n, length: n });
    const loc = decodeAnyPackTrailer(allEpochs(this.keys), tail, size);
    const ref = encodeKeyRef({ epoch: loc.epoch, ephPub: loc.ephPub });
    const keys = this.keysForRef(ref);
    const header = await this.backend.read({ type: 'data', name: id }, { offset: loc.offset, length: loc.length });
    return { entries: decodePackHeader(keys.metaKey, header, loc.offset), ...(ref ? { ref } : {}) };
  }

  /** The key epoch a pack was sealed in. */
  packEpoch(packId: string): number {
    try {
      return decodeKeyRef(this.cache.packRef(packId)).epoch;
    } catch {
      return -1;
    }
  }

  /** Key references of indexed packs read so far (a pack's reference never changes: it is part of its content). */
  private readonly packRefs = new Map<string, Buffer | undefined>();

  /**
   * The key reference of a pack the index lists, remembered: re-backups and
   * restores read many trees from few packs (one SQLite query each, before).
   */
  private indexedPackRef(packId: string): Buffer | undefined {
    if (this.packRefs.has(packId)) return this.packRefs.get(packId);
    const ref = this.cache.packRef(packId);
    if (this.packRefs.size >= 10_000) this.packRefs.clear();
    this.packRefs.set(packId, ref);
    return ref;
  }

  /** The keys that open a pack's blobs and header. */
  keysForPack(packId: string): { blobKey: Buffer; metaKey: Buffer } {
    return this.keysForRef(this.cache.packRef(packId));
  }

  static async init(backend: Backend, passphrase: Buffer, opts: InitOptions = {}): Promise<string> {
    const chunker = opts.chunker ?? DEFAULT_CHUNKER;
    try {
      validateChunkerParams(chunker);
    } catch (e) {
      throw new CofferError('INVALID_ARGUMENT', `bad chunker sizes: ${(e as Error).message}`);
    }
    const level = opts.compressionLevel ?? DEFAULT_COMPRESSION_LEVEL;
    if (!Number.isInteger(level) || level < 0 || level > 19) throw new CofferError('INVALID_ARGUMENT', 'compression level must be 0–19');
    const packSize = opts.packSize ?? DEFAULT_PACK_SIZE;
    if (!Number.isInteger(packSize) || packSize < 64 * 1024 || packSize > 1 << 30) throw new CofferError('INVALID_ARGUMENT', 'pack size must be 64 KiB–1 GiB');
    if (passphrase.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
    if (await backend.stat({ type: 'config', name: 'config' }).catch(() => undefined)) {
      throw new CofferError('REPO_EXISTS', `a repository already exists at ${backend.location}`);
    }
    const master = newMasterSecret();
    const keys = deriveRepoKeys(master);
    const config: RepoConfig = { version: FORMAT_VERSION, id: randomBytes(32).toString('hex'), chunker, compressionLevel: level, packSize };
    try {
      await backend.create();
      await addKeyFile(backend, passphrase, master, keys.metaKey, { label: opts.keyLabel ?? 'initial key', created: new Date().toISOString(), kind: 'passphrase' });
      await backend.write({ type: 'config', name: 'config' }, encodeConfig(keys.metaKey, config));
    } catch (e) {
      if (e instanceof StorageError && e.kind === 'exists') throw new CofferError('REPO_EXISTS', `${backend.location} is not empty; refusing to create a repository there`);
      throw storageFailure(e);
    } finally {
      master.fill(0);
      wipeRepoKeys(keys);
    }
    return config.id;
  }

  /** Opens with a passphrase (a Buffer) or a recovery code's entropy ({kind: 'recovery', entropy}). */
  static async open(backend: Backend, secret: Buffer | RepoSecret, opts: OpenOptions = {}): Promise<Repository> {
    // A pool started while the key was derived: the repository adopts it, or it is closed here.
    const early: { pool?: WorkerPool } = {};
    try {
      return await Repository.openWith(backend, secret, opts, early);
    } catch (e) {
      await early.pool?.close();
      throw e;
    }
  }

  private static async openWith(backend: Backend, secret: Buffer | RepoSecret, opts: OpenOptions, early: { pool?: WorkerPool }): Promise<Repository> {
    mark('open');
    const stored = await readConfig(backend);
    // While the KDF runs (about half a second, on other threads) the main
    // thread is idle: list the index and load the native modules the rest of
    // the open needs. Neither needs a key; a wrong password only wastes them.
    // The loading starts only once the derivation has: before, it would
    // delay it (docs/PERFORMANCE.md, session 6 "start-up").
    const indexList = opts.skipIndex ? undefined : backend.list('index');
    indexList?.catch(() => undefined); // awaited (and reported) by syncIndex, or dropped
    const whileDeriving = () => {
      opts.whileDeriving?.();
      preloadNativeModules(opts.workers === true);
    };
    const got = await openMaster(backend, secret, undefined, (m) => configOpens(m, stored), !opts.allowWriteOnly, whileDeriving).catch((e) => {
      throw e instanceof CofferError ? e : storageFailure(e);
    });
    const { keyName, weak } = got;
    // Worker threads start now, once the key is derived, not while it is:
    // there they added their memory to Argon2's 128 MiB (the command's peak
    // RSS, +18 MiB measured) and competed with its two lanes for the cores.
    // Now they load their code on an otherwise idle core while this thread
    // finishes the open (cache, index, lock, snapshot list); the keys reach
    // them through the pool's shared context (worker/context.ts).
    if (opts.workers) {
      try {
        early.pool = new WorkerPool(undefined, opts.threads);
      } catch {
        // started again (and a failure reported) by workers()
      }
    }
    if (got.bundle) {
      if (!opts.allowWriteOnly) {
        got.bundle.fill(0);
        throw writeOnlyError();
      }
      return Repository.openWriteOnly(backend, got.bundle, keyName, weak, opts, early);
    }
    const chain = [...(got.older ?? []), got.master];
    const keys = deriveRepoKeys(chain);
    for (const m of chain) m.fill(0);
    let config: RepoConfig;
    try {
      config = decodeConfig(epochKeys(keys, 0)!.metaKey, stored);
      validateChunkerParams(config.chunker);
    } catch {
      wipeRepoKeys(keys);
      throw integrityError('the config file is damaged', { file: 'config' });
    }
    const cacheFile = opts.noCache ? undefined : path.join(opts.cacheDir ?? defaultCacheDir(), config.id, 'index.sqlite');
    mark('keys derived');
    let cache: IndexCache;
    try {
      cache = IndexCache.open(cacheFile);
    } catch {
      // A broken cache must never stop a backup or restore: fall back to memory.
      cache = IndexCache.open(undefined);
    }
    const repo = new Repository(backend, config, keys, cache, keyName, opts.threads);
    repo.adoptPool(early);
    repo.weakKey = weak;
    repo.onWarning = opts.onWarning;
    repo.prefetchedIndexList = indexList;
    try {
      mark('cache opened');
      if (!opts.skipIndex) await repo.syncIndex();
      mark('index synced');
    } catch (e) {
      await repo.close();
      throw e;
    }
    return repo;
  }

  private static async openWriteOnly(backend: Backend, bundleBytes: Buffer, keyName: string, weak: boolean, opts: OpenOptions, early: { pool?: WorkerPool }): Promise<Repository> {
    let bundle: WriteOnlyBundle;
    try {
      bundle = decodeBundle(bundleBytes);
      validateChunkerParams(bundle.config.chunker);
    } catch {
      throw integrityError(`key file ${keyName.slice(0, 8)} is damaged`);
    } finally {
      bundleBytes.fill(0);
    }
    const keys = writeOnlyRepoKeys(bundle);
    bundle.chunkerKey.fill(0);
    // Its own cache file: it holds blob ids without locations, which a full key's cache must never see.
    const cacheFile = opts.noCache ? undefined : path.join(opts.cacheDir ?? defaultCacheDir(), bundle.config.id, 'write-only.sqlite');
    let cache: IndexCache;
    try {
      cache = IndexCache.open(cacheFile);
    } catch {
      cache = IndexCache.open(undefined);
    }
    const repo = new Repository(backend, bundle.config, keys, cache, keyName, opts.threads, bundle.cacheKey);
    repo.adoptPool(early);
    repo.weakKey = weak;
    repo.onWarning = opts.onWarning;
    if (!opts.noCache) repo.writeOnlyStateDir = path.join(opts.cacheDir ?? defaultCacheDir(), bundle.config.id, 'write-only');
    try {
      await repo.syncIndex();
    } catch (e) {
      await repo.close();
      throw e;
    }
    return repo;
  }

  /** Reads a whole small file and checks that its content matches its name. */
  async readVerified(h: Handle): Promise<Buffer> {
    let stored: Buffer;
    try {
      stored = await this.backend.read(h);
    } catch (e) {
      throw storageFailure(e);
    }
    if (plainHash(stored).toString('hex') !== h.name) throw integrityError(`${describe(h)} does not match its name (damaged or truncated)`, { file: describe(h) });
    return stored;
  }

  /**
   * Index files the last index sync skipped because they are damaged (they
   * do not match their name, or do not decrypt and decode), with the reason.
   * The blobs they list are unknown meanwhile: a backup stores them again,
   * a restore that needs them reports them missing, `check` reports the
   * files, and prune and "repair snapshots" refuse to run (see
   * `requireIntactIndex`) until "repair index" rebuilds the index.
   */
  get damagedIndexFiles(): { name: string; message: string }[] {
    return [...this.damagedIndex].map(([name, message]) => ({ name, message }));
  }

  /**
   * Throws an integrity error naming the first damaged index file, if the
   * last sync skipped any: for operations that would take the blobs it lists
   * for unused or missing (prune would delete their packs, "repair
   * snapshots" would drop them from snapshots).
   */
  requireIntactIndex(what: string): void {
    const n = this.damagedIndex.size;
    if (n === 0) return;
    const [name] = this.damagedIndex.keys();
    throw integrityError(
      `index/${name} ${n > 1 ? `and ${n - 1} more index files are` : 'is'} damaged; ${what} refuses to run while the index is incomplete — run "coffer repair index" first`,
      { file: `index/${name}`, files: [...this.damagedIndex.keys()].map((f) => `index/${f}`) },
    );
  }

  /**
   * Brings the cache up to date with the repository's index files. A damaged
   * index file (for example one a server that writes in place left
   * truncated when an upload was cut off) is skipped, recorded in
   * `damagedIndexFiles` and reported once through `onWarning`; it is read
   * again by every sync until it is gone.
   */
  async syncIndex(): Promise<void> {
    let listed;
    try {
      const prefetched = this.prefetchedIndexList;
      this.prefetchedIndexList = undefined;
      listed = await (prefetched ?? this.backend.list('index'));
    } catch (e) {
      throw storageFailure(e);
    }
    const names = new Set(listed.map((f) => f.name));
    const known = this.cache.indexFiles();
    for (const name of known) if (!names.has(name)) this.cache.removeIndexFile(name);
    const damaged = new Map<string, string>();
    // New index files are added in batches (one transaction each, see
    // IndexCache.addIndexFiles): a cache built from scratch for a large
    // repository inserts millions of blobs.
    let batch: { name: string; packs: IndexedPack[] }[] = [];
    let batchBlobs = 0;
    const flush = () => {
      if (batch.length) {
        this.cache.addIndexFiles(batch);
        this.cacheWasEmpty = {}; // (others' blobs now: ask again)
      }
      batch = [];
      batchBlobs = 0;
    };
    try {
      for (const name of names) {
        if (known.has(name)) continue;
        const h: Handle = { type: 'index', name };
        let stored: Buffer;
        try {
          stored = await this.readVerified(h);
        } catch (e) {
          // Removed since the listing: a prune replaced it (its successor was
          // written first). Commands re-sync once they hold their lock.
          const cause = e instanceof CofferError ? (e.cause ?? e.data.cause) : undefined;
          if (cause instanceof StorageError && cause.kind === 'notFound') continue;
          // Damaged (the content does not match the name): skipped. A storage
          // failure still fails the sync: the file may be intact.
          if (e instanceof CofferError && e.code === 'INTEGRITY') {
            damaged.set(name, 'does not match its name (damaged or truncated)');
            continue;
          }
          throw e;
        }
        let packs: IndexedPack[];
        try {
          if (this.writeOnly) {
            // Ids only, recorded as one pseudo-pack per index file (no locations: a write-only key never reads blobs).
            const ids = readIndexIds(this.keys.idListKey, stored);
            if (!ids) {
              this.legacyIndexFiles++;
              continue;
            }
            packs = [{ id: name as IndexedPack['id'], length: 0, blobs: ids.map((b) => ({ ...b, offset: 0, length: 0, rawLength: 0 })) }];
          } else packs = decodeIndexFile(this.keys, stored);
        } catch {
          damaged.set(name, 'does not decrypt or decode');
          continue;
        }
        batch.push({ name, packs });
        for (const p of packs) batchBlobs += p.blobs.length;
        if (batchBlobs >= SYNC_BATCH_BLOBS) flush();
      }
      flush();
    } finally {
      this.cache.endBulk();
    }
    this.damagedIndex = damaged;
    for (const [name, why] of damaged) {
      if (this.warnedIndex.has(name)) continue;
      this.warnedIndex.add(name);
      this.onWarning?.({
        file: `index/${name}`,
        message: `index/${name} ${why} and was skipped: the blobs it lists are unknown until "coffer repair index" rebuilds the index`,
      });
    }
  }

  /** How many worker threads {@link Repository.workers} runs (without starting them). */
  get workerThreads(): number {
    return this.pool?.threads ?? this.threads ?? defaultThreads();
  }

  /** Takes over a pool started during the open (it closes with the repository). */
  private adoptPool(early: { pool?: WorkerPool }): void {
    this.pool = early.pool;
    early.pool = undefined;
  }

  /** The worker pool, started on first use (or during the open: OpenOptions.workers); it gets the keys here. */
  workers(): WorkerPool {
    const pool = (this.pool ??= new WorkerPool(undefined, this.threads));
    if (!pool.hasContext) {
      pool.setContext({
        chunker: this.config.chunker,
        gearBytes: this.keys.gearBytes,
        blobIdKey: this.keys.blobIdKey,
        blobKey: this.writeKeys().pack.blobKey,
        compressionLevel: this.config.compressionLevel,
      });
    }
    return pool;
  }

  /** True if the blob is in the index or was saved in this session. */
  hasBlob(type: BlobType, id: string): boolean {
    return this.sessionBlobs[type].has(id) || this.cache.has(type, id);
  }

  /**
   * Of `ids` (in order, duplicates allowed), those neither in the index nor
   * saved in this session, each once; they are noted as being saved.
   */
  claimNewBlobs(type: BlobType, ids: string[]): Set<string> {
    const candidates: string[] = [];
    const unsure: string[] = [];
    const session = this.sessionBlobs[type];
    // When the cache listed none of this type before the session wrote an
    // index file (a first backup), only ids that may have been forgotten
    // can be in it: the others need no query (see forgetIndexed).
    const empty = (this.cacheWasEmpty[type] ??= !this.cache.hasAny(type));
    const forgotten = this.forgotten[type];
    for (const id of ids) {
      if (session.has(id)) continue;
      candidates.push(id);
      if (!empty || forgotten.has(idTag(id))) unsure.push(id);
    }
    const known = unsure.length ? this.cache.knownOf(type, unsure) : new Set<string>();
    const claimed = new Set<string>();
    for (const id of candidates) {
      if (known.has(id) || claimed.has(id)) continue;
      claimed.add(id);
      this.noteSaved(type, id);
    }
    return claimed;
  }

  /**
   * The packs' blobs are now in the index cache (an index file of this
   * session was written and added): the session need not remember them,
   * hasBlob and claimNewBlobs find them in the cache. Keeps a backup's
   * memory from growing with every blob it saves.
   */
  forgetIndexed(packs: readonly IndexedPack[]): void {
    for (const p of packs) {
      for (const b of p.blobs) {
        // Asked now, the cache already lists these: "not empty", the safe answer.
        this.cacheWasEmpty[b.type] ??= false;
        if (this.sessionBlobs[b.type].delete(b.id)) this.forgotten[b.type].add(idTag(b.id));
      }
    }
  }

  /**
   * Per type: whether the cache listed no blob of it when claimNewBlobs was
   * first asked (undefined: not yet known).
   */
  private cacheWasEmpty: Partial<Record<BlobType, boolean>> = {};
  /**
   * Per type: a 28-bit tag of each id forgetIndexed dropped. A filter: an
   * id whose tag is absent was not forgotten; one whose tag is present may
   * have been (ask the cache). ~25 bytes per blob instead of ~130.
   */
  private readonly forgotten: Record<BlobType, Set<number>> = { data: new Set(), tree: new Set() };

  /** Records that a blob is being saved in this session (so it is not saved twice). */
  noteSaved(type: BlobType, id: string): void {
    this.sessionBlobs[type].add(id);
  }

  lookupBlob(type: BlobType, id: string): BlobLocation | undefined {
    return this.cache.lookup(type, id);
  }

  /**
   * Reads, decrypts and verifies a blob. When the index lists several copies
   * (after concurrent backups, or a damaged one saved again), a copy that
   * cannot be read or does not authenticate falls back to the next one; the
   * first failure is reported when none is good. `accept` limits the copies
   * tried (restore passes over one it already found damaged); `hint` is
   * tried first.
   */
  async loadBlob(type: BlobType, id: string, accept?: (loc: BlobLocation) => boolean, hint?: BlobLocation): Promise<Buffer> {
    this.requireReadable();
    // `hint`: a location the caller already looked up (with lookupMany, for
    // several blobs in one query); the index is asked only if it fails.
    if (hint && !accept) {
      try {
        return await this.loadCopy(type, id, hint);
      } catch {
        // every copy is tried below, this one included
      }
    }
    let locs = this.cache.lookupAll(type, id);
    if (accept) locs = locs.filter(accept);
    if (locs.length === 0) throw new CofferError('BLOB_NOT_FOUND', `${type} blob ${id.slice(0, 12)} is not in the index`, { id });
    let first: unknown;
    for (const loc of locs) {
      try {
        return await this.loadCopy(type, id, loc);
      } catch (e) {
        first ??= e;
      }
    }
    throw first;
  }

  private async loadCopy(type: BlobType, id: string, loc: BlobLocation): Promise<Buffer> {
    let stored: Buffer;
    try {
      // Trees are read again by every backup and restore: let a cache layer keep them.
      stored = await this.backend.read({ type: 'data', name: loc.packId }, { offset: loc.offset, length: loc.length, metadata: type === 'tree' });
    } catch (e) {
      throw storageFailure(e);
    }
    try {
      return openBlob({ blobKey: this.keysForRef(this.indexedPackRef(loc.packId)).blobKey, blobIdKey: this.keys.blobIdKey }, type, id, stored, loc.rawLength);
    } catch (e) {
      throw integrityError(`${type} blob ${id.slice(0, 12)} in pack ${loc.packId.slice(0, 12)} is damaged (${(e as Error).message})`, {
        pack: loc.packId,
        id,
      });
    }
  }

  async saveSnapshot(s: SnapshotData): Promise<SnapshotId> {
    const stored = this.writeOnly ? encodeFileToOwner(this.keys.ownerPub, this.keys.wrapKey, 'snapshot', Buffer.from(JSON.stringify(s))) : encodeJsonFile(this.keys.metaKey, 'snapshot', s);
    const name = plainHash(stored).toString('hex');
    try {
      await this.backend.write({ type: 'snapshots', name }, stored);
    } catch (e) {
      throw storageFailure(e);
    }
    if (!this.writeOnly) this.cache.putSnapshot(name, stored);
    return name as SnapshotId;
  }

  private async loadSnapshotFile(name: string): Promise<Snapshot> {
    let stored = this.cache.snapshot(name);
    if (!stored || plainHash(stored).toString('hex') !== name) {
      stored = await this.readVerified({ type: 'snapshots', name });
      this.cache.putSnapshot(name, stored);
    }
    try {
      return { ...validateSnapshot(decodeAnyJsonFile(this.keys, 'snapshot', stored)), id: name as SnapshotId };
    } catch {
      throw integrityError(`snapshots/${name} is damaged${await this.rotatedOutHint()}`, { file: `snapshots/${name}` });
    }
  }

  private slotsBeyondThisKey?: Promise<boolean>;

  /**
   * A file that opens under none of this key's epochs is damaged — or sealed
   * under a newer epoch, when this key is an old copy of a slot that
   * `key rotate` removed. The two look alike (authenticated encryption fails
   * either way); a key slot whose metadata this key cannot read either is the
   * tell-tale of the second case, so the message names both.
   */
  private async rotatedOutHint(): Promise<string> {
    if (this.writeOnly) return '';
    this.slotsBeyondThisKey ??= listKeys(this.backend, allEpochs(this.keys).map((e) => e.metaKey)).then(
      (slots) => slots.some((s) => s.kind === 'unreadable'),
      () => false,
    );
    return (await this.slotsBeyondThisKey) ? ', or sealed under a newer key: the repository has key slots this key cannot read (was this key rotated out?)' : '';
  }

  /** All snapshots, oldest first. A damaged snapshot file fails the call, naming it. */
  async listSnapshots(): Promise<Snapshot[]> {
    this.requireReadable();
    mark('list snapshots');
    let listed;
    try {
      listed = await this.backend.list('snapshots');
    } catch (e) {
      throw storageFailure(e);
    }
    const names = listed.map((f) => f.name);
    this.cache.retainSnapshots(new Set(names));
    const out: Snapshot[] = [];
    for (const n of names) out.push(await this.loadSnapshotFile(n));
    mark('snapshots listed');
    return out.sort((a, b) => compareTimes(a.time, b.time) || a.id.localeCompare(b.id));
  }

  /** Resolves "latest", a full id or a unique prefix. */
  async findSnapshot(ref: string, filter?: (s: Snapshot) => boolean): Promise<Snapshot> {
    const listed = await this.listSnapshots();
    const all = listed.filter((s) => !filter || filter(s));
    if (ref === 'latest') {
      const s = all.at(-1);
      if (!s) throw new CofferError('SNAPSHOT_NOT_FOUND', listed.length ? 'no snapshot matches the given filters (host, path, tag)' : 'the repository has no snapshots');
      return s;
    }
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new CofferError('INVALID_ARGUMENT', `"${ref}" is not a snapshot id (hex) or "latest"`);
    const hits = all.filter((s) => s.id.startsWith(ref));
    if (hits.length === 0) throw new CofferError('SNAPSHOT_NOT_FOUND', `no snapshot with id ${ref}`);
    if (hits.length > 1) {
      const shown = hits.slice(0, 5).map((s) => s.id.slice(0, Math.max(8, ref.length + 2)));
      throw new CofferError(
        'SNAPSHOT_AMBIGUOUS',
        `snapshot prefix ${ref} is ambiguous: it matches ${shown.join(', ')}${hits.length > 5 ? ` and ${hits.length - 5} more` : ''}; give more characters`,
        { candidates: hits.map((s) => s.id) },
      );
    }
    return hits[0];
  }

  async close(): Promise<void> {
    mark('close');
    await this.pool?.close();
    this.pool = undefined;
    this.cache.close();
    wipeRepoKeys(this.keys);
    for (const k of this.ownerKeys.values()) wipeSealedKeys(k);
    this.ownerKeys.clear();
    if (this.session) wipeSealedKeys(this.session);
    this.session = undefined;
    this.writeOnlyCacheKey?.fill(0);
    await this.backend.close?.();
    mark('closed');
  }
}

/**
 * Loads the native modules an open repository uses next (SQLite, zstd,
 * piscina) into the module cache; called while the KDF runs. A failure is
 * left for the real load to report.
 */
function preloadNativeModules(workers: boolean): void {
  mark('preload start');
  const require = createRequire(import.meta.url);
  // piscina only for callers that will start workers: ~10 ms of CPU (quiet
  // machine) that, with both cores busy deriving the key, is not free.
  for (const m of ['better-sqlite3', 'zstd-napi/binding', ...(workers ? ['piscina'] : [])]) {
    try {
      const loaded = require(m);
      // better-sqlite3 loads its addon only when the first database opens
      // (~15-70 ms, measured): open a throw-away one now, not after the KDF.
      if (m === 'better-sqlite3') new (loaded as typeof import('better-sqlite3'))(':memory:').close();
    } catch {
      // reported where the module is used
    }
  }
  mark('preload end');
}

/** The first 28 bits of a hex id, as a small integer (see Repository.forgotten). */
function idTag(id: string): number {
  return parseInt(id.slice(0, 7), 16);
}
