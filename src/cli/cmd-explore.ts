/**
 * Exploring a repository without restoring: ls, find, diff, stats, dump,
 * tag and cat. Each command uses the library (src/explore/*) and owns its
 * output.
 */
import { once } from 'node:events';
import path from 'node:path';
import { createRequire } from 'node:module';
import type Picomatch from 'picomatch';

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let pm: typeof Picomatch | undefined;
const picomatch = (): typeof Picomatch => (pm ??= createRequire(import.meta.url)('picomatch') as typeof Picomatch);
import { CofferError } from '../errors.js';
import { parseTimeArg } from './time-arg.js';
import type { Repository } from '../repo/repository.js';
import type { Snapshot } from '../format/snapshot.js';
import type { TreeNode } from '../format/tree.js';
import { decodeIndexFile } from '../repo/index-files.js';
import { decodeKeyMeta, parseKeyFile } from '../format/keyfile.js';
import { storageFailure } from '../repo/repository.js';
import { findPath, loadTree, openFileStream, walkTree } from '../explore/tree-walk.js';
import { diffTrees, type Change } from '../explore/diff.js';
import { snapshotStats } from '../explore/stats.js';
import { changeTags } from '../explore/tags.js';
import { withLock } from '../repo/lock.js';
import { tarEnd, tarHeader, tarPadding } from '../explore/tar.js';
import { bytes, localTime } from './format.js';
import { openRepo, Output, type GlobalOptions } from './context.js';

async function withRepo(gl: GlobalOptions, f: (repo: Repository, out: Output) => Promise<number>): Promise<number> {
  const out = new Output(gl);
  const repo = await openRepo(gl);
  try {
    return await f(repo, out);
  } finally {
    await repo.close();
  }
}

async function write(b: Buffer | string): Promise<void> {
  if (!process.stdout.write(b)) await once(process.stdout, 'drain');
}

