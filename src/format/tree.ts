/**
 * Trees: one blob per directory, a JSON object {"nodes": [...]} with nodes
 * sorted by the raw bytes of their names. Names and symlink targets are raw
 * bytes: stored as a UTF-8 string when they round-trip exactly, otherwise as
 * base64 in `name_b64` / `linktarget_b64`. Times are nanoseconds since the
 * epoch as decimal strings (they exceed 2^53). Access times are not stored:
 * reading a tree would change them, and every backup would write new trees.
 */

/**
 * The kinds of file-system entries a snapshot records.
 * @example
 * ```ts
 * const isDir = (n: TreeNode) => n.type === ('dir' satisfies NodeType);
 * ```
 */
export type NodeType = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'chardev' | 'blockdev';

/**
 * One entry of a directory in a snapshot (names and link targets are raw bytes).
 * @example
 * ```ts
 * for await (const { path, node } of walkTree(repo, snap.tree)) if (node.type === 'file') console.log(path, node.size);
 * ```
 */
export interface TreeNode {
  name: Buffer;
  type: NodeType;
  /** Permission and special bits (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  ctimeNs: bigint;
  inode: bigint;
  dev: bigint;
  links: number;
  size: number;
  /** file: blob ids of the contents, in order. */
  content?: string[];
  /** dir: tree blob id. */
  subtree?: string;
  /** symlink: raw target bytes. */
  linkTarget?: Buffer;
  /** chardev/blockdev: device number. */
  rdev?: bigint;
  /** Extended attributes (name, value), sorted by name. */
  xattrs?: [Buffer, Buffer][];
}

interface JsonNode {
  name?: string;
  name_b64?: string;
  type: NodeType;
  mode: number;
  uid: number;
  gid: number;
  mtime: string;
  ctime: string;
  inode: string;
  dev: string;
  links: number;
  size: number;
  content?: string[];
  subtree?: string;
  linktarget?: string;
  linktarget_b64?: string;
  rdev?: string;
  xattrs?: [string, string][];
}

const NODE_TYPES = new Set<NodeType>(['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev']);
const HEX_ID = /^[0-9a-f]{64}$/;

/** Decodes bytes as UTF-8 only if that is lossless. */
export function exactUtf8(b: Buffer): string | undefined {
  let ascii = true;
  for (let i = 0; i < b.length; i++) {
    if (b[i] >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return b.toString('latin1');
  const s = b.toString('utf8');
  return Buffer.byteLength(s) === b.length && Buffer.from(s).equals(b) ? s : undefined;
}

export function compareNames(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

function toJson(n: TreeNode): JsonNode {
  const name = exactUtf8(n.name);
  // Properties are added in their serialised order (the encoding must be
  // byte-stable). No object spread: it cost ~2.5 µs a node on the hot path.
  const j = (name !== undefined ? { name } : { name_b64: n.name.toString('base64') }) as JsonNode;
  j.type = n.type;
  j.mode = n.mode;
  j.uid = n.uid;
  j.gid = n.gid;
  j.mtime = n.mtimeNs.toString();
  j.ctime = n.ctimeNs.toString();
  j.inode = n.inode.toString();
  j.dev = n.dev.toString();
  j.links = n.links;
  j.size = n.size;
  if (n.content) j.content = n.content;
  if (n.subtree) j.subtree = n.subtree;
  if (n.linkTarget) {
    const t = exactUtf8(n.linkTarget);
    if (t !== undefined) j.linktarget = t;
    else j.linktarget_b64 = n.linkTarget.toString('base64');
  }
  if (n.rdev !== undefined) j.rdev = n.rdev.toString();
  if (n.xattrs?.length) j.xattrs = n.xattrs.map(([k, v]) => [k.toString('base64'), v.toString('base64')]);
  return j;
}

export class TreeCorruptError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'TreeCorruptError';
  }
}

function bad(what: string): TreeCorruptError {
  return new TreeCorruptError(`tree node has a bad ${what}`);
}

const DECIMAL = /^-?\d+$/;

function big(s: unknown, what: string): bigint {
  if (typeof s !== 'string' || !DECIMAL.test(s)) throw bad(what);
  return BigInt(s);
}

function int(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw bad(what);
  return v;
}

/** "." or "..": names a tree node must not have. */
function isDots(name: Buffer): boolean {
  return name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e));
}

