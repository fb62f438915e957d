/**
 * Turns file contents into data blobs: reads into pooled window buffers,
 * chunks and hashes in workers, asks the index which chunks are new, and only
 * then compresses and encrypts those (in workers again) and hands the sealed
 * blobs to the packer. Small files (at most one chunk) share a window.
 *
 * Memory is bounded by fixed buffer pools: windows for large files,
 * batches for small ones, and seal outputs for each (see the constructor).
 */
import { closeSync, readSync } from 'node:fs';
import type { Repository } from '../repo/repository.js';
import type { Packer } from '../repo/packer.js';
import { BufferPool, Semaphore } from '../util/semaphore.js';
import type { Region, RegionChunks, SealItem } from '../worker/tasks.js';
import { BLOB_OVERHEAD } from '../format/blob.js';
import { hugeArrayBuffer } from '../util/aligned.js';
import { NOT_REGULAR } from '../platform/native.js';

export interface DataStats {
  dataBlobs: number;
  dataAdded: number;
  dataAddedPacked: number;
  bytesRead: number;
}

interface SmallFile {
  start: number;
  /** Bytes read; for a queued file (path set), the size of its region. */
  length: number;
  /** Queued: the worker reads the file (see Region.path). */
  path?: string;
  resolve(c: FileContent): void;
  reject(e: unknown): void;
}

/**
 * A queued small file the worker could not read (content rejected with
 * this): `code` undefined means it is not a regular file any more; else the
 * errno code (or message) and the call that failed ("open", "fstat", "read").
 */
export class SmallFileSkipped extends Error {
  constructor(
    readonly code: string | undefined,
    readonly syscall: string,
  ) {
    super(code === undefined ? 'not a regular file' : `${syscall}: ${code}`);
  }
}

/** Blob ids that will be known later (wrapped so that `await` does not wait for them). */
export interface Pending {
  content: Promise<FileContent>;
}

export interface FileContent {
  ids: string[];
  /** Bytes actually read (the file may have changed since it was listed). */
  size: number;
}

interface Batch {
  win: Buffer;
  used: number;
  files: SmallFile[];
}

/**
 * Small files are sent to the workers in batches of about BATCH_BYTES or
 * MAX_FILES_PER_BATCH files. Smaller batches than the 4 MiB / 1024 files
 * used before: each file's walk objects (node, promises) wait for their
 * batch, and the longer they wait the more of them outlive the young
 * generation; peak RSS of a 100,000-file backup fell by ~40 MiB for ~3 %
 * more CPU (docs/PERFORMANCE.md).
 */
const MAX_FILES_PER_BATCH = 256;
const BATCH_BYTES = 1 << 20;
const BIG_FILES_AT_ONCE = 1;
/** Above this share of known chunks among recent small files, batches are hashed first and only new chunks sealed (see dupShare). */
const HASH_SEAL_MAX_DUPS = 0.2;
/**
 * After this many consecutive chunks of one large file were stored raw
 * (zstd did not shrink them), its next windows are sealed in probe mode:
 * only each window's first new chunk is compressed, the rest only if that
 * one shrinks (docs/PERFORMANCE.md, "Session 5: backup of `big`").
 */
const PROBE_AFTER_RAW = 8;

/** Per large file: how many of its last sealed chunks were stored raw in a row. */
interface Compressibility {
  rawRun: number;
}

export class DataPipeline {
  /** Windows of large files being chunked. */
  readonly windows: BufferPool;
  /** Batches of small files, read whole. */
  private readonly batches: BufferPool;
  /** Seal outputs for windows and for batches, one of each per worker thread. */
  private readonly windowOutputs: BufferPool;
  private readonly batchOutputs: BufferPool;
  readonly stats: DataStats = { dataBlobs: 0, dataAdded: 0, dataAddedPacked: 0, bytesRead: 0 };
  private readonly bigFiles = new Semaphore(BIG_FILES_AT_ONCE);
  private readonly inflight = new Set<Promise<void>>();
  private batch?: Batch;
  private failure: unknown;
  /** Files at most this long are read whole into a shared batch window. */
  readonly smallLimit: number;

