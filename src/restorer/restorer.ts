/**
 * Restore, planned and executed at once:
 *  1. plan: walk the snapshot's trees (only the --include subtrees), create
 *     directories, symlinks and special files, and list for every pack the
 *     blobs needed and where each goes (file, offset);
 *  2. contents, in batches handed over while the plan goes on (`flush`):
 *     read the needed ranges of each pack (one ranged read per group of
 *     blobs), decrypt and verify in the workers, which also write each blob
 *     to its places; all-zero chunks are skipped, leaving holes;
 *  3. finish: hard links, then file and directory metadata (deepest first).
 * A file any of whose blobs fails to authenticate is removed and reported;
 * everything else is restored.
 */
import type { FileHandle } from 'node:fs/promises';
import { promises as fs, constants as fsc, openSync, closeSync, ftruncateSync, truncateSync, writeSync, write as writeCallback, lchownSync, chmodSync, mkdirSync, lstatSync, rmSync } from 'node:fs';
import path from 'node:path';
import { CofferError, errnoCode } from '../errors.js';
import { decodeTree, type TreeNode } from '../format/tree.js';
import type { Repository } from '../repo/repository.js';
import type { Snapshot } from '../format/snapshot.js';
import type { PackId } from '../ids.js';
import type { BlobLocation } from '../cache/index-cache.js';
import type { OpenItem } from '../worker/tasks.js';
import type { FileTarget, WriteTarget } from '../worker/write-files.js';
import { platform } from '../platform/native.js';
import { joinPath, displayPath } from '../util/paths.js';
import { BufferPool, ownedArrayBuffer } from '../util/semaphore.js';
import { PatternList } from '../archiver/select.js';
import { computeBlobId } from '../format/blob.js';
import { createRequire } from 'node:module';
import type Picomatch from 'picomatch';

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let pm: typeof Picomatch | undefined;
const picomatch = (): typeof Picomatch => (pm ??= createRequire(import.meta.url)('picomatch') as typeof Picomatch);

/**
 * Progress of a running restore, passed to `onProgress`.
 * @example
 * ```ts
 * await restore(repo, snap, { target, onProgress: (p: RestoreProgress) => console.log(p.bytesDone, '/', p.totalBytes) });
 * ```
 */
export interface RestoreProgress {
  filesDone: number;
  bytesDone: number;
  totalFiles: number;
  totalBytes: number;
  currentFile?: string;
  errors: number;
}

/**
 * A file that could not be restored (damaged data, no permission…), and why; the restore goes on.
 * @example
 * ```ts
 * await restore(repo, snap, { target, onWarning: (w: RestoreWarning) => console.error(w.path, w.message) });
 * ```
 */
export interface RestoreWarning {
  path: string;
  message: string;
}

/**
 * What restore does with a file that already exists in the target.
 * @example
 * ```ts
 * const overwrite: OverwritePolicy = 'never';
 * ```
 */
export type OverwritePolicy = 'always' | 'if-changed' | 'never';

/**
 * One planned action, reported through `onItem` (also in a dry run).
 * @example
 * ```ts
 * await restore(repo, snap, { target, dryRun: true, onItem: (i: RestoreItem) => console.log(i.action, i.path) });
 * ```
 */
export interface RestoreItem {
  /** restored: written anew; updated: an existing file brought up to date (only the chunks that differ are written); unchanged: content already right; skipped: left as it was (overwrite "never"); deleted: removed (--delete). */
  action: 'restored' | 'updated' | 'unchanged' | 'skipped' | 'deleted';
  /** Path in the target. */
  path: string;
  type: TreeNode['type'] | 'other';
  size: number;
}

/**
 * Where and how to restore: target, include/exclude patterns, overwrite policy, delete, dry run, verify, callbacks.
 * @example
 * ```ts
 * const opts: RestoreOptions = { target: '/srv/mirror', delete: true, dryRun: true, onItem: (i) => console.log(i.action, i.path) };
 * ```
 */
export interface RestoreOptions {
  target: string;
  /**
   * Include patterns (exclude-pattern syntax, see `createFilter`): only what
   * matches, and the directories leading to it, is restored. An absolute path
   * such as "/home/me/docs" restores that subtree.
   */
  include?: string[];
  /** Exclude patterns: what matches is not restored (a directory with everything below it). */
  exclude?: string[];
  /**
   * Existing files: "always" (default) checks their content and writes only
   * the chunks that differ; "if-changed" also trusts a file whose size and
   * mtime match; "never" leaves existing files alone.
   */
  overwrite?: OverwritePolicy;
  /** Remove files and directories in the target that the snapshot does not have (inside restored directories). */
  delete?: boolean;
  /** Plan only: report what would be done through `onItem`, write nothing. */
  dryRun?: boolean;
  /** After restoring, read every restored file back and check it against the snapshot. */
  verify?: boolean;
  onProgress?(p: RestoreProgress): void;
  onWarning?(w: RestoreWarning): void;
  onItem?(i: RestoreItem): void;
  signal?: AbortSignal;
}

/**
 * What a restore did: files written, unchanged, skipped, deleted, verified, and problems.
 * @example
 * ```ts
 * const r: RestoreResult = await restore(repo, snap, { target }); console.log(r.filesRestored, r.filesUnchanged, r.errors);
 * ```
 */
export interface RestoreResult {
  filesRestored: number;
  bytesRestored: number;
  /** Existing files whose content was already right (not written). */
  filesUnchanged: number;
  /** Existing files left alone (overwrite "never"). */
  filesSkipped: number;
  /** Entries removed by `delete`. */
  deleted: number;
  /** Files read back and verified (with `verify`). */
  filesVerified: number;
  /** Files not restored (damaged data) and other problems. */
  errors: number;
}

/** A directory in the target, created on first need (so include patterns leave no empty directories). */
interface DirCtx {
  path: Buffer;
  node?: TreeNode;
  parent?: DirCtx;
  made: boolean;
  /** Made by this restore (it was not there): nothing in it can exist yet, so no need to look. */
  fresh?: boolean;
  /** Known not to be set-group-ID: a file created in it gets this process's group. */
  plainGid?: boolean;
}

interface FileJob {
  path: Buffer;
  node: TreeNode;
  remaining: number;
  damaged: boolean;
  /** The file exists in the target, truncated to its final size. */
  created: boolean;
  /** An existing file kept for in-place updates whose size must change. */
  resize?: boolean;
  /** Open descriptor, while the file is among the open ones. */
  fd?: number;
  /** Writes in flight on `fd` (it must not be closed meanwhile). */
  writes: number;
  /**
   * Nothing is at its path and its content is one blob: a worker creates it
   * with its metadata right after opening the blob (see worker/write-files.ts).
   */
  fast: boolean;
  /** Its directory is known not to be set-group-ID (see DirCtx). */
  plainGid?: boolean;
}

