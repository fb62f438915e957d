/**
 * Backup: walks the given paths, saves file contents through the data
 * pipeline and one tree blob per directory, then writes packs, index and
 * finally the snapshot. Files whose size, mtime, ctime and inode match the
 * parent snapshot reuse their blob list without being read.
 *
 * The walk itself is sequential (so memory stays small and order
 * deterministic); file contents are processed concurrently behind it.
 */
import { promises as fs, constants as fsc } from 'node:fs';
import { closeSync, fstatSync, lstatSync, openSync, readlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CofferError, errnoCode } from '../errors.js';
import { encodeTree, decodeTree, compareNames, type TreeNode, type NodeType } from '../format/tree.js';
import { sealBlob, computeBlobId } from '../format/blob.js';
import type { Snapshot, SnapshotData, SnapshotSummary } from '../format/snapshot.js';
import { Packer } from '../repo/packer.js';
import type { Repository } from '../repo/repository.js';
import type { BlobLocation } from '../cache/index-cache.js';
import { storageFailure } from '../repo/repository.js';
import { platform, scanDir, lstatMeta, type DirScan, type EntryMeta } from '../platform/native.js';
import { joinPath, displayPath } from '../util/paths.js';
import { DataPipeline, SmallFileSkipped, type Pending } from './data-pipeline.js';
import { lookahead, type DirListings, type Lookahead } from './prefetch.js';
import { Semaphore } from '../util/semaphore.js';
import type { EntryFilter, EntryVerdict } from './select.js';
import { VERSION } from '../version.js';
import { WriteOnlyState } from './write-only-state.js';
import { isoWithOffset } from '../util/time.js';

/**
 * Progress of a running backup, passed to `onProgress` (at most ten times a second).
 * @example
 * ```ts
 * await backup(repo, { paths, scan: true, onProgress: (p: BackupProgress) => console.log(`${p.bytesDone}/${p.totalBytes ?? '?'}`) });
 * ```
 */
export interface BackupProgress {
  filesDone: number;
  dirsDone: number;
  bytesDone: number;
  /** Totals from a concurrent scan; undefined until the scan finishes. */
  totalFiles?: number;
  totalBytes?: number;
  currentFile?: string;
  errors: number;
}

/**
 * A file that could not be backed up, and why; the backup goes on.
 * @example
 * ```ts
 * await backup(repo, { paths, onWarning: (w: BackupWarning) => log.warn(`${w.path}: ${w.message}`) });
 * ```
 */
export interface BackupWarning {
  path: string;
  message: string;
}

/**
 * What to back up and how: paths (or one stdin stream), tags, host, parent snapshot, a selection `filter`, and callbacks for progress and warnings.
 * @example
 * ```ts
 * const opts: BackupOptions = { paths: ['/etc'], onWarning: (w) => console.error(w.path, w.message) };
 * ```
 */
export interface BackupOptions {
  paths: string[];
  tags?: string[];
  hostname?: string;
  /** Snapshot to compare with; undefined picks the latest with the same host and paths; null disables. */
  parent?: string | null;
  time?: Date;
  onProgress?(p: BackupProgress): void;
  onWarning?(w: BackupWarning): void;
  /** Count files and bytes first (concurrently) so progress can show totals. */
  scan?: boolean;
  signal?: AbortSignal;
  /**
   * Decides which entries are backed up (see `createFilter` for exclude
   * patterns, tag files, size limit, one file system). Default: everything.
   */
  filter?: EntryFilter;
  /**
   * Back up one stream instead of `paths`: stored as the file `/NAME` (mode
   * 0644, owned by the current user, modified now).
   */
  stdin?: { name: string; fd: number };
  /**
   * Directory listings made while the repository was being opened (see
   * `prefetchListings` in archiver/prefetch.ts); stopped when the walk starts.
   */
  prefetched?: DirListings;
}

/**
 * The snapshot written, and whether some files could not be read.
 * @example
 * ```ts
 * const r: BackupResult = await backup(repo, { paths }); if (r.incomplete) console.warn('some files were skipped');
 * ```
 */
export interface BackupResult {
  snapshot: Snapshot;
  /** Some files could not be read; they are missing from the snapshot. */
  incomplete: boolean;
}

/**
 * Work that finishes later, wrapped in an object so that `await`ing the
 * scheduling step does not also wait for the work itself.
 */
interface Later<T> {
  done: Promise<T>;
}
/** A directory entry's node: known now (no promise for it), or later. */
interface Done {
  done: TreeNode | undefined | Promise<TreeNode | undefined>;
}

function now(v: TreeNode | undefined): Done {
  return { done: v };
}

