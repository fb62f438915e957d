/**
 * The hot path, as pure functions over one buffer: chunk + hash, seal
 * (compress + encrypt), open (decrypt + decompress + verify). They run inside
 * worker threads (worker.ts) but import nothing from storage or the index.
 */
import { FastCdc, type ChunkerParams } from '../chunker/fastcdc.js';
import { gearFromBytes } from '../chunker/gear.js';
import { KeyedHasher, plainHash } from '../crypto/hash.js';
import { sealBlobInto, openBlobInto, BLOB_OVERHEAD } from '../format/blob.js';
import type { BlobType } from '../ids.js';
import { readSmallFile } from '../platform/native.js';

/** Secrets and settings a worker needs; given once per pool (workerData). */
export interface WorkerContext {
  chunker: ChunkerParams;
  gearBytes: Uint8Array;
  blobIdKey: Uint8Array;
  blobKey: Uint8Array;
  compressionLevel: number;
}

export interface Region {
  start: number;
  end: number;
  /** True when the data of this stream ends at `end`. */
  eof: boolean;
  /**
   * A small file (its path's bytes as a latin1 string) that the worker reads
   * into [start, end) before chunking (readRegions): the main thread only
   * lists the files, the workers open and read them. `end - start` is one
   * more than the size the listing gave, so a file that fills the region
   * has grown and is left open for streaming instead.
   */
  path?: string;
}

export interface RegionChunks {
  /** Chunk lengths from `start`; for a non-EOF region the last partial chunk is left out. */
  lengths: number[];
  /** 32 bytes per chunk. */
  ids: Uint8Array;
  /**
   * Regions with a path only: the bytes read (the region's data is then
   * [start, start + read)); NOT_REGULAR (platform/native.ts: not a regular file any more, not
   * read); or `-fd - 2`: the file has grown past its region and is still
   * open (file descriptors are the process's), to be streamed by the caller,
   * which must close it. Undefined with `error` when it could not be read.
   */
  read?: number;
  /** Why a path region could not be read: the errno code (else a message) and the failing call. */
  error?: { code: string; syscall: string };
}

/**
 * Reads the regions that name a file (see Region.path) into `buf`, and
 * returns the regions to chunk (each path region cut to the bytes read, or
 * left out when it was not read) and the outcome of each path region.
 */
function readRegions(buf: Uint8Array, regions: Region[]): { toChunk: (Region | undefined)[]; outcomes: (Partial<RegionChunks> | undefined)[] } | undefined {
  let any = false;
  for (const r of regions) if (r.path !== undefined) any = true;
  if (!any) return undefined;
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const toChunk: (Region | undefined)[] = [];
  const outcomes: (Partial<RegionChunks> | undefined)[] = [];
  for (const r of regions) {
    if (r.path === undefined) {
      toChunk.push(r);
      outcomes.push(undefined);
      continue;
    }
    let n: number;
    try {
      n = readSmallFile(Buffer.from(r.path, 'latin1'), b, r.start, r.end - r.start);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      toChunk.push(undefined);
      outcomes.push({ error: { code: err.code ?? err.message, syscall: err.syscall ?? 'read' } });
      continue;
    }
    toChunk.push(n >= 0 ? { start: r.start, end: r.start + n, eof: true } : undefined);
    outcomes.push({ read: n });
  }
  return { toChunk, outcomes };
}

export interface SealItem {
  offset: number;
  length: number;
  type: BlobType;
  id: string;
}

export interface OpenItem extends SealItem {
  rawLength: number;
}

/** Plaintext scratch kept by `verifyPack` (larger blobs get a buffer of their own). */
const VERIFY_SCRATCH = 16 << 20;
/**
 * `verifyPack` asks for a young-generation collection after opening this many
 * sealed bytes, then lets the worker's event loop turn once. Each opened blob
 * can leave small native garbage V8 sees as tiny (without the addon, the
 * per-message subkey is a native BLAKE3 digest buffer, whose finalizer runs
 * only from the event loop), so without this a worker's garbage grew by whole packs between
 * collections (check --read-data peaked ~30 MiB higher, and the held
 * memory fragmented the worker's malloc arena: docs/PERFORMANCE.md, "Session 5").
 */
const VERIFY_COLLECT_BYTES = 4 << 20;

export class HotPath {
  private readonly cdc: FastCdc;
  private readonly ids: KeyedHasher;
  private scratch: Buffer | undefined;
  /** Sealed bytes opened by verifyPack since the last `collect`. */
  private opened = 0;
  /** `collect`: runs a (young-generation) garbage collection; the worker passes V8's when it can. */
  constructor(
    private readonly ctx: WorkerContext,
    private readonly collect?: () => void,
  ) {
    this.cdc = new FastCdc(ctx.chunker, gearFromBytes(ctx.gearBytes));
    this.ids = new KeyedHasher(ctx.blobIdKey);
  }

  /** Chunks and hashes each region (reading the files of path regions first: see Region.path). */
  chunkAndHash(buf: Uint8Array, regions: Region[]): RegionChunks[] {
    const read = readRegions(buf, regions);
    if (!read) return this.chunkRegions(buf, regions);
    return read.toChunk.map((r, i) => {
      // (A fresh empty array each: the ids' buffers are transferred back, each once.)
      const c: RegionChunks = r ? this.chunkRegions(buf, [r])[0] : { lengths: [], ids: new Uint8Array(0) };
      return Object.assign(c, read.outcomes[i]);
    });
  }