interface BlobUse {
  file: FileJob;
  offset: number;
}

interface NeededBlob {
  id: string;
  offset: number;
  length: number;
  rawLength: number;
  uses: BlobUse[];
  /**
   * Its group's worker has returned (or its read failed): a use planned
   * after this needs a new read. Until then a new use joins this one (written
   * by the worker if its group has not started, else from the plaintext kept
   * in `resident`).
   */
  done?: boolean;
  /** Its plaintext is held in a recent group's output buffer (see Resident); new uses go to `later`. */
  resident?: Resident;
  /** Uses that came after its worker was handed its targets: written from the resident plaintext. */
  later?: BlobUse[];
}

/**
 * The output buffer of a group whose worker has returned, kept for a while
 * (the RESIDENT_GROUPS most recent): a blob in it needed again (the same file
 * content elsewhere in the tree, planned while or shortly after its group
 * ran) is written from this plaintext by a worker instead of being read,
 * decrypted and verified again, or written by the main thread. In src, 3-5
 * thousand such uses came within ~5 MiB of plaintext of their first read.
 */
interface Resident {
  ab: ArrayBuffer;
  /** The group's blobs in buffer order; `ok[k]`: blob k opened and verified (else its bytes are garbage). */
  blobs: NeededBlob[];
  ok: boolean[];
}

const IS_ROOT = process.getuid?.() === 0;
const EUID = process.geteuid?.() ?? -1;
const EGID = process.getegid?.() ?? -1;
/** The file mode creation mask (read without changing it: process.umask() with no argument). */
const UMASK = process.umask();
/** Groups of blobs being read and restored at once (local storage; remote: see `tasksAtOnce`). */
const TASKS_AT_ONCE = 4;
/** Plaintext handed back from the workers per task (a larger blob gets a buffer of its own). */
const OUT_BYTES = 4 << 20;
/** Output buffers of returned groups kept for blobs needed again (see Resident). */
const RESIDENT_GROUPS = 4;
/** Sealed bytes read per task into a reused buffer (where the storage can read into one); a longer range gets a buffer of its own. */
const IN_BYTES = OUT_BYTES + (256 << 10);
const MAX_OPEN_FILES = 256;
/**
 * The plan hands its needed blobs to the workers after FLUSH_FIRST_BYTES of
 * plaintext, then after twice as much each time up to FLUSH_MAX_BYTES (and at
 * its end), so that data is restored while the trees are still being walked
 * and directories made; larger batches split fewer packs into extra groups.
 */
const FLUSH_FIRST_BYTES = 4 << 20;
const FLUSH_MAX_BYTES = 64 << 20;
/** A free slot and no group queued: the plan flushes once this much is pending (anything, when no group runs). */
const STARVING_FLUSH_BYTES = 1 << 20;
/** While groups run, the plan lets the event loop run at least this often (ms). */
const YIELD_MS = 2;
/**
 * Writes at least this large go to the thread pool; smaller ones, and the
 * per-file open/truncate/close/chmod, are synchronous: a thread-pool round
 * trip per call cost more than the call (restoring the 26,000 files of the
 * src corpus took 4x restic's time that way), and the main thread has little
 * else to do while the workers decrypt.
 */
const ASYNC_WRITE_BYTES = 1 << 20;

function pwrite(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => writeCallback(fd, buf, off, len, pos, (e, n) => (e ? reject(e) : resolve(n))));
}

export class Restorer {
  private readonly progress: RestoreProgress = { filesDone: 0, bytesDone: 0, totalFiles: 0, totalBytes: 0, errors: 0 };
  /** Needed blobs planned since the last `flush`, per pack. */
  private packs = new Map<PackId, Map<string, NeededBlob>>();
  /** Needed blobs by id until their worker returns (flushed or not), so that a blob used again joins its first read while it can. */
  private readonly needed = new Map<string, NeededBlob>();
  /** Plaintext bytes and files planned since the last `flush`. */
  private pendingBytes = 0;
  private pendingFiles: FileJob[] = [];
  private flushBytes = FLUSH_FIRST_BYTES;
  /** When the plan last let the event loop run (performance.now()). */
  private lastYield = 0;
  /** Groups of blobs (one ranged read each) waiting for a slot; `queueHead`: the next one. */
  private readonly queue: { packId: PackId; blobs: NeededBlob[] }[] = [];
  private queueHead = 0;
  /** Groups being read and restored (at most `tasksAtOnce`). */
  private readonly running = new Set<Promise<void>>();
  /** The first error of a group (or an interruption): no group starts after it. */
  private failure: unknown;
  private readonly files: FileJob[] = [];
  /** Directories to give their metadata at the end; `made`: created by this restore with its owner and mode already right (see ensureDir). */
  private readonly dirs: { path: Buffer; node: TreeNode; made?: boolean }[] = [];
  private readonly links: { path: Buffer; first: FileJob }[] = [];
  private readonly linkFirst = new Map<string, FileJob>();
  private readonly openFiles = new Set<FileJob>();
  /** Output buffers of returned groups, oldest first (at most RESIDENT_GROUPS). */
  private readonly residents: Resident[] = [];
  private lastReport = 0;
  /** The file last written (progress.currentFile when reported). */
  private current?: Buffer;
  private zero = Buffer.alloc(0);
  private readonly counts = { unchanged: 0, skipped: 0, deleted: 0, verified: 0 };
  private readonly includes: PatternList;
  private readonly excludes: PatternList;
  /** Per include pattern: can something below directory `p` match? */
  private readonly mayContain: ((p: string) => boolean)[];
  private readonly dry: boolean;
  private readonly policy: OverwritePolicy;
  /** Decrypted plaintext buffers, one per pack being restored. */
  private readonly outputs: BufferPool;
  /** Sealed input, reused (storage with `readInto`). */
  private readonly inputs: BufferPool;
  /**
   * Groups in flight: TASKS_AT_ONCE, or for remote storage one per connection up to 6 (each
   * bounded by IN_BYTES / OUT_BYTES, or one blob); on loopback 7 cost ~30 MiB more than 4 and were no faster.
   */
  private readonly tasksAtOnce: number;

