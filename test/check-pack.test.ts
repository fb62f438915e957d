// check --read-data checks each pack in one worker task (HotPath.checkPack):
// the header from the pack's own bytes, the index's entries (one string
// formatted by SQLite, IndexCache.packEntriesHex), the pack's hash and every
// blob. Its findings must be those of the structural check plus the data's.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { HotPath, INDEX_ROW_BYTES, indexMismatches, treeLinks } from '../dist/src/worker/tasks.js';
import { encodeTree, type TreeNode } from '../dist/src/format/tree.js';
import { gearBytesFrom } from '../dist/src/crypto/keys.js';
import { computeBlobId, BLOB_OVERHEAD } from '../dist/src/format/blob.js';
import { decodePackTrailer, encodePackTail, TRAILER_BYTES, type PackEntry } from '../dist/src/format/pack.js';
import { plainHash } from '../dist/src/crypto/hash.js';
import { IndexCache } from '../dist/src/cache/index-cache.js';
import { DEFAULT_CHUNKER } from '../dist/src/repo/repository.js';
import { backup, initRepository, openRepository } from '../dist/src/index.js';
import { check } from '../dist/src/checker/checker.js';
import { randomFiles, scratch } from './helpers.js';
import type { PackId } from '../dist/src/ids.js';

const ctx = { chunker: DEFAULT_CHUNKER, gearBytes: gearBytesFrom(randomBytes(32)), blobIdKey: randomBytes(32), blobKey: randomBytes(32), compressionLevel: 3 };
const metaKey = randomBytes(32);

/** A whole pack of `plain` blobs (data, then one tree) and its entries. */
function makePack(hot: HotPath, plain: Buffer[]): { pack: Buffer; entries: PackEntry[]; headerOffset: number } {
  const items = plain.map((p, k) => ({ offset: 0, length: p.length, type: k === plain.length - 1 ? ('tree' as const) : ('data' as const), id: computeBlobId(ctx.blobIdKey, p).toString('hex') }));
  let at = 0;
  for (const it of items) {
    it.offset = at;
    at += it.length;
  }
  const out = Buffer.alloc(at + plain.length * BLOB_OVERHEAD);
  const lengths = hot.seal(Buffer.concat(plain), items, out);
  let pos = 0;
  const entries = items.map((it, k) => {
    const e = { type: it.type, id: it.id, offset: pos, length: lengths[k], rawLength: plain[k].length };
    pos += lengths[k];
    return e;
  });
  const tail = encodePackTail(metaKey, entries, pos);
  return { pack: Buffer.concat([out.subarray(0, pos), tail]), entries, headerOffset: pos };
}

/** The index rows for `entries`, as IndexCache.packEntryRows makes them (here in reverse order: any order goes). */
function rows(entries: PackEntry[]): Buffer {
  const hex = (n: number) => n.toString(16).padStart(16, '0');
  return Buffer.from(
    [...entries]
      .reverse()
      .map((e) => `0${e.type === 'data' ? 0 : 1}${e.id}${hex(e.offset)}${hex(e.length)}${hex(e.rawLength)}`)
      .join(''),
    'hex',
  );
}
/** Rows back to entries, sorted by id then type. */
function parseRows(b: Buffer): PackEntry[] {
  const out: PackEntry[] = [];
  for (let at = 0; at < b.length; at += INDEX_ROW_BYTES) {
    const n = (k: number) => Number(b.readBigUInt64BE(at + 33 + 8 * k));
    out.push({ type: b[at] === 0 ? 'data' : 'tree', id: b.toString('hex', at + 1, at + 33), offset: n(0), length: n(1), rawLength: n(2) });
  }
  return out.sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : x.type < y.type ? -1 : 1));
}

