/**
 * Restore, planned then executed:
 *  1. plan: walk the snapshot's trees (only the --include subtrees), create
 *     directories, symlinks and special files, and list for every pack the
 *     blobs needed and where each goes (file, offset);
 *  2. contents: read each pack once (one ranged read over the needed blobs),
 *     decrypt and verify in the workers, write each blob to its places with
 *     positional writes; all-zero chunks are skipped, leaving holes;
 *  3. finish: hard links, then file and directory metadata (deepest first).
 * A file any of whose blobs fails to authenticate is removed and reported;
 * everything else is restored.
 */
import { promises as fs, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CofferError, errnoCode } from '../errors.js';
import { decodeTree, type TreeNode } from '../format/tree.js';
import type { Repository } from '../repo/repository.js';
import type { Snapshot } from '../format/snapshot.js';
import type { PackId } from '../ids.js';
import type { OpenItem } from '../worker/tasks.js';
import { platform } from '../platform/native.js';
import { joinPath, displayPath } from '../util/paths.js';
import { BufferPool, Semaphore, ownedArrayBuffer } from '../util/semaphore.js';

export interface RestoreProgress {
  filesDone: number;
  bytesDone: number;
  totalFiles: number;
  totalBytes: number;
  currentFile?: string;
  errors: number;
}

export interface RestoreWarning {
  path: string;
  message: string;
}

export interface RestoreOptions {
  target: string;
  /** Paths inside the snapshot (e.g. "/home/me/docs"); only these subtrees are restored. */
  include?: string[];
  onProgress?(p: RestoreProgress): void;
  onWarning?(w: RestoreWarning): void;
  signal?: AbortSignal;
}

export interface RestoreResult {
  filesRestored: number;
  bytesRestored: number;
  /** Files not restored (damaged data) and other problems. */
  errors: number;
}

interface FileJob {
  path: Buffer;
  node: TreeNode;
  remaining: number;
  damaged: boolean;
  /** The file exists in the target, truncated to its final size. */
  created: boolean;
  fh?: FileHandle;
  opening?: Promise<FileHandle>;
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
}

const IS_ROOT = process.getuid?.() === 0;
const PACKS_AT_ONCE = 2;
/** Plaintext handed back from the workers per task. */
const OUT_BYTES = 16 << 20;
const MAX_OPEN_FILES = 256;

export class Restorer {
  private readonly progress: RestoreProgress = { filesDone: 0, bytesDone: 0, totalFiles: 0, totalBytes: 0, errors: 0 };
  private readonly packs = new Map<PackId, Map<string, NeededBlob>>();
  private readonly files: FileJob[] = [];
  private readonly dirs: { path: Buffer; node: TreeNode }[] = [];
  private readonly links: { path: Buffer; first: FileJob }[] = [];
  private readonly linkFirst = new Map<string, FileJob>();
  private readonly openFiles = new Set<FileJob>();
  private lastReport = 0;
  private zero = Buffer.alloc(0);
  /** Decrypted plaintext buffers, one per pack being restored. */
  private readonly outputs = new BufferPool(OUT_BYTES, PACKS_AT_ONCE);

  constructor(
    private readonly repo: Repository,
    private readonly snapshot: Snapshot,
    private readonly opts: RestoreOptions,
  ) {}

  private warn(p: Buffer | string, message: string): void {
    this.progress.errors++;
    this.opts.onWarning?.({ path: displayPath(p), message });
  }

  private report(force = false): void {
    if (!this.opts.onProgress) return;
    const now = Date.now();
    if (!force && now - this.lastReport < 100) return;
    this.lastReport = now;
    this.opts.onProgress({ ...this.progress });
  }

  private checkAbort(): void {
    if (this.opts.signal?.aborted) throw new CofferError('INTERRUPTED', 'restore interrupted');
  }

