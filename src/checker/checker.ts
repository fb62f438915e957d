/**
 * Repository check. Structure (always): every index file decodes (a damaged
 * one, which opening skips, is a problem), every
 * indexed pack exists with the indexed size, every pack's encrypted header
 * agrees with the index, every snapshot decodes and every tree and data blob
 * it references is indexed. With readData: every pack is read whole, its name
 * checked against its content hash, and every blob decrypted and verified.
 */
import { decodeAnyPackTrailer, OWNER_TRAILER_BYTES, type PackEntry } from '../format/pack.js';
import { allEpochs } from '../crypto/keys.js';
import { encodeKeyRef } from '../repo/key-ref.js';
import { decodeTree } from '../format/tree.js';
import type { Repository } from '../repo/repository.js';
import type { PackId } from '../ids.js';
import type { PackCheck } from '../worker/tasks.js';
import { CofferError } from '../errors.js';
import { BufferPool, ownedArrayBuffer } from '../util/semaphore.js';
import { IdSet } from './id-set.js';

/**
 * One problem `check` reports.
 * @example
 * ```ts
 * for (const p of (await check(repo)).problems) console.log(p.message);
 * ```
 */
export interface CheckProblem {
  /** The object concerned, e.g. "data/ab12…", "snapshots/…", "tree 1a2b…". */
  object: string;
  message: string;
}

export type DataSubset = { n: number; t: number } | { percent: number };

/**
 * Options of `check`.
 * @example
 * ```ts
 * const o: CheckOptions = { readData: true };
 * ```
 */
export interface CheckOptions {
  readData?: boolean;
  /**
   * Read only a share of the packs: subset n of t (packs split by their id,
   * so running n = 1…t in turn reads every pack once), or a random percentage.
   */
  readDataSubset?: DataSubset;
  onProblem?(p: CheckProblem): void;
  /** Progress per phase, "packs" and "snapshots"; the two run at the same time, so their reports interleave. */
  onProgress?(p: { phase: string; done: number; total: number }): void;
  signal?: AbortSignal;
}

/**
 * What `check` found.
 * @example
 * ```ts
 * const r: CheckResult = await check(repo);
 * ```
 */
export interface CheckResult {
  problems: CheckProblem[];
  packs: number;
  snapshots: number;
  /** Packs present in the repository but in no index (left by an interrupted backup; harmless). */
  unindexedPacks: number;
  /** Packs whose data was read and verified. */
  packsRead: number;
}

/** Whether pack `id` is in the subset to read. */
export function inSubset(id: string, subset: DataSubset): boolean {
  if ('percent' in subset) return Math.random() * 100 < subset.percent;
  return Number.parseInt(id.slice(0, 8), 16) % subset.t === subset.n - 1;
}

/**
 * Verifies a repository: structure always, blob data with `readData` (or a subset).
 * @example
 * ```ts
 * const r = await check(repo, { readData: true });
 * if (r.problems.length) process.exitCode = 13;
 * ```
 */
