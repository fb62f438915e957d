/**
 * Recomputes every vector in fixtures/vectors.json (see docs/VECTORS.md) from
 * its stated inputs and compares, and checks that the library's readers accept
 * the hand-built objects. A failure here means the library no longer matches
 * the published format (or the vectors were regenerated without a format bump).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { deriveKey, keyedHash, plainHash } from '../dist/src/crypto/hash.js';
import { open, seal } from '../dist/src/crypto/aead.js';
import { deriveKek, type KdfParams } from '../dist/src/crypto/kdf.js';
import { decodeRecoveryCode, encodeRecoveryCode } from '../dist/src/crypto/recovery.js';
import { CONTEXTS, deriveRepoKeys } from '../dist/src/crypto/keys.js';
import { padme } from '../dist/src/format/padding.js';
import { computeBlobId, openBlob } from '../dist/src/format/blob.js';
import { decodeFile, decodeJsonFile } from '../dist/src/format/file.js';
import { decodeConfig } from '../dist/src/format/config.js';
import { decodeKeyMeta, parseKeyFile, unwrapMaster, unwrapSlot } from '../dist/src/format/keyfile.js';
import { decodePackHeader, decodePackTrailer, encodePackTail, TRAILER_BYTES } from '../dist/src/format/pack.js';
import { decodeIndex, encodeIndex, encodeIndexV2, type IndexedPack } from '../dist/src/format/index-file.js';
import { decodeTree, encodeTree, type TreeNode } from '../dist/src/format/tree.js';
import { validateSnapshot } from '../dist/src/format/snapshot.js';
import { FastCdc, chunkLengths } from '../dist/src/chunker/fastcdc.js';
import { gearFromBytes } from '../dist/src/chunker/gear.js';
import { ROOT } from './helpers.js';
import { OWNER_CONTEXTS, openFromOwner, x25519, x25519Public } from '../dist/src/crypto/owner.js';
import { decodeFileFromOwner } from '../dist/src/format/owner-file.js';
import { decodeAnyPackTrailer } from '../dist/src/format/pack.js';
import { decodeIndexFile, readIndexIds } from '../dist/src/repo/index-files.js';

/* eslint-disable @typescript-eslint/no-explicit-any */
const V: any = JSON.parse(readFileSync(path.join(ROOT, 'fixtures', 'vectors.json'), 'utf8'));
const hx = (s: string) => Buffer.from(s, 'hex');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
const nonce = (k: number) => Buffer.from(Array.from({ length: 24 }, (_, i) => (16 * k + i) & 0xff));

const master = hx(V.keys.master);
const keys = deriveRepoKeys(master);

/** Small file per FORMAT.md section 4 with encoding 0. */
function smallFile(kind: string, body: Buffer, n: Buffer): { plain: Buffer; stored: Buffer } {
  const plain = Buffer.alloc(padme(5 + body.length + 40) - 40);
  plain.writeUInt32LE(body.length, 1);
  body.copy(plain, 5);
  return { plain, stored: seal(keys.metaKey, plain, Buffer.from(`coffer-file-v1:${kind}`), n) };
}

function checkSmallFile(f: any, body: Buffer): Buffer {
  expect(f.aad).toBe(`coffer-file-v1:${f.kind}`);
  const { plain, stored } = smallFile(f.kind, body, hx(f.nonce));
  expect(hex(plain)).toBe(f.plaintext);
  expect(hex(stored)).toBe(f.stored);
  expect(stored.length).toBe(padme(5 + body.length + 40));
  expect(hex(plainHash(stored))).toBe(f.name);
  expect(decodeFile(keys.metaKey, f.kind, stored).equals(body)).toBe(true);
  return stored;
}

function checkBlob(b: any): void {
  const plain = hx(b.plaintext);
  expect(b.typeCode).toBe(b.type === 'data' ? 0 : 1);
  expect(hex(computeBlobId(keys.blobIdKey, plain))).toBe(b.id);
  const aad = Buffer.concat([Buffer.from('coffer-blob-v1'), Buffer.from([b.typeCode]), hx(b.id)]);
  expect(hex(aad)).toBe(b.aad);
  if (b.flag === 0) expect(b.payload).toBe(b.plaintext);
  const stored = seal(keys.blobKey, [Buffer.from([b.flag]), hx(b.payload)], aad, hx(b.nonce));
  expect(hex(stored)).toBe(b.stored);
  expect(openBlob(keys, b.type, b.id, stored, plain.length).equals(plain)).toBe(true);
}