  constructor(
    private readonly repo: Repository,
    private readonly packer: Packer,
    private readonly onBytes: (n: number) => void = () => {},
  ) {
    const { minSize, maxSize } = repo.config.chunker;
    const size = Math.max(2 * maxSize, 8 << 20);
    // 2 windows per big file in flight (one being chunked, the next being
    // read) and one more being sealed.
    this.windows = new BufferPool(size, 2 * BIG_FILES_AT_ONCE + 1, hugeArrayBuffer);
    this.smallLimit = Math.min(minSize, size >> 2);
    // Batches have their own, smaller buffers: a tree of small files then
    // never allocates a large window. One batch filling, two with workers.
    this.batches = new BufferPool(BATCH_BYTES + this.smallLimit + 1, 3);
    // Sealing runs one task per worker at a time; more outputs would only
    // hold memory. Separate sizes, so small files never pin large outputs.
    // (The pool itself starts with the first file to read: an unchanged re-backup needs none.)
    const threads = repo.workerThreads;
    this.windowOutputs = new BufferPool(size + MAX_FILES_PER_BATCH * BLOB_OVERHEAD, threads, hugeArrayBuffer);
    this.batchOutputs = new BufferPool(this.batches.size + MAX_FILES_PER_BATCH * BLOB_OVERHEAD, threads);
  }

  private throwIfFailed(): void {
    if (this.failure !== undefined) throw this.failure;
  }

  /**
   * Reads a file of (expected) size at most smallLimit whole. Resolves with
   * a promise of its blob ids once the bytes are in a batch. If the file has
   * grown past the limit, returns undefined: read it with readLarge instead.
   */
  async readSmall(fd: number): Promise<Pending | undefined> {
    return this.readSmallWith((win, at, want) => {
      let n = 0;
      for (;;) {
        const bytesRead = readSync(fd, win, at + n, want - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n === want) break;
      }
      return n;
    });
  }

  /**
   * readSmall with the reading done by `fill`, which puts at most `want`
   * bytes into `win` at `at` and returns how many (`want`: too large).
   */
  async readSmallWith(fill: (win: Buffer, at: number, want: number) => number): Promise<Pending | undefined> {
    this.throwIfFailed();
    this.rollBatch();
    if (!this.batch) this.batch = { win: await this.batches.acquire(), used: 0, files: [] };
    return this.fillBatch(fill);
  }

  /**
   * Queues a file the listing says is small (`listedSize` bytes) to be
   * opened and read by the worker that hashes its batch: the main thread,
   * which walks the tree, makes no call per small file. If the file has
   * grown past its listed size by then, it is streamed instead (startLarge).
   * Null when no batch buffer is free right now (then use queueSmall).
   */
  tryQueueSmall(path: Buffer, listedSize: number): Pending | null {
    this.throwIfFailed();
    this.rollBatch(listedSize + 1);
    if (!this.batch) {
      const win = this.batches.tryAcquire();
      if (!win) return null;
      this.batch = { win, used: 0, files: [] };
    }
    return this.queueInto(this.batch, path, listedSize);
  }

  /** tryQueueSmall that waits for a batch buffer. */
  async queueSmall(path: Buffer, listedSize: number): Promise<Pending> {
    this.throwIfFailed();
    this.rollBatch(listedSize + 1);
    if (!this.batch) this.batch = { win: await this.batches.acquire(), used: 0, files: [] };
    return this.queueInto(this.batch, path, listedSize);
  }

  private queueInto(b: Batch, path: Buffer, listedSize: number): Pending {
    // One byte more than listed: a file that fills its region has grown.
    const length = Math.min(listedSize, this.smallLimit) + 1;
    const content = new Promise<FileContent>((resolve, reject) => {
      b.files.push({ start: b.used, length, path: path.toString('latin1'), resolve, reject });
    });
    b.used += length;
    content.catch(() => {}); // failures surface through the caller; avoid an unhandled rejection meanwhile
    return { content };
  }

