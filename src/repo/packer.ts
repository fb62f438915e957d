/**
 * Fills pack files with sealed blobs (one open pack per blob type), writes
 * them when they reach the target size, and writes an index file for every
 * batch of written packs. Write order keeps the repository valid: a pack is
 * written before any index file names it; the caller writes the snapshot
 * only after flush().
 *
 * Sealed blobs are copied into pack buffers that the packer owns and reuses,
 * so memory stays fixed (open packs + packs being written) and callers can
 * reuse their buffers as soon as add() resolves.
 */
import { blakeHash } from '../crypto/hash.js';
import { encodePackTail, type PackEntry } from '../format/pack.js';
import type { IndexedPack } from '../format/index-file.js';
import type { Backend } from '../storage/backend.js';
import type { BlobType, PackId } from '../ids.js';
import { BufferPool } from '../util/semaphore.js';
import { alignedView, hugeArrayBuffer, IO_ALIGN } from '../util/aligned.js';
import { writeIndexFile } from './index-files.js';
import type { RepoKeys } from '../crypto/keys.js';

/**
 * The keys new packs are sealed with: the repository's own (no `ref`), or a
 * write-only session's (`ref` = its ephemeral public key, recorded in the
 * index; the trailer carries it sealed under `wrapKey`).
 */
export interface PackWriteKeys {
  blobKey: Buffer;
  metaKey: Buffer;
  ref?: Buffer;
  /** Write-only session: its ephemeral public key (carried in the trailer, sealed under wrapKey). */
  ephPub?: Buffer;
  wrapKey?: Buffer;
}

/** What a packer seals with: pack keys, and the repository keys for index files. */
export interface WriteKeys {
  pack: PackWriteKeys;
  repo: RepoKeys;
}

interface OpenPack {
  buf: Buffer;
  /** The buffer came from the pool (else it was allocated for this pack alone). */
  pooled: boolean;
  /** A blob larger than a pack: it gets a pack of its own. */
  oversize: boolean;
  entries: PackEntry[];
  size: number;
}

export interface PackerEvents {
  /** A pack is durable in the repository (not yet listed in an index file). */
  packWritten?(pack: IndexedPack): void;
  /** An index file is durable; its packs are now visible to other clients. */
  indexWritten?(name: string, packs: IndexedPack[]): void;
}

export interface PackerOptions {
  maxWrites?: number;
  packsPerIndex?: number;
  /**
   * Also write an index file once the packs not yet in one list this many
   * blobs: their entries (and the session's record of them, see
   * Repository.forgetIndexed) then leave memory (docs/PERFORMANCE.md).
   */
  blobsPerIndex?: number;
  /** Also write an index file once the oldest unindexed pack is this old (so a killed backup's packs are reused). */
  indexEveryMs?: number;
}

const MAX_BLOBS_PER_PACK = 100_000;
const TREE_PACK_START = 1 << 20;
/**
 * Tree packs are closed at this size (data packs at packSize): their buffer
 * grows on demand, and a backup of many small directories otherwise held a
 * 16 MiB tree buffer (plus its 8 MiB predecessor while growing) to the end.
 */
const TREE_PACK_MAX = 4 << 20;

export class Packer {
  private readonly open = new Map<BlobType, OpenPack>();
  private readonly writing = new Set<Promise<void>>();
  private readonly buffers: BufferPool;
  private readonly maxWrites: number;
  private readonly packsPerIndex: number;
  private readonly indexEveryMs: number;
  private readonly blobsPerIndex: number;
  private unindexedBlobs = 0;
  private unindexedSince = 0;
  private unindexed: IndexedPack[] = [];
  private failure: unknown;
  packsWritten = 0;
  bytesWritten = 0;

  constructor(
    private readonly backend: Backend,
    private readonly keys: WriteKeys,
    private readonly packSize: number,
    opts: PackerOptions = {},
    private readonly events: PackerEvents = {},
  ) {
    this.maxWrites = opts.maxWrites ?? 1;
    this.packsPerIndex = opts.packsPerIndex ?? 32;
    this.indexEveryMs = opts.indexEveryMs ?? 60_000;
    this.blobsPerIndex = opts.blobsPerIndex ?? Infinity;
    // The open data pack plus the packs being written (tree packs grow their
    // own buffers). A pack is closed before a blob would overflow it, so
    // buffers need only packSize (a larger blob gets a pack of its own).
    // IO_ALIGN more, so that each pack starts at an aligned address: a local
    // repository then writes it with direct I/O (storage/local.ts).
    this.buffers = new BufferPool(packSize + IO_ALIGN, 1 + this.maxWrites, hugeArrayBuffer);
  }

  private queue: Promise<void> = Promise.resolve();

  /**
   * Copies one sealed blob into its pack. Resolves when the packer can take
   * more. Calls are serialised: concurrent callers must not interleave
   * between "pack is full" and "open a new pack".
   */
  add(type: BlobType, id: string, sealed: Uint8Array, rawLength: number): Promise<void> {
    const next = this.queue.then(() => this.addNow(type, id, sealed, rawLength));
    this.queue = next.catch(() => {});
    return next;
  }

  /**
   * add() for several blobs of one type, blob i being `sealed[offsets[i],
   * offsets[i] + lengths[i])`: one queued step for the lot instead of one
   * per blob (a batch of small files has hundreds).
   */
  addMany(type: BlobType, ids: string[], sealed: Uint8Array, offsets: number[], lengths: number[], rawLengths: number[]): Promise<void> {
    const next = this.queue.then(async () => {
      for (let i = 0; i < ids.length; i++) {
        const r = this.addNow(type, ids[i], sealed.subarray(offsets[i], offsets[i] + lengths[i]), rawLengths[i]);
        if (r !== undefined) await r;
      }
    });
    this.queue = next.catch(() => {});
    return next;
  }

