/**
 * Prune: removes data no snapshot uses. Plan, then execute:
 *
 * plan    — mark every blob reachable from a snapshot (trees walked; the set
 *           lives in temporary SQLite tables, so memory stays bounded), pick
 *           one copy per used blob, and sort packs into keep / repack /
 *           remove; packs in storage but in no index are removed too.
 * execute — in an order that leaves a valid repository at every instant:
 *           1. copy the used blobs of packs to repack into new packs, and
 *              write index files for them (the Packer's order: pack, then index);
 *           2. write new index files for the kept packs;
 *           3. delete the old index files;
 *           4. delete the old packs.
 *           Until 3 the old index still names every old pack, which all still
 *           exist; after 3 no index names a pack that 4 deletes.
 *
 * Repacked blobs are verified (decrypted, decompressed, re-hashed) and then
 * copied sealed: a blob's AEAD binds its type and id, not its pack, so the
 * sealed bytes stay valid in any pack. The caller must hold an exclusive lock.
 */
import { CofferError, integrityError } from '../errors.js';
import { decodeTree } from '../format/tree.js';
import { Packer } from '../repo/packer.js';
import { IndexBatcher } from '../repo/index-files.js';
import { sealBlob } from '../format/blob.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import { StorageError, type ObjectInfo } from '../storage/backend.js';
import { ownedArrayBuffer } from '../util/semaphore.js';
import type { BlobType, PackId } from '../ids.js';
import type { OpenItem } from '../worker/tasks.js';

export interface PackUsage {
  id: PackId;
  length: number;
  type?: BlobType;
  blobs: number;
  usedBlobs: number;
  usedBytes: number;
  /** Bytes of blobs no snapshot uses (or duplicates of blobs kept elsewhere). */
  unusedBytes: number;
}

/**
 * The result of `planPrune`.
 * @example
 * ```ts
 * const plan: PrunePlan = await planPrune(repo);
 * ```
 */
export interface PrunePlan {
  snapshots: number;
  usedBlobs: number;
  keep: PackUsage[];
  repack: PackUsage[];
  remove: PackUsage[];
  /** Packs in storage that no index lists (left by interrupted backups). */
  unindexed: ObjectInfo[];
  /** Indexed packs missing from storage (or of the wrong size) that hold no used blob: dropped from the index. */
  absent: PackId[];
  /** Index files in the repository when the plan was made. */
  indexFiles: string[];
  stats: {
    totalBytes: number;
    usedBytes: number;
    unusedBytes: number;
    /** Unused bytes left behind in kept packs. */
    unusedAfter: number;
    /** Bytes deleted minus bytes rewritten (an estimate: new pack headers are small). */
    freedBytes: number;
    repackBytes: number;
  };
}

/**
 * How much unused data to tolerate: a share of the used data, a byte count, or no limit.
 * @example
 * ```ts
 * const m: MaxUnused = { percent: 5 };
 * ```
 */
export type MaxUnused = { percent: number } | { bytes: number } | 'unlimited';

/**
 * Options of `planPrune` / `executePrune`.
 * @example
 * ```ts
 * const o: PruneOptions = { maxUnused: { percent: 5 } };
 * ```
 */
export interface PruneOptions {
  maxUnused?: MaxUnused;
  signal?: AbortSignal;
  onProgress?(p: { phase: string; done: number; total: number }): void;
  /** Also repack every pack sealed with keys of an older key epoch (after `key rotate`), used blobs only. */
  reencrypt?: boolean;
  /** Called (and awaited) between the steps; `throwIfLost` style checks go here. */
  onPhase?(phase: PrunePhase): Promise<void> | void;
}

export type PrunePhase = 'planned' | 'repacked' | 'indexed' | 'index-removing' | 'index-removed' | 'packs-removing' | 'done';

function abortCheck(signal?: AbortSignal): void {
  if (signal?.aborted) throw new CofferError('INTERRUPTED', 'prune interrupted; the repository is still valid (run prune again to finish)');
}

/**
 * Marks used blobs and decides what to do with every pack. Reads only.
 * @example
 * ```ts
 * const plan = await planPrune(repo, { maxUnused: { percent: 5 } });
 * ```
 */