  /**
   * For a file of the batch: the bytes it holds there, or -1 when it has
   * none (a queued file that could not be read, or has grown and is being
   * streamed; its content is settled here).
   */
  private smallOutcome(f: SmallFile, r: RegionChunks): number {
    if (f.path === undefined) return f.length;
    const n = r.read;
    if (n === undefined) {
      f.reject(new SmallFileSkipped(r.error?.code ?? 'EIO', r.error?.syscall ?? 'read'));
      return -1;
    }
    if (n === NOT_REGULAR) {
      f.reject(new SmallFileSkipped(undefined, 'fstat'));
      return -1;
    }
    if (n < 0) {
      const fd = -n - 2;
      this.startLarge(fd)
        .then((p) => p.content)
        .finally(() => closeSync(fd))
        .then(f.resolve, f.reject);
      return -1;
    }
    this.stats.bytesRead += n;
    this.onBytes(n);
    return n;
  }

  /** Sends the current batch off when the next small file (`want` bytes at most) might not fit. */
  private rollBatch(want = this.smallLimit + 1): void {
    if (this.batch && (this.batch.used + want > this.batches.size || this.batch.used >= BATCH_BYTES || this.batch.files.length >= MAX_FILES_PER_BATCH)) {
      this.dispatchBatch();
    }
  }

  private fillBatch(fill: (win: Buffer, at: number, want: number) => number): Pending | undefined {
    const want = this.smallLimit + 1;
    const b = this.batch!;
    const n = fill(b.win, b.used, want);
    if (n > this.smallLimit) return undefined;
    this.stats.bytesRead += n;
    this.onBytes(n);
    if (n === 0) return { content: Promise.resolve({ ids: [], size: 0 }) };
    const content = new Promise<FileContent>((resolve, reject) => {
      b.files.push({ start: b.used, length: n, resolve, reject });
    });
    b.used += n;
    content.catch(() => {}); // failures surface through drain(); avoid an unhandled rejection meanwhile
    return { content };
  }

  /** Sends the current batch of small files to the workers. */
  dispatchBatch(): void {
    const b = this.batch;
    this.batch = undefined;
    if (!b) return;
    if (b.files.length === 0) {
      this.batches.release(b.win);
      return;
    }
    const regions = b.files.map((f): Region => (f.path === undefined ? { start: f.start, end: f.start + f.length, eof: true } : { start: f.start, end: f.start + f.length, eof: true, path: f.path }));
    if (this.dupShare >= HASH_SEAL_MAX_DUPS) this.hashThenSeal(b, regions);
    else this.hashAndSeal(b, regions);
  }

  /**
   * Share of the recent small files' chunks that the repository (or this
   * backup) already had, a moving average over batches. Few: the batch is
   * hashed and sealed in one task (hashAndSeal); many (a tree full of copies,
   * such as several versions of a package): sealing them all would waste more
   * than the second round trip of hashThenSeal costs.
   */
  private dupShare = 0;

  private noteDups(total: number, fresh: number): void {
    if (total > 0) this.dupShare = 0.6 * this.dupShare + 0.4 * ((total - fresh) / total);
  }

  /** Hashes the batch, asks the index, then seals only the new chunks (two worker tasks). */
  private hashThenSeal(b: Batch, regions: Region[]): void {
    this.track(
      this.repo
        .workers()
        .hash(b.win.buffer as ArrayBuffer, regions)
        .then(
          (res) => {
            const win = Buffer.from(res.buf);
            const chunks: { offset: number; length: number; id: string }[] = [];
            b.files.forEach((f, i) => {
              const size = this.smallOutcome(f, res.results[i]);
              if (size < 0) return;
              const ids = chunkIds(res.results[i].ids);
              let off = f.start;
              res.results[i].lengths.forEach((len, j) => {
                chunks.push({ offset: off, length: len, id: ids[j] });
                off += len;
              });
              f.resolve({ ids, size });
            });
            this.sealNew(win, chunks, this.batches, this.batchOutputs, true);
          },
          (e) => {
            this.batches.release(b.win);
            for (const f of b.files) f.reject(e);
            throw e;
          },
        ),
    );
  }

