/**
 * Snapshot listing that survives damaged snapshot files: `forget` must be
 * able to remove a snapshot whose file no longer decodes, and `repair
 * snapshots` must go on with the others. (prune stays strict: it cannot know
 * which data a damaged snapshot needs, so it refuses to run.)
 */
import { CofferError } from '../errors.js';
import { decodeAnyJsonFile } from '../format/owner-file.js';
import { validateSnapshot, type Snapshot } from '../format/snapshot.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import type { SnapshotId } from '../ids.js';
import { compareTimes } from '../util/time.js';

export interface TolerantListing {
  /** Readable snapshots, oldest first. */
  snapshots: Snapshot[];
  /** Names of snapshot files that could not be read or decoded. */
  damaged: string[];
}

export async function listSnapshotsTolerant(repo: Repository): Promise<TolerantListing> {
  let names: string[];
  try {
    names = (await repo.backend.list('snapshots')).map((o) => o.name);
  } catch (e) {
    throw storageFailure(e);
  }
  const snapshots: Snapshot[] = [];
  const damaged: string[] = [];
  for (const name of names) {
    try {
      const stored = await repo.readVerified({ type: 'snapshots', name });
      snapshots.push({ ...validateSnapshot(decodeAnyJsonFile(repo.keys, 'snapshot', stored)), id: name as SnapshotId });
    } catch (e) {
      if (e instanceof CofferError && e.code !== 'INTEGRITY') throw e;
      damaged.push(name);
    }
  }
  snapshots.sort((a, b) => compareTimes(a.time, b.time) || a.id.localeCompare(b.id));
  return { snapshots, damaged };
}

/** Resolves ids or unique prefixes against the snapshot file names (without decoding them). */
export async function resolveSnapshotNames(repo: Repository, refs: string[]): Promise<string[]> {
  let names: string[];
  try {
    names = (await repo.backend.list('snapshots')).map((o) => o.name);
  } catch (e) {
    throw storageFailure(e);
  }
  const out = new Set<string>();
  for (const ref of refs) {
    if (!/^[0-9a-f]{1,64}$/.test(ref)) throw new CofferError('INVALID_ARGUMENT', `"${ref}" is not a snapshot id (hex)`);
    const hits = names.filter((n) => n.startsWith(ref));
    if (hits.length === 0) throw new CofferError('SNAPSHOT_NOT_FOUND', `no snapshot with id ${ref}`);
    if (hits.length > 1) throw new CofferError('SNAPSHOT_AMBIGUOUS', `snapshot prefix ${ref} is ambiguous (${hits.length} matches); give more characters`);
    out.add(hits[0]);
  }
  return [...out];
}