  constructor(
    private readonly repo: Repository,
    private readonly snapshot: Snapshot,
    private readonly opts: RestoreOptions,
  ) {
    const inc = (opts.include ?? []).filter((p) => p.trim() !== '');
    this.includes = new PatternList(inc.map((pattern) => ({ pattern })));
    this.excludes = new PatternList((opts.exclude ?? []).map((pattern) => ({ pattern })));
    this.mayContain = inc.map(childMayMatch);
    this.dry = opts.dryRun === true;
    this.policy = opts.overwrite ?? 'always';
    const conns = repo.backend.connections;
    this.tasksAtOnce = conns ? Math.max(TASKS_AT_ONCE, Math.min(6, conns)) : TASKS_AT_ONCE;
    this.outputs = new BufferPool(OUT_BYTES, this.tasksAtOnce + RESIDENT_GROUPS);
    this.inputs = new BufferPool(IN_BYTES, this.tasksAtOnce);
    if (!['always', 'if-changed', 'never'].includes(this.policy)) throw new CofferError('INVALID_ARGUMENT', `overwrite must be always, if-changed or never, not "${this.policy}"`);
  }

  private item(action: RestoreItem['action'], p: Buffer, type: RestoreItem['type'], size: number): void {
    this.opts.onItem?.({ action, path: displayPath(p), type, size });
  }

  private warn(p: Buffer | string, message: string): void {
    this.progress.errors++;
    this.opts.onWarning?.({ path: displayPath(p), message });
  }