export async function check(repo: Repository, opts: CheckOptions = {}): Promise<CheckResult> {
  const problems: CheckProblem[] = [];
  const problem = (object: string, message: string) => {
    const p = { object, message };
    problems.push(p);
    opts.onProblem?.(p);
  };
  const abort = () => {
    if (opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'check interrupted');
  };

  await repo.syncIndex();
  // Opening skips a damaged index file; check reports it.
  for (const d of repo.damagedIndexFiles) problem(`index/${d.name}`, `${d.message}; run "coffer repair index"`);
  const listed = new Map((await repo.backend.list('data')).map((o) => [o.name, o.size]));
  const indexed = repo.cache.packs();
  const indexedIds = new Set(indexed.map((p) => p.id as string));
  let unindexedPacks = 0;
  for (const name of listed.keys()) if (!indexedIds.has(name)) unindexedPacks++;

  // Which packs are read whole (decided once per pack: a percentage subset is random).
  const reads = indexed.map(({ id }) => Boolean(opts.readData || (opts.readDataSubset && inSubset(id, opts.readDataSubset))));
  // Packs read whole go tree packs first: their workers hand back what the
  // walk needs of every verified tree (HotPath.checkPack), so the walk
  // (started once they are done) neither reads nor decrypts nor parses them
  // on the main thread. Problems are still reported in pack-id order.
  const treePacks = reads.some(Boolean) ? repo.cache.treePacks() : new Set<PackId>();
  const firstTrees = (k: number) => reads[k] && treePacks.has(indexed[k].id);
  const order = [...indexed.keys()].sort((x, y) => Number(firstTrees(y)) - Number(firstTrees(x)) || x - y);
  const treesFirst = order.filter(firstTrees).length;
  const verifiedTrees: TreeLinks = { byId: new Map(), bytes: 0 };
  let treesRead!: () => void;
  const treesReady = new Promise<void>((r) => (treesRead = r));
  if (treesFirst === 0) treesRead();

  // Snapshots and the trees they reference: walked on the main thread while
  // the pack phase below keeps the workers busy (it yields to the event loop
  // every few milliseconds so that pack reads keep being issued); its
  // problems are held and reported after the packs', in the same order as
  // when the phases ran one after the other.
  const walkProblems: [string, string][] = [];
  const walkProblem = (o: string, m: string) => void walkProblems.push([o, m]);
  const walk = async (): Promise<number> => {
    const snapshots = await repo.listSnapshots().catch((e) => {
      walkProblem('snapshots', (e as Error).message);
      return [];
    });
    await treesReady;
    const seenTrees = new Set<string>();
    const missingData = new Set<string>();
    // Every content id of every tree is looked up: in memory (built at the first lookup), unless the index is very large.
    let ids: IdSet | false | undefined;
    const indexedData = (id: Buffer) => {
      ids ??= repo.cache.dataBlobCount() <= MAX_ID_SET && new IdSet([...repo.cache.dataIds()]);
      return ids ? ids.has(id) : repo.cache.has('data', id);
    };
    /**
     * A tree the pack phase verified: its subtrees are pushed if every
     * content id is indexed (or already reported); false (nothing pushed)
     * sends it down the full path, which names the file.
     */
    const walkLinks = (links: Buffer, stack: string[]): boolean => {
      const subtrees: string[] = [];
      for (let pos = 0; pos < links.length; ) {
        if (links[pos++] === 1) {
          subtrees.push(links.toString('hex', pos, pos + 32));
          pos += 32;
        }
        const n = links.readUInt32LE(pos);
        pos += 4;
        for (let end = pos + 32 * n; pos < end; pos += 32) {
          const id = links.subarray(pos, pos + 32);
          if (!indexedData(id) && !missingData.has(id.toString('hex'))) return false;
        }
      }
      for (const t of subtrees) stack.push(t);
      return true;
    };
    let slice = performance.now();
    let n = 0;
    for (const s of snapshots) {
      abort();
      opts.onProgress?.({ phase: 'snapshots', done: n++, total: snapshots.length });
      const stack = [s.tree];
      while (stack.length) {
        if (performance.now() - slice > WALK_SLICE_MS) {
          await new Promise((r) => setImmediate(r));
          abort();
          slice = performance.now();
        }
        const t = stack.pop()!;
        if (seenTrees.has(t)) continue;
        seenTrees.add(t);
        const links = verifiedTrees.byId.get(t);
        if (links) {
          verifiedTrees.byId.delete(t);
          if (walkLinks(links, stack)) continue;
        }
        let nodes;
        try {
          nodes = decodeTree(await repo.loadBlob('tree', t));
        } catch (e) {
          walkProblem(`tree ${t.slice(0, 12)}`, `${(e as Error).message} (snapshot ${s.id.slice(0, 8)})`);
          continue;
        }
        for (const node of nodes) {
          if (node.subtree) stack.push(node.subtree);
          for (const id of node.content ?? []) {
            if (!missingData.has(id) && !indexedData(Buffer.from(id, 'hex'))) {
              missingData.add(id);
              walkProblem(`data blob ${id.slice(0, 12)}`, `is not in the index (file ${node.name.toString()} in snapshot ${s.id.slice(0, 8)})`);
            }
          }
        }
      }
    }
    verifiedTrees.byId.clear();
    return snapshots.length;
  };
  const walking = walk().then(
    (n) => ({ n }),
    (e: unknown) => ({ e }),
  );

  // Packs: existence, size, header vs index. With readData, up to
  // PACKS_IN_FLIGHT packs are read and verified at once (each pack checked
  // in a worker, the next ones read meanwhile); each pack's problems are
  // held until the packs before it (by id) are done, so they come out in
  // pack order as with one pack at a time.
  let done = 0;
  let packsRead = 0;
  // Whole packs are read into a fixed set of buffers (storage with readInto),
  // which come back from the workers and are reused: no pack-sized garbage.
  const largest = indexed.reduce((m, p) => Math.max(m, p.length), 0);
  const pool = repo.backend.readInto && largest > 0 && largest <= MAX_POOLED_PACK ? new BufferPool(largest, PACKS_IN_FLIGHT + 1) : undefined;
  const held: ([string, string][] | undefined)[] = new Array(indexed.length);
  let flushed = 0;
  const flushReady = () => {
    for (; flushed < indexed.length && held[flushed]; flushed++) for (const [o, m] of held[flushed]!) problem(o, m);
  };
  const running = new Set<Promise<void>>();
  let jobError: { e: unknown } | undefined;
  const treeJobs: Promise<void>[] = [];
  try {
    for (let i = 0; i < order.length; i++) {
      abort();
      if (i === treesFirst) void Promise.allSettled(treeJobs).then(treesRead);
      const k = order[i];
      const { id, length } = indexed[k];
      opts.onProgress?.({ phase: 'packs', done: done++, total: indexed.length });
      const obj = `data/${id}`;
      const local: [string, string][] = [];
      const packProblem = (o: string, m: string) => void local.push([o, m]);
      const finish = () => {
        held[k] = local;
        flushReady();
      };
      const size = listed.get(id);
      if (size === undefined) packProblem(obj, 'pack is missing');
      else if (size !== length) packProblem(obj, `pack has ${size} bytes, the index says ${length}`);
      else if (reads[k]) {
        const job = readAndCheckPack(repo, id, size, packProblem, pool, verifiedTrees)
          .then(
            (verified) => void (verified && packsRead++),
            (e: unknown) => packProblem(obj, `cannot read: ${(e as Error).message}`),
          )
          .then(finish);
        running.add(job);
        void job.then(
          () => running.delete(job),
          (e: unknown) => {
            running.delete(job);
            jobError ??= { e }; // (only if reporting a problem threw)
          },
        );
        if (i < treesFirst) treeJobs.push(job);
        // The next read starts as soon as any pack is done (its buffer is free), not only the oldest.
        while (running.size > PACKS_IN_FLIGHT) await Promise.race(running);
        continue;
      } else await checkHeader(repo, id, size, packProblem);
      finish();
    }
  } finally {
    // Also on interruption: no pack verification (nor the walk) keeps running unobserved.
    const left = [...running, ...treeJobs];
    await Promise.allSettled(left);
    treesRead();
    await walking;
  }
  if (jobError) throw jobError.e;
  const walked = await walking;
  if ('e' in walked) throw walked.e;
  for (const [o, m] of walkProblems) problem(o, m);
  const snapshots = walked.n;

  return { problems, packs: indexed.length, snapshots, unindexedPacks, packsRead };
}

