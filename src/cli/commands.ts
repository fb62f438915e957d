/** The commands: each parses nothing itself, uses the library, and owns its output. */
import path from 'node:path';
import { CofferError, EXIT_CODES } from '../errors.js';
import type { DataSubset } from '../checker/checker.js';
import { Repository, DEFAULT_CHUNKER } from '../repo/repository.js';
import { prefetchListings } from '../archiver/prefetch.js';
import type { Snapshot } from '../format/snapshot.js';
import { readPassword } from './password.js';
import { ProgressLine } from './progress.js';
import { bytes, duration, localTime, table } from './format.js';
import { openRepo, openRepoBackend, Output, parseSize, type GlobalOptions } from './context.js';
import { buildSelection, type SelectFlags } from './backup-select.js';
import { jsonStatus } from './json-status.js';
import { closeSync } from 'node:fs';
import { withLock } from '../repo/lock.js';

export async function cmdInit(g: GlobalOptions, o: { chunkMin?: string; chunkAvg?: string; chunkMax?: string; compression?: string }): Promise<number> {
  const out = new Output(g);
  const backend = openRepoBackend(g);
  const chunker = {
    // An empty value is an error, not the default ("--chunk-min $UNSET").
    minSize: o.chunkMin !== undefined ? parseSize(o.chunkMin) : DEFAULT_CHUNKER.minSize,
    avgSize: o.chunkAvg !== undefined ? parseSize(o.chunkAvg) : DEFAULT_CHUNKER.avgSize,
    maxSize: o.chunkMax !== undefined ? parseSize(o.chunkMax) : DEFAULT_CHUNKER.maxSize,
  };
  // Number('') is 0: an empty --compression must not silently turn compression off.
  const level = o.compression === undefined ? undefined : /^\s*\d+\s*$/.test(o.compression) ? Number(o.compression) : NaN;
  if (level !== undefined && !Number.isInteger(level)) throw new CofferError('INVALID_ARGUMENT', `--compression must be an integer 0–19, not "${o.compression}"`);
  if (g.recoveryKey !== undefined) throw new CofferError('INVALID_ARGUMENT', 'init takes a password; add a recovery key afterwards with "coffer key add --recovery"');
  const password = await readPassword(g, { confirm: true, prompt: 'enter password for new repository: ' });
  let id: string;
  try {
    try {
      id = await Repository.init(backend, password, { chunker, compressionLevel: level });
    } catch (e) {
      if (e instanceof RangeError) throw new CofferError('INVALID_ARGUMENT', e.message);
      throw e;
    }
  } finally {
    password.fill(0);
    await backend.close?.();
  }
  if (out.json) out.emit({ message_type: 'initialized', id, repository: backend.location });
  else {
    out.info(`created coffer repository ${id.slice(0, 10)} at ${backend.location}`);
    out.info('');
    out.info('Keep the password safe: without it (or a recovery key) the data cannot be recovered by anyone.');
  }
  return 0;
}

/**
 * An engine's module, imported once: started while the key is derived (see
 * openRepo's `whileDeriving`), so that its loading overlaps the KDF instead
 * of preceding it, and so that commands that do not use it never load it.
 */
function engine<T>(load: () => Promise<T>): { start(): void; get(): Promise<T> } {
  let p: Promise<T> | undefined;
  const get = () => (p ??= load());
  return {
    start: () => void get().catch(() => undefined), // a failure is reported by get()
    get,
  };
}
const archiverModule = engine(() => import('../archiver/archiver.js'));
const restorerModule = engine(() => import('../restorer/restorer.js'));
const checkerModule = engine(() => import('../checker/checker.js'));

