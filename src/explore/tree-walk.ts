/**
 * Reading a snapshot's file tree without restoring it: walking trees, finding
 * a path, streaming a file's contents. Used by ls, find, diff, stats and dump,
 * and by library users (see docs/API.md).
 */
import { Readable } from 'node:stream';
import { CofferError } from '../errors.js';
import { decodeTree, type TreeNode } from '../format/tree.js';
import type { Repository } from '../repo/repository.js';

/** What reading trees and files needs from a repository (a `Repository` is one). */
export type BlobReader = Pick<Repository, 'loadBlob'>;

/**
 * A node with its absolute path in the snapshot, as `walkTree` yields them.
 * @example
 * ```ts
 * for await (const e of walkTree(repo, snap.tree)) console.log(e.path);
 * ```
 */
export interface TreeEntry {
  /** Absolute path inside the snapshot ("/home/me/file"), lossy UTF-8 for display. */
  path: string;
  node: TreeNode;
}

/** Loads and decodes one tree blob (authenticated). */
export async function loadTree(repo: BlobReader, treeId: string): Promise<TreeNode[]> {
  try {
    return decodeTree(await repo.loadBlob('tree', treeId));
  } catch (e) {
    if (e instanceof CofferError) throw e;
    throw new CofferError('INTEGRITY', `integrity check failed: tree ${treeId.slice(0, 12)} is damaged (${(e as Error).message})`);
  }
}

function childPath(dir: string, name: Buffer): string {
  return dir === '/' ? `/${name.toString('utf8')}` : `${dir}/${name.toString('utf8')}`;
}

/**
 * Depth-first, pre-order walk of the tree `treeId` whose directory is `dir`.
 * With `recursive` false, only the direct entries are listed.
 * @example
 * for await (const { path, node } of walkTree(repo, snapshot.tree)) console.log(path, node.size);
 */
export async function* walkTree(repo: BlobReader, treeId: string, dir = '/', recursive = true): AsyncGenerator<TreeEntry> {
  for (const node of await loadTree(repo, treeId)) {
    const p = childPath(dir, node.name);
    yield { path: p, node };
    if (recursive && node.type === 'dir' && node.subtree) yield* walkTree(repo, node.subtree, p, true);
  }
}

/**
 * A path in a snapshot: the root ("/", no node) or a node.
 * @example
 * ```ts
 * const f: FoundPath = await findPath(repo, snap.tree, '/etc'); if (f.treeId) console.log('a directory');
 * ```
 */
export interface FoundPath {
  path: string;
  /** Undefined for the root directory. */
  node?: TreeNode;
  /** For directories (and the root): the tree id of its contents. */
  treeId?: string;
}

/**
 * Finds `p` (an absolute path such as "/home/me/docs") in the tree `rootTree`.
 * Throws `INVALID_ARGUMENT` (exit 2) naming the path when it is not there.
 * @example const { node } = await findPath(repo, snapshot.tree, '/etc/hosts');
 */
export async function findPath(repo: BlobReader, rootTree: string, p: string): Promise<FoundPath> {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  let treeId: string | undefined = rootTree;
  let node: TreeNode | undefined;
  let cur = '/';
  for (const part of parts) {
    if (!treeId) throw new CofferError('INVALID_ARGUMENT', `${cur} is not a directory in the snapshot`);
    const name = Buffer.from(part);
    node = (await loadTree(repo, treeId)).find((n) => n.name.equals(name));
    cur = childPath(cur, name);
    if (!node) throw new CofferError('INVALID_ARGUMENT', `${cur}: no such file or directory in the snapshot`);
    treeId = node.type === 'dir' ? node.subtree : undefined;
  }
  return { path: cur, node, treeId };
}

/**
 * The contents of a file node as a stream of authenticated plaintext chunks.
 * A damaged blob fails the stream with an `INTEGRITY` error; no unverified
 * byte is ever produced.
 * @example openFileStream(repo, node).pipe(fs.createWriteStream('/tmp/out'));
 */
export function openFileStream(repo: BlobReader, node: TreeNode): Readable {
  if (node.type !== 'file') throw new CofferError('INVALID_ARGUMENT', `${node.name.toString()} is not a regular file`);
  const ids = node.content ?? [];
  async function* chunks(): AsyncGenerator<Buffer> {
    for (const id of ids) yield await repo.loadBlob('data', id);
  }
  return Readable.from(chunks(), { objectMode: false });
}