  async run(): Promise<RestoreResult> {
    const target = Buffer.from(path.resolve(this.opts.target));
    try {
      await fs.mkdir(target, { recursive: true });
    } catch (e) {
      throw new CofferError('TARGET_ERROR', `cannot create target ${displayPath(target)}: ${errnoCode(e) ?? String(e)}`);
    }
    const includes = (this.opts.include ?? []).map((p) => path.posix.resolve('/', p).split('/').filter(Boolean));
    await this.planDir(this.snapshot.tree, target, [], includes);
    this.report(true);
    try {
      await this.restoreContents();
    } finally {
      for (const f of this.openFiles) await f.fh?.close().catch(() => undefined);
    }
    await this.finish();
    this.report(true);
    return { filesRestored: this.progress.filesDone, bytesRestored: this.progress.bytesDone, errors: this.progress.errors };
  }

  /** Is `rel` selected, given include paths? "inside" = at or below an include; "ancestor" = above one. */
  private select(rel: string[], includes: string[][]): 'inside' | 'ancestor' | 'no' {
    if (includes.length === 0) return 'inside';
    let ancestor = false;
    for (const inc of includes) {
      const n = Math.min(rel.length, inc.length);
      let same = true;
      for (let i = 0; i < n; i++) if (rel[i] !== inc[i]) same = false;
      if (!same) continue;
      if (rel.length >= inc.length) return 'inside';
      ancestor = true;
    }
    return ancestor ? 'ancestor' : 'no';
  }

  private async planDir(treeId: string, dir: Buffer, rel: string[], includes: string[][]): Promise<void> {
    this.checkAbort();
    let nodes: TreeNode[];
    try {
      nodes = decodeTree(await this.repo.loadBlob('tree', treeId));
    } catch (e) {
      this.warn(dir, `directory contents cannot be restored: ${(e as Error).message}`);
      return;
    }
    for (const node of nodes) {
      const childRel = [...rel, node.name.toString('utf8')];
      const sel = this.select(childRel, includes);
      if (sel === 'no') continue;
      if (sel === 'ancestor' && node.type !== 'dir') continue;
      const p = joinPath(dir, node.name);
      try {
        await this.planNode(node, p, childRel, sel === 'inside' ? [] : includes);
      } catch (e) {
        if (e instanceof CofferError) throw e;
        this.warn(p, `cannot restore: ${errnoCode(e) ?? (e as Error).message}`);
      }
    }
  }