async function readHeader(repo: Repository, id: PackId, size: number): Promise<PackEntry[]> {
  const { entries, ref } = await repo.readPackHeader(id, size);
  const indexed = repo.cache.packRef(id);
  if (!(ref ?? Buffer.alloc(0)).equals(indexed ?? Buffer.alloc(0))) throw new Error('pack is sealed with other keys than the index says');
  return entries;
}

/** The snapshot walk runs this long at a time before letting the pack phase go on. */
const WALK_SLICE_MS = 5;

/** What the pack phase hands the walk of verified trees (HotPath.checkPack's `trees`), by tree id; `bytes` in all. */
interface TreeLinks {
  byId: Map<string, Buffer>;
  bytes: number;
}

/** The most tree links held for the walk (32 bytes per content id of the trees); beyond it the walk loads trees itself. */
const MAX_TREE_LINKS = 48 << 20;

/** Indexes with more data blobs than this are asked per id by the walk (an IdSet holds 40 bytes per id). */
const MAX_ID_SET = 1_000_000;

/** Packs read and verified at once by `check` with readData (each holds one whole pack in memory). */
const PACKS_IN_FLIGHT = 2;
/** Packs larger than this (a repository made with a large --pack-size) are read into buffers of their own. */
const MAX_POOLED_PACK = 64 << 20;

