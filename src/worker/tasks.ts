/**
 * The hot path, as pure functions over one buffer: chunk + hash, seal
 * (compress + encrypt), open (decrypt + decompress + verify). They run inside
 * worker threads (worker.ts) but import nothing from storage or the index.
 */
import { FastCdc, type ChunkerParams } from '../chunker/fastcdc.js';
import { gearFromBytes } from '../chunker/gear.js';
import { KeyedHasher, plainHash } from '../crypto/hash.js';
import { sealBlobInto, openBlobInto, BLOB_OVERHEAD } from '../format/blob.js';
import { decodePackHeader, type PackEntry } from '../format/pack.js';
import { decodeTree, type TreeNode } from '../format/tree.js';
import { BLOB_TYPE_CODE, type BlobType } from '../ids.js';
import { readSmallFile } from '../platform/native.js';

/** Secrets and settings a worker needs; given once per pool (through its shared context: context.ts). */
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
  /** Restore: the item's plaintext is already in `out` (opened and verified by an earlier task); `open` leaves it as it is. */
  plain?: boolean;
}

/**
 * What `checkPack` checks a whole pack against: the header's place (from the
 * trailer, which the main thread decodes), the key that opens it, the
 * pack's name, and the index's entries for the pack.
 */
export interface PackCheck {
  /** The pack's name: the plain BLAKE3 of its bytes, hex. */
  name: string;
  headerOffset: number;
  headerLength: number;
  metaKey: Uint8Array;
  /** The pack's blob key when it is not the repository's own. */
  blobKey?: Uint8Array;
  /** The index's entries for the pack: INDEX_ROW_BYTES-long rows (IndexCache.packEntryRows), in any order. */
  indexed: Uint8Array;
}

/** Length of one row of `PackCheck.indexed`: type, id, then offset, stored and raw length as u64 big-endian. */
export const INDEX_ROW_BYTES = 1 + 32 + 3 * 8;

/**
 * The index's entries a pack header does not list as the index does: the
 * header must list, at the entry's offset, a blob of the same type, id,
 * stored and raw length. Reported in the index's order (by id, then type);
 * ids of the tree entries that match are added to `matchedTrees`.
 */
export function indexMismatches(entries: PackEntry[], indexed: Uint8Array, matchedTrees?: Set<string>): string[] {
  if (indexed.length % INDEX_ROW_BYTES !== 0) throw new RangeError('index rows have a bad length');
  const rows = Buffer.from(indexed.buffer, indexed.byteOffset, indexed.length);
  const id = Buffer.allocUnsafe(32);
  // A u64 field as a number; -1 when it cannot be a pack offset or length (beyond 2^48).
  const u64 = (at: number) => (rows.readUInt16BE(at) === 0 ? rows.readUIntBE(at + 2, 6) : -1);
  const bad: number[] = [];
  for (let at = 0; at < rows.length; at += INDEX_ROW_BYTES) {
    const offset = u64(at + 33);
    // Entries are in offset order (each starts where the one before ends).
    let lo = 0;
    let hi = entries.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (entries[mid].offset < offset) lo = mid + 1;
      else hi = mid;
    }
    const e = entries[lo];
    let ok = e !== undefined && e.offset === offset && e.length === u64(at + 41) && e.rawLength === u64(at + 49) && BLOB_TYPE_CODE[e.type] === rows[at];
    if (ok) {
      id.write(e.id, 'hex');
      ok = rows.compare(id, 0, 32, at + 1, at + 33) === 0;
    }
    if (!ok) bad.push(at);
    else if (e.type === 'tree') matchedTrees?.add(e.id);
  }
  bad.sort((a, b) => rows.compare(rows, b + 1, b + 33, a + 1, a + 33) || rows[a] - rows[b]);
  return bad.map((at) => {
    const type = rows[at] === BLOB_TYPE_CODE.data ? 'data' : rows[at] === BLOB_TYPE_CODE.tree ? 'tree' : `type-${rows[at]}`;
    return `pack header does not list ${type} blob ${rows.toString('hex', at + 1, at + 7)} as the index does`;
  });
}

/**
 * What check's snapshot walk needs of a tree, in node order: for each node
 * with a subtree or content, a kind byte (1: a subtree id follows), then a
 * u32le count of content ids and the ids (32 bytes each).
 */