function splitTags(tags: string[] | undefined): string[] {
  return (tags ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
}

interface SnapFilter {
  host?: string[];
  tag?: string[];
  path?: string[];
}

function snapFilter(o: SnapFilter): (s: Snapshot) => boolean {
  const tags = splitTags(o.tag);
  const paths = (o.path ?? []).map((p) => path.resolve(p));
  return (s) => (!o.host?.length || o.host.includes(s.hostname)) && tags.every((t) => s.tags.includes(t)) && paths.every((p) => s.paths.includes(p));
}

const TYPE_CHAR: Record<TreeNode['type'], string> = { file: '-', dir: 'd', symlink: 'l', fifo: 'p', socket: 's', chardev: 'c', blockdev: 'b' };

/** "drwxr-xr-x", with setuid/setgid/sticky shown as ls does. */
export function modeString(type: TreeNode['type'], mode: number): string {
  const rwx = (m: number, special: boolean, ch: string) =>
    (m & 4 ? 'r' : '-') + (m & 2 ? 'w' : '-') + (special ? (m & 1 ? ch : ch.toUpperCase()) : m & 1 ? 'x' : '-');
  return TYPE_CHAR[type] + rwx(mode >> 6, (mode & 0o4000) !== 0, 's') + rwx(mode >> 3, (mode & 0o2000) !== 0, 's') + rwx(mode, (mode & 0o1000) !== 0, 't');
}

function isoNs(ns: bigint): string {
  return new Date(Number(ns / 1_000_000n)).toISOString();
}

/** The JSON form of a node, as `ls --json` and `find --json` print it (restic's field names). */
export function nodeJson(p: string, n: TreeNode) {
  return {
    name: n.name.toString('utf8'),
    type: n.type,
    path: p,
    uid: n.uid,
    gid: n.gid,
    size: n.size,
    mode: n.mode,
    permissions: modeString(n.type, n.mode),
    mtime: isoNs(n.mtimeNs),
    ...(n.linkTarget ? { linktarget: n.linkTarget.toString('utf8') } : {}),
    ...(n.type === 'file' ? { links: n.links, inode: Number(n.inode) } : {}),
    struct_type: 'node',
  };
}

function longLine(p: string, n: TreeNode): string {
  const link = n.linkTarget ? ` -> ${n.linkTarget.toString('utf8')}` : '';
  return `${modeString(n.type, n.mode)} ${String(n.uid).padStart(5)} ${String(n.gid).padStart(5)} ${String(n.size).padStart(12)} ${localTime(isoNs(n.mtimeNs))} ${p}${link}`;
}

function snapshotLine(s: Snapshot) {
  return { struct_type: 'snapshot', id: s.id, short_id: s.id.slice(0, 8), time: s.time, hostname: s.hostname, paths: s.paths, tags: s.tags, tree: s.tree };
}

export async function cmdLs(gl: GlobalOptions, ref: string, dir: string | undefined, o: { long?: boolean; recursive?: boolean } & SnapFilter): Promise<number> {
  return withRepo(gl, async (repo, out) => {
    const snap = await repo.findSnapshot(ref, snapFilter(o));
    const found = await findPath(repo, snap.tree, dir ?? '/');
    const show = async (p: string, n: TreeNode) => {
      if (out.json) await write(JSON.stringify(nodeJson(p, n)) + '\n');
      else await write((o.long ? longLine(p, n) : p) + '\n');
    };
    if (out.json) await write(JSON.stringify(snapshotLine(snap)) + '\n');
    else if (!gl.quiet) process.stderr.write(`snapshot ${snap.id.slice(0, 8)} of [${snap.paths.join(', ')}] at ${localTime(snap.time)}:\n`);
    // Without a path: everything. With a path: it and its direct entries (all below with --recursive).
    if (found.node) await show(found.path, found.node);
    if (found.treeId) {
      const recursive = dir === undefined || o.recursive === true;
      for await (const e of walkTree(repo, found.treeId, found.path, recursive)) await show(e.path, e.node);
    }
    return 0;
  });
}

export async function cmdFind(
  gl: GlobalOptions,
  patterns: string[],
  o: { snapshot?: string[]; ignoreCase?: boolean; long?: boolean; oldest?: string; newest?: string } & SnapFilter,
): Promise<number> {
  if (patterns.some((pat) => pat === '')) throw new CofferError('INVALID_ARGUMENT', 'an empty pattern matches nothing; give a name or a glob such as "*.pdf"');
  // Like restic: only entries modified within [--oldest, --newest] (both inclusive) are reported.
  const oldest = o.oldest === undefined ? undefined : BigInt(parseTimeArg(o.oldest, '--oldest')) * 1_000_000n;
  const newest = o.newest === undefined ? undefined : BigInt(parseTimeArg(o.newest, '--newest')) * 1_000_000n;
  if (oldest !== undefined && newest !== undefined && oldest > newest) throw new CofferError('INVALID_ARGUMENT', '--oldest is later than --newest: nothing can match');
  const inTime = (n: TreeNode) => (oldest === undefined || n.mtimeNs >= oldest) && (newest === undefined || n.mtimeNs <= newest);
  return withRepo(gl, async (repo, out) => {
    const matchers = patterns.map((pat) => {
      const full = pat.includes('/');
      const m = picomatch()(full && !pat.startsWith('/') ? `**/${pat}` : pat.replace(/^\/+/, ''), { dot: true, nocase: o.ignoreCase === true, nobrace: true, noextglob: true });
      return (p: string, name: string) => (full ? m(p.slice(1)) : m(name));
    });
    const filter = snapFilter(o);
    let snaps = (await repo.listSnapshots()).filter(filter);
    if (o.snapshot?.length) {
      const chosen = [];
      for (const ref of o.snapshot) chosen.push(await repo.findSnapshot(ref, filter));
      snaps = chosen;
    }
    // Matches per tree id, relative to that directory: a subtree shared by many snapshots is searched once.
    const memo = new Map<string, { rel: string; node: TreeNode }[]>();
    const search = async (treeId: string, abs: string): Promise<{ rel: string; node: TreeNode }[]> => {
      const key = abs.length > 0 && matchers.some((_, i) => patterns[i].includes('/')) ? `${treeId}@${abs}` : treeId;
      const known = memo.get(key);
      if (known) return known;
      const hits: { rel: string; node: TreeNode }[] = [];
      for (const n of await loadTree(repo, treeId)) {
        const name = n.name.toString('utf8');
        const p = `${abs}/${name}`;
        if (matchers.some((m) => m(p, name)) && inTime(n)) hits.push({ rel: `/${name}`, node: n });
        if (n.type === 'dir' && n.subtree) for (const h of await search(n.subtree, p)) hits.push({ rel: `/${name}${h.rel}`, node: h.node });
      }
      memo.set(key, hits);
      return hits;
    };
    const results = [];
    let total = 0;
    for (const s of snaps) {
      const hits = await search(s.tree, '');
      total += hits.length;
      if (out.json) {
        if (hits.length) results.push({ snapshot: s.id, hits: hits.length, matches: hits.map((h) => nodeJson(h.rel, h.node)) });
        continue;
      }
      if (!hits.length) continue;
      await write(`Found matching entries in snapshot ${s.id.slice(0, 8)} from ${localTime(s.time)}\n`);
      for (const h of hits) await write((o.long ? longLine(h.rel, h.node) : h.rel) + '\n');
      await write('\n');
    }
    if (out.json) out.emit(results);
    else if (total === 0) out.info(`no matches in ${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}`);
    return 0;
  });
}

export async function cmdDiff(gl: GlobalOptions, a: string, b: string, o: { metadata?: boolean }): Promise<number> {
  return withRepo(gl, async (repo, out) => {
    // "SNAPSHOT:/sub/dir" compares only that directory of each snapshot.
    const side = async (ref: string) => {
      const i = ref.indexOf(':');
      const snap = await repo.findSnapshot(i < 0 ? ref : ref.slice(0, i));
      if (i < 0) return { snap, tree: snap.tree, base: '/' };
      const f = await findPath(repo, snap.tree, ref.slice(i + 1));
      if (!f.treeId) throw new CofferError('INVALID_ARGUMENT', `${f.path} is not a directory in snapshot ${snap.id.slice(0, 8)}`);
      return { snap, tree: f.treeId, base: f.path };
    };
    const A = await side(a);
    const B = await side(b);
    const sa = A.snap;
    const sb = B.snap;
    if (!out.json) out.info(`comparing snapshot ${sa.id.slice(0, 8)}${A.base === '/' ? '' : `:${A.base}`} to ${sb.id.slice(0, 8)}${B.base === '/' ? '' : `:${B.base}`}:\n`);
    const lines: string[] = [];
    const onChange = (c: Change) => {
      if (c.kind === 'U' && o.metadata === false) return;
      lines.push(out.json ? JSON.stringify({ message_type: 'change', path: c.path, modifier: c.kind, type: c.type }) : `${c.kind}    ${c.path}`);
      if (lines.length >= 256) flush();
    };
    const flush = () => {
      if (lines.length) process.stdout.write(lines.join('\n') + '\n');
      lines.length = 0;
    };
    const st = await diffTrees(repo, A.tree, B.tree, onChange, B.base);
    flush();
    if (out.json) {
      out.emit({
        message_type: 'statistics',
        source_snapshot: sa.id,
        target_snapshot: sb.id,
        changed_files: st.changedFiles,
        added: { files: st.added.files, dirs: st.added.dirs, others: st.added.others, bytes: st.added.bytes },
        removed: { files: st.removed.files, dirs: st.removed.dirs, others: st.removed.others, bytes: st.removed.bytes },
      });
    } else {
      out.info('');
      out.info(`Files:       ${st.added.files} new, ${st.removed.files} removed, ${st.changedFiles} changed`);
      out.info(`Dirs:        ${st.added.dirs} new, ${st.removed.dirs} removed`);
      out.info(`Others:      ${st.added.others} new, ${st.removed.others} removed`);
      out.info(`Added:       ${bytes(st.added.bytes)}`);
      out.info(`Removed:     ${bytes(st.removed.bytes)}`);
    }
    return 0;
  });
}

export async function cmdStats(gl: GlobalOptions, refs: string[], o: { mode?: string } & SnapFilter): Promise<number> {
  const mode = o.mode ?? 'restore-size';
  if (mode !== 'restore-size' && mode !== 'raw-data') throw new CofferError('INVALID_ARGUMENT', `--mode must be restore-size or raw-data, not "${mode}"`);
  return withRepo(gl, async (repo, out) => {
    const filter = snapFilter(o);
    const snaps = refs.length ? await Promise.all(refs.map((r) => repo.findSnapshot(r, filter))) : (await repo.listSnapshots()).filter(filter);
    const s = await snapshotStats(repo, snaps);
    if (out.json) {
      out.emit(
        mode === 'restore-size'
          ? { mode, snapshots_count: s.snapshots, total_size: s.restore.bytes, total_file_count: s.restore.files, total_dir_count: s.restore.dirs }
          : {
              mode,
              snapshots_count: s.snapshots,
              total_blob_count: s.raw.blobs,
              total_uncompressed_size: s.raw.uncompressedBytes,
              total_size: s.raw.storedBytes,
              restore_size: s.restore.bytes,
              compression_ratio: s.compressionRatio,
              dedup_ratio: s.dedupRatio,
              missing_blobs: s.raw.missing,
            },
      );
      return 0;
    }
    out.info(`Stats in ${mode} mode:`);
    out.info(`     Snapshots processed:  ${s.snapshots}`);
    if (mode === 'restore-size') {
      out.info(`        Total File Count:  ${s.restore.files}`);
      out.info(`         Total Dir Count:  ${s.restore.dirs}`);
      out.info(`              Total Size:  ${bytes(s.restore.bytes)}`);
    } else {
      out.info(`        Total Blob Count:  ${s.raw.blobs}`);
      out.info(` Total Uncompressed Size:  ${bytes(s.raw.uncompressedBytes)}`);
      out.info(`    Total Size (stored):  ${bytes(s.raw.storedBytes)}`);
      out.info(`            Restore Size:  ${bytes(s.restore.bytes)}`);
      out.info(`       Compression Ratio:  ${s.compressionRatio.toFixed(2)}x`);
      out.info(`    Deduplication Ratio:  ${s.dedupRatio.toFixed(2)}x`);
      if (s.raw.missing) out.warn(`${s.raw.missing} referenced blobs are missing from the index (run coffer check)`);
    }
    return 0;
  });
}

async function dumpTar(repo: Repository, treeId: string, dir: string, self?: TreeNode): Promise<void> {
  const rel = (p: string) => Buffer.from(p.replace(/^\/+/, ''));
  if (self) await write(tarHeader({ name: rel(dir), type: 'dir', mode: self.mode, uid: self.uid, gid: self.gid, mtimeNs: self.mtimeNs, size: 0 }));
  const firstName = new Map<string, Buffer>();
  for await (const { path: p, node: n } of walkTree(repo, treeId, dir, true)) {
    if (n.type !== 'file' && n.type !== 'dir' && n.type !== 'symlink') continue;
    if (n.type === 'file' && n.links > 1) {
      // Hard links: the first name carries the contents, the others link to it.
      const key = `${n.dev}:${n.inode}`;
      const first = firstName.get(key);
      if (first) {
        await write(tarHeader({ name: rel(p), type: 'hardlink', mode: n.mode, uid: n.uid, gid: n.gid, mtimeNs: n.mtimeNs, size: 0, linkTarget: first }));
        continue;
      }
      firstName.set(key, rel(p));
    }
    await write(tarHeader({ name: rel(p), type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, mtimeNs: n.mtimeNs, size: n.size, linkTarget: n.linkTarget }));
    if (n.type !== 'file') continue;
    let size = 0;
    for await (const chunk of openFileStream(repo, n)) {
      size += (chunk as Buffer).length;
      await write(chunk as Buffer);
    }
    if (size !== n.size) throw new CofferError('INTEGRITY', `integrity check failed: ${p} has ${size} bytes, the snapshot says ${n.size}`);
    await write(tarPadding(size));
  }
  await write(tarEnd());
}

export async function cmdDump(gl: GlobalOptions, ref: string, file: string, o: SnapFilter): Promise<number> {
  return withRepo(gl, async (repo) => {
    const snap = await repo.findSnapshot(ref, snapFilter(o));
    const found = await findPath(repo, snap.tree, file);
    if (found.treeId) {
      if (process.stdout.isTTY) throw new CofferError('INVALID_ARGUMENT', `${found.path} is a directory: its tar stream would go to a terminal; redirect stdout to a file or a pipe`);
      await dumpTar(repo, found.treeId, found.path, found.node);
      return 0;
    }
    const n = found.node!;
    if (n.type !== 'file') throw new CofferError('INVALID_ARGUMENT', `${found.path} is a ${n.type}, not a file or directory`);
    for await (const chunk of openFileStream(repo, n)) await write(chunk as Buffer);
    return 0;
  });
}

export async function cmdTag(gl: GlobalOptions, refs: string[], o: { add?: string[]; remove?: string[]; set?: string[] } & SnapFilter): Promise<number> {
  const change = { add: splitTags(o.add), remove: splitTags(o.remove), set: o.set ? splitTags(o.set) : undefined };
  if (!change.add.length && !change.remove.length && !change.set) throw new CofferError('INVALID_ARGUMENT', 'nothing to do: give --add, --remove or --set');
  return withRepo(gl, async (repo, out) => {
    const filter = snapFilter(o);
    const found = refs.length ? await Promise.all(refs.map((r) => repo.findSnapshot(r, filter))) : (await repo.listSnapshots()).filter(filter);
    const snaps = [...new Map(found.map((s) => [s.id, s])).values()]; // the same snapshot named twice is changed once
    let changed = 0;
    const results: { old_id: string; new_id: string; tags: string[] }[] = [];
    // Exclusive, as in restic: tag removes snapshot files.
    await withLock(repo, true, async (lock) => {
      for (const s of snaps) {
        lock.throwIfLost();
        const n = await changeTags(repo, s, change);
        if (n.id !== s.id) changed++;
        results.push({ old_id: s.id, new_id: n.id, tags: n.tags });
        if (n.id !== s.id) out.verbose(`snapshot ${s.id.slice(0, 8)} -> ${n.id.slice(0, 8)}: tags ${n.tags.join(',') || '(none)'}`);
      }
    });
    if (out.json) out.emit({ message_type: 'summary', changed_snapshots: changed, snapshots: results });
    else out.info(`modified tags on ${changed} snapshot${changed === 1 ? '' : 's'}`);
    return 0;
  });
}

async function resolveName(repo: Repository, type: 'index' | 'keys' | 'snapshots', prefix: string): Promise<string> {
  if (!/^[0-9a-f]{1,64}$/.test(prefix)) throw new CofferError('INVALID_ARGUMENT', `"${prefix}" is not an id (hex)`);
  let names: string[];
  try {
    names = (await repo.backend.list(type)).map((f) => f.name).filter((n) => n.startsWith(prefix));
  } catch (e) {
    throw storageFailure(e);
  }
  if (names.length === 0) throw new CofferError(type === 'snapshots' ? 'SNAPSHOT_NOT_FOUND' : 'INVALID_ARGUMENT', `no ${type} file with id ${prefix}`);
  if (names.length > 1) throw new CofferError('INVALID_ARGUMENT', `id prefix ${prefix} is ambiguous: ${names.map((n) => n.slice(0, 12)).join(', ')}`);
  return names[0];
}

export async function cmdCat(gl: GlobalOptions, what: string, id: string | undefined): Promise<number> {
  const kinds = ['config', 'index', 'snapshot', 'tree', 'key'];
  if (!kinds.includes(what)) throw new CofferError('INVALID_ARGUMENT', `cannot cat "${what}": use one of ${kinds.join(', ')}`);
  if (what !== 'config' && !id) throw new CofferError('INVALID_ARGUMENT', `cat ${what} needs an id`);
  return withRepo(gl, async (repo, out) => {
    switch (what) {
      case 'config':
        out.emit(repo.config);
        break;
      case 'snapshot': {
        const s = await repo.findSnapshot(id!);
        out.emit(s);
        break;
      }
      case 'tree': {
        if (!/^[0-9a-f]{64}$/.test(id!)) throw new CofferError('INVALID_ARGUMENT', 'cat tree needs a full 64-character tree id');
        const raw = await repo.loadBlob('tree', id!);
        await loadTree(repo, id!); // validates it
        process.stdout.write(JSON.stringify(JSON.parse(raw.toString('utf8'))) + '\n');
        break;
      }
      case 'index': {
        const name = await resolveName(repo, 'index', id!);
        const stored = await repo.readVerified({ type: 'index', name });
        let packs;
        try {
          packs = decodeIndexFile(repo.keys, stored);
        } catch {
          throw new CofferError('INTEGRITY', `integrity check failed: index/${name} is damaged`);
        }
        out.emit({ id: name, packs: packs.map((p) => ({ id: p.id, length: p.length, blobs: p.blobs })) });
        break;
      }
      case 'key': {
        const name = await resolveName(repo, 'keys', id!);
        const stored = await repo.readVerified({ type: 'keys', name });
        const k = parseKeyFile(stored);
        let meta;
        try {
          meta = decodeKeyMeta(repo.keys.metaKey, k);
        } catch {
          meta = undefined;
        }
        // Only public parameters and metadata: the wrapped master secret is never printed.
        out.emit({ id: name, kdf: k.kdf, ...(meta ? { label: meta.label, created: meta.created, kind: meta.kind } : {}), current: name === repo.keyName });
        break;
      }
    }
    return 0;
  });
}