/**
 * Checks a pack's header against the index (the structural check, without
 * reading its data): the header through two ranged reads, compared here.
 */
async function checkHeader(repo: Repository, id: PackId, size: number, problem: (o: string, m: string) => void): Promise<void> {
  const obj = `data/${id}`;
  let entries: PackEntry[];
  try {
    entries = await readHeader(repo, id, size);
  } catch (e) {
    problem(obj, (e as Error).message);
    return;
  }
  const want = repo.cache.blobsInPack(id);
  const got = new Map(entries.map((e) => [`${e.type}:${e.id}`, e]));
  for (const w of want) {
    const g = got.get(`${w.type}:${w.id}`);
    if (!g || g.offset !== w.offset || g.length !== w.length || g.rawLength !== w.rawLength) {
      problem(obj, `pack header does not list ${w.type} blob ${w.id.slice(0, 12)} as the index does`);
    }
  }
}

/**
 * Reads a whole pack and checks it: the trailer is decoded here, everything
 * else (the header, its entries against the index's, the pack's hash, every
 * blob) in a worker, from the same bytes (HotPath.checkPack). The index's
 * entries go to the worker as one buffer, so the main thread makes no
 * object per blob; what the snapshot walk needs of the verified trees is
 * added to `trees`. Resolves to whether the blobs were verified; rejects only
 * when the pack cannot be read.
 */
async function readAndCheckPack(
  repo: Repository,
  id: PackId,
  size: number,
  problem: (o: string, m: string) => void,
  pool: BufferPool | undefined,
  trees: TreeLinks,
): Promise<boolean> {
  const obj = `data/${id}`;
  const h = { type: 'data', name: id } as const;
  let buf: ArrayBuffer;
  let n: number;
  const pooled = pool && repo.backend.readInto && size <= pool.size;
  if (pooled) {
    const b = await pool.acquire();
    buf = b.buffer as ArrayBuffer;
    try {
      n = await repo.backend.readInto!(h, b);
    } catch (e) {
      pool.release(buf);
      throw e;
    }
  } else {
    const whole = await repo.backend.read(h);
    buf = ownedArrayBuffer(whole);
    n = whole.length;
  }
  // Comes back from the worker; detached (and not reused) if the task failed.
  let back = buf;
  try {
    let check: PackCheck;
    try {
      const bytes = new Uint8Array(buf, 0, n);
      const loc = decodeAnyPackTrailer(allEpochs(repo.keys), bytes.subarray(Math.max(0, n - OWNER_TRAILER_BYTES)), n);
      const ref = encodeKeyRef({ epoch: loc.epoch, ephPub: loc.ephPub });
      const keys = repo.keysForRef(ref);
      if (!(ref ?? Buffer.alloc(0)).equals(repo.cache.packRef(id) ?? Buffer.alloc(0))) throw new Error('pack is sealed with other keys than the index says');
      const blobKey = repo.blobKeyFor(id);
      check = { name: id, headerOffset: loc.offset, headerLength: loc.length, metaKey: keys.metaKey, indexed: repo.cache.packEntryRows(id), ...(blobKey ? { blobKey } : {}) };
    } catch (e) {
      problem(obj, (e as Error).message);
      return false;
    }
    const r = await repo.workers().checkPack(buf, n, check);
    back = r.buf;
    for (const m of r.problems) problem(obj, m);
    // Held until the walk uses them, up to a budget (the walk loads any others itself).
    if (r.trees && trees.bytes + r.trees.byteLength <= MAX_TREE_LINKS) {
      trees.bytes += r.trees.byteLength;
      const all = Buffer.from(r.trees);
      for (let pos = 0; pos < all.length; ) {
        const n = all.readUInt32LE(pos + 32);
        trees.byId.set(all.toString('hex', pos, pos + 32), all.subarray(pos + 36, pos + 36 + n));
        pos += 36 + n;
      }
    }
    return r.verified;
  } finally {
    if (pooled) pool.release(back);
  }
}