function splitTags(tags: string[] | undefined): string[] {
  return (tags ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
}

export async function cmdBackup(
  g: GlobalOptions,
  paths: string[],
  o: { tag?: string[]; host?: string; parent?: string; force?: boolean } & SelectFlags,
  signal: AbortSignal,
): Promise<number> {
  const out = new Output(g);
  const sel = buildSelection(paths, o);
  // List the directories while the key is derived (the main thread is idle
  // then), starting once the derivation has: started before, the listing's
  // first steps delayed it. Without a derivation (a recovery key) the walk
  // lists the directories itself.
  let prefetched = undefined as ReturnType<typeof prefetchListings> | undefined; // (set by the hook)
  const whileDeriving = () => {
    archiverModule.start();
    if (!sel.stdin) prefetched = prefetchListings(sel.paths, sel.filter);
  };
  let repo: Repository;
  try {
    repo = await openRepo(g, { allowWriteOnly: true, whileDeriving });
  } catch (e) {
    prefetched?.stop();
    throw e;
  }
  let backup: typeof import('../archiver/archiver.js').backup;
  try {
    ({ backup } = await archiverModule.get());
  } catch (e) {
    prefetched?.stop();
    await repo.close();
    throw e;
  }
  if (repo.legacyIndexFiles) {
    out.warn(
      `${repo.legacyIndexFiles} index files were written by an older coffer: a write-only key cannot see their blobs and stores them again; ` +
        'upgrade them with a full key ("coffer key add --write-only" or "coffer prune" does it)',
    );
  }
  const progress = new ProgressLine(!g.quiet && !g.json);
  // --json --quiet prints the summary only (as restic does), so nothing needs the totals scan.
  const status = out.json && !g.quiet ? jsonStatus(out) : undefined;
  try {
    const t0 = Date.now();
    const { snapshot, incomplete } = await withLock(repo, false, (lock) => backup(repo, {
      paths: sel.paths,
      filter: sel.filter,
      stdin: sel.stdin,
      prefetched,
      tags: splitTags(o.tag),
      hostname: o.host,
      parent: o.force || sel.stdin ? null : o.parent,
      scan: progress.enabled || status !== undefined,
      signal: AbortSignal.any([signal, lock.signal]),
      onProgress: (p) => (status ? status(p) : progress.update(p)),
      onWarning: (w) => {
        progress.clear();
        out.warn(`${w.path}: ${w.message}`);
      },
    }));
    progress.clear();
    status?.flush();
    const s = snapshot.summary;
    if (out.json) {
      out.emit({ message_type: 'summary', ...s, snapshot_id: snapshot.id, incomplete });
    } else {
      if (snapshot.parent) out.info(`using parent snapshot ${snapshot.parent.slice(0, 8)}`);
      out.info(`Files:  ${s.files_new} new, ${s.files_changed} changed, ${s.files_unmodified} unmodified`);
      out.info(`Dirs:   ${s.dirs_new} new, ${s.dirs_changed} changed, ${s.dirs_unmodified} unmodified`);
      out.info(`Added to the repository: ${bytes(s.data_added)} (${bytes(s.data_added_packed)} stored)`);
      out.info(`processed ${s.total_files_processed} files, ${bytes(s.total_bytes_processed)} in ${duration(Date.now() - t0)}`);
      out.info(`snapshot ${snapshot.id.slice(0, 8)} saved`);
      if (incomplete) out.warn(`${s.errors} files or directories could not be read; the snapshot is incomplete`);
    }
    return incomplete ? 3 : 0;
  } finally {
    progress.clear();
    prefetched?.stop();
    if (sel.stdin && sel.stdin.fd !== 0) closeSync(sel.stdin.fd);
    await repo.close();
  }
}

function snapshotJson(s: Snapshot) {
  return {
    id: s.id,
    short_id: s.id.slice(0, 8),
    time: s.time,
    hostname: s.hostname,
    username: s.username,
    paths: s.paths,
    tags: s.tags,
    tree: s.tree,
    ...(s.parent ? { parent: s.parent } : {}),
    ...(s.original ? { original: s.original } : {}),
    program_version: s.program_version,
    summary: s.summary,
  };
}

export async function cmdSnapshots(g: GlobalOptions, o: { host?: string[]; tag?: string[]; path?: string[] }): Promise<number> {
  const out = new Output(g);
  const repo = await openRepo(g);
  try {
    const tags = splitTags(o.tag);
    const paths = (o.path ?? []).map((p) => path.resolve(p));
    const list = (await repo.listSnapshots()).filter(
      (s) =>
        (!o.host?.length || o.host.includes(s.hostname)) &&
        tags.every((t) => s.tags.includes(t)) &&
        paths.every((p) => s.paths.includes(p)),
    );
    if (out.json) {
      out.emit(list.map(snapshotJson));
      return 0;
    }
    const rows = list.map((s) => [s.id.slice(0, 8), localTime(s.time), s.hostname, s.tags.join(','), s.paths.join(', '), bytes(s.summary.total_bytes_processed)]);
    process.stdout.write(table(['ID', 'Time', 'Host', 'Tags', 'Paths', 'Size'], rows) + '\n');
    process.stdout.write(`${list.length} snapshot${list.length === 1 ? '' : 's'}\n`);
    return 0;
  } finally {
    await repo.close();
  }
}

export async function cmdRestore(
  g: GlobalOptions,
  ref: string,
  o: { target?: string; include?: string[]; exclude?: string[]; overwrite?: string; delete?: boolean; dryRun?: boolean; verify?: boolean; host?: string[]; path?: string[] },
  signal: AbortSignal,
): Promise<number> {
  const out = new Output(g);
  if (!o.target) throw new CofferError('INVALID_ARGUMENT', 'please give a target directory with --target');
  const overwrite = o.overwrite ?? 'always';
  if (overwrite !== 'always' && overwrite !== 'if-changed' && overwrite !== 'never') throw new CofferError('INVALID_ARGUMENT', `--overwrite must be always, if-changed or never, not "${overwrite}"`);
  const repo = await openRepo(g, { workers: true, whileDeriving: restorerModule.start });
  let restore: typeof import('../restorer/restorer.js').restore;
  try {
    ({ restore } = await restorerModule.get());
  } catch (e) {
    await repo.close();
    throw e;
  }
  const progress = new ProgressLine(!g.quiet && !g.json && !o.dryRun);
  // --json --quiet prints the summary only (as restic does), so nothing needs the totals scan.
  const status = out.json && !g.quiet ? jsonStatus(out) : undefined;
  try {
    const paths = (o.path ?? []).map((p) => path.resolve(p));
    const t0 = Date.now();
    const { snap, r } = await withLock(repo, false, async (lock) => {
     const snap = await repo.findSnapshot(ref, (s) => (!o.host?.length || o.host.includes(s.hostname)) && paths.every((p) => s.paths.includes(p)));
     out.info(`${o.dryRun ? 'dry run: would restore' : 'restoring'} snapshot ${snap.id.slice(0, 8)} of [${snap.paths.join(', ')}] at ${localTime(snap.time)} to ${path.resolve(o.target!)}`);
     const r = await restore(repo, snap, {
      target: o.target!,
      include: o.include,
      exclude: o.exclude,
      overwrite,
      delete: o.delete,
      dryRun: o.dryRun,
      verify: o.verify,
      signal: AbortSignal.any([signal, lock.signal]),
      onProgress: (p) => (status ? status(p) : progress.update(p)),
      // Only when something is printed for items (rendering every path costs time on big restores).
      onItem: !(g.verbose || o.dryRun) ? undefined : (i) => {
        if (out.json) {
          if (g.verbose || o.dryRun) out.emit({ message_type: 'verbose_status', action: i.action, item: i.path, size: i.size });
        } else if (g.verbose || (o.dryRun && !g.quiet)) {
          progress.clear();
          process.stdout.write(`${o.dryRun ? 'would have ' : ''}${i.action} ${i.path}${i.type === 'file' ? ` (${bytes(i.size)})` : ''}\n`);
        }
      },
      onWarning: (w) => {
        progress.clear();
        out.warn(`${w.path}: ${w.message}`);
      },
     });
     return { snap, r };
    }, { onReadOnly: () => out.warn('the repository is read-only: restoring without a lock') });
    progress.clear();
    status?.flush();
    if (out.json) {
      out.emit({
        message_type: 'summary',
        snapshot_id: snap.id,
        dry_run: o.dryRun === true,
        files_restored: r.filesRestored,
        files_unchanged: r.filesUnchanged,
        files_skipped: r.filesSkipped,
        files_deleted: r.deleted,
        files_verified: r.filesVerified,
        bytes_restored: r.bytesRestored,
        errors: r.errors,
      });
    } else if (o.dryRun) {
      out.info(`would restore ${r.filesUnchanged ? `${r.filesRestored} files (${r.filesUnchanged} already up to date)` : `${r.filesRestored} files`}${r.filesSkipped ? `, leave ${r.filesSkipped} existing` : ''}${o.delete ? `, delete ${r.deleted}` : ''}`);
    } else {
      out.info(`restored ${r.filesRestored} files, ${bytes(r.bytesRestored)} written in ${duration(Date.now() - t0)}${r.filesUnchanged ? ` (${r.filesUnchanged} were already up to date)` : ''}`);
      if (r.filesSkipped) out.info(`left ${r.filesSkipped} existing files as they were (--overwrite never)`);
      if (o.delete) out.info(`deleted ${r.deleted} entries not in the snapshot`);
      if (o.verify) out.info(`verified ${r.filesVerified} files`);
      if (r.errors) out.warn(`${r.errors} problems; some files were not restored (see above)`);
    }
    return r.errors ? 3 : 0;
  } finally {
    progress.clear();
    await repo.close();
  }
}

/** Parses --read-data-subset: "n/t" or "x%". */
export function parseSubset(v: string): DataSubset {
  const frac = /^(\d+)\/(\d+)$/.exec(v.trim());
  if (frac) {
    const n = Number(frac[1]);
    const t = Number(frac[2]);
    if (t >= 1 && n >= 1 && n <= t) return { n, t };
  }
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(v.trim());
  if (pct && Number(pct[1]) > 0 && Number(pct[1]) <= 100) return { percent: Number(pct[1]) };
  throw new CofferError('INVALID_ARGUMENT', `--read-data-subset must be "n/t" (1 <= n <= t) or a percentage like "10%", not "${v}"`);
}

export async function cmdCheck(g: GlobalOptions, o: { readData?: boolean; readDataSubset?: string }, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  const subset = o.readDataSubset !== undefined ? parseSubset(o.readDataSubset) : undefined;
  // Like restic, check reads the repository itself, never the local cache: a
  // cached index or snapshot would hide damage to the files in the repository.
  const repo = await openRepo({ ...g, cache: false }, { indexWarnings: false, workers: o.readData === true || subset !== undefined, whileDeriving: checkerModule.start });
  try {
    const { check } = await checkerModule.get();
    const r = await withLock(repo, false, (lock) =>
      check(repo, {
        readData: o.readData,
        readDataSubset: o.readData ? undefined : subset,
        signal: AbortSignal.any([signal, lock.signal]),
        onProblem: (p) => {
          if (!out.json) process.stderr.write(`error: ${p.object}: ${p.message}\n`);
        },
      }),
      { onReadOnly: () => out.warn('the repository is read-only: checking without a lock') },
    );
    if (out.json) out.emit({ message_type: 'summary', ...r, read_data: o.readData === true, read_data_subset: o.readDataSubset ?? null });
    else {
      const what = o.readData ? ' (all data read)' : subset ? ` (data of ${r.packsRead} read)` : '';
      out.info(`checked ${r.packs} packs${what} and ${r.snapshots} snapshots`);
      if (r.unindexedPacks && repo.damagedIndexFiles.length) out.info(`${r.unindexedPacks} packs are not in any readable index ("coffer repair index" indexes them again)`);
      else if (r.unindexedPacks) out.info(`${r.unindexedPacks} packs are not in any index (left by an interrupted backup; harmless; "coffer prune" removes them)`);
      out.info(r.problems.length ? `${r.problems.length} problems found` : 'no errors were found');
    }
    return r.problems.length ? EXIT_CODES.INTEGRITY : 0;
  } finally {
    await repo.close();
  }
}
