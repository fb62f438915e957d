/** `coffer repair index`: rebuilds the index from the pack headers. */
import { openBackend } from '../storage/location.js';
import { Repository } from '../repo/repository.js';
import { lockRepository } from '../repo/lock.js';
import { repairIndex } from '../lifecycle/repair.js';
import { readPassword } from './password.js';
import { Output, repoLocation, type GlobalOptions } from './context.js';

/** Opens the repository without loading the (possibly damaged) index files. */
async function openWithoutIndex(g: GlobalOptions): Promise<Repository> {
  const backend = openBackend(repoLocation(g));
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