  private report(force = false): void {
    if (!this.opts.onProgress) return;
    const now = Date.now();
    if (!force && now - this.lastReport < 100) return;
    this.lastReport = now;
    // Rendered only when reported: not once per file.
    if (this.current) this.progress.currentFile = displayPath(this.current);
    this.opts.onProgress({ ...this.progress });
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'restore interrupted');
  }

  async run(): Promise<RestoreResult> {
    const target = Buffer.from(path.resolve(this.opts.target));
    const notDir = () => new CofferError('INVALID_ARGUMENT', `the target ${displayPath(target)} is not a directory`);
    let fresh = false;
    if (!this.dry) {
      try {
        fresh = (await fs.mkdir(target, { recursive: true })) !== undefined;
      } catch (e) {
        if (errnoCode(e) === 'EEXIST' || errnoCode(e) === 'ENOTDIR') throw notDir();
        throw new CofferError('TARGET_ERROR', `cannot create target ${displayPath(target)}: ${errnoCode(e) ?? String(e)}`);
      }
    } else {
      const st = await fs.stat(target).catch((e) => (errnoCode(e) === 'ENOTDIR' ? 'file' : undefined));
      if (st === 'file' || (st && !st.isDirectory())) throw notDir();
    }
    // Files created in a directory without the set-group-ID bit get our group: no fchown needed when it is theirs.
    const plainGid = !this.dry && (lstatSync(target).mode & 0o2000) === 0;
    if (this.dry) await this.planDir(this.snapshot.tree, { path: target, made: true, fresh }, '', this.includes.size === 0);
    else {
      // The contents are restored while the plan goes on: every FLUSH_BYTES
      // of planned data become groups that start at once (see `flush`).
      // The plan's index queries (thousands) share one read transaction.
      this.repo.cache.beginRead();
      try {
        try {
          await this.planDir(this.snapshot.tree, { path: target, made: true, fresh, plainGid }, '', this.includes.size === 0);
          await this.flush();
        } catch (e) {
          this.failure ??= e;
        }
        // Also on failure or interruption: no worker may still be writing into a descriptor about to be closed.
        await this.drain();
        if (this.failure) throw this.failure;
        await this.retryOtherCopies();
      } finally {
        this.repo.cache.endRead();
        for (const f of this.openFiles) this.closeFd(f);
      }
      this.report(true);
      await this.finish();
      if (this.opts.verify) await this.verifyAll();
    }
    this.report(true);
    return {
      filesRestored: this.progress.filesDone,
      bytesRestored: this.progress.bytesDone,
      filesUnchanged: this.counts.unchanged,
      filesSkipped: this.counts.skipped,
      deleted: this.counts.deleted,
      filesVerified: this.counts.verified,
      errors: this.progress.errors,
    };
  }

  /** Creates the directory (and those above it) the first time something is restored into it. */
  private async ensureDir(d: DirCtx): Promise<void> {
    if (d.made) return;
    if (d.parent) await this.ensureDir(d.parent);
    d.made = true;
    const entry: { path: Buffer; node: TreeNode; made?: boolean } | undefined = d.node && { path: d.path, node: d.node };
    if (entry) this.dirs.push(entry);
    if (this.dry) return;
    try {
      // Created with its final mode when the umask leaves it whole, there are
      // no special bits and we can still add entries (as root, always): no
      // chmod at the end. And as root, no chown when a new directory is
      // already ours and of our group (its parent is not set-group-ID).
      const n = d.node;
      const exact = !!n && (n.mode & ~0o777) === 0 && (n.mode & UMASK) === 0 && (IS_ROOT || (n.mode & 0o300) === 0o300);
      mkdirSync(d.path, exact ? n.mode : 0o777);
      d.fresh = true;
      // mkdir gives a new directory the set-group-ID bit only when its parent has it.
      d.plainGid = d.parent?.plainGid === true;
      // (In a set-group-ID parent it would inherit that bit, which only the chmod takes away.)
      if (entry && exact && d.plainGid && (!IS_ROOT || (n.uid === EUID && n.gid === EGID))) entry.made = true;
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      if (!lstatSync(d.path).isDirectory()) {
        rmSync(d.path, { force: true });
        mkdirSync(d.path);
      }
    }
  }

  /**
   * Plans one directory. `snapPath` is its path in the snapshot ("" for the
   * root); `inside`: it is selected as a whole by an include pattern (or
   * there are none).
   */
  private async planDir(treeId: string, dir: DirCtx, snapPath: string, inside: boolean): Promise<void> {
    this.checkAbort();
    // Local tree reads are synchronous, so without this the walk would never
    // let the event loop run: groups would neither be read nor come back from
    // their workers (and no new one start) until the plan ends.
    if (this.running.size && performance.now() - this.lastYield >= YIELD_MS) {
      await new Promise((resolve) => setImmediate(resolve));
      this.lastYield = performance.now();
    }
    // The workers are about to run dry: hand them what is planned so far.
    if (!this.dry && this.pendingBytes && this.queueHead === this.queue.length && (this.running.size === 0 || (this.running.size < this.tasksAtOnce && this.pendingBytes >= STARVING_FLUSH_BYTES))) await this.flush();
    let nodes: TreeNode[];
    try {
      nodes = decodeTree(await this.repo.loadBlob('tree', treeId));
    } catch (e) {
      this.warn(dir.path, `directory contents cannot be restored: ${(e as Error).message}`);
      return;
    }
    // The locations of this directory's file chunks, in a few batched queries.
    const ids: string[] = [];
    for (const node of nodes) if (node.type === 'file' && node.content) for (const id of node.content) ids.push(id);
    const locations = ids.length ? this.repo.cache.lookupMany('data', ids) : new Map<string, BlobLocation>();
    for (const node of nodes) {
      // The snapshot path is needed only for patterns (below here: none when everything is selected and nothing excluded).
      const sp = this.excludes.size || !inside ? `${snapPath}/${node.name.toString('utf8')}` : '';
      if (this.excludes.size && this.excludes.matches(sp)) continue;
      const selected = inside || this.includes.matches(sp);
      if (!selected && (node.type !== 'dir' || !this.mayContain.some((m) => m(sp)))) continue;
      const p = joinPath(dir.path, node.name);
      try {
        await this.planNode(node, p, sp, selected, dir, locations);
      } catch (e) {
        if (e instanceof CofferError) throw e;
        this.warn(p, `cannot restore: ${errnoCode(e) ?? (e as Error).message}`);
      }
    }
    if (this.opts.delete && inside && dir.made) await this.deleteExtra(dir.path, nodes);
  }

  /** --delete: removes what is in the target directory but not in the snapshot's. */
  private async deleteExtra(dir: Buffer, nodes: TreeNode[]): Promise<void> {
    const keep = new Set(nodes.map((n) => n.name.toString('latin1')));
    let names: Buffer[];
    try {
      names = await fs.readdir(dir, { encoding: 'buffer' });
    } catch {
      return; // dry run of a directory that does not exist yet
    }
    for (const name of names) {
      if (keep.has(name.toString('latin1'))) continue;
      const p = joinPath(dir, name);
      let st;
      try {
        st = await fs.lstat(p);
      } catch {
        continue;
      }
      this.item('deleted', p, st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other', st.isFile() ? st.size : 0);
      this.counts.deleted++;
      if (!this.dry) await fs.rm(p, { recursive: true, force: true }).catch((e) => this.warn(p, `cannot delete: ${errnoCode(e) ?? (e as Error).message}`));
    }
  }

  /** Before replacing a non-file at `p`: with overwrite "never", anything already there is kept. */
  private async keepExisting(p: Buffer, node: TreeNode, parent: DirCtx): Promise<boolean> {
    if (this.policy !== 'never' || parent.fresh) return false;
    try {
      if (!lstatSync(p, { throwIfNoEntry: false })) return false;
    } catch {
      return false;
    }
    this.counts.skipped++;
    this.item('skipped', p, node.type, node.size);
    return true;
  }

  private async planNode(node: TreeNode, p: Buffer, sp: string, selected: boolean, parent: DirCtx, locations: Map<string, BlobLocation>): Promise<void> {
    if (node.type === 'dir') {
      const d: DirCtx = { path: p, node, parent, made: false };
      // A selected directory is restored even when empty; one only on the way to an include, on demand.
      if (selected) await this.ensureDir(d);
      await this.planDir(node.subtree!, d, sp, selected);
      return;
    }
    await this.ensureDir(parent);
    if (node.type === 'file') return this.planFile(node, p, parent, locations);
    if (node.type === 'socket') return; // only meaningful to the process that bound it; like restic, not recreated
    if (await this.keepExisting(p, node, parent)) return;
    if ((node.type === 'chardev' || node.type === 'blockdev') && !IS_ROOT) {
      this.warn(p, 'device files can only be restored as root; skipped');
      return;
    }
    this.item('restored', p, node.type, 0);
    if (this.dry) return;
    switch (node.type) {
      case 'symlink':
        await this.replace(p, () => fs.symlink(node.linkTarget!, p));
        break;
      case 'fifo':
        await this.replace(p, () => platform.mkfifo(p, node.mode));
        break;
      case 'chardev':
      case 'blockdev':
        await this.replace(p, () => platform.mknod(p, (node.type === 'chardev' ? fsc.S_IFCHR : fsc.S_IFBLK) | node.mode, node.rdev ?? 0n));
        break;
    }
    await this.applyMeta(p, node);
  }

  /** Creates something at `p`, replacing a non-directory that is already there. */
  private async replace(p: Buffer, create: () => Promise<void>): Promise<void> {
    try {
      await create();
    } catch (e) {
      if (errnoCode(e) !== 'EEXIST') throw e;
      await fs.rm(p, { force: true, recursive: false });
      await create();
    }
  }

  /**
   * Which chunks of an existing file at `p` must be written: null when
   * nothing is there, undefined when the file has to be written whole (not a
   * regular file, unreadable),
   * otherwise the indexes of the chunks whose content differs (none: the
   * file is already right) and whether its size must change.
   */
  private async differingChunks(p: Buffer, node: TreeNode, lens: number[], trustMtime: boolean): Promise<{ diff: number[]; resize: boolean } | null | undefined> {
    let st;
    try {
      // Synchronous, and no exception for the usual case (nothing there yet):
      // an async lstat failing with ENOENT per file dominated a fresh restore.
      st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
    } catch {
      return undefined;
    }
    if (!st) return null;
    if (!st.isFile()) return undefined;
    const size = Number(st.size);
    const resize = size !== node.size;
    if (trustMtime && !resize && st.mtimeNs === node.mtimeNs) return { diff: [], resize };
    let fh: FileHandle;
    try {
      fh = await fs.open(p, fsc.O_RDONLY | fsc.O_NOFOLLOW);
    } catch {
      return undefined;
    }
    const diff: number[] = [];
    try {
      let buf = Buffer.alloc(0);
      let off = 0;
      for (let i = 0; i < lens.length; i++) {
        const len = lens[i];
        if (off + len > size) {
          diff.push(i); // beyond the end of what is there
        } else {
          if (buf.length < len) buf = Buffer.alloc(len);
          const { bytesRead } = await fh.read(buf, 0, len, off);
          const id = bytesRead === len ? computeBlobId(this.repo.keys.blobIdKey, buf.subarray(0, len)).toString('hex') : '';
          if (id !== node.content![i]) diff.push(i);
        }
        off += len;
      }
    } catch {
      return undefined;
    } finally {
      await fh.close();
    }
    return { diff, resize };
  }

  private async planFile(node: TreeNode, p: Buffer, parent: DirCtx, locations: Map<string, BlobLocation>): Promise<void> {
    const content = node.content ?? [];
    const job: FileJob = { path: p, node, remaining: 0, damaged: false, created: false, writes: 0, fast: false };
    if (node.links > 1) {
      const key = `${node.dev}:${node.inode}`;
      const first = this.linkFirst.get(key);
      if (first) {
        this.item('restored', p, 'file', node.size);
        this.links.push({ path: p, first });
        return;
      }
      this.linkFirst.set(key, job);
    }
    if (await this.keepExisting(p, node, parent)) return;
    const locs: BlobLocation[] = [];
    for (const id of content) {
      const loc = locations.get(id) ?? this.repo.lookupBlob('data', id);
      if (!loc) {
        job.damaged = true;
        this.warn(p, `data blob ${id.slice(0, 12)} is missing from the index; file not restored`);
        break;
      }
      locs.push(loc);
    }
    // An existing file: write only the chunks that differ (and fix its size).
    let only: Set<number> | undefined;
    let existed = false;
    let absent = parent.fresh === true;
    if (!job.damaged && node.size > 0 && !absent) {
      const r = await this.differingChunks(p, node, locs.map((l) => l.rawLength), this.policy === 'if-changed');
      existed = r !== undefined && r !== null;
      absent = r === null;
      if (r && r.diff.length < content.length) {
        only = new Set(r.diff);
        job.created = true;
        job.resize = r.resize;
      }
    }
    if (only && only.size === 0 && !job.resize) {
      this.counts.unchanged++;
      this.item('unchanged', p, 'file', node.size);
    } else this.item(only || existed ? 'updated' : 'restored', p, 'file', node.size);
    job.plainGid = parent.plainGid;
    job.fast = absent && !this.dry && !job.damaged && content.length === 1 && locs[0].rawLength === node.size && !node.xattrs?.length;
    // Kept to the end only for --verify: otherwise a restored file's records can be collected (smaller heap, cheaper GC).
    if (this.opts.verify) this.files.push(job);
    if (!this.dry) this.pendingFiles.push(job);
    this.progress.totalFiles++;
    this.progress.totalBytes += node.size;
    if (job.damaged) return;
    let offset = 0;
    content.forEach((id, i) => {
      const loc = locs[i];
      if (!only || only.has(i)) {
        job.remaining++;
        let need = this.needed.get(id);
        if (need?.resident) {
          (need.later ??= []).push({ file: job, offset });
          offset += loc.rawLength;
          return;
        }
        if (!need) {
          let pack = this.packs.get(loc.packId);
          if (!pack) this.packs.set(loc.packId, (pack = new Map()));
          pack.set(id, (need = { id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength, uses: [] }));
          this.needed.set(id, need);
          this.pendingBytes += loc.rawLength;
        }
        need.uses.push({ file: job, offset });
      }
      offset += loc.rawLength;
    });
    if (this.pendingBytes >= this.flushBytes && !this.dry) await this.flush();
  }

  /** --verify: reads every restored file back and compares each chunk with the snapshot. */
  private async verifyAll(): Promise<void> {
    for (const f of this.files) {
      if (f.damaged) continue;
      this.checkAbort();
      const content = f.node.content ?? [];
      const lens = content.map((id) => this.repo.lookupBlob('data', id)?.rawLength ?? -1);
      const r = lens.includes(-1) ? undefined : await this.differingChunks(f.path, f.node, lens, false);
      let ok = !!r && r.diff.length === 0 && !r.resize;
      if (f.node.size === 0) ok = await fs.lstat(f.path).then((st) => st.isFile() && st.size === 0, () => false);
      if (ok) this.counts.verified++;
      else this.warn(f.path, 'verification failed: the restored file does not match the snapshot');
    }
  }

  /**
   * Hands what was planned since the last flush to the workers: files
   * without content are created now; each pack's needed blobs, in offset
   * order, become groups (consecutive blobs, up to OUT_BYTES of plaintext,
   * one ranged read each) queued behind those of earlier flushes. A blob
   * that a later part of the plan needs again joins the first read if its
   * worker has not returned yet (see NeededBlob.done), else it is read again:
   * the cost of not waiting for the whole plan.
   */
  private async flush(): Promise<void> {
    if (this.failure) throw this.failure;
    const files = this.pendingFiles;
    this.pendingFiles = [];
    for (const f of files) if (f.remaining === 0 || f.damaged) await this.completeFile(f);
    const packs = this.packs;
    this.packs = new Map();
    this.pendingBytes = 0;
    this.flushBytes = Math.min(this.flushBytes * 2, FLUSH_MAX_BYTES);
    for (const [packId, blobs] of packs) {
      const sorted = [...blobs.values()].sort((a, b) => a.offset - b.offset);
      for (let i = 0; i < sorted.length; ) {
        let raw = sorted[i].rawLength;
        let j = i + 1;
        const from = sorted[i].offset;
        while (j < sorted.length && raw + sorted[j].rawLength <= OUT_BYTES && sorted[j].offset + sorted[j].length - from <= IN_BYTES) raw += sorted[j++].rawLength;
        this.queue.push({ packId, blobs: sorted.slice(i, j) });
        i = j;
      }
    }
    this.pump();
  }

  /** Starts queued groups while fewer than `tasksAtOnce` run (and nothing has failed). */
  private pump(): void {
    while (this.failure === undefined && this.running.size < this.tasksAtOnce && this.queueHead < this.queue.length) {
      if (this.opts.signal?.aborted) {
        this.failure = new CofferError('INTERRUPTED', 'restore interrupted');
        return;
      }
      const g = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as never; // let it be collected
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      }
      this.track(this.restoreGroup(g.packId, g.blobs));
    }
  }

  /** Runs `work` as one of the groups in flight: its failure fails the restore; when it ends, the next group starts. */
  private track(work: Promise<void>): void {
    const t: Promise<void> = work
      .catch((e) => {
        this.failure ??= e;
      })
      .finally(() => {
        this.running.delete(t);
        this.pump();
      });
    this.running.add(t);
  }

  /**
   * A blob that could not be read or did not authenticate in the pack the
   * plan chose is held here when the index lists another copy of it (after
   * concurrent backups, or a damaged blob saved again); its files wait.
   */
  private readonly retry: { blob: NeededBlob; packId: PackId; why: string }[] = [];

  /** Reports a blob as lost, unless another copy of it may still be good (then it is retried at the end). */
  private async blobUnusable(b: NeededBlob, packId: PackId, why: string): Promise<void> {
    const others = this.repo.cache.lookupAll('data', b.id).some((l) => l.packId !== packId || l.offset !== b.offset);
    if (others) this.retry.push({ blob: b, packId, why });
    else await this.blobFailed(b, why);
  }

  /** The blobs held by `blobUnusable`: each read from another copy (Repository.loadBlob tries them in turn), or reported. */
  private async retryOtherCopies(): Promise<void> {
    for (const { blob: b, packId, why } of this.retry.splice(0)) {
      this.checkAbort();
      let plain: Buffer;
      try {
        plain = await this.repo.loadBlob('data', b.id, (l) => l.packId !== packId || l.offset !== b.offset);
      } catch {
        await this.blobFailed(b, why);
        continue;
      }
      if (plain.length !== b.rawLength) await this.blobFailed(b, why);
      else await this.writeBlob(b, plain, b.uses);
    }
  }

  /**
   * Reads one group of blobs (one ranged read), has a worker open them and
   * write them: files created whole by the worker (`fast`), and positional
   * writes into files opened here; what is left (fallbacks) is written here.
   */
  private async restoreGroup(packId: PackId, blobs: NeededBlob[]): Promise<void> {
    const start = blobs[0].offset;
    const end = blobs[blobs.length - 1].offset + blobs[blobs.length - 1].length;
    const backend = this.repo.backend;
    const h = { type: 'data', name: packId } as const;
    let data: Buffer;
    let pooledIn: Buffer | undefined;
    try {
      if (backend.readInto && end - start <= this.inputs.size) {
        pooledIn = await this.inputs.acquire();
        data = pooledIn.subarray(0, await backend.readInto(h, pooledIn, { offset: start, length: end - start }));
      } else data = await backend.read(h, { offset: start, length: end - start });
    } catch (e) {
      if (pooledIn) this.inputs.release(pooledIn);
      markDone(blobs, this.needed);
      for (const b of blobs) await this.blobUnusable(b, packId, `pack ${packId.slice(0, 12)} cannot be read (${errnoCode(e) ?? (e as Error).message})`);
      return;
    }
    if (data.length < end - start) {
      // Truncated pack: the blobs wholly inside what is left are still good.
      const cut = blobs.findIndex((b) => b.offset + b.length - start > data.length);
      markDone(blobs.slice(cut), this.needed);
      for (const b of blobs.slice(cut)) await this.blobUnusable(b, packId, `data blob ${b.id.slice(0, 12)} is missing from pack ${packId.slice(0, 12)} (pack is truncated)`);
      blobs = blobs.slice(0, cut);
      if (blobs.length === 0) {
        if (pooledIn) this.inputs.release(pooledIn);
        return;
      }
    }
    const raw = blobs.reduce((n, b) => n + b.rawLength, 0);
    const pooled = raw <= this.outputs.size;
    let out: Buffer;
    try {
      out = pooled ? await this.outputs.acquire() : Buffer.from(new ArrayBuffer(raw));
    } catch (e) {
      if (pooledIn) this.inputs.release(pooledIn);
      throw e;
    }
    let outBack: ArrayBuffer | undefined = out.buffer as ArrayBuffer;
    // The pooled input comes back from the worker; detached (not reusable) if the task failed.
    let inBack: ArrayBuffer | undefined = pooledIn?.buffer as ArrayBuffer | undefined;
    // Files being written by the worker hold their descriptor open (writes > 0).
    const held: FileJob[] = [];
    try {
      const items: OpenItem[] = blobs.map((b) => ({ offset: b.offset - start, length: b.length, type: 'data', id: b.id, rawLength: b.rawLength }));
      const { fast, positional, targets } = this.targetsFor(blobs.map((b) => b.uses), held);
      // Workers take whole ArrayBuffers by transfer; copy only if the read shares one.
      let r;
      try {
        r = await this.repo.workers().openWrite(pooledIn ? (pooledIn.buffer as ArrayBuffer) : ownedArrayBuffer(data), items, out.buffer as ArrayBuffer, targets, this.repo.blobKeyFor(packId));
      } catch (e) {
        markDone(blobs, this.needed);
        throw e;
      }
      outBack = r.out;
      if (pooledIn) inBack = r.buf;
      for (const f of held) f.writes--;
      held.length = 0;
      const plain = Buffer.from(r.out);
      // Synchronously (no use may be planned in between): each blob's uses the
      // worker did not write (they came while it ran) stay with the blob, which
      // keeps its plaintext resident (pooled output) or is written below.
      const resident: Resident | undefined = pooled ? { ab: r.out, blobs, ok: blobs.map((_, k) => !r.errors[k]) } : undefined;
      if (resident) {
        outBack = undefined; // kept: released when evicted
        this.residents.push(resident);
      }
      const completed: FileJob[] = [];
      const leftovers: BlobUse[][] = [];
      for (let k = 0; k < blobs.length; k++) {
        const b = blobs[k];
        b.done = true;
        if (r.errors[k] || !resident) {
          if (this.needed.get(b.id) === b) this.needed.delete(b.id);
        }
        if (r.errors[k]) {
          leftovers.push([]);
          continue;
        }
        const left = this.account(b, b.uses, fast[k], positional[k], r.written[k] ?? [], completed);
        if (resident) {
          b.resident = resident;
          b.later = left;
          leftovers.push([]);
        } else leftovers.push(left);
      }
      while (this.residents.length > RESIDENT_GROUPS) this.evict(this.residents.shift()!);
      this.report();
      for (const f of completed) await this.completeFile(f);
      let off = 0;
      for (let k = 0; k < blobs.length; k++) {
        const b = blobs[k];
        const err = r.errors[k];
        if (err) await this.blobUnusable(b, packId, `data blob ${b.id.slice(0, 12)} in pack ${packId.slice(0, 12)} is damaged (${err})`);
        else await this.writeBlob(b, plain.subarray(off, off + b.rawLength), leftovers[k]);
        off += b.rawLength;
      }
    } finally {
      for (const f of held) f.writes--;
      if (pooled && outBack) this.outputs.release(outBack);
      if (inBack) this.inputs.release(inBack);
    }
  }

  /**
   * The worker's targets for each blob's `uses`: files it creates whole
   * (`fast`), then positional writes into files opened here (held open in
   * `held` until the task returns).
   */
  private targetsFor(uses: BlobUse[][], held: FileJob[]): { fast: BlobUse[][]; positional: BlobUse[][]; targets: (WriteTarget[] | null)[] } {
    const fast = uses.map((us) => us.filter((u) => u.file.fast && !u.file.damaged));
    const positional = uses.map((us) => us.filter((u) => !u.file.fast && !u.file.damaged && this.holdForWorker(u.file, held)));
    const targets = uses.map((_, k): WriteTarget[] | null => {
      const t: WriteTarget[] = [...fast[k].map((u) => this.fileTarget(u.file)), ...positional[k].map((u) => ({ fd: u.file.fd!, pos: u.offset }))];
      return t.length ? t : null;
    });
    return { fast, positional, targets };
  }

  /**
   * A resident group's buffer leaves: its blobs are no longer joined (a later
   * use reads them again), and the uses they gathered are written from it by
   * a worker (tracked in `running`); then the buffer goes back to the pool.
   */
  private evict(res: Resident): void {
    const uses: BlobUse[][] = [];
    let any = false;
    for (const b of res.blobs) {
      if (b.resident === res) {
        b.resident = undefined;
        if (this.needed.get(b.id) === b) this.needed.delete(b.id);
      }
      const later = b.later ?? [];
      b.later = undefined;
      uses.push(later);
      if (later.length) any = true;
    }
    if (!any || this.failure !== undefined) {
      this.outputs.release(res.ab);
      return;
    }
    this.track(this.writeResident(res, uses));
  }

  /** Has a worker write each blob of `res` (already opened and verified) to `uses[k]`; what it could not is written here. */
  private async writeResident(res: Resident, uses: BlobUse[][]): Promise<void> {
    const held: FileJob[] = [];
    let back: ArrayBuffer = res.ab;
    try {
      const { fast, positional, targets } = this.targetsFor(uses, held);
      const items: OpenItem[] = res.blobs.map((b, k) => ({ offset: 0, length: 0, type: 'data', id: b.id, rawLength: b.rawLength, plain: true }));
      for (let k = 0; k < targets.length; k++) if (!res.ok[k]) targets[k] = null;
      const r = await this.repo.workers().openWrite(new ArrayBuffer(0), items, res.ab, targets);
      back = r.out;
      for (const f of held) f.writes--;
      held.length = 0;
      const plain = Buffer.from(r.out);
      const completed: FileJob[] = [];
      const leftovers = res.blobs.map((b, k) => (res.ok[k] ? this.account(b, uses[k], fast[k], positional[k], r.written[k] ?? [], completed) : []));
      this.report();
      for (const f of completed) await this.completeFile(f);
      let off = 0;
      for (let k = 0; k < res.blobs.length; k++) {
        const b = res.blobs[k];
        if (res.ok[k]) await this.writeBlob(b, plain.subarray(off, off + b.rawLength), leftovers[k]);
        off += b.rawLength;
      }
    } finally {
      for (const f of held) f.writes--;
      this.outputs.release(back);
    }
  }

  /** Waits for every running group and resident write, evicting the residents once nothing runs. */
  private async drain(): Promise<void> {
    for (;;) {
      while (this.running.size) await Promise.all(this.running);
      if (this.residents.length === 0) return;
      while (this.residents.length) this.evict(this.residents.shift()!);
    }
  }

  /** Opens `f` (creating it) for positional writes by a worker; false (the file reported) when it cannot be opened. */
  private holdForWorker(f: FileJob, held: FileJob[]): boolean {
    try {
      this.handle(f);
    } catch (e) {
      if (errnoCode(e) === 'ENOSPC') throw new CofferError('NO_SPACE', `no space left on device while writing ${displayPath(f.path)}`);
      f.damaged = true;
      this.warn(f.path, `cannot write: ${errnoCode(e) ?? (e as Error).message}`);
      return false;
    }
    f.writes++;
    held.push(f);
    return true;
  }

  /**
   * After a worker wrote blob `b` to the targets of `uses` (`codes`: the fast
   * files first, then the positional writes; null when done): accounts for
   * each use, adds the files now complete to `completed`, and returns the uses
   * left to write (those the worker could not, and those not given to it).
   */
  private account(b: NeededBlob, uses: BlobUse[], fast: BlobUse[], positional: BlobUse[], codes: (string | null)[], completed: FileJob[]): BlobUse[] {
    const handled = new Set<BlobUse>();
    fast.forEach((u, i) => {
      const code = codes[i];
      if (code === null) {
        handled.add(u);
        this.fastDone(u.file, b.rawLength);
      } else if (code === 'ENOSPC') throw new CofferError('NO_SPACE', `no space left on device while writing ${displayPath(u.file.path)}`);
      else u.file.fast = false; // written the ordinary way
    });
    positional.forEach((u, i) => {
      const code = codes[fast.length + i];
      const f = u.file;
      handled.add(u);
      if (code === 'ENOSPC') throw new CofferError('NO_SPACE', `no space left on device while writing ${displayPath(f.path)}`);
      if (code === null || code === undefined) {
        this.progress.bytesDone += b.rawLength;
        this.current = f.path;
      } else if (!f.damaged) {
        f.damaged = true;
        this.warn(f.path, `cannot write: ${code}`);
      }
      if (--f.remaining === 0) completed.push(f);
    });
    return handled.size ? uses.filter((u) => !handled.has(u)) : uses.slice();
  }

  private async blobFailed(b: NeededBlob, why: string): Promise<void> {
    for (const u of b.uses) {
      if (!u.file.damaged) {
        u.file.damaged = true;
        this.warn(u.file.path, `${why}; file not restored`);
      }
      u.file.remaining--;
      if (u.file.remaining === 0) await this.completeFile(u.file);
    }
  }

  private isZero(b: Buffer): boolean {
    if (this.zero.length < b.length) this.zero = Buffer.alloc(b.length);
    return b.equals(this.zero.subarray(0, b.length));
  }

  private fileTarget(f: FileJob): FileTarget {
    const n = f.node;
    // As root, the new file is ours (EUID) with our group (EGID) unless its directory is set-group-ID.
    const chown = IS_ROOT && !(n.uid === EUID && n.gid === EGID && f.plainGid === true);
    // Created with its final mode when the umask leaves that mode whole (no fchmod); not when it
    // is to be given away (its content would be readable under our ownership until the fchown).
    const exact = !chown && (n.mode & ~0o777) === 0 && (n.mode & UMASK) === 0;
    return { path: f.path.toString('latin1'), mode: n.mode, createMode: exact ? n.mode : 0o600, chmod: !exact, chown, uid: n.uid, gid: n.gid, mtimeNs: n.mtimeNs };
  }

  /** A file a worker has created, written and given its metadata. */
  private fastDone(f: FileJob, bytes: number): void {
    f.created = true;
    f.remaining--;
    this.progress.filesDone++;
    this.progress.bytesDone += bytes;
    this.current = f.path;
    this.report();
  }

  private async writeBlob(b: NeededBlob, plain: Buffer, uses: BlobUse[]): Promise<void> {
    if (uses.length === 0) return;
    const zero = this.isZero(plain);
    for (const u of uses) {
      const f = u.file;
      if (!f.damaged) {
        try {
          const fd = this.handle(f);
          if (!zero) {
            let done = 0;
            if (plain.length >= ASYNC_WRITE_BYTES) {
              f.writes++;
              try {
                while (done < plain.length) done += await pwrite(fd, plain, done, plain.length - done, u.offset + done);
              } finally {
                f.writes--;
              }
            } else {
              while (done < plain.length) done += writeSync(fd, plain, done, plain.length - done, u.offset + done);
            }
          }
          this.progress.bytesDone += plain.length;
          this.current = f.path;
          this.report();
        } catch (e) {
          if (errnoCode(e) === 'ENOSPC') throw new CofferError('NO_SPACE', `no space left on device while writing ${displayPath(f.path)}`);
          f.damaged = true;
          this.warn(f.path, `cannot write: ${errnoCode(e) ?? (e as Error).message}`);
        }
      }
      f.remaining--;
      if (f.remaining === 0) await this.completeFile(f);
    }
  }

  /** Opens (creating, truncating to the final size) a file for writing; bounded number open. */
  private handle(f: FileJob): number {
    if (f.fd !== undefined) return f.fd;
    if (this.openFiles.size >= MAX_OPEN_FILES) {
      // Close the longest-open file with no write in flight (if all are busy, go over the limit briefly).
      for (const victim of this.openFiles) {
        if (victim.writes === 0) {
          this.closeFd(victim);
          break;
        }
      }
    }
    let fd: number;
    if (f.created) {
      fd = this.openExisting(f.path);
      if (f.resize) {
        this.truncateOrClose(fd, f.node.size);
        f.resize = false;
      }
    } else {
      fd = this.createFile(f.path);
      this.truncateOrClose(fd, f.node.size);
      f.created = true;
    }
    f.fd = fd;
    this.openFiles.add(f);
    return fd;
  }

  private truncateOrClose(fd: number, size: number): void {
    try {
      ftruncateSync(fd, size);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  private closeFd(f: FileJob): void {
    this.openFiles.delete(f);
    if (f.fd === undefined) return;
    const fd = f.fd;
    f.fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // Nothing is buffered in this process: a failing close loses nothing.
    }
  }

  /** Opens an existing file for in-place writes; a read-only one is made writable (its mode is set again at the end). */
  private openExisting(p: Buffer): number {
    try {
      return openSync(p, fsc.O_WRONLY | fsc.O_NOFOLLOW);
    } catch (e) {
      if (errnoCode(e) !== 'EACCES') throw e;
      chmodSync(p, 0o600);
      return openSync(p, fsc.O_WRONLY | fsc.O_NOFOLLOW);
    }
  }

  private createFile(p: Buffer): number {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW;
    try {
      return openSync(p, flags, 0o600);
    } catch (e) {
      // Something else is in the way (a symlink, a directory, a read-only file): replace it.
      if (!['ELOOP', 'EISDIR', 'EACCES', 'ETXTBSY'].includes(errnoCode(e) ?? '')) throw e;
      rmSync(p, { force: true, recursive: true });
      return openSync(p, flags, 0o600);
    }
  }

  private async completeFile(f: FileJob): Promise<void> {
    this.closeFd(f);
    if (f.damaged) {
      try {
        rmSync(f.path, { force: true });
      } catch {
        // best effort: the file is already reported as not restored
      }
      return;
    }
    try {
      if (!f.created) closeSync(this.createFile(f.path));
      else if (f.resize) {
        truncateSync(f.path, f.node.size);
        f.resize = false;
      }
      await this.applyMeta(f.path, f.node);
      this.progress.filesDone++;
    } catch (e) {
      this.warn(f.path, `cannot restore: ${errnoCode(e) ?? (e as Error).message}`);
    }
  }

  /**
   * Ownership (as root), extended attributes, mode, times. Extended
   * attributes go before the mode: without root, setting user.* attributes
   * needs write permission, which a read-only mode would take away (and
   * chown, which clears setuid bits and capabilities, comes first).
   * `made`: a directory this restore created with its final owner and mode
   * (see ensureDir): only extended attributes and times.
   */
  private async applyMeta(p: Buffer, node: TreeNode, made = false): Promise<void> {
    const isLink = node.type === 'symlink';
    if (IS_ROOT && !made) {
      try {
        lchownSync(p, node.uid, node.gid);
      } catch (e) {
        this.warn(p, `cannot set owner: ${errnoCode(e)}`);
      }
    }
    for (const [k, v] of node.xattrs ?? []) {
      await platform.setXattr(p, k, v).catch((e) => {
        if (errnoCode(e) !== 'ENOTSUP' || k.toString().startsWith('user.')) this.warn(p, `cannot set extended attribute ${k.toString()}: ${errnoCode(e)}`);
      });
    }
    if (!isLink && !made) chmodSync(p, node.mode);
    await platform.setTimes(p, node.mtimeNs, node.mtimeNs, false);
  }

  private async finish(): Promise<void> {
    for (const { path: p, first } of this.links) {
      if (first.damaged) {
        this.warn(p, 'hard link to a damaged file; not restored');
        continue;
      }
      try {
        await this.replace(p, () => fs.link(first.path, p));
        this.progress.filesDone++;
      } catch (e) {
        this.warn(p, `cannot create hard link: ${errnoCode(e) ?? (e as Error).message}`);
      }
    }
    for (const d of [...this.dirs].reverse()) {
      try {
        await this.applyMeta(d.path, d.node, d.made);
      } catch (e) {
        this.warn(d.path, `cannot set directory metadata: ${errnoCode(e) ?? (e as Error).message}`);
      }
    }
  }
}

