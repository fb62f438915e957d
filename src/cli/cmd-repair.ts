/** `coffer repair index`: rebuilds the index from the pack headers. */
import { Repository } from '../repo/repository.js';
import { lockRepository, withLock } from '../repo/lock.js';
import { CofferError } from '../errors.js';
import { repairSnapshots } from '../lifecycle/repair-snapshots.js';
import { listSnapshotsTolerant, resolveSnapshotNames } from '../lifecycle/snapshot-list.js';
import { repairIndex } from '../lifecycle/repair.js';
import { readPassword } from './password.js';
import { openRepo, openRepoBackend, Output, type GlobalOptions } from './context.js';

/** Opens the repository without loading the (possibly damaged) index files. */
async function openWithoutIndex(g: GlobalOptions): Promise<Repository> {
  const backend = openRepoBackend(g);
  const password = await readPassword(g);
  try {
    return await Repository.open(backend, password, { noCache: true, skipIndex: true });
  } finally {
    password.fill(0);
  }
}

export async function cmdRepairIndex(g: GlobalOptions, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  const repo = await openWithoutIndex(g);
  try {
    const lock = await lockRepository(repo, { exclusive: true });
    try {
      const r = await repairIndex(repo, { signal: AbortSignal.any([signal, lock.signal]) });
      lock.throwIfLost();
      for (const d of r.damaged) out.warn(`data/${d.pack}: ${d.message}; its blobs are left out of the index`);
      if (out.json) out.emit({ message_type: 'repair_index', packs: r.packs, blobs: r.blobs, damaged: r.damaged, old_index_files: r.oldIndexFiles, new_index_files: r.newIndexFiles });
      else {
        out.info(`read the headers of ${r.packs + r.damaged.length} packs: ${r.blobs} blobs in ${r.packs} packs`);
        out.info(`wrote ${r.newIndexFiles} index files, removed ${r.oldIndexFiles} old ones`);
        if (r.damaged.length) out.info(`${r.damaged.length} packs could not be read; run "coffer check" to see which snapshots are affected`);
      }
      return r.damaged.length ? 3 : 0;
    } finally {
      await lock.release();
    }
  } finally {
    await repo.close();
  }
}

export async function cmdRepairSnapshots(g: GlobalOptions, ids: string[], o: { forget?: boolean; dryRun?: boolean }, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  for (const id of ids) if (!/^[0-9a-f]{1,64}$/.test(id)) throw new CofferError('INVALID_ARGUMENT', `"${id}" is not a snapshot id`);
  const repo = await openRepo(g);
  try {
    return await withLock(repo, !o.dryRun, async (lock) => {
      const listing = await listSnapshotsTolerant(repo);
      for (const d of listing.damaged) out.warn(`snapshots/${d} is damaged and cannot be repaired; remove it with "coffer forget ${d.slice(0, 12)}"`);
      const byId = new Map(listing.snapshots.map((s) => [s.id as string, s]));
      const snaps = ids.length
        ? (await resolveSnapshotNames(repo, ids)).map((id) => {
            const s = byId.get(id);
            if (!s) throw new CofferError('INTEGRITY', `snapshots/${id} is damaged and cannot be repaired; remove it with "coffer forget ${id.slice(0, 12)}"`);
            return s;
          })
        : listing.snapshots;
      const results = await repairSnapshots(repo, [...new Map(snaps.map((s) => [s.id, s])).values()], {
        dryRun: o.dryRun,
        forget: o.forget,
        signal: AbortSignal.any([signal, lock.signal]),
      });
      const damaged = results.filter((r) => r.damaged.length);
      if (out.json) {
        out.emit({
          message_type: 'repair_snapshots',
          dry_run: o.dryRun === true,
          snapshots: results.map((r) => ({ id: r.snapshot.id, damaged: r.damaged, repaired_id: r.repairedId ?? null })),
        });
      } else {
        for (const r of damaged) {
          out.info(`snapshot ${r.snapshot.id.slice(0, 8)} (${r.snapshot.paths.join(', ')}):`);
          for (const d of r.damaged) out.info(`  ${d.kind} ${d.path}: ${d.message}`);
          if (r.repairedId) out.info(`  saved as snapshot ${r.repairedId.slice(0, 8)}${o.forget ? ', original removed' : ''}`);
        }
        out.info(
          damaged.length
            ? `${damaged.length} of ${results.length} snapshots ${o.dryRun ? 'would be' : 'were'} repaired${!o.forget && !o.dryRun ? ' (originals kept; remove them with "coffer forget ID" or use --forget)' : ''}`
            : `all ${results.length} snapshots are intact`,
        );
      }
      return 0;
    });
  } finally {
    await repo.close();
  }
}