describe('IndexCache.packEntryRows', () => {
  it('lists a pack\'s blobs as fixed-width rows, and nothing for an unknown pack', () => {
    const cache = IndexCache.open(undefined);
    try {
      const pack = randomBytes(32).toString('hex') as PackId;
      const other = randomBytes(32).toString('hex') as PackId;
      const id = randomBytes(32).toString('hex');
      const blobs = [
        { type: 'data' as const, id: randomBytes(32).toString('hex'), offset: 0, length: 100, rawLength: 5_000_000_000 },
        { type: 'tree' as const, id, offset: 100, length: 70, rawLength: 50 },
        { type: 'data' as const, id, offset: 170, length: 0x1234567, rawLength: 1 },
      ];
      cache.addIndexFile('i1', [
        { id: pack, length: 1 << 20, blobs },
        { id: other, length: 1000, blobs: [{ type: 'data', id: randomBytes(32).toString('hex'), offset: 0, length: 10, rawLength: 10 }] },
      ]);
      const b = cache.packEntryRows(pack);
      expect(b.length).toBe(3 * INDEX_ROW_BYTES);
      expect(parseRows(b)).toEqual(parseRows(rows(blobs)));
      expect(parseRows(b)).toEqual(parseRows(rows(cache.blobsInPack(pack))));
      expect(cache.packEntryRows(randomBytes(32).toString('hex') as PackId).length).toBe(0);
    } finally {
      cache.close();
    }
  });
});

const ID = () => randomBytes(32).toString('hex');
function node(name: string, more: Partial<TreeNode>): TreeNode {
  return { name: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, ctimeNs: 0n, inode: 1n, dev: 1n, links: 1, size: 0, ...more };
}
const [s1, s2, c1, c2] = [ID(), ID(), ID(), ID()];
const nodes = [
  node('a', { type: 'dir', subtree: s1 }),
  node('b', { content: [c1, c2], size: 10 }),
  node('c', { content: [] }),
  node('d', { type: 'dir', subtree: s2 }),
  node('e', { type: 'symlink', linkTarget: Buffer.from('b') }),
];
/** treeLinks of `nodes`, written out by hand: per node with links, kind, [subtree], count, content ids. */
const u32 = (n: number) => Buffer.from([n, 0, 0, 0]);
const hexb = (h: string) => Buffer.from(h, 'hex');
const expectedLinks = Buffer.concat([Buffer.from([1]), hexb(s1), u32(0), Buffer.from([0]), u32(2), hexb(c1), hexb(c2), Buffer.from([1]), hexb(s2), u32(0)]);

describe('treeLinks', () => {
  it('keeps, in node order, each subtree and content id and nothing else', () => {
    expect(treeLinks(nodes).equals(expectedLinks)).toBe(true);
    expect(treeLinks([]).length).toBe(0);
  });
});

