/** The commands: each parses nothing itself, uses the library, and owns its output. */
import path from 'node:path';
import { CofferError, EXIT_CODES } from '../errors.js';
import { check, type DataSubset } from '../checker/checker.js';
import { openBackend } from '../storage/location.js';
import { Repository, DEFAULT_CHUNKER } from '../repo/repository.js';
import { backup } from '../archiver/archiver.js';
import { restore } from '../restorer/restorer.js';
import type { Snapshot } from '../format/snapshot.js';
import { readPassword } from './password.js';
import { ProgressLine } from './progress.js';
import { bytes, duration, localTime, table } from './format.js';
import { openRepo, Output, parseSize, repoLocation, type GlobalOptions } from './context.js';
import { withLock } from '../repo/lock.js';

export async function cmdInit(g: GlobalOptions, o: { chunkMin?: string; chunkAvg?: string; chunkMax?: string; compression?: string }): Promise<number> {
  const out = new Output(g);
  const location = repoLocation(g);
  const backend = openBackend(location);
  const chunker = {
    minSize: o.chunkMin ? parseSize(o.chunkMin) : DEFAULT_CHUNKER.minSize,
    avgSize: o.chunkAvg ? parseSize(o.chunkAvg) : DEFAULT_CHUNKER.avgSize,
    maxSize: o.chunkMax ? parseSize(o.chunkMax) : DEFAULT_CHUNKER.maxSize,
  };
  const level = o.compression === undefined ? undefined : Number(o.compression);
  if (level !== undefined && !Number.isInteger(level)) throw new CofferError('INVALID_ARGUMENT', `--compression must be an integer 0–19`);
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
  }
  if (out.json) out.emit({ message_type: 'initialized', id, repository: backend.location });
  else {
    out.info(`created coffer repository ${id.slice(0, 10)} at ${backend.location}`);
    out.info('');
    out.info('Keep the password safe: without it (or a recovery key) the data cannot be recovered by anyone.');
  }
  return 0;
}

function splitTags(tags: string[] | undefined): string[] {
  return (tags ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
}

export async function cmdBackup(
  g: GlobalOptions,
  paths: string[],
  o: { tag?: string[]; host?: string; parent?: string; force?: boolean },
  signal: AbortSignal,
): Promise<number> {
  const out = new Output(g);
  if (paths.length === 0) throw new CofferError('INVALID_ARGUMENT', 'nothing to back up: give at least one path');
  const repo = await openRepo(g);
  const progress = new ProgressLine(!g.quiet && !g.json);
  try {
    const t0 = Date.now();
    const { snapshot, incomplete } = await withLock(repo, false, (lock) => backup(repo, {
      paths,
      tags: splitTags(o.tag),
      hostname: o.host,
      parent: o.force ? null : o.parent,
      scan: progress.enabled,
      signal: AbortSignal.any([signal, lock.signal]),
      onProgress: (p) => progress.update(p),
      onWarning: (w) => {
        progress.clear();
        out.warn(`${w.path}: ${w.message}`);
      },
    }));
    progress.clear();
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
  o: { target?: string; include?: string[]; host?: string[]; path?: string[] },
  signal: AbortSignal,
): Promise<number> {
  const out = new Output(g);
  if (!o.target) throw new CofferError('INVALID_ARGUMENT', 'please give a target directory with --target');
  const repo = await openRepo(g);
  const progress = new ProgressLine(!g.quiet && !g.json);
  try {
    const paths = (o.path ?? []).map((p) => path.resolve(p));
    const t0 = Date.now();
    const { snap, r } = await withLock(repo, false, async (lock) => {
     const snap = await repo.findSnapshot(ref, (s) => (!o.host?.length || o.host.includes(s.hostname)) && paths.every((p) => s.paths.includes(p)));
     out.info(`restoring snapshot ${snap.id.slice(0, 8)} of [${snap.paths.join(', ')}] at ${localTime(snap.time)} to ${path.resolve(o.target!)}`);
     const r = await restore(repo, snap, {
      target: o.target!,
      include: o.include,
      signal: AbortSignal.any([signal, lock.signal]),
      onProgress: (p) => progress.update(p),
      onWarning: (w) => {
        progress.clear();
        out.warn(`${w.path}: ${w.message}`);
      },
     });
     return { snap, r };
    }, { onReadOnly: () => out.warn('the repository is read-only: restoring without a lock') });
    progress.clear();
    if (out.json) out.emit({ message_type: 'summary', snapshot_id: snap.id, files_restored: r.filesRestored, bytes_restored: r.bytesRestored, errors: r.errors });
    else {
      out.info(`restored ${r.filesRestored} files, ${bytes(r.bytesRestored)} in ${duration(Date.now() - t0)}`);
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
  const repo = await openRepo({ ...g, cache: false });
  try {
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
      if (r.unindexedPacks) out.info(`${r.unindexedPacks} packs are not in any index (left by an interrupted backup; harmless; "coffer prune" removes them)`);
      out.info(r.problems.length ? `${r.problems.length} problems found` : 'no errors were found');
    }
    return r.problems.length ? EXIT_CODES.INTEGRITY : 0;
  } finally {
    await repo.close();
  }
}