function later<T>(p: Promise<T>): Later<T> {
  p.catch(() => {}); // consumed by finishDir; avoid an unhandled rejection meanwhile
  return { done: p };
}

interface Counters {
  filesNew: number;
  filesChanged: number;
  filesUnmodified: number;
  dirsNew: number;
  dirsChanged: number;
  dirsUnmodified: number;
  treeBlobs: number;
  treeAdded: number;
  treeAddedPacked: number;
}

function sameBytes(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.equals(b));
}

function sameNode(a: TreeNode, b: TreeNode): boolean {
  return (
    a.type === b.type &&
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.mtimeNs === b.mtimeNs &&
    a.ctimeNs === b.ctimeNs &&
    a.inode === b.inode &&
    a.dev === b.dev &&
    a.links === b.links &&
    a.size === b.size &&
    a.subtree === b.subtree &&
    a.rdev === b.rdev &&
    a.name.equals(b.name) &&
    sameBytes(a.linkTarget, b.linkTarget) &&
    (a.content === b.content || (a.content !== undefined && b.content !== undefined && a.content.length === b.content.length && a.content.every((id, i) => id === b.content![i]))) &&
    (a.xattrs?.length ?? 0) === (b.xattrs?.length ?? 0) &&
    (a.xattrs ?? []).every(([k, v], i) => k.equals(b.xattrs![i][0]) && v.equals(b.xattrs![i][1]))
  );
}

/** Nodes are sorted by name in both lists (walk order and tree order). */
function sameNodes(a: TreeNode[], b: TreeNode[]): boolean {
  return a.length === b.length && a.every((n, i) => sameNode(n, b[i]));
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // closing a read-only descriptor cannot lose data
  }
}

function nodeType(mode: number): NodeType {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'socket';
    case 0o020000:
      return 'chardev';
    default:
      return 'blockdev';
  }
}

function baseNode(name: Buffer, st: EntryMeta): TreeNode {
  const type = nodeType(st.mode);
  const n: TreeNode = {
    name,
    type,
    mode: st.mode & 0o7777,
    uid: st.uid,
    gid: st.gid,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
    inode: st.ino,
    dev: st.dev,
    links: st.nlink,
    size: type === 'file' ? st.size : 0,
  };
  if (type === 'chardev' || type === 'blockdev') n.rdev = st.rdev;
  return n;
}

/**
 * blobsPerIndex: an index file is written every this many new blobs
 * (besides the packer's own rules), and the session forgets them once the
 * cache lists them: live memory then stops growing with the number of files
 * saved (docs/PERFORMANCE.md, "Session 5: peak RSS of `small`").
 */
export const backupTuning = {
  /** (Changed by tests only.) */
  blobsPerIndex: 20_000,
};

const NO_IDS: ReadonlySet<string> = new Set();
/**
 * Stands for "the index lists every data blob of this directory's parent
 * nodes": the parent tree is reached from a root the cache records as
 * complete (IndexCache.isCompleteTree), so no lookup is needed.
 */
const ALL_IDS: ReadonlySet<string> = { has: () => true } as unknown as ReadonlySet<string>;

/** Builds the directory skeleton that leads from "/" to each backed-up path. */
interface PathTree {
  children: Map<string, PathTree>;
  /** This component is itself a backup target: back up everything below it. */
  target: boolean;
}

function buildPathTree(paths: string[]): PathTree {
  const root: PathTree = { children: new Map(), target: false };
  for (const p of paths) {
    let t = root;
    for (const part of p.split('/').filter(Boolean)) {
      if (t.target) break;
      let c = t.children.get(part);
      if (!c) t.children.set(part, (c = { children: new Map(), target: false }));
      t = c;
    }
    t.target = true;
    t.children.clear();
  }
  return root;
}

export class Archiver {
  private readonly packer: Packer;
  private readonly pipeline: DataPipeline;
  private readonly progress: BackupProgress = { filesDone: 0, dirsDone: 0, bytesDone: 0, errors: 0 };
  private readonly counters: Counters = { filesNew: 0, filesChanged: 0, filesUnmodified: 0, dirsNew: 0, dirsChanged: 0, dirsUnmodified: 0, treeBlobs: 0, treeAdded: 0, treeAddedPacked: 0 };
  private lastReport = 0;
  /**
   * Files handed to the pipeline whose content is not yet hashed. Bounding
   * them keeps the walk from running far ahead (memory stays flat with
   * millions of small files).
   */
  private readonly pendingFiles = new Semaphore(4096);
  /** Parent trees that failed to load: saved again if this backup produces them. */
  private readonly unreadableTrees = new Set<string>();
  /** With a write-only key: the local state that stands in for the parent snapshot. */
  private readonly local?: WriteOnlyState;
  /** Lists the directories the walk enters next on other threads (see prefetch.ts). */
  private readonly lookahead?: Lookahead;