describe('HotPath.checkPack', () => {
  const hot = new HotPath(ctx);
  const tree = encodeTree(nodes);
  const plain = [randomBytes(3000), Buffer.alloc(200_000, 'coffer '), randomBytes(10), tree];
  const treeId = computeBlobId(ctx.blobIdKey, tree).toString('hex');

  function setup() {
    const p = makePack(hot, plain);
    return { ...p, name: plainHash(p.pack).toString('hex') };
  }
  /** The header's length, from the trailer (as the main thread finds it). */
  const headerLen = (pack: Buffer) => decodePackTrailer(metaKey, pack.subarray(pack.length - TRAILER_BYTES), pack.length).length;

  it('passes a good pack, reports nothing, and hands back the links of its tree', async () => {
    const p = setup();
    const r = await hot.checkPack(p.pack, { name: p.name, headerOffset: p.headerOffset, headerLength: headerLen(p.pack), metaKey, indexed: rows(p.entries) });
    expect(r.verified).toBe(true);
    expect(r.problems).toEqual([]);
    expect(Buffer.from(r.trees!).equals(Buffer.concat([hexb(treeId), u32(expectedLinks.length), expectedLinks]))).toBe(true);
  });

  it('hands back no tree the index does not list there as the header does, nor one that fails', async () => {
    const p = setup();
    const c = { name: p.name, headerOffset: p.headerOffset, headerLength: headerLen(p.pack), metaKey };
    const t = p.entries.length - 1;
    // Not in the index; then listed with another raw length.
    const unlisted = await hot.checkPack(p.pack, { ...c, indexed: rows(p.entries.slice(0, t)) });
    expect(unlisted.problems).toEqual([]);
    expect(unlisted.trees).toBeUndefined();
    const moved = await hot.checkPack(p.pack, { ...c, indexed: rows(p.entries.map((e, k) => (k === t ? { ...e, rawLength: 1 } : e))) });
    expect(moved.problems).toEqual([`pack header does not list tree blob ${treeId.slice(0, 12)} as the index does`]);
    expect(moved.trees).toBeUndefined();
    // Damaged: reported, not handed back.
    const damaged = Buffer.from(p.pack);
    damaged[p.entries[t].offset + 20] ^= 1;
    const r = await hot.checkPack(damaged, { ...c, indexed: rows(p.entries) });
    expect(r.problems).toEqual(['pack content does not match its name', `tree blob ${treeId.slice(0, 12)}: blob does not authenticate`]);
    expect(r.trees).toBeUndefined();
  });

  it('hands back no tree that does not decode (the walk loads it and says why)', async () => {
    const bad = Buffer.from('{"nodes":[{"name":"x"}]}');
    const p = makePack(hot, [randomBytes(100), bad]);
    const r = await hot.checkPack(p.pack, { name: plainHash(p.pack).toString('hex'), headerOffset: p.headerOffset, headerLength: headerLen(p.pack), metaKey, indexed: rows(p.entries) });
    expect(r).toEqual({ verified: true, problems: [] });
  });

  it('reports index entries the header does not list as the index does, then the data\'s problems, in check\'s order', async () => {
    const p = setup();
    const wrong = p.entries.map((e, k) => (k === 1 ? { ...e, rawLength: e.rawLength + 1 } : e));
    const ghost = { type: 'data' as const, id: 'f'.repeat(64), offset: 0, length: 10, rawLength: 10 };
    const typed = { ...p.entries[0], type: 'tree' as const }; // the right id and place, the wrong type
    const indexed = rows([...wrong, ghost, typed]);
    const damaged = Buffer.from(p.pack);
    damaged[p.entries[2].offset + 30] ^= 1;
    const r = await hot.checkPack(damaged, { name: p.name, headerOffset: p.headerOffset, headerLength: headerLen(p.pack), metaKey, indexed });
    expect(r.verified).toBe(true);
    const mismatch = (e: PackEntry) => `pack header does not list ${e.type} blob ${e.id.slice(0, 12)} as the index does`;
    // Index order: by id, then type.
    const expected = [wrong[1], ghost, typed].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : a.type < b.type ? -1 : 1)).map(mismatch);
    expect(r.problems).toEqual([...expected, 'pack content does not match its name', `data blob ${p.entries[2].id.slice(0, 12)}: blob does not authenticate`]);
  });

  it('reads nothing further when the header does not open or lies outside the pack', async () => {
    const p = setup();
    const bad = Buffer.from(p.pack);
    bad[p.headerOffset + 5] ^= 1;
    const c = { name: p.name, headerOffset: p.headerOffset, headerLength: headerLen(p.pack), metaKey, indexed: rows(p.entries) };
    expect(await hot.checkPack(bad, c)).toEqual({ verified: false, problems: ['pack header does not authenticate'] });
    expect(await hot.checkPack(p.pack.subarray(0, p.headerOffset + 10), c)).toEqual({ verified: false, problems: ['pack header lies outside the pack'] });
    expect(await hot.checkPack(p.pack, { ...c, metaKey: randomBytes(32) })).toEqual({ verified: false, problems: ['pack header does not authenticate'] });
  });

  it('indexMismatches refuses rows of the wrong width, and matches by offset', () => {
    expect(() => indexMismatches([], Buffer.alloc(3))).toThrow(RangeError);
    expect(indexMismatches([], Buffer.alloc(0))).toEqual([]);
    // A header that lists one blob twice: the index's entry matches the copy at its offset.
    const id = ID();
    const twice = [
      { type: 'data' as const, id, offset: 0, length: 50, rawLength: 20 },
      { type: 'data' as const, id, offset: 50, length: 50, rawLength: 20 },
    ];
    expect(indexMismatches(twice, rows([twice[0]]))).toEqual([]);
    expect(indexMismatches(twice, rows([twice[1]]))).toEqual([]);
    expect(indexMismatches(twice, rows([{ ...twice[1], offset: 25 }]))).toEqual([`pack header does not list data blob ${id.slice(0, 12)} as the index does`]);
    // Offsets beyond 2^48 and unknown types never match.
    const far = rows([twice[0]]);
    far[33] = 1;
    expect(indexMismatches(twice, far)).toHaveLength(1);
    const odd = rows([twice[0]]);
    odd[0] = 7;
    expect(indexMismatches(twice, odd)).toEqual([`pack header does not list type-7 blob ${id.slice(0, 12)} as the index does`]);
  });
});

