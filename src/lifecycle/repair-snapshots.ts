/**
 * repair snapshots: rewrites snapshots that reference missing or damaged data
 * so that the rest stays restorable. A directory whose tree blob is missing
 * or does not authenticate becomes an empty directory; a file whose data
 * blobs are missing (not indexed, or in a pack absent from storage) keeps
 * only its intact blobs, and its size shrinks to match. The new snapshot
 * carries the tag "repaired" and `original` (the id of the snapshot it
 * replaces); the original is removed only with `forget`. New tree blobs are
 * written (pack, index) before the new snapshot. The caller holds an
 * exclusive lock and has synced the index.
 */
import { decodeTree, encodeTree, type TreeNode } from '../format/tree.js';
import { computeBlobId, sealBlob } from '../format/blob.js';
import type { Snapshot, SnapshotData } from '../format/snapshot.js';
import { Packer } from '../repo/packer.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import { StorageError } from '../storage/backend.js';
import { joinPath, displayPath } from '../util/paths.js';
import { CofferError } from '../errors.js';

export interface DamagedItem {
  path: string;
  kind: 'dir' | 'file';
  message: string;
}

export interface SnapshotRepair {
  snapshot: Snapshot;
  damaged: DamagedItem[];
  /** Id of the new snapshot (undefined when intact, or with dryRun). */
  repairedId?: string;
}

export interface RepairSnapshotsOptions {
  dryRun?: boolean;
  /** Remove the original of every repaired snapshot. */
  forget?: boolean;
  signal?: AbortSignal;
}

/**
 * Rewrites snapshots that reference missing or damaged data, keeping what is intact.
 * @example
 * ```ts
 * await withLock(repo, true, async () => repairSnapshots(repo, await repo.listSnapshots(), { forget: false }));
 * ```
 */
export async function repairSnapshots(repo: Repository, snapshots: Snapshot[], opts: RepairSnapshotsOptions = {}): Promise<SnapshotRepair[]> {
  // Blobs listed only by a damaged index file would look missing and be cut out of snapshots.
  repo.requireIntactIndex('repair snapshots');
  let listed;
  try {
    listed = await repo.backend.list('data');
  } catch (e) {
    throw storageFailure(e);
  }
  const packs = new Map(listed.map((o) => [o.name, o.size]));
  const dataOk = (id: string): number | undefined => {
    const loc = repo.lookupBlob('data', id);
    if (!loc || packs.get(loc.packId) === undefined) return undefined;
    return loc.rawLength;
  };
  const packer = new Packer(repo.backend, repo.writeKeys(), repo.config.packSize, {}, {
    indexWritten: (name, p) => repo.cache.addIndexFile(name, p),
  });
  /** old tree id → new tree id (same id when intact); per run. */
  const rewritten = new Map<string, string>();

  const saveTree = async (nodes: TreeNode[]): Promise<string> => {
    const bytes = encodeTree(nodes);
    const id = computeBlobId(repo.keys.blobIdKey, bytes).toString('hex');
    if (!opts.dryRun && !repo.hasBlob('tree', id)) {
      repo.noteSaved('tree', id);
      await packer.add('tree', id, sealBlob(repo.keys.blobKey, 'tree', Buffer.from(id, 'hex'), bytes, repo.config.compressionLevel), bytes.length);
    }
    return id;
  };

  const rewrite = async (treeId: string, dir: Buffer, damaged: DamagedItem[]): Promise<string> => {
    if (opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'repair interrupted; no snapshot was changed');
    const known = rewritten.get(treeId);
    if (known !== undefined && known === treeId) return known;
    let nodes: TreeNode[];
    try {
      const loc = repo.lookupBlob('tree', treeId);
      if (loc && !packs.has(loc.packId)) throw new Error(`its pack ${loc.packId.slice(0, 12)} is missing`);
      nodes = decodeTree(await repo.loadBlob('tree', treeId));
    } catch (e) {
      damaged.push({ path: displayPath(dir), kind: 'dir', message: `directory listing unreadable (${(e as Error).message}); replaced by an empty directory` });
      return saveTree([]);
    }
    let changed = false;
    const out: TreeNode[] = [];
    for (const n of nodes) {
      const p = joinPath(dir, n.name);
      if (n.type === 'dir' && n.subtree) {
        const sub = await rewrite(n.subtree, p, damaged);
        if (sub !== n.subtree) changed = true;
        out.push(sub === n.subtree ? n : { ...n, subtree: sub });
      } else if (n.type === 'file' && n.content) {
        const keep: string[] = [];
        let size = 0;
        let missing = 0;
        for (const id of n.content) {
          const raw = dataOk(id);
          if (raw === undefined) missing++;
          else {
            keep.push(id);
            size += raw;
          }
        }
        if (missing) {
          changed = true;
          damaged.push({ path: displayPath(p), kind: 'file', message: `${missing} of ${n.content.length} data blobs missing; kept ${size} of ${n.size} bytes` });
          out.push({ ...n, content: keep, size });
        } else out.push(n);
      } else out.push(n);
    }
    const id = changed ? await saveTree(out) : treeId;
    rewritten.set(treeId, id);
    return id;
  };

  const results: SnapshotRepair[] = [];
  const originals: string[] = [];
  const pending: { snapshot: Snapshot; data: SnapshotData; damaged: DamagedItem[] }[] = [];
  for (const s of snapshots) {
    const damaged: DamagedItem[] = [];
    const root = await rewrite(s.tree, Buffer.from('/'), damaged);
    if (!damaged.length || root === s.tree) {
      results.push({ snapshot: s, damaged });
      continue;
    }
    const { id: _id, ...rest } = s;
    void _id;
    const data: SnapshotData & { original: string } = {
      ...rest,
      tree: root,
      tags: rest.tags.includes('repaired') ? rest.tags : [...rest.tags, 'repaired'],
      original: s.id,
    };
    pending.push({ snapshot: s, data, damaged });
  }
  if (opts.dryRun) return [...results, ...pending.map((p) => ({ snapshot: p.snapshot, damaged: p.damaged }))];
  try {
    await packer.flush();
  } catch (e) {
    throw storageFailure(e);
  }
  for (const p of pending) {
    const id = await repo.saveSnapshot(p.data);
    results.push({ snapshot: p.snapshot, damaged: p.damaged, repairedId: id });
    originals.push(p.snapshot.id);
  }
  if (opts.forget) {
    for (const id of originals) {
      try {
        await repo.backend.remove({ type: 'snapshots', name: id });
      } catch (e) {
        if (!(e instanceof StorageError && e.kind === 'notFound')) throw storageFailure(e);
      }
    }
  }
  return results;
}
