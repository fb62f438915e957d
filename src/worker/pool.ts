/**
 * The worker pool (piscina) for the hot path. Buffers go to workers and come
 * back by transfer, never by copy: callers must pass buffers that own their
 * whole ArrayBuffer, and must not touch them until the promise resolves.
 */
import { createRequire } from 'node:module';
import type { Piscina } from 'piscina';
import os from 'node:os';
import type { Region, RegionChunks, SealItem, OpenItem, PackCheck, WorkerContext } from './tasks.js';
import type { WriteTarget } from './write-files.js';
import { fillSharedContext, newSharedContext, sharedContextFilled, wipeSharedContext } from './context.js';
import { mark } from '../util/timing.js';

export interface HashResult {
  buf: ArrayBuffer;
  results: RegionChunks[];
}
export interface ReadHashResult extends HashResult {
  bytesRead: number;
  eof: boolean;
  /** Set when reading failed (an errno code or message); nothing else is valid then. */
  error?: string;
}
export interface HashSealResult extends HashResult {
  /** The output buffer: every chunk sealed, back to back, in order. */
  out: ArrayBuffer;
  /** Stored length of each chunk, in order. */
  sealed: number[];
}
export interface SealResult {
  buf: ArrayBuffer;
  /** The output buffer, sealed blobs back to back. */
  out: ArrayBuffer;
  lengths: number[];
}
export interface OpenResult {
  buf: ArrayBuffer;
  /** Plaintexts back to back, each of its item's rawLength. */
  out: ArrayBuffer;
  errors: (string | null)[];
}

export interface OpenWriteResult extends OpenResult {
  /** Per item: null (no targets, or the item failed), else an error code per target (null: the file was written). */
  written: ((string | null)[] | null)[];
}

export interface CheckPackResult {
  buf: ArrayBuffer;
  /** False when the pack's header could not be read (then its blobs were not verified). */
  verified: boolean;
  /** The pack's problems, in the order check reports them. */
  problems: string[];
  /** What the snapshot walk needs of the pack's verified trees (HotPath.checkPack). */
  trees?: ArrayBuffer;
}

export function defaultThreads(): number {
  const env = Number(process.env.COFFER_THREADS);
  if (Number.isInteger(env) && env > 0) return env;
  return Math.max(1, Math.min(os.availableParallelism(), 8));
}

export class WorkerPool {
  private readonly pool: Piscina;
  readonly threads: number;
  /** Keys and settings, shared with every thread (see context.ts). */
  private readonly shared = newSharedContext();
  private closed?: Promise<void>;

  /**
   * Starts the threads. Without `ctx` they start (and load their code)
   * before the keys exist: call setContext before the first task.
   */
  constructor(ctx: WorkerContext | undefined, threads = defaultThreads()) {
    this.threads = threads;
    mark('pool create');
    if (ctx) fillSharedContext(this.shared, ctx);
    const { Piscina: Pool } = createRequire(import.meta.url)('piscina') as typeof import('piscina');
    this.pool = new Pool({
      filename: new URL('./entry.cjs', import.meta.url).href,
      workerData: this.shared,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: 60_000,
      // Workers make short-lived garbage only (their big buffers are
      // transferred ArrayBuffers): a small young generation keeps RSS down.
      resourceLimits: { maxYoungGenerationSizeMb: 6 },
    });
  }

  get hasContext(): boolean {
    return sharedContextFilled(this.shared);
  }

  /** Gives the threads their keys and settings (once; before the first task). */
  setContext(ctx: WorkerContext): void {
    fillSharedContext(this.shared, ctx);
  }

  hash(buf: ArrayBuffer, regions: Region[]): Promise<HashResult> {
    return this.pool.run({ kind: 'hash', buf, regions }, { transferList: [buf] });
  }

  /** hash, then every chunk sealed into `out` (whether or not the repository has it). */
  hashSeal(buf: ArrayBuffer, regions: Region[], out: ArrayBuffer): Promise<HashSealResult> {
    return this.pool.run({ kind: 'hashSeal', buf, out, regions }, { transferList: [buf, out] });
  }

  /**
   * Reads `fd` from `pos` into `buf` after its first `filled` bytes until the
   * buffer is full or the file ends, then chunks and hashes the whole window.
   */
  readHash(buf: ArrayBuffer, fd: number, pos: number, filled: number): Promise<ReadHashResult> {
    return this.pool.run({ kind: 'readHash', buf, fd, pos, filled }, { transferList: [buf] });
  }

  /** `probe`: compress only the first item, and the others only if that one shrinks (see HotPath.seal). */
  seal(buf: ArrayBuffer, items: SealItem[], out: ArrayBuffer, probe = false): Promise<SealResult> {
    return this.pool.run({ kind: 'seal', buf, out, items, probe }, { transferList: [buf, out] });
  }

  /** `key`: the pack's blob key when it is not the repository's own (a write-only key's pack). */
  open(buf: ArrayBuffer, items: OpenItem[], out: ArrayBuffer, key?: Uint8Array): Promise<OpenResult> {
    return this.pool.run({ kind: 'open', buf, out, items, key }, { transferList: [buf, out] });
  }

  /**
   * As `open`, then creates the files in `targets[k]` from item k's plaintext
   * (each the whole content of its file; see write-files.ts).
   */
  openWrite(buf: ArrayBuffer, items: OpenItem[], out: ArrayBuffer, targets: (WriteTarget[] | null)[], key?: Uint8Array): Promise<OpenWriteResult> {
    return this.pool.run({ kind: 'openWrite', buf, out, items, targets, key }, { transferList: [buf, out] });
  }

  /** Checks a whole pack (the first `length` bytes of `buf`) against its header, the index and its name, keeping no plaintext (HotPath.checkPack). */
  checkPack(buf: ArrayBuffer, length: number, check: PackCheck): Promise<CheckPackResult> {
    return this.pool.run({ kind: 'checkPack', buf, length, check }, { transferList: [buf] });
  }

  /** Stops the threads, then zeroes the shared keys. */
  close(): Promise<void> {
    this.closed ??= this.pool.destroy().finally(() => wipeSharedContext(this.shared));
    return this.closed;
  }
}