  constructor(
    private readonly repo: Repository,
    private readonly opts: BackupOptions,
  ) {
    this.packer = new Packer(
      repo.backend,
      repo.writeKeys(),
      repo.config.packSize,
      // Remote backends take several uploads at once (each in flight holds one pack buffer).
      { maxWrites: Math.min(3, repo.backend.connections ?? 1), blobsPerIndex: backupTuning.blobsPerIndex },
      {
        indexWritten: (name, packs) => {
          repo.cache.addIndexFile(name, packs);
          repo.forgetIndexed(packs);
        },
      },
    );
    if (repo.writeOnly) this.local = new WriteOnlyState(repo.writeOnlyCacheKey!, repo.writeOnlyStateDir);
    this.lookahead = lookahead(opts.filter, opts.prefetched);
    this.pipeline = new DataPipeline(repo, this.packer, (n) => {
      this.progress.bytesDone += n;
      this.report();
    });
  }

  private report(force = false): void {
    if (!this.opts.onProgress) return;
    const now = Date.now();
    if (!force && now - this.lastReport < 100) return;
    this.lastReport = now;
    this.opts.onProgress({ ...this.progress });
  }

  private warn(p: Buffer | string, message: string): void {
    this.progress.errors++;
    this.opts.onWarning?.({ path: displayPath(p), message });
  }

  private lastYield = 0;

  /**
   * The walk uses synchronous metadata calls (much faster than a thread-pool
   * round trip per call for many small files); this lets the event loop run
   * every few milliseconds so worker results keep flowing.
   */
  private async breathe(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    this.lastYield = performance.now();
  }

