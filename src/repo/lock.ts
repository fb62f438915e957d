/**
 * Repository locks: small encrypted files under locks/ that say who is using
 * the repository (host, pid, user), since when (refreshed while the command
 * runs), and whether they need it alone (exclusive: prune, forget, repair) or
 * can share it (backup, restore, check).
 *
 * A lock is stale when its process is gone (same host: the pid no longer
 * exists) or it has not been refreshed for STALE_AFTER_MS. Stale locks never
 * block anyone and are removed when seen. Taking a lock writes it first and
 * then looks for conflicting live locks, so two processes racing for
 * conflicting locks can both fail but never both succeed.
 */
import { mark } from '../util/timing.js';
import os from 'node:os';
import { CofferError } from '../errors.js';
import { plainHash } from '../crypto/hash.js';
import { decodeJsonFile, encodeJsonFile } from '../format/file.js';
import { StorageError, type Backend } from '../storage/backend.js';
import { storageFailure } from './repository.js';

/** A lock not refreshed for this long is stale. */
export const STALE_AFTER_MS = 30 * 60 * 1000;
/** A held lock is rewritten this often. */
export const REFRESH_EVERY_MS = 5 * 60 * 1000;

/**
 * The decrypted body of a lock file: host, user, pid, time, exclusive.
 * @example
 * ```ts
 * const d: LockData = { version: 1, time: new Date().toISOString(), exclusive: false, hostname: 'h', username: 'u', pid: process.pid };
 * ```
 */
export interface LockData {
  version: 1;
  /** Last refresh, ISO 8601. */
  time: string;
  exclusive: boolean;
  hostname: string;
  username: string;
  pid: number;
}

/**
 * One lock file as `listLocks` reports it.
 * @example
 * ```ts
 * const entries: LockEntry[] = await listLocks(repo);
 * ```
 */
export interface LockEntry {
  name: string;
  /** Undefined when the file could not be read or decoded. */
  data?: LockData;
  ageMs: number;
  /** Why the lock no longer counts, or undefined for a live lock. */
  stale?: string;
}

/** What locks need from a repository (a Repository satisfies it). */
export interface LockRepo {
  readonly backend: Backend;
  /** Locks are sealed under lockKey (write-only keys hold it too); files of older versions, under metaKey, are still read. */
  readonly keys: { readonly lockKey: Buffer; readonly metaKey: Buffer; readonly past?: readonly { readonly lockKey: Buffer; readonly metaKey: Buffer }[] };
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Why `data` is stale at `now` (seen from `hostname`), or undefined when it is live. */
export function staleReason(data: LockData, now: number, hostname = os.hostname(), staleAfterMs = STALE_AFTER_MS): string | undefined {
  const age = now - Date.parse(data.time);
  if (age > staleAfterMs) return `not refreshed for ${Math.round(age / 60000)} minutes`;
  if (data.hostname === hostname && data.pid !== process.pid && !pidAlive(data.pid)) return `process ${data.pid} is gone`;
  return undefined;
}

function validLock(v: unknown): LockData {
  const d = v as LockData;
  if (
    !d ||
    d.version !== 1 ||
    typeof d.time !== 'string' ||
    Number.isNaN(Date.parse(d.time)) ||
    typeof d.exclusive !== 'boolean' ||
    typeof d.hostname !== 'string' ||
    typeof d.username !== 'string' ||
    !Number.isInteger(d.pid)
  ) {
    throw new RangeError('lock has unsupported contents');
  }
  return d;
}

/** A lock of any key epoch (newest first), or of an older version (under metaKey). */
function decodeLock(repo: LockRepo, stored: Buffer): unknown {
  const epochs = [repo.keys, ...[...(repo.keys.past ?? [])].reverse()];
  const candidates = [...epochs.map((e) => e.lockKey), ...epochs.map((e) => e.metaKey).filter((k) => k.length === 32)];
  let first: unknown;
  for (const key of candidates) {
    try {
      return decodeJsonFile(key, 'lock', stored);
    } catch (e) {
      first ??= e;
    }
  }
  throw first;
}

/** Writes one lock file; returns its name. Exported for tests and tools. */
export async function writeLockFile(repo: LockRepo, data: LockData): Promise<string> {
  const stored = encodeJsonFile(repo.keys.lockKey, 'lock', data);
  const name = plainHash(stored).toString('hex');
  try {
    await repo.backend.write({ type: 'locks', name }, stored);
  } catch (e) {
    throw storageFailure(e);
  }
  return name;
}

async function removeQuietly(repo: LockRepo, name: string): Promise<void> {
  try {
    await repo.backend.remove({ type: 'locks', name });
  } catch (e) {
    if (!(e instanceof StorageError && e.kind === 'notFound')) throw storageFailure(e);
  }
}

/**
 * Reads every lock file. Files that vanish meanwhile are left out.
 * @example
 * ```ts
 * for (const l of await listLocks(repo)) console.log(l.data?.hostname, l.stale);
 * ```
 */
export async function listLocks(repo: LockRepo, staleAfterMs = STALE_AFTER_MS): Promise<LockEntry[]> {
  let listed;
  try {
    listed = await repo.backend.list('locks');
  } catch (e) {
    throw storageFailure(e);
  }
  const out: LockEntry[] = [];
  const now = Date.now();
  for (const { name } of listed) {
    let stored: Buffer;
    try {
      stored = await repo.backend.read({ type: 'locks', name });
    } catch (e) {
      if (e instanceof StorageError && e.kind === 'notFound') continue;
      throw storageFailure(e);
    }
    let data: LockData | undefined;
    try {
      if (plainHash(stored).toString('hex') !== name) throw new Error('name mismatch');
      data = validLock(decodeLock(repo, stored));
    } catch {
      out.push({ name, ageMs: 0, stale: 'the lock file is damaged' });
      continue;
    }
    out.push({ name, data, ageMs: now - Date.parse(data.time), stale: staleReason(data, now, undefined, staleAfterMs) });
  }
  return out;
}

/** "3m20s", "2h05m" */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

function conflictError(e: LockEntry & { data: LockData }, wantExclusive: boolean): CofferError {
  const d = e.data;
  const kind = d.exclusive ? 'an exclusive' : 'a shared';
  return new CofferError(
    'LOCKED',
    `repository is locked: ${kind} lock held by pid ${d.pid} on host ${d.hostname} (user ${d.username}), refreshed ${formatAge(e.ageMs)} ago` +
      `${wantExclusive && !d.exclusive ? '; this command needs the repository alone' : ''}; if that process is gone, run "coffer unlock"`,
    { lock: e.name, hostname: d.hostname, pid: d.pid, exclusive: d.exclusive, ageMs: e.ageMs },
  );
}

export interface LockOptions {
  exclusive: boolean;
  refreshMs?: number;
  staleAfterMs?: number;
}

export class RepoLock {
  private timer?: NodeJS.Timeout;
  private readonly controller = new AbortController();
  private released = false;
  private refreshing?: Promise<void>;