describe('check --read-data against an index that disagrees with a pack header', () => {
  const { dir, cleanup } = scratch('coffer-check-pack-');
  afterAll(cleanup);

  it('reports the same header problems as the structural check, and verifies the data from the header', async () => {
    const repoDir = path.join(dir, 'repo');
    const cacheDir = path.join(dir, 'cache');
    await initRepository(repoDir, 'pw');
    const src = path.join(dir, 'src');
    randomFiles(src, 6, 300_000);
    let repo = await openRepository(repoDir, 'pw', { cacheDir, threads: 2 });
    let configId: string;
    try {
      await backup(repo, { paths: [src], parent: null });
      configId = repo.config.id;
      expect((await check(repo, { readData: true })).problems).toEqual([]);
    } finally {
      await repo.close();
    }
    // Change the cache behind the repository's back: one blob's raw length, and a blob no header lists.
    const db = new Database(path.join(cacheDir, configId, 'index.sqlite'));
    const victim = db.prepare('SELECT id, type, pack FROM blobs WHERE type = 0 ORDER BY id LIMIT 1').get() as { id: Buffer; type: number; pack: Buffer };
    // And a data blob a snapshot uses, gone from the index: the walk names its file, with or without the data.
    // (Chosen before the ghost below is added, which must not be the one removed.)
    const lost = db.prepare('SELECT id FROM blobs WHERE type = 0 ORDER BY id DESC LIMIT 1').pluck().get() as Buffer;
    expect(lost.equals(victim.id)).toBe(false);
    db.prepare('UPDATE blobs SET raw_length = raw_length + 1 WHERE id = ? AND type = ? AND pack = ?').run(victim.id, victim.type, victim.pack);
    const ghost = randomBytes(32);
    db.prepare('INSERT INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, 0, ?, 0, 10, 10)').run(ghost, victim.pack);
    db.prepare('DELETE FROM blobs WHERE id = ?').run(lost);
    db.close();

    repo = await openRepository(repoDir, 'pw', { cacheDir, threads: 2 });
    try {
      const structural = await check(repo);
      const full = await check(repo, { readData: true });
      const obj = `data/${victim.pack.toString('hex')}`;
      const expected = [victim.id, ghost]
        .sort(Buffer.compare)
        .map((id) => ({ object: obj, message: `pack header does not list data blob ${id.toString('hex').slice(0, 12)} as the index does` }));
      expected.push({ object: `data blob ${lost.toString('hex').slice(0, 12)}`, message: expect.stringMatching(/^is not in the index \(file \S+ in snapshot [0-9a-f]{8}\)$/) as never });
      // The data phase checks the blobs against the header (the pack's own word), so it adds nothing here.
      expect(structural.problems).toEqual(expected);
      expect(full.problems).toEqual(structural.problems);
      expect(full.packsRead).toBe(full.packs);
    } finally {
      await repo.close();
    }
  });
});