  private chunkRegions(buf: Uint8Array, regions: Region[]): RegionChunks[] {
    const max = this.ctx.chunker.maxSize;
    return regions.map(({ start, end, eof }) => {
      const lengths: number[] = [];
      let pos = start;
      while (pos < end) {
        if (!eof && end - pos < max) break;
        const n = this.cdc.cut(buf, pos, end);
        lengths.push(n);
        pos += n;
      }
      const ids = new Uint8Array(lengths.length * 32);
      pos = start;
      lengths.forEach((n, i) => {
        ids.set(this.ids.hash(buf.subarray(pos, pos + n)), i * 32);
        pos += n;
      });
      return { lengths, ids };
    });
  }

  /**
   * chunkAndHash, then seals every chunk into `out` back to back without
   * asking whether the repository has it (the caller drops the ones it
   * has): for batches of small files, one task instead of two. Returns the
   * chunks and the stored length of each chunk, in order.
   */
  hashSeal(buf: Uint8Array, regions: Region[], out: Buffer): { results: RegionChunks[]; sealed: number[] } {
    const results = this.chunkAndHash(buf, regions);
    const sealed: number[] = [];
    let opos = 0;
    results.forEach((r, k) => {
      let pos = regions[k].start;
      r.lengths.forEach((len, j) => {
        if (opos + len + BLOB_OVERHEAD > out.length) throw new RangeError('seal: output buffer too small');
        const n = sealBlobInto(this.ctx.blobKey, 'data', r.ids.subarray(j * 32, j * 32 + 32), buf.subarray(pos, pos + len), this.ctx.compressionLevel, out, opos);
        sealed.push(n);
        opos += n;
        pos += len;
      });
    });
    return { results, sealed };
  }

  /**
   * Seals each item into `out` back to back; returns the stored lengths.
   * `out` must hold the worst case: sum of item lengths + BLOB_OVERHEAD each.
   * `probe`: the caller has seen a long run of incompressible chunks of this
   * file, so only the first item is compressed as a probe; if zstd does not
   * shrink it, the other items are stored without trying (zstd on random
   * data cost ~10 % of a backup's CPU). Never changes what can be read back:
   * a raw blob is as valid as a compressed one.
   */
  seal(buf: Uint8Array, items: SealItem[], out: Buffer, probe = false): number[] {
    const lengths: number[] = [];
    let pos = 0;
    let level = this.ctx.compressionLevel;
    for (const it of items) {
      if (pos + it.length + BLOB_OVERHEAD > out.length) throw new RangeError('seal: output buffer too small');
      const n = sealBlobInto(this.ctx.blobKey, it.type, Buffer.from(it.id, 'hex'), buf.subarray(it.offset, it.offset + it.length), level, out, pos);
      // Probing: only the first item is tried; stored raw, the rest are not compressed.
      if (probe && lengths.length === 0 && n === it.length + BLOB_OVERHEAD) level = 0;
      lengths.push(n);
      pos += n;
    }
    return lengths;
  }

  /**
   * Opens each item into `out`, back to back (item i at the sum of the raw
   * lengths before it). Returns an error string per item (null when good);
   * a failed item's bytes in `out` are garbage and must not be used.
   * `blobKey`: the pack's blob key when it is not the repository's own.
   */
  open(buf: Uint8Array, items: OpenItem[], out: Buffer, blobKey?: Uint8Array): (string | null)[] {
    const keys = blobKey ? { blobKey, blobIdKey: this.ctx.blobIdKey } : this.ctx;
    const errors: (string | null)[] = [];
    let pos = 0;
    for (const it of items) {
      try {
        if (pos + it.rawLength > out.length) throw new RangeError('output buffer too small');
        openBlobInto(keys, it.type, it.id, buf.subarray(it.offset, it.offset + it.length), out.subarray(pos, pos + it.rawLength));
        errors.push(null);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
      pos += it.rawLength;
    }
    return errors;
  }

  /**
   * Verifies a whole pack: its plain BLAKE3 (returned as hex, for the caller
   * to compare with the pack's name) and every item opened and checked against
   * its id. The plaintexts go to a scratch buffer and are dropped; returns an
   * error string per item (null when good). `buf` must not change until the
   * promise resolves (it yields to the event loop on the way).
   */
  async verifyPack(buf: Uint8Array, items: OpenItem[], blobKey?: Uint8Array): Promise<{ hash: string; errors: (string | null)[] }> {
    const keys = blobKey ? { blobKey, blobIdKey: this.ctx.blobIdKey } : this.ctx;
    const hash = plainHash(buf).toString('hex');
    const errors: (string | null)[] = [];
    for (const it of items) {
      // Counted with a share for the per-blob native state, so packs of many small blobs also trigger it.
      this.opened += it.length + 2048;
      if (this.opened >= VERIFY_COLLECT_BYTES) {
        this.opened = 0;
        this.collect?.();
        await new Promise((r) => setImmediate(r));
      }
      try {
        let out: Buffer;
        if (it.rawLength <= VERIFY_SCRATCH) {
          this.scratch ??= Buffer.allocUnsafeSlow(VERIFY_SCRATCH);
          out = this.scratch.subarray(0, it.rawLength);
        } else out = Buffer.allocUnsafeSlow(it.rawLength);
        openBlobInto(keys, it.type, it.id, buf.subarray(it.offset, it.offset + it.length), out);
        errors.push(null);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    return { hash, errors };
  }
}