// (The helpers above are module-level: closures made per node were a
// measurable share of decoding every parent tree in a re-backup.)
function fromJson(j: JsonNode): TreeNode {
  if (!NODE_TYPES.has(j.type)) throw bad('type');
  const name = typeof j.name === 'string' ? Buffer.from(j.name) : typeof j.name_b64 === 'string' ? Buffer.from(j.name_b64, 'base64') : undefined;
  if (!name || name.length === 0 || name.includes(0x2f) || name.includes(0) || isDots(name)) throw bad('name');
  const n: TreeNode = {
    name,
    type: j.type,
    mode: int(j.mode, 'mode') & 0o7777,
    uid: int(j.uid, 'uid'),
    gid: int(j.gid, 'gid'),
    mtimeNs: big(j.mtime, 'mtime'),
    ctimeNs: big(j.ctime, 'ctime'),
    inode: big(j.inode, 'inode'),
    dev: big(j.dev, 'dev'),
    links: int(j.links, 'links'),
    size: int(j.size, 'size'),
  };
  if (j.type === 'file') {
    if (!Array.isArray(j.content) || !j.content.every((c) => typeof c === 'string' && HEX_ID.test(c))) throw bad('content');
    n.content = j.content;
  }
  if (j.type === 'dir') {
    if (typeof j.subtree !== 'string' || !HEX_ID.test(j.subtree)) throw bad('subtree');
    n.subtree = j.subtree;
  }
  if (j.type === 'symlink') {
    if (typeof j.linktarget === 'string') n.linkTarget = Buffer.from(j.linktarget);
    else if (typeof j.linktarget_b64 === 'string') n.linkTarget = Buffer.from(j.linktarget_b64, 'base64');
    else throw bad('link target');
  }
  if (j.rdev !== undefined) n.rdev = big(j.rdev, 'rdev');
  if (j.xattrs !== undefined) {
    if (!Array.isArray(j.xattrs)) throw bad('xattrs');
    n.xattrs = j.xattrs.map((x) => {
      if (!Array.isArray(x) || typeof x[0] !== 'string' || typeof x[1] !== 'string') throw bad('xattr');
      return [Buffer.from(x[0], 'base64'), Buffer.from(x[1], 'base64')] as [Buffer, Buffer];
    });
  }
  return n;
}

export function encodeTree(nodes: TreeNode[]): Buffer {
  // The walk hands nodes over in name order already: sort (a copy) only if they are not.
  let inOrder = true;
  for (let i = 1; i < nodes.length && inOrder; i++) inOrder = compareNames(nodes[i - 1].name, nodes[i].name) < 0;
  const sorted = inOrder ? nodes : [...nodes].sort((a, b) => compareNames(a.name, b.name));
  if (!inOrder) {
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i - 1].name.equals(sorted[i].name)) throw new RangeError('duplicate name in tree');
    }
  }
  return Buffer.from(JSON.stringify({ nodes: sorted.map(toJson) }));
}

export function decodeTree(b: Buffer): TreeNode[] {
  let j: unknown;
  try {
    j = JSON.parse(b.toString('utf8'));
  } catch {
    throw new TreeCorruptError('tree is not valid JSON');
  }
  const nodes = (j as { nodes?: unknown })?.nodes;
  if (!Array.isArray(nodes)) throw new TreeCorruptError('tree has no node list');
  const out = nodes.map((n) => fromJson(n as JsonNode));
  for (let i = 1; i < out.length; i++) {
    if (compareNames(out[i - 1].name, out[i].name) >= 0) throw new TreeCorruptError('tree nodes are not sorted');
  }
  return out;
}