export async function planPrune(repo: Repository, opts: PruneOptions = {}): Promise<PrunePlan> {
  const cache = repo.cache;
  await repo.syncIndex();
  // The packs a damaged index file lists would look unindexed (deleted) and
  // their blobs unused: refuse until "repair index" has rebuilt the index.
  repo.requireIntactIndex('prune');
  const indexFiles = [...cache.indexFiles()];
  const snapshots = await repo.listSnapshots();
  cache.beginUsedSet();
  try {
    let done = 0;
    for (const s of snapshots) {
      abortCheck(opts.signal);
      opts.onProgress?.({ phase: 'snapshots', done: done++, total: snapshots.length });
      if (!cache.markUsed('tree', s.tree)) continue;
      const stack = [s.tree];
      while (stack.length) {
        const t = stack.pop()!;
        let nodes;
        try {
          nodes = decodeTree(await repo.loadBlob('tree', t));
        } catch (e) {
          const why = e instanceof CofferError ? e.message : (e as Error).message;
          throw new CofferError('INTEGRITY', `cannot read tree ${t.slice(0, 12)} of snapshot ${s.id.slice(0, 8)} (${why}); prune refuses to delete anything — run "coffer check"`, { tree: t });
        }
        for (const n of nodes) {
          if (n.subtree && cache.markUsed('tree', n.subtree)) stack.push(n.subtree);
          for (const id of n.content ?? []) cache.markUsed('data', id);
        }
      }
    }

    let listed: ObjectInfo[];
    try {
      listed = await repo.backend.list('data');
    } catch (e) {
      throw storageFailure(e);
    }
    const sizes = new Map(listed.map((o) => [o.name, o.size]));
    const indexedPacks = cache.packs();
    const absentSet = new Set<string>();
    for (const p of indexedPacks) {
      if (sizes.get(p.id) !== p.length) {
        absentSet.add(p.id);
        cache.markPackAbsent(p.id);
      }
    }
    const missing = cache.assignUsedCopies();
    if (missing.length) {
      throw integrityError(
        `${missing.length >= 10 ? 'at least 10' : missing.length} blobs that snapshots use are missing or in damaged packs (e.g. ${missing[0].type} blob ${missing[0].id.slice(0, 12)}); ` +
          'prune refuses to delete anything — run "coffer check" (and "coffer repair index")',
        { blobs: missing.map((m) => m.id) },
      );
    }
    const usedBlobs = cache.usedCount();
    const indexedIds = new Set(indexedPacks.map((p) => p.id as string));
    const unindexed = listed.filter((o) => !indexedIds.has(o.name));

    const keep: PackUsage[] = [];
    const repack: PackUsage[] = [];
    const remove: PackUsage[] = [];
    const absent: PackId[] = [];
    const partly: PackUsage[] = [];
    let usedBytes = 0;
    let unusedBytes = 0;
    let partlyUnused = 0;
    let totalBytes = 0;
    for (const r of cache.packUsage()) {
      const u: PackUsage = { id: r.id, length: r.length, type: r.type, blobs: r.blobs, usedBlobs: r.usedBlobs, usedBytes: r.usedBytes, unusedBytes: r.blobBytes - r.usedBytes };
      if (absentSet.has(r.id)) {
        absent.push(r.id);
        continue;
      }
      totalBytes += r.length;
      usedBytes += r.usedBytes;
      if (r.usedBlobs === 0) {
        remove.push(u);
        continue;
      }
      if (r.usedBlobs === r.blobs) keep.push(u);
      else partly.push(u);
      partlyUnused += u.unusedBytes;
    }
    unusedBytes += partlyUnused + remove.reduce((a, p) => a + p.unusedBytes, 0);
    for (const o of unindexed) totalBytes += o.size;

    // Like restic: repack the packs with the largest unused share until what
    // is left unused is within the limit.
    const max = opts.maxUnused ?? { percent: 5 };
    const limit = max === 'unlimited' ? Infinity : 'bytes' in max ? max.bytes : max.percent >= 100 ? Infinity : (usedBytes * max.percent) / (100 - max.percent);
    partly.sort((a, b) => b.unusedBytes / b.length - a.unusedBytes / a.length || b.unusedBytes - a.unusedBytes);
    let unusedAfter = partlyUnused;
    for (const p of partly) {
      if (unusedAfter > limit) {
        repack.push(p);
        unusedAfter -= p.unusedBytes;
      } else keep.push(p);
    }
    if (opts.reencrypt) {
      for (let i = keep.length - 1; i >= 0; i--) {
        if (repo.packEpoch(keep[i].id) < repo.keys.epoch) {
          unusedAfter -= keep[i].unusedBytes;
          repack.push(...keep.splice(i, 1));
        }
      }
    }
    const repackBytes = repack.reduce((a, p) => a + p.usedBytes, 0);
    const deleted = [...remove, ...repack].reduce((a, p) => a + p.length, 0) + unindexed.reduce((a, o) => a + o.size, 0);
    return {
      snapshots: snapshots.length,
      usedBlobs,
      keep,
      repack,
      remove,
      unindexed,
      absent,
      indexFiles,
      stats: { totalBytes, usedBytes, unusedBytes, unusedAfter, freedBytes: deleted - repackBytes, repackBytes },
    };
  } catch (e) {
    cache.endUsedSet();
    throw e;
  }
}

/** True when executing the plan would change nothing. */
export function planIsEmpty(plan: PrunePlan): boolean {
  return plan.repack.length === 0 && plan.remove.length === 0 && plan.unindexed.length === 0 && plan.absent.length === 0;
}

/**
 * Carries out a plan made by planPrune (with the same repository, under the same exclusive lock).
 * @example
 * ```ts
 * await executePrune(repo, plan);
 * ```
 */
