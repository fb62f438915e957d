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

/** Printable ASCII that JSON.stringify leaves as it is (no `"`, no `\`). */
function plainBytes(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) {
    const c = b[i];
    if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) return false;
  }
  return true;
}

function plainIds(ids: string[]): boolean {
  for (let i = 0; i < ids.length; i++) if (!HEX_ID.test(ids[i])) return false;
  return true;
}

/**
 * A node's JSON as JSON.stringify(toJson(n)) writes it, built as one string
 * when every part is plain ASCII (an ASCII name, hex ids, integer numbers, no
 * xattrs: nearly every node), else undefined. A plain object per node plus
 * the stringified tree cost ~1.4 KB of garbage per node, the largest share
 * of a many-file backup's (docs/PERFORMANCE.md, "Session 6");
 * test/format.test.ts compares the two encodings on random trees.
 */
function plainJson(n: TreeNode): string | undefined {
  if (!plainBytes(n.name) || !NODE_TYPES.has(n.type)) return undefined;
  if (!Number.isSafeInteger(n.mode) || !Number.isSafeInteger(n.uid) || !Number.isSafeInteger(n.gid) || !Number.isSafeInteger(n.links) || !Number.isSafeInteger(n.size)) return undefined;
  if (n.xattrs?.length || (n.linkTarget && !plainBytes(n.linkTarget))) return undefined;
  let s = `{"name":"${n.name.toString('latin1')}","type":"${n.type}","mode":${n.mode},"uid":${n.uid},"gid":${n.gid},"mtime":"${n.mtimeNs}","ctime":"${n.ctimeNs}","inode":"${n.inode}","dev":"${n.dev}","links":${n.links},"size":${n.size}`;
  if (n.content) {
    if (!plainIds(n.content)) return undefined;
    s += n.content.length === 0 ? ',"content":[]' : `,"content":["${n.content.join('","')}"]`;
  }
  if (n.subtree) {
    if (!HEX_ID.test(n.subtree)) return undefined;
    s += `,"subtree":"${n.subtree}"`;
  }
  if (n.linkTarget) s += `,"linktarget":"${n.linkTarget.toString('latin1')}"`;
  if (n.rdev !== undefined) s += `,"rdev":"${n.rdev}"`;
  return s + '}';
}

/** encodeTree's output buffer, reused (each result is copied out of it). */
let out = Buffer.allocUnsafeSlow(64 << 10);

/** Writes `s` at `at` (latin1 when it is known to be ASCII, else UTF-8), growing `out`; returns the new end. */
function put(s: string, at: number, ascii: boolean): number {
  const max = ascii ? s.length : Buffer.byteLength(s);
  if (at + max > out.length) {
    let size = out.length * 2;
    while (size < at + max) size *= 2;
    const next = Buffer.allocUnsafeSlow(size);
    out.copy(next, 0, 0, at);
    out = next;
  }
  return at + out.write(s, at, ascii ? 'latin1' : 'utf8');
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
  // The bytes of JSON.stringify({ nodes: sorted.map(toJson) }), node by node.
  let at = put('{"nodes":[', 0, true);
  for (let i = 0; i < sorted.length; i++) {
    if (i > 0) at = put(',', at, true);
    const plain = plainJson(sorted[i]);
    at = plain !== undefined ? put(plain, at, true) : put(JSON.stringify(toJson(sorted[i])), at, false);
  }
  at = put(']}', at, true);
  const bytes = Buffer.allocUnsafe(at);
  out.copy(bytes, 0, 0, at);
  return bytes;
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
