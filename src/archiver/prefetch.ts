/**
 * Lists the directories to back up while the repository is still being
 * opened. Opening derives the key with Argon2id (about half a second, in
 * the thread pool), during which the main thread has nothing to do; the
 * walk's directory listings (names plus each entry's metadata, see
 * platform/native.ts scanDir) can be made in that time instead of after it.
 *
 * The prefetch runs in short slices on the main thread (so the key
 * derivation's completion and file-system callbacks are not held up), takes
 * the same turns as the walk (the same filter verdicts: excluded, tagged or
 * other-file-system directories are not entered), stops at a fixed number
 * of entries so memory stays bounded, and stops for good when the walk
 * starts. The walk takes each listing at most once and lists whatever was
 * not prefetched itself. Only used with the native addon (without it a
 * listing carries no metadata, and there is nothing to gain).
 */
import path from 'node:path';
import { lstatMeta, scanDir, scanDirAsync, scanHasAsync, scanHasMeta, type DirScan } from '../platform/native.js';
import { joinPath } from '../util/paths.js';
import type { EntryFilter } from './select.js';

/** Directory listings made ahead of the walk (see BackupOptions.prefetched). */
export interface DirListings {
  /** The listing of `dir`, once; undefined if it was not made. */
  take(dir: Buffer): DirScan | undefined;
  /** Whether take(dir) would return a listing. */
  has(dir: Buffer): boolean;
  /** No more listings: the walk has started (or the backup will not run). */
  stop(): void;
}

/** Entries held at most (about 120 bytes each: ~12 MB). */
const MAX_ENTRIES = 100_000;
/** Longest slice of main-thread work before yielding to the event loop. */
const SLICE_MS = 2;
/** Many explicit paths (a --files-from list) are mostly files: not worth it. */
const MAX_TARGETS = 64;

interface Pending {
  dir: Buffer;
  /** Device of the backup target the directory belongs to; undefined: `dir` is a target. */
  targetDev?: bigint;
}

class Prefetch implements DirListings {
  private readonly done = new Map<string, DirScan>();
  private readonly stack: Pending[] = [];
  private entries = 0;
  private stopped = false;

  constructor(
    paths: string[],
    private readonly filter: EntryFilter | undefined,
    private readonly maxEntries: number,
  ) {
    // Reversed, so the first path is listed first (depth-first, like the walk).
    for (const p of [...new Set(paths.map((x) => path.resolve(x)))].sort().reverse()) this.stack.push({ dir: Buffer.from(p) });
    setImmediate(() => this.step());
  }

  private step(): void {
    if (this.stopped) return;
    const end = performance.now() + SLICE_MS;
    try {
      while (this.stack.length > 0 && performance.now() < end) {
        if (!this.visit(this.stack.pop()!)) {
          this.stopped = true;
          return;
        }
      }
    } catch {
      // A filter that throws (or anything unexpected): the walk will meet it and report it.
      this.stopped = true;
      return;
    }
    if (this.stack.length > 0) setImmediate(() => this.step());
  }

  /** Lists one directory and queues its subdirectories; false when the budget is spent. */
  private visit({ dir, targetDev }: Pending): boolean {
    let dev = targetDev;
    if (dev === undefined) {
      // A backup target: the walk lstats it and asks the filter too.
      let st;
      try {
        st = lstatMeta(dir);
      } catch {
        return true;
      }
      if (!st.isDirectory() || (this.filter && this.filter(dir, st, st.dev) !== 'keep')) return true;
      dev = st.dev;
    }
    let scan: DirScan;
    try {
      scan = scanDir(dir);
    } catch {
      return true; // the walk reports it
    }
    this.done.set(dir.toString('latin1'), scan);
    this.entries += scan.count;
    if (this.entries >= this.maxEntries) return false;
    const subdirs: Buffer[] = [];
    for (let i = 0; i < scan.count; i++) {
      if (!scan.isDirectory(i)) continue;
      const child = joinPath(dir, scan.names[i]);
      if (this.filter && this.filter(child, scan.meta(i)!, dev) !== 'keep') continue;
      subdirs.push(child);
    }
    for (let i = subdirs.length - 1; i >= 0; i--) this.stack.push({ dir: subdirs[i], targetDev: dev });
    return true;
  }

  has(dir: Buffer): boolean {
    return this.done.size > 0 && this.done.has(dir.toString('latin1'));
  }

  take(dir: Buffer): DirScan | undefined {
    if (this.done.size === 0) return undefined;
    const key = dir.toString('latin1');
    const s = this.done.get(key);
    if (s) this.done.delete(key);
    return s;
  }

  stop(): void {
    this.stopped = true;
    this.stack.length = 0;
  }
}

