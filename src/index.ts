/**
 * coffer: an end-to-end encrypted, deduplicating backup engine.
 *
 * @example
 * ```ts
 * import { initRepository, openRepository, backup, restore } from 'coffer';
 * await initRepository('/mnt/backup/repo', 'correct horse battery staple');
 * const repo = await openRepository('/mnt/backup/repo', 'correct horse battery staple');
 * try {
 *   const { snapshot } = await backup(repo, { paths: ['/home/me/docs'], onProgress: (p) => console.log(p.bytesDone) });
 *   await restore(repo, snapshot, { target: '/tmp/restored' });
 * } finally {
 *   await repo.close();
 * }
 * ```
 *
 * The library never prints and never exits; failures are {@link CofferError}s
 * with a stable `code`. The engines do not lock by themselves: when other
 * processes may use the repository, run them inside {@link withLock} (shared
 * for backup, restore and check; exclusive for prune and repairs), as the CLI does.
 *
 * @example
 * ```ts
 * await withLock(repo, true, async () => {
 *   const plan = await planPrune(repo, { maxUnused: { percent: 5 } });
 *   await executePrune(repo, plan);
 * });
 * ```
 */
import { openBackend } from './storage/location.js';
import { Repository, defaultCacheDir, type InitOptions, type OpenOptions } from './repo/repository.js';

export { CofferError, EXIT_CODES, isCofferError, type ErrorCode } from './errors.js';
export { Repository, DEFAULT_CHUNKER, DEFAULT_PACK_SIZE, defaultCacheDir, type InitOptions, type OpenOptions } from './repo/repository.js';
export { backup, type BackupOptions, type BackupProgress, type BackupResult, type BackupWarning } from './archiver/archiver.js';
export { restore, type RestoreOptions, type RestoreProgress, type RestoreResult, type RestoreWarning, type RestoreItem, type OverwritePolicy } from './restorer/restorer.js';
export type { Snapshot, SnapshotData, SnapshotSummary } from './format/snapshot.js';
export type { TreeNode, NodeType } from './format/tree.js';
export { createFilter, PatternList, parsePatternFile, CACHEDIR_SIGNATURE, type SelectOptions, type EntryFilter, type EntryStat, type EntryVerdict } from './archiver/select.js';
export { walkTree, findPath, openFileStream, type TreeEntry, type FoundPath } from './explore/tree-walk.js';
export { diffTrees, type Change, type ChangeKind, type DiffStats } from './explore/diff.js';
export { snapshotStats, type SnapshotStats, type RestoreSize, type RawDataStats } from './explore/stats.js';
export { changeTags, applyTagChange, type TagChange } from './explore/tags.js';
export { copySnapshots, type CopyOptions, type CopyResult } from './copier/copier.js';
export type { Backend, ReadBackend, Handle, FileType, ObjectInfo } from './storage/backend.js';
export { LocalBackend } from './storage/local.js';
export { openBackend, type BackendOptions } from './storage/location.js';
export { StorageError, type StorageErrorKind } from './storage/backend.js';
export type { ChunkerParams } from './chunker/fastcdc.js';
export type { BlobId, PackId, SnapshotId } from './ids.js';
export { VERSION } from './version.js';
export { KeyAdmin, type KeyListEntry } from './repo/key-admin.js';
export type { RepoSecret } from './repo/keyring.js';
export { decodeRecoveryCode, encodeRecoveryCode, RecoveryCodeError } from './crypto/recovery.js';
// Repository lifecycle: locks, forget policies, prune, check, repair, retries.
export { withLock, lockRepository, listLocks, removeLocks, type HeldLock, type LockData, type LockEntry } from './repo/lock.js';
export { applyPolicy, applyPolicyGrouped, parseDuration, type RetentionPolicy, type GroupField } from './lifecycle/retention.js';
export { planPrune, executePrune, type PrunePlan, type PruneOptions, type MaxUnused } from './lifecycle/prune.js';
export { repairIndex } from './lifecycle/repair.js';
export { reencrypt, type ReencryptResult } from './lifecycle/reencrypt.js';
export { repairSnapshots } from './lifecycle/repair-snapshots.js';
export { check, type CheckOptions, type CheckResult, type CheckProblem } from './checker/checker.js';
export { RetryBackend, type RetryOptions } from './storage/retry.js';

function toBytes(p: string | Uint8Array): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p);
}

/**
 * Creates a new repository at `location` (a directory path, or `rest:`, `rclone:`, `s3:`; see README) protected by `password`.
 * Resolves with the repository id.
 * @example await initRepository('/mnt/backup/repo', 'my passphrase');
 */
export async function initRepository(location: string, password: string | Uint8Array, opts?: InitOptions): Promise<string> {
  const backend = openBackend(location);
  try {
    return await Repository.init(backend, toBytes(password), opts);
  } finally {
    await backend.close?.();
  }
}

/**
 * Opens an existing repository. Close it with `repo.close()` when done.
 * @example const repo = await openRepository('/mnt/backup/repo', 'my passphrase');
 */
export async function openRepository(location: string, password: string | Uint8Array, opts?: OpenOptions): Promise<Repository> {
  const backend = openBackend(location, { cacheDir: opts?.cacheDir ?? defaultCacheDir(), noCache: opts?.noCache });
  try {
    return await Repository.open(backend, toBytes(password), opts);
  } catch (e) {
    await backend.close?.();
    throw e;
  }
}