export function treeLinks(nodes: TreeNode[]): Buffer {
  let size = 0;
  for (const n of nodes) if (n.subtree || n.content?.length) size += 1 + (n.subtree ? 32 : 0) + 4 + 32 * (n.content?.length ?? 0);
  const b = Buffer.allocUnsafe(size);
  let pos = 0;
  for (const n of nodes) {
    if (!(n.subtree || n.content?.length)) continue;
    b[pos++] = n.subtree ? 1 : 0;
    if (n.subtree) pos += b.write(n.subtree, pos, 32, 'hex');
    const content = n.content ?? [];
    b.writeUInt32LE(content.length, pos);
    pos += 4;
    for (const id of content) pos += b.write(id, pos, 32, 'hex');
  }
  return b;
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
        const n = this.cdc.cut(buf, pos, end);
        // Short of maxSize before a non-EOF end, a cut below the end is final
        // (see FastCdc.cut); one at the end may move with more data, so that
        // chunk is left for the next window. Stopping as soon as fewer than
        // maxSize bytes were left instead copied ~half a window per window.
        if (!eof && n === end - pos && n < max) break;
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
        if (it.plain) {
          errors.push(null);
          pos += it.rawLength;
          continue;
        }
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
   * Checks a whole pack (`buf`, exactly its bytes) in one task, so that the
   * main thread handles no per-blob data: the header opens and covers every
   * blob, lists every entry of the index as the index does, the pack's
   * bytes hash to its name, and every blob opens and matches its id (see
   * verifyPack). Returns the problems in the order check reports them, and
   * whether the blobs were verified (not when the header cannot be read).
   * `trees`: for every tree blob the index lists here as the header does,
   * that verified and decodes, its id (32 bytes), a u32le length and its
   * treeLinks, back to back: the snapshot walk needs no more of it.
   */
  async checkPack(buf: Uint8Array, c: PackCheck): Promise<{ verified: boolean; problems: string[]; trees?: ArrayBuffer }> {
    let entries: PackEntry[];
    try {
      if (c.headerOffset + c.headerLength > buf.length) throw new Error('pack header lies outside the pack');
      entries = decodePackHeader(c.metaKey, buf.subarray(c.headerOffset, c.headerOffset + c.headerLength), c.headerOffset);
    } catch (e) {
      return { verified: false, problems: [e instanceof Error ? e.message : String(e)] };
    }
    const matchedTrees = new Set<string>();
    const problems = indexMismatches(entries, c.indexed, matchedTrees);
    const trees: Buffer[] = [];
    const { hash, errors } = await this.verifyPack(buf, entries, c.blobKey, (k, plain) => {
      const e = entries[k];
      if (e.type !== 'tree' || !matchedTrees.has(e.id)) return;
      let links: Buffer;
      try {
        links = treeLinks(decodeTree(plain));
      } catch {
        return; // the walk loads it itself and reports why
      }
      const head = Buffer.allocUnsafe(36);
      head.write(e.id, 0, 32, 'hex');
      head.writeUInt32LE(links.length, 32);
      trees.push(head, links);
    });
    if (hash !== c.name) problems.push('pack content does not match its name');
    errors.forEach((err, k) => {
      if (err) problems.push(`${entries[k].type} blob ${entries[k].id.slice(0, 12)}: ${err}`);
    });
    if (!trees.length) return { verified: true, problems };
    const all = Buffer.concat(trees);
    return { verified: true, problems, trees: all.buffer.slice(all.byteOffset, all.byteOffset + all.length) as ArrayBuffer };
  }

  /**
   * Verifies a whole pack: its plain BLAKE3 (returned as hex, for the caller
   * to compare with the pack's name) and every item opened and checked against
   * its id. The plaintexts go to a scratch buffer and are dropped; returns an
   * error string per item (null when good). `buf` must not change until the
   * promise resolves (it yields to the event loop on the way).
   */
  async verifyPack(
    buf: Uint8Array,
    items: OpenItem[],
    blobKey?: Uint8Array,
    onPlain?: (k: number, plain: Buffer) => void,
  ): Promise<{ hash: string; errors: (string | null)[] }> {
    const keys = blobKey ? { blobKey, blobIdKey: this.ctx.blobIdKey } : this.ctx;
    const hash = plainHash(buf).toString('hex');
    const errors: (string | null)[] = [];
    for (let k = 0; k < items.length; k++) {
      const it = items[k];
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
        onPlain?.(k, out);
      } catch (e) {
        errors.push(e instanceof Error ? e.message : String(e));
      }
    }
    return { hash, errors };
  }
}