  constructor(
    private readonly repo: LockRepo,
    public name: string,
    private data: LockData,
    private readonly opts: Required<LockOptions>,
  ) {
    this.timer = setInterval(() => {
      this.refreshing ??= this.refresh().finally(() => (this.refreshing = undefined));
    }, opts.refreshMs);
    this.timer.unref();
  }

  get exclusive(): boolean {
    return this.data.exclusive;
  }

  /** Aborted (with a LOCKED CofferError as reason) when the lock was lost. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Throws if the lock was lost (removed by someone else, or not refreshable in time). */
  throwIfLost(): void {
    if (this.controller.signal.aborted) throw this.controller.signal.reason;
  }

  /** Writes a fresh lock file and removes the previous one. */
  async refresh(): Promise<void> {
    if (this.released || this.controller.signal.aborted) return;
    const last = Date.parse(this.data.time);
    try {
      // Someone removed our lock (they thought it stale): others may have
      // changed the repository under us, so stop.
      const still = await this.repo.backend.stat({ type: 'locks', name: this.name });
      if (!still) {
        this.lose('the lock was removed by another process');
        return;
      }
      const data = { ...this.data, time: new Date().toISOString() };
      const name = await writeLockFile(this.repo, data);
      const old = this.name;
      this.name = name;
      this.data = data;
      try {
        await this.repo.backend.remove({ type: 'locks', name: old });
      } catch (e) {
        // Removed between our check and now: taken away all the same.
        if (e instanceof StorageError && e.kind === 'notFound') {
          this.lose('the lock was removed by another process');
          return;
        }
        throw e;
      }
    } catch {
      if (Date.now() - last > this.opts.staleAfterMs - this.opts.refreshMs / 2) this.lose('the lock could not be refreshed in time');
    }
  }

  private lose(why: string): void {
    this.controller.abort(new CofferError('LOCKED', `lost the repository lock (${why}); stopped so that no data is lost`));
  }

  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    if (this.timer) clearInterval(this.timer);
    await this.refreshing?.catch(() => undefined);
    await removeQuietly(this.repo, this.name).catch(() => undefined);
  }
}

