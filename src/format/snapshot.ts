/** Snapshots: sealed JSON (file.ts encoding), named by BLAKE3 of the stored bytes. */
import type { SnapshotId } from '../ids.js';

/**
 * Counts recorded with each snapshot by the backup that made it.
 * @example
 * ```ts
 * const s: SnapshotSummary = snapshot.summary; console.log(s.files_new, s.data_added);
 * ```
 */
export interface SnapshotSummary {
  backup_start: string;
  backup_end: string;
  files_new: number;
  files_changed: number;
  files_unmodified: number;
  dirs_new: number;
  dirs_changed: number;
  dirs_unmodified: number;
  data_blobs: number;
  tree_blobs: number;
  data_added: number;
  data_added_packed: number;
  total_files_processed: number;
  total_bytes_processed: number;
  errors: number;
}

/**
 * The contents of a snapshot file: when, where from, which paths and tags, the root tree id and a summary of the backup.
 * @example
 * ```ts
 * const { tree, paths, tags }: SnapshotData = snapshot;
 * ```
 */
export interface SnapshotData {
  version: 1;
  time: string;
  hostname: string;
  username: string;
  uid: number;
  gid: number;
  paths: string[];
  tags: string[];
  tree: string;
  parent?: string;
  /**
   * The id of the snapshot this one started as: set when the file is
   * rewritten (`coffer tag`) or copied to another repository (`coffer copy`,
   * which uses it to skip snapshots already copied).
   */
  original?: string;
  program_version: string;
  summary: SnapshotSummary;
}

/**
 * A snapshot as stored, with its id (the hash of the stored file).
 * @example
 * ```ts
 * const latest: Snapshot | undefined = (await repo.listSnapshots()).at(-1);
 * ```
 */
export interface Snapshot extends SnapshotData {
  id: SnapshotId;
}

export function validateSnapshot(s: unknown): SnapshotData {
  const v = s as SnapshotData;
  const ok =
    v &&
    v.version === 1 &&
    typeof v.time === 'string' &&
    !Number.isNaN(Date.parse(v.time)) &&
    typeof v.hostname === 'string' &&
    Array.isArray(v.paths) &&
    v.paths.every((p) => typeof p === 'string') &&
    Array.isArray(v.tags) &&
    v.tags.every((t) => typeof t === 'string') &&
    typeof v.tree === 'string' &&
    /^[0-9a-f]{64}$/.test(v.tree) &&
    (v.original === undefined || (typeof v.original === 'string' && /^[0-9a-f]{64}$/.test(v.original)));
  if (!ok) throw new RangeError('snapshot has unsupported contents');
  return v;
}
