/**
 * Re-encrypting what older key epochs wrote (after `key rotate`): packs are
 * repacked by prune's plan/execute steps (used blobs only, opened with their
 * epoch's keys and sealed under the current ones; new index files first, old
 * packs deleted last), then snapshot files are rewritten under the current
 * keys (new file first, then the old one removed; `original` keeps the first
 * id, as `coffer tag` does). Resumable: run it again after an interruption.
 * The caller holds an exclusive lock.
 */
import { FileCorruptError } from '../format/file.js';
import { decodeFile } from '../format/file.js';
import { decodeFileFromOwner } from '../format/owner-file.js';
import { StorageError } from '../storage/backend.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import { executePrune, planPrune, type PrunePlan, type PruneOptions } from './prune.js';
import { rewriteIndexFiles } from '../repo/index-files.js';

/**
 * What `reencrypt` did: the prune plan it carried out and how many snapshot files it rewrote.
 * @example
 * ```ts
 * const r: ReencryptResult = await withLock(repo, true, () => reencrypt(repo));
 * console.log(r.plan.repack.length, r.snapshots);
 * ```
 */
export interface ReencryptResult {
  plan: PrunePlan;
  snapshots: number;
}

function currentEpochFile(repo: Repository, stored: Buffer): boolean {
  for (const f of [() => decodeFile(repo.keys.metaKey, 'snapshot', stored), () => decodeFileFromOwner(repo.keys, 'snapshot', stored)]) {
    try {
      f();
      return true;
    } catch (e) {
      if (!(e instanceof FileCorruptError)) throw e;
    }
  }
  return false;
}

/**
 * Re-encrypts every pack and snapshot file of an older key epoch under the current keys.
 * @example
 * ```ts
 * await withLock(repo, true, (lock) => reencrypt(repo, { signal: lock.signal }));
 * ```
 */
export async function reencrypt(repo: Repository, opts: Omit<PruneOptions, 'reencrypt' | 'maxUnused'> = {}): Promise<ReencryptResult> {
  repo.requireReadable();
  const plan = await planPrune(repo, { ...opts, maxUnused: 'unlimited', reencrypt: true });
  await executePrune(repo, plan, opts);
  // Index files of older epochs left by an interrupted rotation (prune rewrites them only when it has work).
  try {
    if (await rewriteIndexFiles(repo.backend, repo.keys)) await repo.syncIndex();
  } catch (e) {
    throw storageFailure(e);
  }
  let snapshots = 0;
  for (const s of await repo.listSnapshots()) {
    const stored = await repo.readVerified({ type: 'snapshots', name: s.id });
    if (currentEpochFile(repo, stored)) continue;
    const { id, ...data } = s;
    await repo.saveSnapshot({ ...data, original: s.original ?? id });
    try {
      await repo.backend.remove({ type: 'snapshots', name: id });
    } catch (e) {
      if (!(e instanceof StorageError && e.kind === 'notFound')) throw storageFailure(e);
    }
    snapshots++;
  }
  return { plan, snapshots };
}