/**
 * Takes a lock: fails with LOCKED (exit 11) when a live conflicting lock
 * exists. Stale locks seen on the way are removed.
 * @example
 * ```ts
 * const lock = await lockRepository(repo, { exclusive: false });
 * try { await doWork(lock.signal); } finally { await lock.release(); }
 * ```
 */
export async function lockRepository(repo: LockRepo, options: LockOptions): Promise<RepoLock> {
  const opts: Required<LockOptions> = { refreshMs: REFRESH_EVERY_MS, staleAfterMs: STALE_AFTER_MS, ...options };
  const conflicts = async (own?: string): Promise<(LockEntry & { data: LockData }) | undefined> => {
    for (const e of await listLocks(repo, opts.staleAfterMs)) {
      if (e.name === own) continue;
      if (e.stale) {
        // A write-only key (no metaKey) removes nothing but its own locks.
        if (e.data && repo.keys.metaKey.length === 32) await removeQuietly(repo, e.name);
        continue;
      }
      if (e.data && (opts.exclusive || e.data.exclusive)) return e as LockEntry & { data: LockData };
    }
    return undefined;
  };
  const before = await conflicts();
  if (before) throw conflictError(before, opts.exclusive);
  const data: LockData = {
    version: 1,
    time: new Date().toISOString(),
    exclusive: opts.exclusive,
    hostname: os.hostname(),
    username: safeUsername(),
    pid: process.pid,
  };
  const name = await writeLockFile(repo, data);
  const after = await conflicts(name).catch(async (e) => {
    await removeQuietly(repo, name).catch(() => undefined);
    throw e;
  });
  if (after) {
    await removeQuietly(repo, name).catch(() => undefined);
    throw conflictError(after, opts.exclusive);
  }
  return new RepoLock(repo, name, data, opts);
}

function safeUsername(): string {
  try {
    return os.userInfo().username;
  } catch {
    return String(process.getuid?.() ?? 'unknown');
  }
}

/**
 * Removes stale (or, with `all`, every) lock file; returns the removed entries.
 * @example
 * ```ts
 * const removed = await removeLocks(repo); // stale ones only; removeLocks(repo, true) removes all
 * ```
 */
export async function removeLocks(repo: LockRepo, all = false): Promise<LockEntry[]> {
  const removed: LockEntry[] = [];
  for (const e of await listLocks(repo)) {
    if (!all && !e.stale) continue;
    await removeQuietly(repo, e.name);
    removed.push(e);
  }
  return removed;
}

/**
 * What a command holding a lock sees of it.
 * @example
 * ```ts
 * await withLock(repo, false, async (lock: HeldLock) => { lock.throwIfLost(); });
 * ```
 */
export interface HeldLock {
  /** Aborted when the lock was lost. */
  readonly signal: AbortSignal;
  throwIfLost(): void;
  release(): Promise<void>;
}

/** Stands in for a shared lock on storage that cannot be written (read-only media). */
class NoLock implements HeldLock {
  readonly signal = new AbortController().signal;
  throwIfLost(): void {}
  async release(): Promise<void> {}
}

function isPermissionFailure(e: unknown): boolean {
  return e instanceof CofferError && e.cause instanceof StorageError && e.cause.kind === 'permission';
}

export interface WithLockOptions {
  /**
   * For commands that only read (restore, check): when the storage refuses
   * to store the shared lock (read-only), run without one and call this.
   */
  onReadOnly?(): void;
}

/**
 * Runs `fn` holding a lock; re-reads the index once the lock is held.
 * @example
 * ```ts
 * await withLock(repo, true, async (lock) => executePrune(repo, await planPrune(repo), { signal: lock.signal }));
 * ```
 */
export async function withLock<T>(
  repo: LockRepo & { syncIndex(): Promise<void> },
  exclusive: boolean,
  fn: (lock: HeldLock) => Promise<T>,
  opts: WithLockOptions = {},
): Promise<T> {
  let lock: HeldLock;
  try {
    lock = await lockRepository(repo, { exclusive });
  } catch (e) {
    if (exclusive || !opts.onReadOnly || !isPermissionFailure(e)) throw e;
    opts.onReadOnly();
    lock = new NoLock();
  }
  try {
    // What was loaded before the lock was held may be out of date (a prune
    // may have finished in between).
    await repo.syncIndex();
    mark('locked');
    const r = await fn(lock);
    mark('work done');
    lock.throwIfLost();
    return r;
  } catch (e) {
    // An interruption caused by losing the lock is reported as that.
    lock.throwIfLost();
    throw e;
  } finally {
    await lock.release();
  }
}