  /** Returns a promise only when there is something to wait for (a pack to start writing, a pool buffer). */
  private addNow(type: BlobType, id: string, sealed: Uint8Array, rawLength: number): Promise<void> | undefined {
    this.throwIfFailed();
    const p = this.open.get(type);
    if (p && !p.oversize && p.size + sealed.length <= p.buf.length && p.size + sealed.length <= this.limit(type)) {
      // The common case, without a promise: room in the open pack's buffer.
      p.buf.set(sealed, p.size);
      p.entries.push({ type, id, offset: p.size, length: sealed.length, rawLength });
      p.size += sealed.length;
      if (p.size < this.limit(type) && p.entries.length < MAX_BLOBS_PER_PACK) return undefined;
      this.open.delete(type);
      return this.startWrite(p);
    }
    return this.addSlow(type, id, sealed, rawLength);
  }

  private limit(type: BlobType): number {
    return type === 'tree' ? Math.min(this.packSize, TREE_PACK_MAX) : this.packSize;
  }

  private async addSlow(type: BlobType, id: string, sealed: Uint8Array, rawLength: number): Promise<void> {
    let p = this.open.get(type);
    const limit = type === 'tree' ? Math.min(this.packSize, TREE_PACK_MAX) : this.packSize;
    if (p && p.size + sealed.length > limit) {
      this.open.delete(type);
      await this.startWrite(p);
      p = undefined;
    }
    if (!p) {
      p =
        sealed.length > limit
          ? { buf: Buffer.allocUnsafe(sealed.length), pooled: false, oversize: true, entries: [], size: 0 }
          : type === 'tree'
            ? // Tree packs fill slowly and are usually small: grow on demand instead of pinning a pool buffer.
              { buf: Buffer.allocUnsafe(Math.min(limit, Math.max(TREE_PACK_START, sealed.length))), pooled: false, oversize: false, entries: [], size: 0 }
            : { buf: alignedView((await this.buffers.acquire()).buffer as ArrayBuffer, this.packSize), pooled: true, oversize: false, entries: [], size: 0 };
      this.open.set(type, p);
    }
    if (p.size + sealed.length > p.buf.length) {
      const grown = Buffer.allocUnsafe(Math.min(limit, Math.max(2 * p.buf.length, p.size + sealed.length)));
      p.buf.copy(grown, 0, 0, p.size);
      p.buf = grown;
    }
    p.buf.set(sealed, p.size);
    p.entries.push({ type, id, offset: p.size, length: sealed.length, rawLength });
    p.size += sealed.length;
    if (p.size >= limit || p.oversize || p.entries.length >= MAX_BLOBS_PER_PACK) {
      this.open.delete(type);
      await this.startWrite(p);
    }
  }

  /** Writes every open pack and the index for all written packs. */
  async flush(): Promise<void> {
    await this.queue;
    for (const [type, p] of [...this.open]) {
      this.open.delete(type);
      await this.startWrite(p);
    }
    await Promise.all(this.writing);
    this.throwIfFailed();
    await this.writeIndex();
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  private async startWrite(p: OpenPack): Promise<void> {
    while (this.writing.size >= this.maxWrites) await Promise.race(this.writing);
    this.throwIfFailed();
    const w = this.writePack(p).then(
      () => {
        this.writing.delete(w);
      },
      (e) => {
        this.writing.delete(w);
        this.failure ??= e;
      },
    );
    this.writing.add(w);
  }

  private async writePack(p: OpenPack): Promise<void> {
    try {
      const body = p.buf.subarray(0, p.size);
      const k = this.keys.pack;
      const tail = encodePackTail(k.metaKey, p.entries, p.size, k.ephPub && k.wrapKey ? { wrapKey: k.wrapKey, ephPub: k.ephPub } : undefined);
      const id = new (blakeHash().Blake3Hasher)().update(body).update(tail).digest('hex');
      await this.backend.write({ type: 'data', name: id }, [body, tail]);
      const pack: IndexedPack = { id: id as PackId, length: p.size + tail.length, blobs: p.entries, ...(k.ref ? { ref: k.ref } : {}) };
      this.packsWritten++;
      this.bytesWritten += pack.length;
      this.events.packWritten?.(pack);
      if (this.unindexed.length === 0) this.unindexedSince = Date.now();
      this.unindexed.push(pack);
      this.unindexedBlobs += pack.blobs.length;
    } finally {
      if (p.pooled) this.buffers.release(p.buf);
    }
    if (this.unindexed.length >= this.packsPerIndex || this.unindexedBlobs >= this.blobsPerIndex || Date.now() - this.unindexedSince >= this.indexEveryMs) await this.writeIndex();
  }

  private async writeIndex(): Promise<void> {
    if (this.unindexed.length === 0) return;
    const packs = this.unindexed;
    const blobs = this.unindexedBlobs;
    this.unindexed = [];
    this.unindexedBlobs = 0;
    let name: string;
    try {
      name = await writeIndexFile(this.backend, this.keys.repo, packs);
    } catch (e) {
      this.unindexed.unshift(...packs);
      this.unindexedBlobs += blobs;
      throw e;
    }
    this.events.indexWritten?.(name, packs);
  }
}
