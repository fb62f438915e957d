/** `coffer unlock`: removes stale locks (all locks with --remove-all). */
import { removeLocks, formatAge } from '../repo/lock.js';
import { openRepo, Output, type GlobalOptions } from './context.js';

export async function cmdUnlock(g: GlobalOptions, o: { removeAll?: boolean }): Promise<number> {
  const out = new Output(g);
  const repo = await openRepo({ ...g, cache: false });
  try {
    const removed = await removeLocks(repo, o.removeAll === true);
    if (out.json) {
      out.emit({
        message_type: 'unlocked',
        removed: removed.map((e) => ({ name: e.name, hostname: e.data?.hostname, pid: e.data?.pid, exclusive: e.data?.exclusive, stale: e.stale ?? null })),
      });
    } else {
      for (const e of removed) {
        const who = e.data ? `pid ${e.data.pid} on ${e.data.hostname}, ${e.data.exclusive ? 'exclusive' : 'shared'}, refreshed ${formatAge(e.ageMs)} ago` : 'unreadable';
        out.info(`removed lock ${e.name.slice(0, 8)} (${who}${e.stale ? `; ${e.stale}` : ''})`);
      }
      out.info(removed.length ? `${removed.length} lock${removed.length === 1 ? '' : 's'} removed` : 'no stale locks found');
    }
    return 0;
  } finally {
    await repo.close();
  }
}