  /**
   * One task hashes and seals the whole batch: in a first backup nearly
   * every small file is new, and asking the index between hashing and
   * sealing cost a second round trip per batch (docs/PERFORMANCE.md,
   * "Session 5"). Chunks the repository already has were sealed for nothing
   * and are dropped.
   */
  private hashAndSeal(b: Batch, regions: Region[]): void {
    this.track(
      (async () => {
        let out: Buffer;
        let res;
        try {
          out = await this.batchOutputs.acquire();
        } catch (e) {
          this.batches.release(b.win);
          throw e;
        }
        try {
          res = await this.repo.workers().hashSeal(b.win.buffer as ArrayBuffer, regions, out.buffer as ArrayBuffer);
        } catch (e) {
          // Both buffers may be detached; releasing still returns their permits.
          this.batches.release(b.win);
          this.batchOutputs.release(out);
          for (const f of b.files) f.reject(e);
          throw e;
        }
        this.batches.release(res.buf);
        try {
          const all: string[] = [];
          const rawLengths: number[] = [];
          b.files.forEach((f, i) => {
            // A file not read has no chunks in the output either.
            const size = this.smallOutcome(f, res.results[i]);
            if (size < 0) return;
            const ids = chunkIds(res.results[i].ids);
            for (const id of ids) all.push(id);
            for (const len of res.results[i].lengths) rawLengths.push(len);
            f.resolve({ ids, size });
          });
          const fresh = this.repo.claimNewBlobs('data', all);
          this.noteDups(all.length, fresh.size);
          const ids: string[] = [];
          const offsets: number[] = [];
          const lengths: number[] = [];
          const raws: number[] = [];
          let off = 0;
          for (let i = 0; i < all.length; i++) {
            const len = res.sealed[i];
            // Known, or an earlier chunk of this batch with the same content: dropped.
            if (fresh.delete(all[i])) {
              ids.push(all[i]);
              offsets.push(off);
              lengths.push(len);
              raws.push(rawLengths[i]);
            }
            off += len;
          }
          if (ids.length > 0) await this.packer.addMany('data', ids, Buffer.from(res.out), offsets, lengths, raws);
          for (let i = 0; i < ids.length; i++) {
            this.stats.dataBlobs++;
            this.stats.dataAdded += raws[i];
            this.stats.dataAddedPacked += lengths[i];
          }
        } finally {
          this.batchOutputs.release(res.out);
        }
      })(),
    );
  }

  /**
   * Streams a file of any size through the chunker. Resolves once the file
   * has a slot (so the caller is throttled) with a promise of its blob ids.
   */
  /** `positional` false: read sequentially (a pipe, such as standard input). */
  async startLarge(fd: number, positional = true): Promise<Pending> {
    this.throwIfFailed();
    await this.bigFiles.acquire();
    const content = this.readLarge(fd, positional);
    content.catch(() => {});
    return { content };
  }

  private async readLarge(fd: number, positional: boolean): Promise<FileContent> {
    try {
      this.throwIfFailed();
      const ids: string[] = [];
      const comp: Compressibility = { rawRun: 0 };
      let win = await this.windows.acquire();
      let filled = 0;
      let pos = 0;
      for (;;) {
        // The worker reads the window itself (see worker.ts).
        let res;
        try {
          res = await this.repo.workers().readHash(win.buffer as ArrayBuffer, fd, positional ? pos : -1, filled);
        } catch (e) {
          this.windows.release(win.buffer as ArrayBuffer); // detached by the failed transfer: only the slot comes back
          throw e;
        }
        win = Buffer.from(res.buf);
        if (res.error !== undefined) {
          this.windows.release(win);
          throw Object.assign(new Error(`read failed: ${res.error}`), { code: res.error });
        }
        const eof = res.eof;
        filled += res.bytesRead;
        pos += res.bytesRead;
        this.stats.bytesRead += res.bytesRead;
        this.onBytes(res.bytesRead);
        if (filled === 0) {
          this.windows.release(win);
          return { ids, size: pos };
        }
        const { lengths } = res.results[0];
        const got = chunkIds(res.results[0].ids);
        const chunks: { offset: number; length: number; id: string }[] = [];
        let off = 0;
        lengths.forEach((len, j) => {
          chunks.push({ offset: off, length: len, id: got[j] });
          off += len;
        });
        ids.push(...got);
        const rest = filled - off;
        let next: Buffer | undefined;
        if (rest > 0 || !eof) {
          next = await this.windows.acquire();
          win.copy(next, 0, off, filled);
        }
        this.sealNew(win, chunks, this.windows, this.windowOutputs, false, comp);
        if (!next) return { ids, size: pos };
        win = next;
        filled = rest;
      }
    } finally {
      this.bigFiles.release();
    }
  }

