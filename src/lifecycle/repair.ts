/**
 * repair index: rebuilds the index from the packs themselves. Every pack in
 * storage has its trailer and encrypted header read (two small reads), new
 * index files listing every readable pack are written, and only then are the
 * old index files deleted. Packs whose header cannot be read are reported and
 * left out (their blobs are lost to the index; `check` then names the
 * snapshots that needed them). The caller holds an exclusive lock.
 */
import type { PackEntry } from '../format/pack.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import { IndexBatcher } from '../repo/index-files.js';
import { StorageError, type ObjectInfo } from '../storage/backend.js';
import { CofferError } from '../errors.js';
import type { PackId } from '../ids.js';

export interface RepairIndexResult {
  packs: number;
  blobs: number;
  damaged: { pack: string; message: string }[];
  oldIndexFiles: number;
  newIndexFiles: number;
}

export interface RepairIndexOptions {
  signal?: AbortSignal;
  onProgress?(p: { done: number; total: number }): void;
}


/**
 * Rebuilds the index from the encrypted headers of all packs in storage.
 * @example
 * ```ts
 * await withLock(repo, true, () => repairIndex(repo));
 * ```
 */
export async function repairIndex(repo: Repository, opts: RepairIndexOptions = {}): Promise<RepairIndexResult> {
  let packs: ObjectInfo[];
  let oldIndex: ObjectInfo[];
  try {
    oldIndex = await repo.backend.list('index');
    packs = await repo.backend.list('data');
  } catch (e) {
    throw storageFailure(e);
  }
  const result: RepairIndexResult = { packs: 0, blobs: 0, damaged: [], oldIndexFiles: oldIndex.length, newIndexFiles: 0 };
  const index = new IndexBatcher(repo.backend, repo.keys);
  let done = 0;
  for (const p of packs) {
    if (opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'repair interrupted; the old index files are still in place');
    opts.onProgress?.({ done: done++, total: packs.length });
    let entries: PackEntry[];
    let ref: Buffer | undefined;
    try {
      ({ entries, ref } = await repo.readPackHeader(p.name, p.size));
    } catch (e) {
      if (e instanceof StorageError && e.kind !== 'notFound') throw storageFailure(e);
      result.damaged.push({ pack: p.name, message: (e as Error).message });
      continue;
    }
    await index.add({ id: p.name as PackId, length: p.size, blobs: entries, ...(ref ? { ref } : {}) });
    result.packs++;
    result.blobs += entries.length;
  }
  await index.flush();
  result.newIndexFiles = index.written.length;
  // Old index files go only after the new ones are durable.
  for (const o of oldIndex) {
    try {
      await repo.backend.remove({ type: 'index', name: o.name });
    } catch (e) {
      if (!(e instanceof StorageError && e.kind === 'notFound')) throw storageFailure(e);
    }
  }
  return result;
}