describe('fixtures/vectors.json', () => {
  it('nonces follow the stated rule', () => {
    expect(V.seal.nonce).toBe(hex(nonce(1)));
    expect(V.blobs.raw.nonce).toBe(hex(nonce(2)));
    expect(V.pack.trailerNonce).toBe(hex(nonce(11)));
  });

  it('keys: derived from the master with the documented contexts (section 2)', () => {
    expect(V.keys.master).toBe('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    expect(V.keys.contexts).toEqual(CONTEXTS);
    expect(V.keys.contexts).toEqual({
      blobId: 'coffer 2026-11 blob id v1',
      chunker: 'coffer 2026-11 chunker gear table v1',
      blobEncryption: 'coffer 2026-11 blob encryption v1',
      metadataEncryption: 'coffer 2026-11 metadata encryption v1',
      idList: 'coffer 2026-11 index id list v1',
      lock: 'coffer 2026-11 lock v1',
    });
    expect(hex(deriveKey(V.keys.contexts.blobId, master))).toBe(V.keys.blobIdKey);
    expect(hex(deriveKey(V.keys.contexts.chunker, master))).toBe(V.keys.chunkerKey);
    expect(hex(deriveKey(V.keys.contexts.blobEncryption, master))).toBe(V.keys.blobKey);
    expect(hex(deriveKey(V.keys.contexts.metadataEncryption, master))).toBe(V.keys.metaKey);
    expect(hex(keys.blobIdKey)).toBe(V.keys.blobIdKey);
    expect(hex(keys.blobKey)).toBe(V.keys.blobKey);
    expect(hex(keys.metaKey)).toBe(V.keys.metaKey);
    // Gear bytes: MAC(chunkerKey, u32le(i)) for i = 0..31.
    const ck = hx(V.keys.chunkerKey);
    const gear = Buffer.concat(Array.from({ length: 32 }, (_, i) => keyedHash(ck, u32(i))));
    expect(gear.equals(keys.gearBytes)).toBe(true);
    expect(hex(gear.subarray(0, 64))).toBe(V.keys.gearBytesFirst64);
    expect(hex(plainHash(gear))).toBe(V.keys.gearBytesBlake3);
    expect(V.keys.gearFirst4).toEqual([0, 1, 2, 3].map((i) => gear.readUInt32LE(4 * i)));
    expect(Array.from(gearFromBytes(gear).subarray(0, 4))).toEqual(V.keys.gearFirst4);
  });

  it('blob id (section 8)', () => {
    expect(hex(computeBlobId(keys.blobIdKey, Buffer.from(V.blobId.plaintext)))).toBe(V.blobId.id);
    expect(hex(keyedHash(hx(V.keys.blobIdKey), Buffer.from(V.blobId.plaintext)))).toBe(V.blobId.id);
  });

  it('seal (section 1)', () => {
    const s = V.seal;
    const key = hx(s.key);
    const n = hx(s.nonce);
    expect(hex(keyedHash(Buffer.from(key), n.subarray(0, 12)))).toBe(s.subkey);
    const sealed = seal(key, Buffer.from(s.plaintext), Buffer.from(s.aad), n);
    expect(hex(sealed)).toBe(s.sealed);
    expect(sealed.length).toBe(24 + Buffer.byteLength(s.plaintext) + 16);
    expect(open(key, hx(s.sealed), Buffer.from(s.aad)).toString()).toBe(s.plaintext);
  });

  it('blobs: raw data blob and zstd tree blob (section 8)', () => {
    expect(V.blobs.raw.flag).toBe(0);
    expect(V.blobs.zstdTree.flag).toBe(1);
    checkBlob(V.blobs.raw);
    checkBlob(V.blobs.zstdTree);
    expect(V.blobs.raw.plaintext).toBe(hex(Buffer.from(V.blobId.plaintext)));
  });

  it('Padmé table (section 1)', () => {
    for (const [l, p] of V.padme as [number, number][]) expect(padme(l), `padme(${l})`).toBe(p);
  });

  it('tree encoding (section 11)', () => {
    const nodes: TreeNode[] = V.tree.nodes.map((j: any) => ({
      name: hx(j.nameHex),
      type: j.type,
      mode: j.mode,
      uid: j.uid,
      gid: j.gid,
      mtimeNs: BigInt(j.mtimeNs),
      ctimeNs: BigInt(j.ctimeNs),
      inode: BigInt(j.inode),
      dev: BigInt(j.dev),
      links: j.links,
      size: j.size,
      ...(j.content ? { content: j.content } : {}),
      ...(j.subtree ? { subtree: j.subtree } : {}),
      ...(j.linkTargetHex ? { linkTarget: hx(j.linkTargetHex) } : {}),
      ...(j.xattrs ? { xattrs: j.xattrs.map(([k, v]: string[]) => [hx(k), hx(v)]) } : {}),
    }));
    const enc = encodeTree(nodes);
    expect(enc.toString('utf8')).toBe(V.tree.encoded);
    expect(hex(computeBlobId(keys.blobIdKey, enc))).toBe(V.tree.id);
    expect(V.blobs.zstdTree.plaintext).toBe(hex(enc));
    const dec = decodeTree(Buffer.from(V.tree.encoded, 'utf8'));
    expect(dec.map((n) => hex(n.name))).toEqual(nodes.map((n) => hex(n.name)).sort((a, b) => Buffer.compare(hx(a), hx(b))));
    expect(encodeTree(dec).equals(enc)).toBe(true);
  });

  it('small file: snapshot (sections 4 and 12)', () => {
    const f = V.smallFile;
    expect(f.kind).toBe('snapshot');
    const stored = checkSmallFile(f, Buffer.from(f.body, 'utf8'));
    const s = validateSnapshot(decodeJsonFile(keys.metaKey, 'snapshot', stored));
    expect(s.tree).toBe(V.tree.id);
  });

  it('config (section 5)', () => {
    const c = V.config;
    expect(JSON.stringify(c.json)).toBe(c.smallFile.body);
    const stored = checkSmallFile(c.smallFile, Buffer.from(c.smallFile.body, 'utf8'));
    const full = Buffer.concat([Buffer.from('COFFER\x00\x01', 'latin1'), stored]);
    expect(hex(full)).toBe(c.stored);
    expect(decodeConfig(keys.metaKey, full)).toEqual(c.json);
  });

  it('key file (section 6)', async () => {
    const k = V.keyFile;
    const kdf: KdfParams = k.kdf;
    expect(Buffer.from(kdf.salt, 'base64').length).toBe(16);
    const kek = await deriveKek(Buffer.from(k.passphrase), kdf);
    expect(hex(kek)).toBe(k.kek);
    const canon = JSON.stringify({ algorithm: kdf.algorithm, memoryKiB: kdf.memoryKiB, iterations: kdf.iterations, parallelism: kdf.parallelism, salt: kdf.salt });
    expect(k.wrapAad).toBe('coffer-key-v1' + canon);
    const wrapped = seal(kek, master, Buffer.from(k.wrapAad), hx(k.wrapNonce));
    expect(wrapped.toString('base64')).toBe(k.wrapped);
    expect(JSON.stringify(k.meta.json)).toBe(k.meta.body);
    const metaStored = checkSmallFile(k.meta, Buffer.from(k.meta.body, 'utf8'));
    const text = JSON.stringify({ coffer_key: 1, kdf, wrapped: k.wrapped, meta: metaStored.toString('base64') });
    expect(text).toBe(k.file);
    expect(hex(plainHash(Buffer.from(text)))).toBe(k.name);
    const parsed = parseKeyFile(Buffer.from(k.file));
    expect(unwrapMaster(kek, parsed)!.equals(master)).toBe(true);
    expect(decodeKeyMeta(keys.metaKey, parsed)).toEqual(k.meta.json);
  });

  it('recovery key slot and code (section 6.1)', () => {
    const r = V.recoveryKey;
    const entropy = hx(r.entropy);
    // The code, computed from the spec alone: 160 entropy bits then the first 20 bits of the check hash, 5 bits per character.
    const h = plainHash(Buffer.concat([Buffer.from('coffer-recovery-v1'), entropy]));
    expect(hex(h.subarray(0, 3))).toBe(r.checkHashFirst3);
    const bits = [...entropy, ...h.subarray(0, 3)].map((b) => b.toString(2).padStart(8, '0')).join('').slice(0, 180);
    const chars = bits.match(/.{5}/g)!.map((b) => r.alphabet[parseInt(b, 2)]).join('');
    expect(chars.match(/.{4}/g)!.join('-')).toBe(r.code);
    expect(encodeRecoveryCode(entropy)).toBe(r.code);
    expect(decodeRecoveryCode(r.code).equals(entropy)).toBe(true);
    expect(decodeRecoveryCode(r.code.toLowerCase().replace(/0/g, 'o').replace(/1/g, 'l').replace(/-/g, ' ')).equals(entropy)).toBe(true);
    expect(() => decodeRecoveryCode(r.typo)).toThrow(/checksum mismatch/);
    const salt = Buffer.from(r.kdf.salt, 'base64');
    const kek = deriveKey(r.kekContext, Buffer.concat([entropy, salt]));
    expect(hex(kek)).toBe(r.kek);
    expect(r.wrapAad).toBe('coffer-key-v1' + JSON.stringify({ algorithm: 'recovery-v1', salt: r.kdf.salt }));
    expect(seal(kek, master, Buffer.from(r.wrapAad), hx(r.wrapNonce)).toString('base64')).toBe(r.wrapped);
    const metaStored = checkSmallFile(r.meta, Buffer.from(r.meta.body, 'utf8'));
    const text = JSON.stringify({ coffer_key: 1, kdf: r.kdf, wrapped: r.wrapped, meta: metaStored.toString('base64') });
    expect(text).toBe(r.file);
    expect(hex(plainHash(Buffer.from(text)))).toBe(r.name);
    const parsed = parseKeyFile(Buffer.from(r.file));
    expect(unwrapMaster(kek, parsed)!.equals(master)).toBe(true);
    expect(decodeKeyMeta(keys.metaKey, parsed)).toEqual(r.meta.json);
  });

  it('pack (section 9): built by hand, read by the library', () => {
    const p = V.pack;
    for (const b of p.blobs) checkBlob(b);
    expect(p.blobs.map((b: any) => b.type)).toEqual(['data', 'data', 'data']);
    const blobs = Buffer.concat(p.blobs.map((b: any) => hx(b.stored)));
    const headerPlain = Buffer.concat([
      u32(p.blobs.length),
      ...p.blobs.map((b: any) => Buffer.concat([Buffer.from([b.typeCode]), hx(b.id), u32(b.stored.length / 2), u32(b.plaintext.length / 2)])),
    ]);
    expect(hex(headerPlain)).toBe(p.headerPlaintext);
    const header = seal(keys.metaKey, headerPlain, Buffer.from('coffer-pack-header-v1'), hx(p.headerNonce));
    expect(hex(header)).toBe(p.header);
    const trailerPlain = Buffer.concat([u32(1), u64(blobs.length), u32(header.length)]);
    expect(hex(trailerPlain)).toBe(p.trailerPlaintext);
    const trailer = seal(keys.metaKey, trailerPlain, Buffer.from('coffer-pack-trailer-v1'), hx(p.trailerNonce));
    expect(hex(trailer)).toBe(p.trailer);
    expect(trailer.length).toBe(TRAILER_BYTES);
    const unpadded = blobs.length + header.length + trailer.length;
    expect(p.paddingLength).toBe(padme(unpadded) - unpadded);
    const padding = Buffer.from(Array.from({ length: p.paddingLength }, (_, i) => (i * 7) & 0xff));
    const pack = Buffer.concat([blobs, header, padding, trailer]);
    expect(pack.length).toBe(p.length);
    expect(hex(pack)).toBe(p.pack);
    expect(hex(plainHash(pack))).toBe(p.id);

    // The library reads it like one of its own.
    const t = decodePackTrailer(keys.metaKey, pack.subarray(pack.length - TRAILER_BYTES), pack.length);
    expect(t).toEqual({ offset: blobs.length, length: header.length });
    const entries = decodePackHeader(keys.metaKey, pack.subarray(t.offset, t.offset + t.length), t.offset);
    expect(entries).toEqual(V.index.packs[0].blobs);
    for (const [i, e] of entries.entries()) {
      expect(openBlob(keys, e.type, e.id, pack.subarray(e.offset, e.offset + e.length), e.rawLength).equals(hx(p.blobs[i].plaintext))).toBe(true);
    }
    // And the library's own tail for the same entries has the same header plaintext and a Padmé length.
    const tail = encodePackTail(keys.metaKey, entries, blobs.length);
    expect(blobs.length + tail.length).toBe(p.length);
    const t2 = decodePackTrailer(keys.metaKey, tail.subarray(tail.length - TRAILER_BYTES), blobs.length + tail.length);
    const h2 = tail.subarray(t2.offset - blobs.length, t2.offset - blobs.length + t2.length);
    expect(hex(open(keys.metaKey, h2, Buffer.from('coffer-pack-header-v1')))).toBe(p.headerPlaintext);
  });

  it('index file (section 10)', () => {
    const ix = V.index;
    const packs: IndexedPack[] = ix.packs;
    expect(packs[0].id).toBe(V.pack.id);
    expect(packs[0].length).toBe(V.pack.length);
    const body = Buffer.concat([
      u32(1),
      u32(packs.length),
      ...packs.map((p) =>
        Buffer.concat([hx(p.id), u64(p.length), u32(p.blobs.length), ...p.blobs.map((e) => Buffer.concat([Buffer.from([e.type === 'data' ? 0 : 1]), hx(e.id), u32(e.offset), u32(e.length), u32(e.rawLength)]))]),
      ),
    ]);
    expect(hex(body)).toBe(ix.body);
    expect(hex(encodeIndex(packs))).toBe(ix.body);
    expect(decodeIndex(body)).toEqual(packs);
    expect(ix.file.bodyHex).toBe(ix.body);
    const stored = checkSmallFile(ix.file, body);
    expect(decodeIndex(decodeFile(keys.metaKey, 'index', stored))).toEqual(packs);
  });

  it('chunk boundaries with the keyed gear table (section 7)', () => {
    const c = V.chunking;
    const input = Buffer.concat(Array.from({ length: 8192 }, (_, i) => plainHash(u32(i))));
    expect(input.length).toBe(262144);
    expect(hex(plainHash(input))).toBe(c.inputBlake3);
    expect(c.params).toEqual({ minSize: 2048, avgSize: 8192, maxSize: 65536 });
    const lengths = chunkLengths(new FastCdc(c.params, gearFromBytes(keys.gearBytes)), input);
    expect(lengths).toEqual(c.lengths);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(input.length);
    for (const l of lengths.slice(0, -1)) {
      expect(l).toBeGreaterThan(c.params.minSize);
      expect(l).toBeLessThanOrEqual(c.params.maxSize);
    }
  });
});

describe('fixtures/vectors.json: key chain after a rotation (section 6.4)', () => {
  it('a slot wrapping M_0 ‖ M_1 opens to both; epoch 1 keys come from M_1, blob ids stay M_0', async () => {
    const C = V.keyChain;
    const kdf = V.keyFile.kdf as KdfParams;
    expect(hex(await deriveKek(Buffer.from(V.keyFile.passphrase), kdf))).toBe(C.kek);
    const canon = JSON.stringify({ algorithm: kdf.algorithm, memoryKiB: kdf.memoryKiB, iterations: kdf.iterations, parallelism: kdf.parallelism, salt: kdf.salt });
    expect(C.wrapAad).toBe('coffer-key-chain-v1' + canon);
    const opened = open(hx(C.kek), Buffer.from(C.wrapped, 'base64'), Buffer.from(C.wrapAad));
    expect(hex(opened)).toBe(V.keys.master + C.master1);
    const got = unwrapSlot(hx(C.kek), { coffer_key: 1, kdf, wrapped: C.wrapped, meta: '' }) as { master: Buffer; older: Buffer[] };
    expect(hex(got.master)).toBe(C.master1);
    expect(got.older.map(hex)).toEqual([V.keys.master]);
    const k = deriveRepoKeys([master, hx(C.master1)]);
    expect(k.epoch).toBe(1);
    expect(hex(k.blobIdKey)).toBe(V.keys.blobIdKey);
    expect(hex(k.blobKey)).toBe(C.epoch1.blobKey);
    expect(hex(k.metaKey)).toBe(C.epoch1.metaKey);
    expect(hex(k.idListKey)).toBe(C.epoch1.idListKey);
    expect(hex(k.lockKey)).toBe(C.epoch1.lockKey);
    expect(hex(k.ownerPub)).toBe(C.epoch1.ownerPub);
    expect(hex(deriveKey(CONTEXTS.metadataEncryption, hx(C.master1)))).toBe(C.epoch1.metaKey);
    expect(hex(k.past[0].metaKey)).toBe(V.keys.metaKey);
  });
});

describe('fixtures/vectors.json: write-only objects (sections 2, 9, 10, 16)', () => {
  const W = V.writeOnly;
  it('owner key pair, ephemeral key, K and its keys', () => {
    expect(W.ownerContexts).toEqual(OWNER_CONTEXTS);
    expect(hex(deriveKey(CONTEXTS.idList, master))).toBe(W.idListKey);
    expect(hex(deriveKey(CONTEXTS.lock, master))).toBe(W.lockKey);
    expect(hex(keys.ownerSecret)).toBe(W.ownerSecret);
    expect(hex(x25519Public(hx(W.ownerSecret)))).toBe(W.ownerPub);
    expect(hex(keys.wrapKey)).toBe(W.wrapKey);
    expect(hex(deriveKey(W.ownerContexts.wrap, hx(W.ownerPub)))).toBe(W.wrapKey);
    expect(hex(x25519Public(hx(W.ephSecret)))).toBe(W.ephPub);
    expect(hex(x25519(hx(W.ephSecret), hx(W.ownerPub)))).toBe(W.shared);
    expect(hex(x25519(hx(W.ownerSecret), hx(W.ephPub)))).toBe(W.shared);
    expect(hex(deriveKey(W.ownerContexts.object, Buffer.concat([hx(W.shared), hx(W.ephPub), hx(W.ownerPub)])))).toBe(W.K);
    const k = openFromOwner(keys.ownerSecret, keys.ownerPub, hx(W.ephPub));
    expect(hex(k.blobKey)).toBe(W.blobKey);
    expect(hex(k.metaKey)).toBe(W.metaKey);
    expect(hex(seal(hx(W.wrapKey), hx(W.ephPub), Buffer.from('coffer-wo-eph-v1'), hx(W.ephBoxNonce)))).toBe(W.ephBox);
  });

  it('snapshot file sealed to the owner', () => {
    const stored = hx(W.snapshot.stored);
    expect(padme(stored.length)).toBe(stored.length);
    expect(hex(stored.subarray(0, 72))).toBe(W.ephBox);
    expect(hex(open(hx(W.metaKey), stored.subarray(72), Buffer.from('coffer-file-v1:snapshot')))).toBe(W.snapshot.plaintext);
    expect(decodeFileFromOwner(keys, 'snapshot', stored).toString()).toBe(W.snapshot.body);
  });

  it('pack with the 88-byte trailer', () => {
    const pack = hx(W.pack.pack);
    expect(hex(plainHash(pack))).toBe(W.pack.id);
    expect(padme(pack.length)).toBe(pack.length);
    expect(hex(open(hx(W.wrapKey), pack.subarray(pack.length - 88), Buffer.from('coffer-pack-trailer-wo-v1')))).toBe(W.pack.trailerPlaintext);
    const t = decodeAnyPackTrailer(keys, pack.subarray(pack.length - 88), pack.length);
    expect(hex(t.ephPub!)).toBe(W.ephPub);
    const [e] = decodePackHeader(hx(W.metaKey), pack.subarray(t.offset, t.offset + t.length), t.offset);
    expect(e.id).toBe(W.pack.blobId);
    expect(openBlob({ blobKey: hx(W.blobKey), blobIdKey: keys.blobIdKey }, 'data', e.id, pack.subarray(0, e.length), e.rawLength).toString()).toBe(W.pack.blobPlaintext);
  });

  it('index file version 2 (id list outside, packs with key references inside)', () => {
    const stored = hx(W.indexV2.stored);
    const plain = open(hx(W.idListKey), stored, Buffer.from('coffer-file-v1:idlist'));
    const n = plain.readUInt32LE(1);
    expect(hex(plain.subarray(5, 5 + n))).toBe(W.indexV2.outerBody);
    expect(readIndexIds(hx(W.idListKey), stored)!.map((b) => b.id)).toEqual([...V.index.packs[0].blobs.map((b: { id: string }) => b.id), W.pack.blobId]);
    const packs = decodeIndexFile(keys, stored);
    const v2 = encodeIndexV2(packs);
    expect(hex(v2.ids)).toBe(W.indexV2.ids);
    expect(hex(v2.body)).toBe(W.indexV2.body);
    expect(hex(Buffer.concat([Buffer.from('coffer-index-v2'), plainHash(v2.ids)]))).toBe(W.indexV2.innerAad);
    expect(hex(packs[1].ref!)).toBe(W.ephPub);
    expect(packs[0].ref).toBeUndefined();
  });
});

describe('docs/VECTORS.md', () => {
  it('quotes only values that are in fixtures/vectors.json', () => {
    const doc = readFileSync(path.join(ROOT, 'docs', 'VECTORS.md'), 'utf8');
    const json = readFileSync(path.join(ROOT, 'fixtures', 'vectors.json'), 'utf8');
    const quoted = doc.match(/\b[0-9a-f]{64}\b/g) ?? [];
    expect(quoted.length).toBeGreaterThan(10);
    for (const h of quoted) expect(json, h).toContain(h);
    expect(json).toContain(V.seal.nonce + '8247cf3b');
  });
});
