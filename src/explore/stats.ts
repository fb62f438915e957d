/**
 * Repository and snapshot statistics: the size a restore would write, and
 * what the referenced data costs in the repository after deduplication and
 * compression (from the index, which records each blob's stored and
 * uncompressed length).
 */
import type { Repository } from '../repo/repository.js';

/** What statistics need from a repository: trees, and blob sizes from the index. */
type StatsReader = Pick<Repository, 'loadBlob' | 'lookupBlob'>;
import type { Snapshot } from '../format/snapshot.js';
import { loadTree } from './tree-walk.js';

/**
 * Files, directories and bytes a restore would write.
 * @example
 * ```ts
 * const { restore: size } = await snapshotStats(repo, [snap]); console.log(size.files, size.bytes);
 * ```
 */
export interface RestoreSize {
  files: number;
  dirs: number;
  others: number;
  /** Sum of file sizes, as a restore would write them (names of one hard-linked file in the same directory count once). */
  bytes: number;
}

/**
 * What the referenced data costs in the repository: distinct blobs, uncompressed and stored bytes.
 * @example
 * ```ts
 * const { raw } = await snapshotStats(repo, await repo.listSnapshots()); console.log(raw.blobs, raw.storedBytes);
 * ```
 */
export interface RawDataStats {
  /** Distinct blobs (data and tree) the snapshots reference. */
  blobs: number;
  /** Their plaintext size, counted once each. */
  uncompressedBytes: number;
  /** Their size as stored in pack files (compressed and encrypted). */
  storedBytes: number;
  /** Referenced blobs missing from the index (a damaged repository). */
  missing: number;
}

/**
 * Statistics of a set of snapshots (see `snapshotStats`).
 * @example
 * ```ts
 * const s: SnapshotStats = await snapshotStats(repo, [snap]); console.log(s.restore.bytes, s.raw.storedBytes);
 * ```
 */
export interface SnapshotStats {
  snapshots: number;
  restore: RestoreSize;
  raw: RawDataStats;
  /** restore bytes / uncompressed bytes: how much deduplication saves. */
  dedupRatio: number;
  /** uncompressed bytes / stored bytes: how much compression saves. */
  compressionRatio: number;
}

/**
 * Statistics for `snapshots` (usually all of them, or one).
 * @example
 * const s = await snapshotStats(repo, await repo.listSnapshots());
 * console.log(`${s.restore.bytes} bytes in ${s.snapshots} snapshots, dedup ${s.dedupRatio.toFixed(2)}x`);
 */
export async function snapshotStats(repo: StatsReader, snapshots: Snapshot[]): Promise<SnapshotStats> {
  // Per-tree restore sizes, memoized: an unchanged subtree shared by many
  // snapshots is read once (hard links make this an upper bound across trees).
  const sizes = new Map<string, RestoreSize>();
  const seenTrees = new Set<string>();
  const seenData = new Set<string>();
  const raw: RawDataStats = { blobs: 0, uncompressedBytes: 0, storedBytes: 0, missing: 0 };

  const addBlob = (type: 'data' | 'tree', id: string) => {
    const loc = repo.lookupBlob(type, id);
    if (!loc) {
      raw.missing++;
      return;
    }
    raw.blobs++;
    raw.uncompressedBytes += loc.rawLength;
    raw.storedBytes += loc.length;
  };

  const visit = async (treeId: string): Promise<RestoreSize> => {
    const known = sizes.get(treeId);
    if (known) return known;
    if (!seenTrees.has(treeId)) {
      seenTrees.add(treeId);
      addBlob('tree', treeId);
    }
    const r: RestoreSize = { files: 0, dirs: 0, others: 0, bytes: 0 };
    const links = new Set<string>();
    for (const n of await loadTree(repo, treeId)) {
      if (n.type === 'dir' && n.subtree) {
        r.dirs++;
        const s = await visit(n.subtree);
        r.files += s.files;
        r.dirs += s.dirs;
        r.others += s.others;
        r.bytes += s.bytes;
      } else if (n.type === 'file') {
        r.files++;
        const key = `${n.dev}:${n.inode}`;
        if (n.links > 1 && links.has(key)) continue;
        if (n.links > 1) links.add(key);
        r.bytes += n.size;
        for (const id of n.content ?? []) {
          if (seenData.has(id)) continue;
          seenData.add(id);
          addBlob('data', id);
        }
      } else r.others++;
    }
    sizes.set(treeId, r);
    return r;
  };

  const restore: RestoreSize = { files: 0, dirs: 0, others: 0, bytes: 0 };
  for (const s of snapshots) {
    const r = await visit(s.tree);
    restore.files += r.files;
    restore.dirs += r.dirs;
    restore.others += r.others;
    restore.bytes += r.bytes;
  }
  return {
    snapshots: snapshots.length,
    restore,
    raw,
    dedupRatio: raw.uncompressedBytes ? restore.bytes / raw.uncompressedBytes : 1,
    compressionRatio: raw.storedBytes ? raw.uncompressedBytes / raw.storedBytes : 1,
  };
}
