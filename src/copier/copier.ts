/**
 * Copies snapshots between repositories that share no keys: every file is
 * read from the source (blobs opened with the source's keys), re-chunked with
 * the destination's chunker (its own keyed gear table and sizes, so copied
 * files deduplicate against the destination's own backups of them), and
 * re-encrypted under the destination's keys. Trees are rewritten with the new
 * content ids; everything else in them is kept as is. The copy's snapshot
 * records `original`: the id of the snapshot it was first taken as, so a
 * snapshot already present in the destination (copied before, or copied
 * from a copy) is skipped.
 *
 * Interrupted copies resume: packs are indexed every 32 packs, and blobs
 * already indexed in the destination are not stored again.
 */
import { CofferError } from '../errors.js';
import { FastCdc } from '../chunker/fastcdc.js';
import { gearFromBytes } from '../chunker/gear.js';
import { computeBlobId, sealBlob } from '../format/blob.js';
import { decodeTree, encodeTree, type TreeNode } from '../format/tree.js';
import type { Snapshot, SnapshotData } from '../format/snapshot.js';
import { Packer } from '../repo/packer.js';
import { storageFailure, type Repository } from '../repo/repository.js';
import type { SnapshotId } from '../ids.js';

/**
 * Options of {@link copySnapshots}: which snapshots (default all), cancellation and progress callbacks.
 * @example
 * ```ts
 * const opts: CopyOptions = { snapshots: ['latest'], onSnapshot: (e) => console.log(e.source.id, e.skipped) };
 * ```
 */
export interface CopyOptions {
  /** Snapshot references in the source ("latest", ids, prefixes); all when empty. */
  snapshots?: string[];
  signal?: AbortSignal;
  onSnapshot?(e: { source: Snapshot; copy?: SnapshotId; skipped: boolean }): void;
  onProgress?(p: { bytesDone: number }): void;
}

/**
 * What {@link copySnapshots} did: snapshots copied and skipped, and bytes added to the destination.
 * @example
 * ```ts
 * const r: CopyResult = await copySnapshots(src, dst);
 * console.log(r.dataAdded);
 * ```
 */
export interface CopyResult {
  copied: { source: SnapshotId; copy: SnapshotId }[];
  skipped: SnapshotId[];
  bytesRead: number;
  dataAdded: number;
}

/** The snapshot a copy stands for: the first original in a chain of copies. */
export const originalOf = (s: Snapshot): string => s.original ?? s.id;

/**
 * Copies snapshots from `src` into `dst` (repositories with different keys and
 * chunker secrets): contents are re-chunked and re-encrypted under `dst`'s keys;
 * snapshots already copied (same `original`) are skipped, so an interrupted copy
 * resumes where it stopped.
 * @example
 * ```ts
 * const src = await openRepository('/mnt/disk/repo', pw1);
 * const dst = await openRepository('rest:http://nas:8000/repo', pw2);
 * try { await copySnapshots(src, dst); } finally { await src.close(); await dst.close(); }
 * ```
 */
export async function copySnapshots(src: Repository, dst: Repository, opts: CopyOptions = {}): Promise<CopyResult> {
  const all = await src.listSnapshots();
  let chosen: Snapshot[];
  if (opts.snapshots?.length) {
    const picked = new Map<string, Snapshot>();
    for (const ref of opts.snapshots) {
      const s = await src.findSnapshot(ref);
      picked.set(s.id, s);
    }
    chosen = all.filter((s) => picked.has(s.id));
  } else chosen = all;

  const present = new Map<string, SnapshotId>();
  for (const d of await dst.listSnapshots()) present.set(originalOf(d), d.id);

  const copier = new Copier(src, dst, opts);
  const result: CopyResult = { copied: [], skipped: [], bytesRead: 0, dataAdded: 0 };
  try {
    for (const s of chosen) {
      if (opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'copy interrupted; snapshots copied so far are complete, the rest resumes next time');
      const done = present.get(originalOf(s));
      if (done) {
        result.skipped.push(s.id);
        opts.onSnapshot?.({ source: s, copy: done, skipped: true });
        continue;
      }
      const copy = await copier.copy(s, present);
      present.set(originalOf(s), copy);
      result.copied.push({ source: s.id, copy });
      opts.onSnapshot?.({ source: s, copy, skipped: false });
    }
  } finally {
    result.bytesRead = copier.bytesRead;
    result.dataAdded = copier.dataAdded;
  }
  return result;
}