export async function executePrune(repo: Repository, plan: PrunePlan, opts: PruneOptions = {}): Promise<void> {
  const cache = repo.cache;
  try {
    if (planIsEmpty(plan)) return;
    await opts.onPhase?.('planned');
    // 1. Repack.
    const packer = new Packer(repo.backend, repo.writeKeys(), repo.config.packSize);
    let done = 0;
    for (const p of plan.repack) {
      abortCheck(opts.signal);
      opts.onProgress?.({ phase: 'repack', done: done++, total: plan.repack.length });
      await repackOne(repo, packer, p.id);
    }
    try {
      await packer.flush();
    } catch (e) {
      throw storageFailure(e);
    }
    await opts.onPhase?.('repacked');

    // 2. New index files for the kept packs.
    abortCheck(opts.signal);
    const index = new IndexBatcher(repo.backend, repo.keys);
    for (const p of plan.keep) {
      const entries = cache.blobsInPack(p.id).sort((a, b) => a.offset - b.offset);
      const ref = cache.packRef(p.id);
      await index.add({ id: p.id, length: p.length, blobs: entries, ...(ref ? { ref } : {}) });
    }
    await index.flush();
    await opts.onPhase?.('indexed');

    // 3. Old index files. From here on, an interruption leaves the repository
    // valid but only a rerun of prune removes the rest.
    let first = true;
    for (const name of plan.indexFiles) {
      await removeIfPresent(repo, 'index', name);
      if (first) await opts.onPhase?.('index-removing');
      first = false;
    }
    await opts.onPhase?.('index-removed');

    // 4. Old packs.
    const doomed = [...plan.remove.map((p) => p.id as string), ...plan.repack.map((p) => p.id as string), ...plan.unindexed.map((o) => o.name)];
    done = 0;
    for (const name of doomed) {
      opts.onProgress?.({ phase: 'delete', done, total: doomed.length });
      done++;
      await removeIfPresent(repo, 'data', name);
      if (done === 1) await opts.onPhase?.('packs-removing');
    }
    await opts.onPhase?.('done');
  } finally {
    cache.endUsedSet();
  }
  await repo.syncIndex();
}

async function removeIfPresent(repo: Repository, type: 'index' | 'data', name: string): Promise<void> {
  try {
    await repo.backend.remove({ type, name });
  } catch (e) {
    if (e instanceof StorageError && e.kind === 'notFound') return;
    throw storageFailure(e);
  }
}

/** Reads one pack, verifies its used blobs and copies them (sealed) into new packs. */
async function repackOne(repo: Repository, packer: Packer, id: PackId): Promise<void> {
  const used = repo.cache.usedBlobsInPack(id);
  if (!used.length) return;
  let whole: Buffer;
  try {
    whole = await repo.backend.read({ type: 'data', name: id });
  } catch (e) {
    throw storageFailure(e);
  }
  let buf = ownedArrayBuffer(whole);
  const OUT = 16 << 20;
  for (let i = 0; i < used.length; ) {
    let raw = used[i].rawLength;
    let j = i + 1;
    while (j < used.length && raw + used[j].rawLength <= OUT) raw += used[j++].rawLength;
    const group = used.slice(i, j);
    i = j;
    const items: OpenItem[] = group.map((e) => ({ offset: e.offset, length: e.length, type: e.type, id: e.id, rawLength: e.rawLength }));
    for (const e of group) {
      if (e.offset + e.length > buf.byteLength) throw integrityError(`pack ${id.slice(0, 12)} is shorter than its index says; prune stopped before deleting anything`, { pack: id });
    }
    // A write-only key's pack: its blobs are opened with that pack's keys and sealed again under the repository's.
    const foreignKey = repo.blobKeyFor(id);
    const r = await repo.workers().open(buf, items, new ArrayBuffer(raw), foreignKey);
    buf = r.buf;
    const bad = r.errors.findIndex((e) => e !== null);
    if (bad >= 0) {
      throw integrityError(`${group[bad].type} blob ${group[bad].id.slice(0, 12)} in pack ${id.slice(0, 12)} is damaged (${r.errors[bad]}); prune stopped before deleting anything`, {
        pack: id,
        id: group[bad].id,
      });
    }
    const plain = Buffer.from(r.out);
    let off = 0;
    for (const e of group) {
      const sealed = foreignKey
        ? sealBlob(repo.keys.blobKey, e.type, Buffer.from(e.id, 'hex'), plain.subarray(off, off + e.rawLength), repo.config.compressionLevel)
        : new Uint8Array(buf, e.offset, e.length);
      off += e.rawLength;
      try {
        await packer.add(e.type, e.id, sealed, e.rawLength);
      } catch (err) {
        throw storageFailure(err);
      }
    }
  }
}

/** Parses --max-unused: "5%", "100M", "unlimited". */
export function parseMaxUnused(s: string, parseSize: (s: string) => number): MaxUnused {
  const t = s.trim();
  if (t === 'unlimited') return 'unlimited';
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  if (pct) {
    const percent = Number(pct[1]);
    if (percent >= 0 && percent <= 100) return { percent };
  } else {
    return { bytes: parseSize(t) };
  }
  throw new CofferError('INVALID_ARGUMENT', `--max-unused must be a percentage (0–100%), a size like 100M, or "unlimited", not "${s}"`);
}