/**
 * Starts listing `paths` (the directories a backup will walk) in the
 * background; undefined when it would not help (no native addon, many
 * paths). Call `stop()` when the walk starts or the backup is abandoned.
 */
export function prefetchListings(paths: string[], filter?: EntryFilter, maxEntries = MAX_ENTRIES): DirListings | undefined {
  if (paths.length === 0 || paths.length > MAX_TARGETS || !scanHasMeta()) return undefined;
  return new Prefetch(paths, filter, maxEntries);
}

/** Entries listed ahead of the walk and not yet taken, at most (~120 bytes each). */
const AHEAD_ENTRIES = 20_000;
/** Listings in flight at once (libuv's four threads also serve the pack writes). */
const AHEAD_IN_FLIGHT = 2;

interface Wanted {
  dir: Buffer;
  key: string;
  /** Set once the listing has started. */
  scan?: Promise<DirScan>;
  /** Entries of the finished listing while it is held here. */
  count: number;
}

/**
 * Lists the directories the walk will enter next on libuv's threads
 * (scanDirAsync) while the walk works on the current one: the kernel's
 * per-entry work (getdents, fstatat, the xattr probe) then leaves the main
 * thread, which is the bottleneck of a backup of many files. Wanted
 * directories are kept in walk order (depth first, names sorted: a stack),
 * started two at a time while fewer than AHEAD_ENTRIES entries are held; the
 * same filter verdicts as the walk decide which are entered. The walk takes
 * each listing once (waiting for it if it is under way), lists itself what
 * was not started, and drops what it did not take when it leaves a directory.
 */
export class Lookahead {
  private readonly byKey = new Map<string, Wanted>();
  private readonly stack: Wanted[] = [];
  private inFlight = 0;
  private held = 0;

  constructor(
    private readonly filter: EntryFilter | undefined,
    /** Listings made while the key was derived: not listed again. */
    private readonly prefetched?: DirListings,
  ) {}

  /**
   * `dir` (of a target on device `dev`) was just listed and will be walked
   * in `order`: its subdirectories are wanted. Returns their keys, for
   * forget() once the walk leaves `dir`.
   */
  ahead(dir: Buffer, scan: DirScan, order: number[], dev: bigint): string[] {
    const keys: string[] = [];
    // Pushed last to first: the first subdirectory ends on top of the stack.
    for (let k = order.length - 1; k >= 0; k--) {
      const i = order[k];
      if (!scan.isDirectory(i)) continue;
      const child = joinPath(dir, scan.names[i]);
      if (this.prefetched?.has(child)) continue;
      if (this.filter && this.filter(child, scan.meta(i)!, dev) !== 'keep') continue;
      const w: Wanted = { dir: child, key: child.toString('latin1'), count: 0 };
      this.byKey.set(w.key, w);
      this.stack.push(w);
      keys.push(w.key);
    }
    this.pump();
    return keys;
  }

  /** The listing of `dir` if it was started (once), else undefined: list it now. */
  take(dir: Buffer): Promise<DirScan> | undefined {
    if (this.byKey.size === 0) return undefined;
    const key = dir.toString('latin1');
    const w = this.byKey.get(key);
    if (!w) return undefined;
    this.byKey.delete(key);
    this.held -= w.count;
    this.pump();
    return w.scan;
  }

  /** The walk has left the directory these were wanted for: drop what it did not take. */
  forget(keys: string[]): void {
    for (const key of keys) {
      const w = this.byKey.get(key);
      if (!w) continue;
      this.byKey.delete(key);
      this.held -= w.count;
    }
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < AHEAD_IN_FLIGHT && this.held < AHEAD_ENTRIES && this.stack.length > 0) {
      const w = this.stack.pop()!;
      if (this.byKey.get(w.key) !== w) continue; // taken (listed by the walk) or forgotten meanwhile
      const p = scanDirAsync(w.dir);
      if (!p) {
        this.stack.length = 0;
        return;
      }
      this.inFlight++;
      w.scan = p.then(
        (scan) => {
          this.inFlight--;
          // Still wanted: held until taken.
          if (this.byKey.get(w.key) === w) {
            w.count = scan.count;
            this.held += scan.count;
          }
          this.pump();
          return scan;
        },
        (e) => {
          this.inFlight--;
          this.pump();
          throw e;
        },
      );
      w.scan.catch(() => {}); // a failed listing is reported by the walk when it takes it
    }
  }
}

/** A Lookahead for the walk, or undefined without the addon's scanDirAsync. */
export function lookahead(filter?: EntryFilter, prefetched?: DirListings): Lookahead | undefined {
  if (!scanHasAsync()) return undefined;
  return new Lookahead(filter, prefetched);
}
