/**
 * Changing a snapshot's tags. Snapshot files are immutable and named by the
 * hash of their stored bytes, so a change writes a new file and then removes
 * the old one (a crash in between leaves two copies, never none). Like
 * restic, the rewritten snapshot keeps the first version's id in `original`.
 */
import { storageFailure, type Repository } from '../repo/repository.js';
import type { Snapshot, SnapshotData } from '../format/snapshot.js';

/**
 * A change to a snapshot's tags: `set` replaces them, then `add` and `remove` apply.
 * @example
 * ```ts
 * await changeTags(repo, snap, { set: ['monthly'] } satisfies TagChange);
 * ```
 */
export interface TagChange {
  /** Replace all tags with these (applied first). */
  set?: string[];
  add?: string[];
  remove?: string[];
}

/**
 * The tag list after `change`, deduplicated, in first-seen order.
 * @example
 * ```ts
 * applyTagChange(['a', 'b'], { add: ['c'], remove: ['a'] }); // ['b', 'c']
 * ```
 */
export function applyTagChange(tags: string[], change: TagChange): string[] {
  let out = change.set ? [...change.set] : [...tags];
  for (const t of change.add ?? []) if (!out.includes(t)) out.push(t);
  out = out.filter((t) => !(change.remove ?? []).includes(t));
  return [...new Set(out)];
}

/**
 * Rewrites `snapshot` with changed tags. Resolves with the new snapshot, or
 * the same one when the tags do not change.
 * @example const s2 = await changeTags(repo, snapshot, { add: ['keep'] });
 */
export async function changeTags(repo: Repository, snapshot: Snapshot, change: TagChange): Promise<Snapshot> {
  const tags = applyTagChange(snapshot.tags, change);
  if (tags.length === snapshot.tags.length && tags.every((t, i) => t === snapshot.tags[i])) return snapshot;
  const { id, ...rest } = snapshot;
  const data: SnapshotData = { ...rest, tags, original: snapshot.original ?? id };
  const newId = await repo.saveSnapshot(data);
  try {
    await repo.backend.remove({ type: 'snapshots', name: id });
  } catch (e) {
    throw storageFailure(e);
  }
  return { ...data, id: newId };
}