  /** Whether the walk should call breathe() now (checked without a promise per entry). */
  private breatheDue(): boolean {
    return performance.now() - this.lastYield >= 4;
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'backup interrupted; nothing was lost, no snapshot was written');
  }

  async run(): Promise<BackupResult> {
    const start = new Date();
    const paths = this.opts.stdin ? [stdinPath(this.opts.stdin.name)] : await this.resolvePaths(this.opts.paths);
    const hostname = this.opts.hostname ?? os.hostname();
    const parent = await this.findParent(hostname, paths);
    const parentRoot = parent ? await this.loadTree(parent.tree) : undefined;
    // One lookup for the whole parent snapshot instead of one per directory
    // (see ALL_IDS); a write-only key's cache lists ids only and is not used.
    if (parentRoot && parent && !this.local && this.repo.cache.isCompleteTree(parent.tree)) this.knownContent = ALL_IDS;
    if (this.opts.scan && !this.opts.stdin) void this.scan(paths);

    let rootId: string;
    // The walk takes over on the main thread: no more listings ahead of it.
    this.opts.prefetched?.stop();
    try {
      const tree = buildPathTree(paths);
      const root = this.opts.stdin
        ? await this.stdinRoot(this.opts.stdin.fd, paths[0].slice(1))
        : tree.target
          ? await this.walkDir(Buffer.from('/'), parentRoot, parent?.tree, lstatSync('/', { bigint: true }).dev)
          : await this.walkSkeleton(Buffer.from('/'), tree, parentRoot);
      this.pipeline.dispatchBatch();
      rootId = await root.done;
      if (this.failure) throw this.failure;
      await this.pipeline.drain();
      await this.packer.flush();
    } catch (e) {
      await this.pipeline.drain().catch(() => undefined);
      throw storageFailure(e);
    }
    this.report(true);

    const p = this.pipeline.stats;
    const c = this.counters;
    const summary: SnapshotSummary = {
      backup_start: isoWithOffset(start),
      backup_end: isoWithOffset(new Date()),
      files_new: c.filesNew,
      files_changed: c.filesChanged,
      files_unmodified: c.filesUnmodified,
      dirs_new: c.dirsNew,
      dirs_changed: c.dirsChanged,
      dirs_unmodified: c.dirsUnmodified,
      data_blobs: p.dataBlobs,
      tree_blobs: c.treeBlobs,
      data_added: p.dataAdded + c.treeAdded,
      data_added_packed: p.dataAddedPacked + c.treeAddedPacked,
      total_files_processed: this.progress.filesDone,
      total_bytes_processed: this.progress.bytesDone,
      errors: this.progress.errors,
    };
    const user = os.userInfo();
    const data: SnapshotData = {
      version: 1,
      time: isoWithOffset(this.opts.time ?? start),
      hostname,
      username: user.username,
      uid: user.uid,
      gid: user.gid,
      paths,
      tags: this.opts.tags ?? [],
      tree: rootId,
      ...(parent ? { parent: parent.id } : {}),
      program_version: `coffer ${VERSION}`,
      summary,
    };
    // An interrupt that came after the walk (while the last data was being
    // written) must still stop the snapshot from being saved.
    this.checkAbort();
    const id = await this.repo.saveSnapshot(data);
    this.local?.save(hostname, paths, id, data.time, rootId);
    // Every blob the snapshot reaches is now in the loaded index files: the
    // parent's were checked (or were complete), this session's were flushed.
    if (!this.local) this.repo.cache.addCompleteTree(rootId);
    return { snapshot: { ...data, id }, incomplete: this.progress.errors > 0 };
  }

  private async resolvePaths(input: string[]): Promise<string[]> {
    if (input.length === 0) throw new CofferError('INVALID_ARGUMENT', 'nothing to back up: give at least one path');
    const out: string[] = [];
    for (const p of input) {
      const abs = path.resolve(p);
      try {
        await fs.lstat(abs);
      } catch (e) {
        throw new CofferError('SOURCE_UNREADABLE', `cannot back up ${p}: ${errnoCode(e) === 'ENOENT' ? 'no such file or directory' : errnoCode(e) ?? String(e)}`);
      }
      out.push(abs);
    }
    return [...new Set(out)].sort();
  }

  /** The key parent nodes are matched by: the name, or (write-only) its keyed hash, as the local state keeps it. */
  private parentName(name: Buffer): Buffer {
    return this.local ? this.local.nameKey(name) : name;
  }

  private async findParent(hostname: string, paths: string[]): Promise<Pick<Snapshot, 'id' | 'tree'> | undefined> {
    if (this.opts.parent === null) return undefined;
    if (this.local) {
      // A write-only key cannot read snapshots: its own last backup of these paths, from its local state.
      if (this.opts.parent !== undefined) throw new CofferError('INVALID_ARGUMENT', 'a write-only key cannot read snapshots: --parent is not available (it uses its own last backup)');
      this.local.load(hostname, paths);
      return this.local.parentId && this.local.parentRoot ? { id: this.local.parentId as Snapshot['id'], tree: this.local.parentRoot } : undefined;
    }
    if (this.opts.parent !== undefined) return this.repo.findSnapshot(this.opts.parent);
    const key = JSON.stringify(paths);
    const all = await this.repo.listSnapshots();
    return all.filter((s) => s.hostname === hostname && JSON.stringify([...s.paths].sort()) === key).at(-1);
  }

  /**
   * Index locations of subtrees of the parent trees loaded so far, looked up
   * in one query per tree rather than one per directory; taken by loadTree.
   * The walk is depth-first, so this holds about the subdirectories not yet
   * visited (bounded: entries of directories gone since stay unused).
   */
  private readonly treeLocs = new Map<string, BlobLocation>();

  private async loadTree(id: string | undefined): Promise<TreeNode[] | undefined> {
    if (!id) return undefined;
    if (this.local) return this.local.tree(id);
    try {
      const hint = this.treeLocs.get(id);
      if (hint) this.treeLocs.delete(id);
      const nodes = decodeTree(await this.repo.loadBlob('tree', id, undefined, hint));
      const subtrees: string[] = [];
      for (const n of nodes) if (n.subtree !== undefined) subtrees.push(n.subtree);
      if (subtrees.length > 1 && this.treeLocs.size < 100_000) for (const [sub, loc] of this.repo.cache.lookupMany('tree', subtrees)) this.treeLocs.set(sub, loc);
      return nodes;
    } catch {
      // An unreadable parent only costs speed: every file is read again. But
      // the identical tree this backup builds would get the same id, and the
      // index would say it exists: remember to store it again.
      this.unreadableTrees.add(id);
      return undefined;
    }
  }

  /** Directories between "/" and the targets: only the named children are included. */
  private async walkSkeleton(dir: Buffer, t: PathTree, parentNodes: TreeNode[] | undefined): Promise<Later<string>> {
    const entries: Done[] = [];
    for (const [name, child] of [...t.children].sort((a, b) => compareNames(Buffer.from(a[0]), Buffer.from(b[0])))) {
      const nameBuf = Buffer.from(name);
      const p = joinPath(dir, nameBuf);
      const key = this.parentName(nameBuf);
      const prev = parentNodes?.find((n) => n.name.equals(key));
      if (child.target) {
        entries.push(await this.entry(p, nameBuf, prev, undefined));
        continue;
      }
      let st: EntryMeta;
      try {
        st = lstatMeta(p);
      } catch (e) {
        this.warn(p, `cannot read: ${errnoCode(e) ?? String(e)}`);
        continue;
      }
      const node = baseNode(nameBuf, st);
      node.type = 'dir';
      const sub = await this.walkSkeleton(p, child, prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined);
      entries.push(later(sub.done.then((id) => ({ ...node, subtree: id }))));
    }
    return this.finishDir(entries);
  }

  /**
   * Saves the directory's tree once all entries are known. When every node
   * equals the parent snapshot's (same order, same fields), the parent's tree
   * id is reused without encoding or hashing anything.
   */
  private finishDir(entries: Done[], prev?: { id: string; nodes: TreeNode[]; complete: boolean }): Later<string> {
    return later(
      Promise.all(entries.map((e) => e.done)).then((all) => {
        const nodes = all.filter((n): n is TreeNode => n !== undefined);
        if (prev && (prev.complete || this.repo.hasBlob('tree', prev.id)) && sameNodes(nodes, prev.nodes)) return prev.id;
        return this.saveTree(nodes);
      }),
    );
  }

  /** Walks one directory; resolves (after scheduling) with a promise of its tree id. */
  /** `only`: back up just these entries of the directory (the filter said so). */
  private async walkDir(dir: Buffer, parentNodes: TreeNode[] | undefined, parentId: string | undefined, targetDev: bigint, only?: string[]): Promise<Later<string>> {
    this.checkAbort();
    let names: Buffer[] = [];
    // With the native addon, one call lists the directory and gets every
    // entry's metadata (see platform/native.ts).
    let scan: DirScan | undefined;
    try {
      if (only === undefined) {
        const ahead = this.lookahead?.take(dir);
        scan = this.opts.prefetched?.take(dir) ?? (ahead ? await ahead : scanDir(dir));
        names = scan.names;
      } else names = only.map((n) => Buffer.from(n));
    } catch (e) {
      this.warn(dir, `cannot read directory: ${errnoCode(e) ?? String(e)}`);
    }
    const order = names.map((_, i) => i).sort((a, b) => compareNames(names[a], names[b]));
    const aheadKeys = scan && this.lookahead?.ahead(dir, scan, order, targetDev);
    // Both lists are sorted by name: the parent's nodes are matched in one
    // pass, without a map. A write-only key's local state names nodes by a
    // keyed hash of the name (another order): it keeps a map.
    let byName: Map<string, TreeNode> | undefined;
    if (this.local) {
      byName = new Map();
      for (const n of parentNodes ?? []) byName.set(n.name.toString('latin1'), n);
    }
    const prevNodes = parentNodes ?? [];
    let j = 0;
    // The walk is sequential: subdirectories set and restore their own set.
    const outerKnown = this.knownContent;
    // Under a complete parent tree (ALL_IDS), parentNodes is a subtree of it, complete too.
    const complete = parentNodes !== undefined && outerKnown === ALL_IDS;
    this.knownContent = !parentNodes ? NO_IDS : complete ? ALL_IDS : this.indexedContent(parentNodes);
    const entries: Done[] = [];
    for (const i of order) {
      const name = names[i];
      let prev: TreeNode | undefined;
      if (byName) prev = byName.get(this.parentName(name).toString('latin1'));
      else {
        while (j < prevNodes.length && compareNames(prevNodes[j].name, name) < 0) j++;
        if (j < prevNodes.length && prevNodes[j].name.equals(name)) prev = prevNodes[j];
      }
      const e = this.entry(joinPath(dir, name), name, prev, targetDev, scan?.meta(i));
      entries.push(e instanceof Promise ? await e : e);
    }
    this.knownContent = outerKnown;
    if (aheadKeys) this.lookahead!.forget(aheadKeys);
    this.progress.dirsDone++;
    return this.finishDir(entries, parentNodes && parentId ? { id: parentId, nodes: parentNodes, complete } : undefined);
  }

  /** One directory entry of any type. Resolves once scheduled. `targetDev` is undefined for a backup target itself. */
  /** `meta`: the entry's metadata if the directory listing already has it (else it is lstat'ed here). */
  /** (Not async: most entries are scheduled without a promise.) */
  private entry(p: Buffer, name: Buffer, prev: TreeNode | undefined, targetDev: bigint | undefined, meta?: EntryMeta): Done | Promise<Done> {
    this.checkAbort();
    if (this.breatheDue()) return this.breathe().then(() => this.entryNow(p, name, prev, targetDev, meta));
    return this.entryNow(p, name, prev, targetDev, meta);
  }

  private entryNow(p: Buffer, name: Buffer, prev: TreeNode | undefined, targetDev: bigint | undefined, meta?: EntryMeta): Done | Promise<Done> {
    let st: EntryMeta;
    try {
      st = meta ?? lstatMeta(p);
    } catch (e) {
      this.warn(p, errnoCode(e) === 'ENOENT' ? 'vanished before it could be read' : `cannot read: ${errnoCode(e) ?? String(e)}`);
      return now(undefined);
    }
    const dev = targetDev ?? st.dev;
    const verdict = this.opts.filter ? this.opts.filter(p, st, dev) : 'keep';
    if (verdict === 'skip') return now(undefined);
    const node = baseNode(name, st);
    // xattrSize 0: the listing found none (or they cannot be listed, which reads as none too).
    if (st.xattrSize !== 0) {
      return this.readXattrs(p).then((x) => {
        node.xattrs = x;
        return this.typedEntry(p, node, prev, dev, verdict, meta !== undefined);
      });
    }
    return this.typedEntry(p, node, prev, dev, verdict, meta !== undefined);
  }

  private typedEntry(p: Buffer, node: TreeNode, prev: TreeNode | undefined, dev: bigint, verdict: Exclude<EntryVerdict, 'skip'>, listed: boolean): Done | Promise<Done> {
    switch (node.type) {
      case 'dir':
        return this.dirEntry(p, node, prev, dev, verdict);
      case 'symlink':
        try {
          node.linkTarget = readlinkSync(p, { encoding: 'buffer' });
        } catch (e) {
          this.warn(p, `cannot read link: ${errnoCode(e) ?? String(e)}`);
          return now(undefined);
        }
        return now(node);
      case 'file':
        return this.file(p, node, prev, listed);
      default:
        return now(node);
    }
  }

  private async dirEntry(p: Buffer, node: TreeNode, prev: TreeNode | undefined, dev: bigint, verdict: Exclude<EntryVerdict, 'skip'>): Promise<Done> {
    const prevTree = prev?.type === 'dir' ? await this.loadTree(prev.subtree) : undefined;
    const sub = await this.walkDir(p, prevTree, prev?.subtree, dev, verdict === 'keep' ? undefined : verdict === 'empty' ? [] : verdict.keepOnly);
    return later(
      sub.done.then((id) => {
        if (!prev) this.counters.dirsNew++;
        else if (prev.subtree === id) this.counters.dirsUnmodified++;
        else this.counters.dirsChanged++;
        node.subtree = id; // (no spread: nodes are fresh per entry, and spreads are slow)
        return node;
      }),
    );
  }

  private async readXattrs(p: Buffer): Promise<[Buffer, Buffer][] | undefined> {
    let names: Buffer[];
    try {
      names = await platform.listXattrs(p);
    } catch {
      return undefined;
    }
    if (names.length === 0) return undefined;
    const out: [Buffer, Buffer][] = [];
    for (const n of names.sort(compareNames)) {
      try {
        out.push([n, await platform.getXattr(p, n)]);
      } catch (e) {
        if (errnoCode(e) !== 'ENODATA') this.warn(p, `cannot read extended attribute ${n.toString()}: ${errnoCode(e) ?? String(e)}`);
      }
    }
    return out.length ? out : undefined;
  }

  private unchanged(node: TreeNode, prev: TreeNode | undefined): prev is TreeNode & { content: string[] } {
    return (
      prev !== undefined &&
      prev.type === 'file' &&
      prev.content !== undefined &&
      prev.size === node.size &&
      prev.mtimeNs === node.mtimeNs &&
      prev.ctimeNs === node.ctimeNs &&
      prev.inode === node.inode &&
      prev.content.every((id) => this.knownContent.has(id) || this.repo.hasBlob('data', id))
    );
  }

  /** Data blob ids of the current directory's parent nodes that the index lists (see indexedContent). */
  private knownContent: ReadonlySet<string> = NO_IDS;

  /**
   * Which data blobs of a parent directory's files the index lists, asked
   * in one batched query per directory rather than one per blob (the
   * per-call cost dominated unchanged re-backups of many small files).
   */
  private indexedContent(parentNodes: TreeNode[]): ReadonlySet<string> {
    const ids: string[] = [];
    for (const n of parentNodes) if (n.type === 'file' && n.content) for (const id of n.content) ids.push(id);
    return ids.length ? this.repo.cache.knownOf('data', ids) : NO_IDS;
  }

  /**
   * `listed`: node.size comes from the directory listing just made (so the
   * small-file path can be tried without an open first). Not async: the
   * common cases (unchanged, small) finish without a promise hop.
   */
  private file(p: Buffer, node: TreeNode, prev: TreeNode | undefined, listed = false): Done | Promise<Done> {
    if (this.unchanged(node, prev)) {
      this.counters.filesUnmodified++;
      this.progress.filesDone++;
      this.progress.bytesDone += node.size;
      if (this.opts.onProgress) this.progress.currentFile = displayPath(p);
      this.report();
      node.content = prev.content;
      return now(node);
    }
    if (listed && node.size <= this.pipeline.smallLimit) return this.smallFile(p, node, prev);
    return this.largeFile(p, node, prev);
  }

  /** The general path: open, check, then read small or stream large. */
  private async largeFile(p: Buffer, node: TreeNode, prev: TreeNode | undefined): Promise<Done> {
    let fd: number;
    try {
      // O_NONBLOCK: if the file was swapped for a FIFO after lstat, open must not hang.
      fd = openSync(p, fsc.O_RDONLY | fsc.O_NOFOLLOW | fsc.O_NONBLOCK);
    } catch (e) {
      this.warn(p, errnoCode(e) === 'ENOENT' ? 'vanished before it could be read' : `cannot open: ${errnoCode(e) ?? String(e)}`);
      return now(undefined);
    }
    if (this.opts.onProgress) this.progress.currentFile = displayPath(p);
    let pending: Pending | undefined;
    try {
      const st = fstatSync(fd, { bigint: true });
      if (!st.isFile()) {
        closeSync(fd);
        this.warn(p, 'changed type during backup; skipped');
        return now(undefined);
      }
      await this.pendingFiles.acquire();
      if (st.size <= BigInt(this.pipeline.smallLimit)) {
        pending = await this.pipeline.readSmall(fd);
        if (pending) {
          // Its bytes are in the batch already: no need to keep it open.
          closeSync(fd);
          fd = -1;
        }
      }
      if (!pending) pending = await this.pipeline.startLarge(fd);
    } catch (e) {
      if (fd >= 0) closeQuietly(fd);
      this.pendingFiles.release();
      this.warn(p, `cannot read: ${errnoCode(e) ?? (e as Error).message}`);
      return now(undefined);
    }
    return this.settle(p, node, prev, pending, fd);
  }

  /**
   * A file the listing says is small: queued for a worker to open, check,
   * read whole and close (DataPipeline.tryQueueSmall), with the same
   * outcomes and warnings as largeFile(), whose streaming path the pipeline
   * takes if the file has grown. Synchronous while a pending-file slot and
   * batch room are free.
   */
  private smallFile(p: Buffer, node: TreeNode, prev: TreeNode | undefined): Done | Promise<Done> {
    if (!this.pendingFiles.tryAcquire()) return this.smallFileWaiting(p, node, prev, false);
    let pending: Pending | null;
    try {
      pending = this.pipeline.tryQueueSmall(p, node.size);
    } catch (e) {
      return this.smallFileFailed(p, e);
    }
    if (pending === null) return this.smallFileWaiting(p, node, prev, true);
    if (this.opts.onProgress) this.progress.currentFile = displayPath(p);
    return this.settle(p, node, prev, pending, -1);
  }

  /** smallFile when it has to wait (for a pending-file slot, or for a batch buffer). */
  private async smallFileWaiting(p: Buffer, node: TreeNode, prev: TreeNode | undefined, holding: boolean): Promise<Done> {
    if (!holding) await this.pendingFiles.acquire();
    let pending: Pending;
    try {
      pending = await this.pipeline.queueSmall(p, node.size);
    } catch (e) {
      return this.smallFileFailed(p, e);
    }
    if (this.opts.onProgress) this.progress.currentFile = displayPath(p);
    return this.settle(p, node, prev, pending, -1);
  }

  private smallFileFailed(p: Buffer, e: unknown): Done {
    this.pendingFiles.release();
    this.warn(p, `cannot read: ${errnoCode(e) ?? (e as Error).message}`);
    return now(undefined);
  }

  /** The node of a file whose content is on its way through the pipeline; `fd` (if >= 0) is closed when it is done. */
  /** (One `then` with plain functions: a promise chain per file was a large share of a many-file backup's garbage.) */
  private settle(p: Buffer, node: TreeNode, prev: TreeNode | undefined, pending: Pending, fd: number): Done {
    return { done: pending.content.then(
      ({ ids: content, size }): TreeNode | undefined => {
        if (fd >= 0) closeQuietly(fd);
        this.pendingFiles.release();
        if (prev) this.counters.filesChanged++;
        else this.counters.filesNew++;
        this.progress.filesDone++;
        this.report();
        node.size = size;
        node.content = content;
        return node;
      },
      (e): undefined => {
        if (fd >= 0) closeQuietly(fd);
        this.pendingFiles.release();
        if (e instanceof CofferError) {
          // Fails the backup once the walk is done (run()); no promise of the walk rejects.
          this.failure ??= e;
          return undefined;
        }
        if (e instanceof SmallFileSkipped) {
          // A file a worker could not read: the warnings largeFile() gives for the same failures.
          if (e.code === undefined) this.warn(p, 'changed type during backup; skipped');
          else if (e.syscall === 'open') this.warn(p, e.code === 'ENOENT' ? 'vanished before it could be read' : `cannot open: ${e.code}`);
          else this.warn(p, `cannot read: ${e.code}`);
        } else this.warn(p, `read failed: ${errnoCode(e) ?? (e as Error).message}`);
        return undefined;
      },
    ) };
  }

  /** A repository failure met while files were being saved (see settle). */
  private failure?: CofferError;

  private async saveTree(nodes: TreeNode[]): Promise<string> {
    const bytes = encodeTree(nodes);
    const id = computeBlobId(this.repo.keys.blobIdKey, bytes).toString('hex');
    this.local?.record(id, nodes);
    // claimNewBlobs: on a first backup it answers without asking the index (a query per directory before).
    const fresh = this.repo.claimNewBlobs('tree', [id]).size > 0;
    if (fresh || this.unreadableTrees.delete(id)) {
      if (!fresh) this.repo.noteSaved('tree', id);
      const sealed = sealBlob(this.repo.writeKeys().pack.blobKey, 'tree', Buffer.from(id, 'hex'), bytes, this.repo.config.compressionLevel);
      await this.packer.add('tree', id, sealed, bytes.length);
      this.counters.treeBlobs++;
      this.counters.treeAdded += bytes.length;
      this.counters.treeAddedPacked += sealed.length;
    }
    return id;
  }

  /** Counts files and bytes (of what the filter keeps) so progress can show totals and an ETA. */
  private async scan(paths: string[]): Promise<void> {
    let files = 0;
    let bytes = 0;
    const filter = this.opts.filter;
    const visit = async (p: string, targetDev: bigint | undefined): Promise<void> => {
      if (this.opts.signal?.aborted) return;
      let st;
      try {
        st = await fs.lstat(p, { bigint: true });
      } catch {
        return;
      }
      const dev = targetDev ?? st.dev;
      const verdict = filter ? filter(p, st, dev) : 'keep';
      if (verdict === 'skip') return;
      if (st.isDirectory()) {
        if (verdict === 'empty') return;
        if (typeof verdict === 'object') {
          for (const n of verdict.keepOnly) await visit(path.join(p, n), dev);
          return;
        }
        let names: string[] = [];
        try {
          names = await fs.readdir(p);
        } catch {
          return;
        }
        for (const n of names) await visit(path.join(p, n), dev);
      } else if (st.isFile()) {
        files++;
        bytes += Number(st.size);
      }
    };
    for (const p of paths) await visit(p, undefined);
    this.progress.totalFiles = files;
    this.progress.totalBytes = bytes;
  }

  /** The root tree of a stdin backup: one file read sequentially from `fd`. */
  private async stdinRoot(fd: number, name: string): Promise<Later<string>> {
    const user = os.userInfo();
    const t = BigInt(Date.now()) * 1_000_000n;
    const node: TreeNode = { name: Buffer.from(name), type: 'file', mode: 0o644, uid: user.uid, gid: user.gid, mtimeNs: t, ctimeNs: t, inode: 0n, dev: 0n, links: 1, size: 0 };
    this.progress.currentFile = `/${name}`;
    await this.pendingFiles.acquire();
    const pending = await this.pipeline.startLarge(fd, false);
    const content = pending.content.finally(() => this.pendingFiles.release());
    return this.finishDir([
      later(
        content.then(({ ids, size }) => {
          this.counters.filesNew++;
          this.progress.filesDone++;
          return { ...node, size, content: ids };
        }),
      ),
    ]);
  }
}

/** The snapshot path of a stdin backup. */
function stdinPath(name: string): string {
  if (!name || name.includes('/') || name === '.' || name === '..' || name.includes('\0')) {
    throw new CofferError('INVALID_ARGUMENT', `--stdin-filename must be a plain file name, not "${name}"`);
  }
  return `/${name}`;
}

/**
 * Backs up `opts.paths` into `repo` and writes a snapshot.
 * @example
 * ```ts
 * const { snapshot, incomplete } = await backup(repo, { paths: ['/home/me'], tags: ['daily'], filter: createFilter({ exclude: ['*.tmp'] }) });
 * ```
 */
export async function backup(repo: Repository, opts: BackupOptions): Promise<BackupResult> {
  return new Archiver(repo, opts).run();
}