class Copier {
  private readonly cdc: FastCdc;
  private readonly packer: Packer;
  /** Source tree id → destination tree id (trees repeat across snapshots). */
  private readonly trees = new Map<string, string>();
  /** Source content list → destination content list (identical files). */
  private readonly contents = new Map<string, string[]>();
  bytesRead = 0;
  dataAdded = 0;

  constructor(
    private readonly src: Repository,
    private readonly dst: Repository,
    private readonly opts: CopyOptions,
  ) {
    this.cdc = new FastCdc(dst.config.chunker, gearFromBytes(dst.keys.gearBytes));
    this.packer = new Packer(
      dst.backend,
      dst.writeKeys(),
      dst.config.packSize,
      { maxWrites: Math.min(3, dst.backend.connections ?? 1) },
      { indexWritten: (name, packs) => dst.cache.addIndexFile(name, packs) },
    );
  }

  async copy(s: Snapshot, present: Map<string, SnapshotId>): Promise<SnapshotId> {
    let tree: string;
    try {
      tree = await this.copyTree(s.tree);
      await this.packer.flush();
    } catch (e) {
      throw storageFailure(e);
    }
    const { id: _id, parent, ...rest } = s;
    const copiedParent = parent ? present.get(parent) : undefined;
    const data: SnapshotData = { ...rest, tree, original: originalOf(s), ...(copiedParent ? { parent: copiedParent } : {}) };
    if (!copiedParent) delete data.parent;
    return this.dst.saveSnapshot(data);
  }

  private async copyTree(id: string): Promise<string> {
    const known = this.trees.get(id);
    if (known) return known;
    if (this.opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'copy interrupted; snapshots copied so far are complete, the rest resumes next time');
    const nodes = decodeTree(await this.src.loadBlob('tree', id));
    const out: TreeNode[] = [];
    for (const n of nodes) {
      if (n.type === 'dir' && n.subtree) out.push({ ...n, subtree: await this.copyTree(n.subtree) });
      else if (n.type === 'file' && n.content) out.push({ ...n, content: await this.copyContent(n.content) });
      else out.push(n);
    }
    const bytes = encodeTree(out);
    const newId = computeBlobId(this.dst.keys.blobIdKey, bytes).toString('hex');
    if (!this.dst.hasBlob('tree', newId)) {
      this.dst.noteSaved('tree', newId);
      await this.packer.add('tree', newId, sealBlob(this.dst.keys.blobKey, 'tree', Buffer.from(newId, 'hex'), bytes, this.dst.config.compressionLevel), bytes.length);
    }
    this.trees.set(id, newId);
    return newId;
  }

  /** Streams a file's blobs through the destination's chunker. */
  private async copyContent(ids: string[]): Promise<string[]> {
    const key = ids.join(',');
    const known = this.contents.get(key);
    if (known) return known;
    const max = this.dst.config.chunker.maxSize;
    const out: string[] = [];
    let pending: Buffer = Buffer.alloc(0);
    const emit = async (eof: boolean) => {
      let pos = 0;
      while (pending.length - pos >= max || (eof && pos < pending.length)) {
        const n = this.cdc.cut(pending, pos, pending.length);
        out.push(await this.saveChunk(pending.subarray(pos, pos + n)));
        pos += n;
      }
      pending = pending.subarray(pos);
    };
    for (const id of ids) {
      const plain = await this.src.loadBlob('data', id);
      this.bytesRead += plain.length;
      this.opts.onProgress?.({ bytesDone: this.bytesRead });
      pending = pending.length ? Buffer.concat([pending, plain]) : plain;
      await emit(false);
    }
    await emit(true);
    this.contents.set(key, out);
    return out;
  }

  private async saveChunk(chunk: Buffer): Promise<string> {
    const id = computeBlobId(this.dst.keys.blobIdKey, chunk);
    const hex = id.toString('hex');
    if (!this.dst.hasBlob('data', hex)) {
      this.dst.noteSaved('data', hex);
      const sealed = sealBlob(this.dst.keys.blobKey, 'data', id, chunk, this.dst.config.compressionLevel);
      await this.packer.add('data', hex, sealed, chunk.length);
      this.dataAdded += chunk.length;
    }
    return hex;
  }
}
