/**
 * Differences between two snapshots' trees. Identical subtrees (same tree id)
 * are skipped without being read, so comparing two backups of a big, mostly
 * unchanged tree reads only the changed directories.
 */
import type { TreeNode } from '../format/tree.js';
import { loadTree, type BlobReader } from './tree-walk.js';

/**
 * `+` added, `-` removed, `M` content changed, `U` metadata only (mode, owner,
 * times, extended attributes), `T` type changed.
 * @example
 * ```ts
 * const onlyContent = (c: Change) => c.kind === ('M' satisfies ChangeKind);
 * ```
 */
export type ChangeKind = '+' | '-' | 'M' | 'U' | 'T';

/**
 * One difference reported by `diffTrees`.
 * @example
 * ```ts
 * await diffTrees(repo, a.tree, b.tree, (c: Change) => console.log(c.kind, c.path));
 * ```
 */
export interface Change {
  path: string;
  kind: ChangeKind;
  type: TreeNode['type'];
}

/**
 * Totals of a comparison: files changed, and what was added and removed.
 * @example
 * ```ts
 * const st: DiffStats = await diffTrees(repo, a.tree, b.tree, () => {}); console.log(st.added.bytes);
 * ```
 */
export interface DiffStats {
  changedFiles: number;
  added: { files: number; dirs: number; others: number; bytes: number };
  removed: { files: number; dirs: number; others: number; bytes: number };
}

function sameList(a: string[] | undefined, b: string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameBuf(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.equals(b));
}

function sameMeta(a: TreeNode, b: TreeNode): boolean {
  const ax = a.xattrs ?? [];
  const bx = b.xattrs ?? [];
  return (
    a.mode === b.mode &&
    a.uid === b.uid &&
    a.gid === b.gid &&
    a.mtimeNs === b.mtimeNs &&
    a.rdev === b.rdev &&
    ax.length === bx.length &&
    ax.every(([k, v], i) => k.equals(bx[i][0]) && v.equals(bx[i][1]))
  );
}

function join(dir: string, name: Buffer): string {
  return dir === '/' ? `/${name.toString('utf8')}` : `${dir}/${name.toString('utf8')}`;
}

/**
 * Compares two trees, calling `onChange` for each difference in path order.
 * Directories are reported with a trailing "/" in `path`; paths start at
 * `base` (the directory the two trees stand for, "/" for snapshot roots).
 * @example
 * const stats = await diffTrees(repo, a.tree, b.tree, (c) => console.log(c.kind, c.path));
 */
export async function diffTrees(repo: BlobReader, treeA: string, treeB: string, onChange: (c: Change) => void, base = '/'): Promise<DiffStats> {
  const stats: DiffStats = { changedFiles: 0, added: { files: 0, dirs: 0, others: 0, bytes: 0 }, removed: { files: 0, dirs: 0, others: 0, bytes: 0 } };

  const count = (side: DiffStats['added'], n: TreeNode) => {
    if (n.type === 'file') {
      side.files++;
      side.bytes += n.size;
    } else if (n.type === 'dir') side.dirs++;
    else side.others++;
  };

  /** Reports a whole subtree as added or removed. */
  const whole = async (n: TreeNode, p: string, kind: '+' | '-'): Promise<void> => {
    onChange({ path: n.type === 'dir' ? `${p}/` : p, kind, type: n.type });
    count(kind === '+' ? stats.added : stats.removed, n);
    if (n.type === 'dir' && n.subtree) for (const c of await loadTree(repo, n.subtree)) await whole(c, join(p, c.name), kind);
  };

  const walk = async (a: string | undefined, b: string | undefined, dir: string): Promise<void> => {
    if (a === b) return;
    const an = a ? await loadTree(repo, a) : [];
    const bn = b ? await loadTree(repo, b) : [];
    let i = 0;
    let j = 0;
    while (i < an.length || j < bn.length) {
      const cmp = i >= an.length ? 1 : j >= bn.length ? -1 : Buffer.compare(an[i].name, bn[j].name);
      if (cmp < 0) {
        await whole(an[i], join(dir, an[i].name), '-');
        i++;
      } else if (cmp > 0) {
        await whole(bn[j], join(dir, bn[j].name), '+');
        j++;
      } else {
        const x = an[i++];
        const y = bn[j++];
        const p = join(dir, x.name);
        if (x.type !== y.type) {
          onChange({ path: p, kind: 'T', type: y.type });
          count(stats.removed, x);
          count(stats.added, y);
          if (x.type === 'dir') await walk(x.subtree, undefined, p);
          if (y.type === 'dir') await walk(undefined, y.subtree, p);
          continue;
        }
        const content = x.type === 'file' ? !sameList(x.content, y.content) : x.type === 'symlink' ? !sameBuf(x.linkTarget, y.linkTarget) : false;
        if (content) {
          onChange({ path: p, kind: 'M', type: y.type });
          stats.changedFiles++;
        } else if (!sameMeta(x, y)) onChange({ path: x.type === 'dir' ? `${p}/` : p, kind: 'U', type: y.type });
        if (x.type === 'dir') await walk(x.subtree, y.subtree, p);
      }
    }
  };

  await walk(treeA, treeB, base);
  return stats;
}