  private async planNode(node: TreeNode, p: Buffer, rel: string[], includes: string[][]): Promise<void> {
    switch (node.type) {
      case 'dir':
        await fs.mkdir(p).catch(async (e) => {
          if (errnoCode(e) !== 'EEXIST') throw e;
          if (!(await fs.lstat(p)).isDirectory()) {
            await fs.rm(p, { force: true });
            await fs.mkdir(p);
          }
        });
        this.dirs.push({ path: p, node });
        await this.planDir(node.subtree!, p, rel, includes);
        return;
      case 'file':
        return this.planFile(node, p);
      case 'symlink':
        await this.replace(p, () => fs.symlink(node.linkTarget!, p));
        await this.applyMeta(p, node);
        return;
      case 'fifo':
        await this.replace(p, () => platform.mkfifo(p, node.mode));
        await this.applyMeta(p, node);
        return;
      case 'chardev':
      case 'blockdev':
        if (!IS_ROOT) {
          this.warn(p, 'device files can only be restored as root; skipped');
          return;
        }
        await this.replace(p, () => platform.mknod(p, (node.type === 'chardev' ? fsc.S_IFCHR : fsc.S_IFBLK) | node.mode, node.rdev ?? 0n));
        await this.applyMeta(p, node);
        return;
      case 'socket':
        // A socket is only meaningful to the process that bound it; like restic, it is not recreated.
        return;
    }
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

  private planFile(node: TreeNode, p: Buffer): void {
    const content = node.content ?? [];
    const job: FileJob = { path: p, node, remaining: content.length, damaged: false, created: false };
    if (node.links > 1) {
      const key = `${node.dev}:${node.inode}`;
      const first = this.linkFirst.get(key);
      if (first) {
        this.links.push({ path: p, first });
        return;
      }
      this.linkFirst.set(key, job);
    }
    this.files.push(job);
    this.progress.totalFiles++;
    this.progress.totalBytes += node.size;
    let offset = 0;
    for (const id of content) {
      const loc = this.repo.lookupBlob('data', id);
      if (!loc) {
        job.damaged = true;
        this.warn(p, `data blob ${id.slice(0, 12)} is missing from the index; file not restored`);
        break;
      }
      let pack = this.packs.get(loc.packId);
      if (!pack) this.packs.set(loc.packId, (pack = new Map()));
      let need = pack.get(id);
      if (!need) pack.set(id, (need = { id, offset: loc.offset, length: loc.length, rawLength: loc.rawLength, uses: [] }));
      need.uses.push({ file: job, offset });
      offset += loc.rawLength;
    }
  }

  private async restoreContents(): Promise<void> {
    // Files without content (empty, or already known damaged) are created now.
    for (const f of this.files) if (f.remaining === 0 || f.damaged) await this.completeFile(f);
    const sem = new Semaphore(PACKS_AT_ONCE);
    const running = new Set<Promise<void>>();
    let failure: unknown;
    for (const [packId, blobs] of [...this.packs].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
      this.checkAbort();
      await sem.acquire();
      if (failure) break;
      const t = this.restorePack(packId, [...blobs.values()].sort((a, b) => a.offset - b.offset))
        .catch((e) => {
          failure ??= e;
        })
        .finally(() => {
          sem.release();
          running.delete(t);
        });
      running.add(t);
    }
    await Promise.all(running);
    if (failure) throw failure;
  }

  private async restorePack(packId: PackId, blobs: NeededBlob[]): Promise<void> {
    const start = blobs[0].offset;
    const end = blobs[blobs.length - 1].offset + blobs[blobs.length - 1].length;
    let data: Buffer;
    try {
      data = await this.repo.backend.read({ type: 'data', name: packId }, { offset: start, length: end - start });
    } catch (e) {
      for (const b of blobs) await this.blobFailed(b, `pack ${packId.slice(0, 12)} cannot be read (${errnoCode(e) ?? (e as Error).message})`);
      return;
    }
    if (data.length < end - start) {
      // Truncated pack: the blobs wholly inside what is left are still good.
      const cut = blobs.findIndex((b) => b.offset + b.length - start > data.length);
      for (const b of blobs.slice(cut)) await this.blobFailed(b, `data blob ${b.id.slice(0, 12)} is missing from pack ${packId.slice(0, 12)} (pack is truncated)`);
      blobs = blobs.slice(0, cut);
      if (blobs.length === 0) return;
    }
    // Workers take whole ArrayBuffers by transfer; copy only if the read shares one
    // (a small read lives in Node's shared pool at a non-zero offset).
    let buf = ownedArrayBuffer(data);
    for (let i = 0; i < blobs.length; ) {
      let raw = blobs[i].rawLength;
      let j = i + 1;
      while (j < blobs.length && raw + blobs[j].rawLength <= this.outputs.size) raw += blobs[j++].rawLength;
      const group = blobs.slice(i, j);
      i = j;
      const pooled = raw <= this.outputs.size;
      const out = pooled ? await this.outputs.acquire() : Buffer.from(new ArrayBuffer(raw));
      const items: OpenItem[] = group.map((b) => ({ offset: b.offset - start, length: b.length, type: 'data', id: b.id, rawLength: b.rawLength }));
      const r = await this.repo.workers().open(buf, items, out.buffer as ArrayBuffer);
      buf = r.buf;
      const plain = Buffer.from(r.out);
      try {
        let off = 0;
        for (let k = 0; k < group.length; k++) {
          const b = group[k];
          const err = r.errors[k];
          if (err) await this.blobFailed(b, `data blob ${b.id.slice(0, 12)} in pack ${packId.slice(0, 12)} is damaged (${err})`);
          else await this.writeBlob(b, plain.subarray(off, off + b.rawLength));
          off += b.rawLength;
        }
      } finally {
        if (pooled) this.outputs.release(r.out);
      }
    }
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

  private async writeBlob(b: NeededBlob, plain: Buffer): Promise<void> {
    const zero = this.isZero(plain);
    for (const u of b.uses) {
      const f = u.file;
      if (!f.damaged) {
        try {
          const fh = await this.handle(f);
          if (!zero) {
            let done = 0;
            while (done < plain.length) done += (await fh.write(plain, done, plain.length - done, u.offset + done)).bytesWritten;
          }
          this.progress.bytesDone += plain.length;
          this.progress.currentFile = displayPath(f.path);
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
  private async handle(f: FileJob): Promise<FileHandle> {
    if (f.fh) return f.fh;
    if (f.opening) return f.opening;
    f.opening = (async () => {
      if (this.openFiles.size >= MAX_OPEN_FILES) {
        const victim = this.openFiles.values().next().value as FileJob;
        this.openFiles.delete(victim);
        const vfh = victim.fh;
        victim.fh = undefined;
        await vfh?.close();
      }
      let fh: FileHandle;
      if (f.created) fh = await fs.open(f.path, fsc.O_WRONLY | fsc.O_NOFOLLOW);
      else {
        fh = await this.createFile(f.path);
        await fh.truncate(f.node.size);
        f.created = true;
      }
      f.fh = fh;
      this.openFiles.add(f);
      return fh;
    })();
    try {
      return await f.opening;
    } finally {
      f.opening = undefined;
    }
  }

  private async createFile(p: Buffer): Promise<FileHandle> {
    const flags = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC | fsc.O_NOFOLLOW;
    try {
      return await fs.open(p, flags, 0o600);
    } catch (e) {
      // Something else is in the way (a symlink, a directory, a read-only file): replace it.
      if (!['ELOOP', 'EISDIR', 'EACCES', 'ETXTBSY'].includes(errnoCode(e) ?? '')) throw e;
      await fs.rm(p, { force: true, recursive: true });
      return await fs.open(p, flags, 0o600);
    }
  }

  private async completeFile(f: FileJob): Promise<void> {
    if (f.fh) {
      const fh = f.fh;
      f.fh = undefined;
      this.openFiles.delete(f);
      await fh.close().catch(() => undefined);
    }
    if (f.damaged) {
      await fs.rm(f.path, { force: true }).catch(() => undefined);
      return;
    }
    try {
      if (!f.created) {
        const fh = await this.createFile(f.path);
        await fh.close();
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
   */
  private async applyMeta(p: Buffer, node: TreeNode): Promise<void> {
    const isLink = node.type === 'symlink';
    if (IS_ROOT) await fs.lchown(p, node.uid, node.gid).catch((e) => this.warn(p, `cannot set owner: ${errnoCode(e)}`));
    for (const [k, v] of node.xattrs ?? []) {
      await platform.setXattr(p, k, v).catch((e) => {
        if (errnoCode(e) !== 'ENOTSUP' || k.toString().startsWith('user.')) this.warn(p, `cannot set extended attribute ${k.toString()}: ${errnoCode(e)}`);
      });
    }
    if (!isLink) await fs.chmod(p, node.mode);
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
        await this.applyMeta(d.path, d.node);
      } catch (e) {
        this.warn(d.path, `cannot set directory metadata: ${errnoCode(e) ?? (e as Error).message}`);
      }
    }
  }
}

/** Restores `snapshot` (or its `include` subtrees) into `opts.target`. */
export async function restore(repo: Repository, snapshot: Snapshot, opts: RestoreOptions): Promise<RestoreResult> {
  return new Restorer(repo, snapshot, opts).run();
}