function markDone(blobs: NeededBlob[], needed: Map<string, NeededBlob>): void {
  for (const b of blobs) {
    b.done = true;
    if (needed.get(b.id) === b) needed.delete(b.id);
  }
}

/**
 * For an include pattern: a predicate telling whether something below the
 * directory at snapshot path `dir` could match it, so that restore need not
 * read subtrees no pattern can reach.
 */
function childMayMatch(pattern: string): (dir: string) => boolean {
  const p = pattern.trim().replace(/^!/, '');
  if (!p.startsWith('/')) return () => true;
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  const tests = parts.map((c) => (c === '**' ? undefined : picomatch()(c, { dot: true, nobrace: true, noextglob: true, nonegate: true })));
  return (dir) => {
    const comps = dir.split('/').filter(Boolean);
    for (let i = 0; i < comps.length; i++) {
      if (i >= tests.length) return true; // below a match
      const t = tests[i];
      if (t === undefined) return true; // "**" can reach anything
      if (!t(comps[i])) return false;
    }
    return true;
  };
}

/**
 * Restores `snapshot` (or its `include` subtrees) into `opts.target`.
 * @example
 * ```ts
 * await restore(repo, snapshot, { target: '/tmp/r', include: ['/home/me/docs'], overwrite: 'if-changed', verify: true });
 * ```
 */
export async function restore(repo: Repository, snapshot: Snapshot, opts: RestoreOptions): Promise<RestoreResult> {
  return new Restorer(repo, snapshot, opts).run();
}
