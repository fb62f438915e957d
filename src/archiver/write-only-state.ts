/**
 * What a write-only key keeps locally so that its next backup can skip
 * unchanged files: it cannot read snapshots or trees from the repository.
 * One file per (host, paths) under `<cache>/<repo id>/write-only/`, sealed
 * under a key derived from the slot's random cache key, holding the trees of
 * the last backup reduced to what the unchanged-file shortcut needs. Names
 * are stored only as keyed hashes; symlink targets, owners, modes and
 * extended attributes are not stored.
 *
 *   file name = hex(MAC(KDF("coffer 2026-11 write-only local names v1", cacheKey), "parent" ‖ 0 ‖ host ‖ 0 ‖ JSON(paths)))
 *   contents  = small file (kind "wostate") under KDF("coffer 2026-11 write-only local state v1", cacheKey)
 *   node      = {n: hex(MAC(namesKey, name)), t: type, s: size, m: mtimeNs, c: ctimeNs, i: inode, d?: content ids, u?: subtree id}
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { deriveKey, keyedHash } from '../crypto/hash.js';
import { decodeJsonFile, encodeJsonFile } from '../format/file.js';
import type { TreeNode } from '../format/tree.js';

interface LocalNode {
  n: string;
  t: TreeNode['type'];
  s: number;
  m: string;
  c: string;
  i: string;
  d?: string[];
  u?: string;
}

interface StateJson {
  v: 1;
  snapshot: string;
  time: string;
  root: string;
  trees: Record<string, LocalNode[]>;
}

export class WriteOnlyState {
  private readonly namesKey: Buffer;
  private readonly stateKey: Buffer;
  /** Trees of the backup being made, by id. */
  private readonly fresh = new Map<string, LocalNode[]>();
  /** Trees of the previous backup, by id. */
  private previous = new Map<string, LocalNode[]>();
  /** Id of the previous snapshot this host made of the same paths. */
  parentId?: string;
  parentTime?: string;
  parentRoot?: string;

  constructor(
    cacheKey: Buffer,
    /** The folder for state files; undefined keeps nothing (--no-cache). */
    private readonly dir: string | undefined,
  ) {
    this.namesKey = deriveKey('coffer 2026-11 write-only local names v1', cacheKey);
    this.stateKey = deriveKey('coffer 2026-11 write-only local state v1', cacheKey);
  }

  /** The key a name is matched by (the parent trees hold only these). */
  nameKey(name: Buffer): Buffer {
    return keyedHash(this.namesKey, name);
  }

  private file(hostname: string, paths: string[]): string | undefined {
    if (!this.dir) return undefined;
    const id = keyedHash(this.namesKey, Buffer.from(`parent\0${hostname}\0${JSON.stringify(paths)}`)).toString('hex');
    return path.join(this.dir, id);
  }

  /** Loads the state of the last backup of `paths` from `hostname`; a missing or unreadable file means "no parent". */
  load(hostname: string, paths: string[]): void {
    const f = this.file(hostname, paths);
    if (!f) return;
    try {
      const s = decodeJsonFile(this.stateKey, 'wostate', readFileSync(f)) as StateJson;
      if (s?.v !== 1 || typeof s.trees !== 'object') return;
      this.previous = new Map(Object.entries(s.trees));
      this.parentId = s.snapshot;
      this.parentTime = s.time;
      this.parentRoot = s.root;
    } catch {
      // Missing, from another key, or damaged: back up everything (dedup still avoids storing it again).
    }
  }

  /** A tree of the previous backup, as nodes whose names are keyed hashes. */
  tree(id: string): TreeNode[] | undefined {
    const t = this.previous.get(id);
    if (!t) return undefined;
    return t.map((n) => ({
      name: Buffer.from(n.n, 'hex'),
      type: n.t,
      mode: 0,
      uid: 0,
      gid: 0,
      mtimeNs: BigInt(n.m),
      ctimeNs: BigInt(n.c),
      inode: BigInt(n.i),
      dev: 0n,
      links: 1,
      size: n.s,
      ...(n.d ? { content: n.d } : {}),
      ...(n.u ? { subtree: n.u } : {}),
    }));
  }

  /** Records a tree of this backup. */
  record(id: string, nodes: TreeNode[]): void {
    if (this.fresh.has(id)) return;
    this.fresh.set(
      id,
      nodes
        .filter((n) => n.type === 'file' || n.type === 'dir')
        .map((n) => ({
          n: this.nameKey(n.name).toString('hex'),
          t: n.type,
          s: n.size,
          m: String(n.mtimeNs),
          c: String(n.ctimeNs),
          i: String(n.inode),
          ...(n.content ? { d: n.content } : {}),
          ...(n.subtree ? { u: n.subtree } : {}),
        })),
    );
  }

  /** Replaces the state with this backup's (written to a temporary file, then renamed). */
  save(hostname: string, paths: string[], snapshot: string, time: string, root: string): void {
    const f = this.file(hostname, paths);
    if (!f) return;
    const body: StateJson = { v: 1, snapshot, time, root, trees: Object.fromEntries(this.fresh) };
    mkdirSync(path.dirname(f), { recursive: true, mode: 0o700 });
    const tmp = `${f}.tmp-${randomBytes(6).toString('hex')}`;
    writeFileSync(tmp, encodeJsonFile(this.stateKey, 'wostate', body), { mode: 0o600 });
    renameSync(tmp, f);
  }
}