  /** Seals the chunks that are new to the repository; releases `win` to `pool` afterwards. */
  private sealNew(
    win: Buffer,
    chunks: { offset: number; length: number; id: string }[],
    pool: BufferPool,
    outputs: BufferPool,
    smallFiles = false,
    comp?: Compressibility,
  ): void {
    const items: SealItem[] = [];
    const fresh = this.repo.claimNewBlobs('data', chunks.map((c) => c.id));
    if (smallFiles) this.noteDups(chunks.length, fresh.size);
    for (const c of chunks) {
      if (!fresh.delete(c.id)) continue; // known, or an earlier chunk of this batch with the same content
      items.push({ offset: c.offset, length: c.length, id: c.id, type: 'data' });
    }
    if (items.length === 0) {
      pool.release(win);
      return;
    }
    this.track(
      (async () => {
        const out = await outputs.acquire();
        // Decided when the task starts: earlier windows' results are in by then.
        const probe = comp !== undefined && comp.rawRun >= PROBE_AFTER_RAW;
        let r;
        try {
          r = await this.repo.workers().seal(win.buffer as ArrayBuffer, items, out.buffer as ArrayBuffer, probe);
        } catch (e) {
          // Both buffers may be detached; releasing still returns their permits.
          pool.release(win);
          outputs.release(out);
          throw e;
        }
        pool.release(r.buf);
        // Release the output even when the packer fails (a storage error):
        // other seal tasks wait for it, and drain() waits for them.
        try {
          const rawLengths = items.map((it) => it.length);
          if (comp) {
            // A raw blob is stored as its length + BLOB_OVERHEAD; a compressed one is shorter.
            for (let i = 0; i < items.length; i++) comp.rawRun = r.lengths[i] === rawLengths[i] + BLOB_OVERHEAD ? comp.rawRun + 1 : 0;
          }
          const offsets: number[] = [];
          let off = 0;
          for (const len of r.lengths) {
            offsets.push(off);
            off += len;
          }
          await this.packer.addMany('data', items.map((it) => it.id), Buffer.from(r.out), offsets, r.lengths, rawLengths);
          for (let i = 0; i < items.length; i++) {
            this.stats.dataBlobs++;
            this.stats.dataAdded += rawLengths[i];
            this.stats.dataAddedPacked += r.lengths[i];
          }
        } finally {
          outputs.release(r.out);
        }
      })(),
    );
  }

  private track(p: Promise<void>): void {
    const t = p.then(
      () => {
        this.inflight.delete(t);
      },
      (e) => {
        this.inflight.delete(t);
        this.failure ??= e;
      },
    );
    this.inflight.add(t);
  }

  /** Waits for every chunk handed in so far to be hashed, sealed and given to the packer. */
  async drain(): Promise<void> {
    this.dispatchBatch();
    while (this.inflight.size > 0) await Promise.all(this.inflight);
    this.throwIfFailed();
  }
}

function chunkIds(ids: Uint8Array): string[] {
  const b = Buffer.from(ids.buffer, ids.byteOffset, ids.byteLength);
  const out: string[] = [];
  for (let i = 0; i < b.length; i += 32) out.push(b.toString('hex', i, i + 32));
  return out;
}
