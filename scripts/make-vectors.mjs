#!/usr/bin/env node
/**
 * Writes fixtures/vectors.json: test vectors for docs/FORMAT.md that a second
 * implementation can check (explained in docs/VECTORS.md).
 *
 *   npm run build && node scripts/make-vectors.mjs
 *
 * Every input is fixed (master secret, nonces, salts, pack padding), so the
 * output is the same on every run. The only bytes taken from a library rather
 * than computed from the spec are the zstd frames of compressed payloads: a
 * reader must decompress them, a writer may produce a different frame. The
 * formats that use random bytes in coffer (nonces, pack padding) are built
 * here by hand from the spec with stated bytes, and then checked against the
 * library's decoders before anything is written.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const lib = (p) => import(path.join(ROOT, 'dist', 'src', p));

const { plainHash, keyedHash, deriveKey } = await lib('crypto/hash.js');
const { seal, open } = await lib('crypto/aead.js');
const { deriveKek } = await lib('crypto/kdf.js');
const { CONTEXTS, deriveRepoKeys } = await lib('crypto/keys.js');
const { padme } = await lib('format/padding.js');
const { computeBlobId, openBlob } = await lib('format/blob.js');
const { decodeFile, decodeJsonFile } = await lib('format/file.js');
const { decodeConfig } = await lib('format/config.js');
const { parseKeyFile, unwrapMaster, unwrapSlot, decodeKeyMeta } = await lib('format/keyfile.js');
const { encodeRecoveryCode, decodeRecoveryCode, recoveryKek } = await lib('crypto/recovery.js');
const { decodePackHeader, decodePackTrailer, TRAILER_BYTES } = await lib('format/pack.js');
const { decodeIndex, encodeIndex, encodeIndexV2 } = await lib('format/index-file.js');
const { encodeTree, decodeTree } = await lib('format/tree.js');
const { validateSnapshot } = await lib('format/snapshot.js');
const { compressIfSmaller } = await lib('compress.js');
const { x25519Public, x25519, OWNER_CONTEXTS, openFromOwner } = await lib('crypto/owner.js');
const { decodeFileFromOwner } = await lib('format/owner-file.js');
const { decodeAnyPackTrailer } = await lib('format/pack.js');
const { decodeIndexFile, readIndexIds } = await lib('repo/index-files.js');
const { FastCdc, chunkLengths } = await lib('chunker/fastcdc.js');
const { gearFromBytes } = await lib('chunker/gear.js');

const hex = (b) => Buffer.from(b).toString('hex');
const u32 = (n) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};
/** Fixed nonce number k: bytes (16k + i) mod 256 for i = 0..23. */
const nonce = (k) => Buffer.from(Array.from({ length: 24 }, (_, i) => (16 * k + i) & 0xff));

// --- keys (FORMAT.md section 2) --------------------------------------------
const master = Buffer.from(Array.from({ length: 32 }, (_, i) => i)); // 00 01 .. 1f
const keys = deriveRepoKeys(master);
const chunkerKey = deriveKey(CONTEXTS.chunker, master);

// --- blob id (section 8) ---------------------------------------------------
const blobPlain = Buffer.from('coffer test vector: one small blob\n');
const blobId = computeBlobId(keys.blobIdKey, blobPlain);

// --- seal (section 1) -------------------------------------------------------
const sealKey = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x80 + i));
const sealNonce = nonce(1);
const sealAad = Buffer.from('coffer vector aad');
const sealPlain = Buffer.from('The quick brown fox jumps over the lazy dog');
const sealed = seal(sealKey, sealPlain, sealAad, sealNonce);
assert.deepEqual(open(sealKey, sealed, sealAad), sealPlain);

// --- blobs (section 8) ------------------------------------------------------
const blobAad = (type, id) => Buffer.concat([Buffer.from('coffer-blob-v1'), Buffer.from([type === 'data' ? 0 : 1]), id]);
function makeBlob(type, plain, k, compress) {
  const id = computeBlobId(keys.blobIdKey, plain);
  const z = compress ? compressIfSmaller(plain, 3) : undefined;
  if (compress) assert.ok(z, 'compressed blob vector must compress');
  const flag = z ? 1 : 0;
  const payload = z ? Buffer.from(z) : plain;
  const aad = blobAad(type, id);
  const stored = seal(keys.blobKey, [Buffer.from([flag]), payload], aad, nonce(k));
  assert.deepEqual(openBlob(keys, type, hex(id), stored, plain.length), plain);
  return { type, typeCode: type === 'data' ? 0 : 1, plaintext: hex(plain), id: hex(id), flag, payload: hex(payload), nonce: hex(nonce(k)), aad: hex(aad), stored: hex(stored) };
}
const rawBlob = makeBlob('data', blobPlain, 2, false);

// --- tree (section 11) ------------------------------------------------------
const treeNodesJson = [
  { nameHex: hex('README'), type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: '1767225600123456789', ctimeNs: '1767225600987654321', inode: '1234567', dev: '2049', links: 1, size: blobPlain.length, content: [hex(blobId)] },
  { nameHex: hex(Buffer.from([0x66, 0xff, 0x2e, 0x62, 0x69, 0x6e])), type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: '0', ctimeNs: '1', inode: '18446744073709551615', dev: '0', links: 2, size: 0, content: [] },
  { nameHex: hex('docs'), type: 'dir', mode: 0o755, uid: 1000, gid: 1000, mtimeNs: '1767225600000000000', ctimeNs: '1767225600000000000', inode: '42', dev: '2049', links: 3, size: 0, subtree: 'ab'.repeat(32) },
  { nameHex: hex('link'), type: 'symlink', mode: 0o777, uid: 1000, gid: 1000, mtimeNs: '1767225600000000000', ctimeNs: '1767225600000000000', inode: '43', dev: '2049', links: 1, size: 0, linkTargetHex: hex(Buffer.from([0x2e, 0x2e, 0x2f, 0xe9, 0x74, 0xe9])) },
  { nameHex: hex('été.txt'), type: 'file', mode: 0o4755, uid: 1000, gid: 1000, mtimeNs: '-1000000000', ctimeNs: '1767225600000000000', inode: '44', dev: '2049', links: 1, size: 0, content: [], xattrs: [[hex('user.comment'), hex('hi')]] },
];
const toTreeNode = (j) => ({
  name: Buffer.from(j.nameHex, 'hex'),
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
  ...(j.linkTargetHex ? { linkTarget: Buffer.from(j.linkTargetHex, 'hex') } : {}),
  ...(j.xattrs ? { xattrs: j.xattrs.map(([k, v]) => [Buffer.from(k, 'hex'), Buffer.from(v, 'hex')]) } : {}),
});
// Given in the input order above (not sorted): the encoder sorts by raw name bytes.
const treeEncoded = encodeTree(treeNodesJson.map(toTreeNode));
assert.equal(decodeTree(treeEncoded).length, treeNodesJson.length);
const treeId = computeBlobId(keys.blobIdKey, treeEncoded);
const treeBlob = makeBlob('tree', treeEncoded, 3, true);

// --- small file (section 4) -------------------------------------------------
function smallFile(kind, body, k) {
  const used = 5 + body.length;
  const plain = Buffer.alloc(padme(used + 40) - 40); // zero padding
  plain[0] = 0; // encoding 0 (raw); a writer may always choose it
  plain.writeUInt32LE(body.length, 1);
  body.copy(plain, 5);
  const aad = Buffer.from(`coffer-file-v1:${kind}`);
  const stored = seal(keys.metaKey, plain, aad, nonce(k));
  assert.deepEqual(decodeFile(keys.metaKey, kind, stored), body);
  assert.equal(stored.length, padme(5 + body.length + 40));
  return { kind, body, aad, plain, stored, nonce: nonce(k) };
}
const smallJson = (f, extra = {}) => ({ kind: f.kind, ...(f.kind === 'index' ? { bodyHex: hex(f.body) } : { body: f.body.toString('utf8') }), nonce: hex(f.nonce), aad: f.aad.toString('latin1'), plaintext: hex(f.plain), stored: hex(f.stored), name: hex(plainHash(f.stored)), ...extra });

// --- config (section 5) -----------------------------------------------------
const configObj = { version: 1, id: hex(plainHash(Buffer.from('coffer vector repository id'))), chunker: { minSize: 2048, avgSize: 8192, maxSize: 65536 }, compressionLevel: 3, packSize: 65536 };
const configFile = smallFile('config', Buffer.from(JSON.stringify(configObj)), 4);
const configStored = Buffer.concat([Buffer.from('COFFER\x00\x01', 'latin1'), configFile.stored]);
assert.deepEqual(decodeConfig(keys.metaKey, configStored), configObj);

// --- key file (section 6) ---------------------------------------------------
const passphrase = 'coffer vector passphrase';
const kdf = { algorithm: 'argon2id', memoryKiB: 1024, iterations: 1, parallelism: 1, salt: Buffer.from(Array.from({ length: 16 }, (_, i) => 0xa0 + i)).toString('base64') };
const kek = await deriveKek(Buffer.from(passphrase), kdf);
const kdfCanon = JSON.stringify({ algorithm: kdf.algorithm, memoryKiB: kdf.memoryKiB, iterations: kdf.iterations, parallelism: kdf.parallelism, salt: kdf.salt });
const wrapAad = Buffer.concat([Buffer.from('coffer-key-v1'), Buffer.from(kdfCanon)]);
const wrapped = seal(kek, master, wrapAad, nonce(5));
const keyMeta = { label: 'vector key', created: '2026-01-01T00:00:00.000Z', kind: 'passphrase' };
const metaFile = smallFile('keymeta', Buffer.from(JSON.stringify(keyMeta)), 6);
const keyFileText = JSON.stringify({ coffer_key: 1, kdf, wrapped: wrapped.toString('base64'), meta: metaFile.stored.toString('base64') });
{
  const k = parseKeyFile(Buffer.from(keyFileText));
  assert.deepEqual(unwrapMaster(kek, k), master);
  assert.deepEqual(decodeKeyMeta(keys.metaKey, k), keyMeta);
}

// --- recovery key slot (section 6.1) ----------------------------------------
const recEntropy = Buffer.from(Array.from({ length: 20 }, (_, i) => 0x40 + i));
const recCode = encodeRecoveryCode(recEntropy);
const recCheck = plainHash(Buffer.concat([Buffer.from('coffer-recovery-v1'), recEntropy])).subarray(0, 3);
const recSalt = Buffer.from(Array.from({ length: 16 }, (_, i) => 0xb0 + i));
const recKdf = { algorithm: 'recovery-v1', salt: recSalt.toString('base64') };
const recKek = recoveryKek(recEntropy, recSalt);
assert.deepEqual(recKek, deriveKey('coffer 2026-11 recovery key v1', Buffer.concat([recEntropy, recSalt])));
const recAad = Buffer.concat([Buffer.from('coffer-key-v1'), Buffer.from(JSON.stringify(recKdf))]);
const recWrapped = seal(recKek, master, recAad, nonce(20));
const recMeta = { label: 'vector recovery key', created: '2026-01-01T00:00:00.000Z', kind: 'recovery' };
const recMetaFile = smallFile('keymeta', Buffer.from(JSON.stringify(recMeta)), 21);
const recFileText = JSON.stringify({ coffer_key: 1, kdf: recKdf, wrapped: recWrapped.toString('base64'), meta: recMetaFile.stored.toString('base64') });
// A one-character typo in the first group (the first character replaced by the next alphabet letter).
const ALPHA = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const recTypo = ALPHA[(ALPHA.indexOf(recCode[0]) + 1) % 32] + recCode.slice(1);
{
  assert.deepEqual(decodeRecoveryCode(recCode), recEntropy);
  assert.deepEqual(decodeRecoveryCode(recCode.toLowerCase().replaceAll('-', ' ')), recEntropy);
  assert.throws(() => decodeRecoveryCode(recTypo), /checksum mismatch/);
  const k = parseKeyFile(Buffer.from(recFileText));
  assert.deepEqual(unwrapMaster(recKek, k), master);
  assert.deepEqual(decodeKeyMeta(keys.metaKey, k), recMeta);
}

// --- pack (section 9) -------------------------------------------------------
const packBlobs = [makeBlob('data', blobPlain, 7, false), makeBlob('data', Buffer.from('second blob, also raw'), 8, false), makeBlob('data', Buffer.from('z'.repeat(500)), 9, true)];
const blobsBytes = Buffer.concat(packBlobs.map((b) => Buffer.from(b.stored, 'hex')));
const headerPlain = Buffer.concat([
  u32(packBlobs.length),
  ...packBlobs.map((b) => Buffer.concat([Buffer.from([b.typeCode]), Buffer.from(b.id, 'hex'), u32(b.stored.length / 2), u32(b.plaintext.length / 2)])),
]);
const header = seal(keys.metaKey, headerPlain, Buffer.from('coffer-pack-header-v1'), nonce(10));
const trailerPlain = Buffer.concat([u32(1), u64(blobsBytes.length), u32(header.length)]);
const trailer = seal(keys.metaKey, trailerPlain, Buffer.from('coffer-pack-trailer-v1'), nonce(11));
const unpadded = blobsBytes.length + header.length + trailer.length;
// Random in real packs; here: byte i of the padding is (i * 7) mod 256.
const padding = Buffer.from(Array.from({ length: padme(unpadded) - unpadded }, (_, i) => (i * 7) & 0xff));
const pack = Buffer.concat([blobsBytes, header, padding, trailer]);
const packId = plainHash(pack);
{
  const t = decodePackTrailer(keys.metaKey, pack.subarray(pack.length - TRAILER_BYTES), pack.length);
  const entries = decodePackHeader(keys.metaKey, pack.subarray(t.offset, t.offset + t.length), t.offset);
  entries.forEach((e, i) => assert.deepEqual(openBlob(keys, e.type, e.id, pack.subarray(e.offset, e.offset + e.length), e.rawLength), Buffer.from(packBlobs[i].plaintext, 'hex')));
}

// --- index (section 10) -----------------------------------------------------
let off = 0;
const indexPacks = [
  {
    id: hex(packId),
    length: pack.length,
    blobs: packBlobs.map((b) => {
      const e = { type: b.type, id: b.id, offset: off, length: b.stored.length / 2, rawLength: b.plaintext.length / 2 };
      off += e.length;
      return e;
    }),
  },
];
const indexBody = Buffer.concat([
  u32(1),
  u32(indexPacks.length),
  ...indexPacks.map((p) =>
    Buffer.concat([Buffer.from(p.id, 'hex'), u64(p.length), u32(p.blobs.length), ...p.blobs.map((e) => Buffer.concat([Buffer.from([e.type === 'data' ? 0 : 1]), Buffer.from(e.id, 'hex'), u32(e.offset), u32(e.length), u32(e.rawLength)]))]),
  ),
]);
assert.deepEqual(encodeIndex(indexPacks), indexBody);
assert.deepEqual(decodeIndex(indexBody), indexPacks);
const indexFile = smallFile('index', indexBody, 12);

// --- snapshot (section 12) --------------------------------------------------
const snapshotObj = {
  version: 1,
  time: '2026-01-01T12:00:00.000Z',
  hostname: 'vector-host',
  username: 'vector',
  uid: 1000,
  gid: 1000,
  paths: ['/home/vector'],
  tags: ['vector'],
  tree: hex(treeId),
  program_version: 'coffer 0.1.0',
  summary: { backup_start: '2026-01-01T12:00:00.000Z', backup_end: '2026-01-01T12:00:01.000Z', files_new: 3, files_changed: 0, files_unmodified: 0, dirs_new: 1, dirs_changed: 0, dirs_unmodified: 0, data_blobs: 1, tree_blobs: 1, data_added: 100, data_added_packed: 200, total_files_processed: 3, total_bytes_processed: 35, errors: 0 },
};
const snapshotFile = smallFile('snapshot', Buffer.from(JSON.stringify(snapshotObj)), 13);
validateSnapshot(decodeJsonFile(keys.metaKey, 'snapshot', snapshotFile.stored));

// --- write-only objects (sections 2, 9, 10, 16) ------------------------------
const ownerSecret = deriveKey(OWNER_CONTEXTS.owner, master);
const ownerPub = x25519Public(ownerSecret);
assert.deepEqual(ownerPub, keys.ownerPub);
const wrapKey = deriveKey(OWNER_CONTEXTS.wrap, ownerPub);
const ephSecret = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x60 + i));
const ephPub = x25519Public(ephSecret);
const shared = x25519(ephSecret, ownerPub);
assert.deepEqual(x25519(ownerSecret, ephPub), shared);
const woK = deriveKey(OWNER_CONTEXTS.object, Buffer.concat([shared, ephPub, ownerPub]));
const woBlobKey = deriveKey(OWNER_CONTEXTS.blob, woK);
const woMetaKey = deriveKey(OWNER_CONTEXTS.meta, woK);
assert.deepEqual(openFromOwner(ownerSecret, ownerPub, ephPub), { blobKey: woBlobKey, metaKey: woMetaKey });
const ephBox = seal(wrapKey, ephPub, Buffer.from('coffer-wo-eph-v1'), nonce(30));
// Snapshot file sealed to the owner: ephBox || small file under metaKey(K), padded so the whole object is Padmé.
const woSnapBody = Buffer.from(JSON.stringify({ ...snapshotObj, hostname: 'vector-write-only-host' }));
const woSnapPlain = Buffer.alloc(padme(72 + 5 + woSnapBody.length + 40) - 40 - 72);
woSnapPlain.writeUInt32LE(woSnapBody.length, 1);
woSnapBody.copy(woSnapPlain, 5);
const woSnapshot = Buffer.concat([ephBox, seal(woMetaKey, woSnapPlain, Buffer.from('coffer-file-v1:snapshot'), nonce(31))]);
assert.equal(woSnapshot.length, padme(woSnapshot.length));
assert.deepEqual(decodeFileFromOwner(keys, 'snapshot', woSnapshot), woSnapBody);
// A pack written in the same session (one blob).
const woBlobPlain = Buffer.from('a blob written with a write-only key');
const woBlobId = computeBlobId(keys.blobIdKey, woBlobPlain);
const woBlob = seal(woBlobKey, Buffer.concat([Buffer.from([0]), woBlobPlain]), blobAad('data', woBlobId), nonce(32));
const woHeaderPlain = Buffer.concat([u32(1), Buffer.from([0]), woBlobId, u32(woBlob.length), u32(woBlobPlain.length)]);
const woHeader = seal(woMetaKey, woHeaderPlain, Buffer.from('coffer-pack-header-v1'), nonce(33));
const woTrailerPlain = Buffer.concat([u32(2), u64(woBlob.length), u32(woHeader.length), ephPub]);
const woTrailer = seal(wrapKey, woTrailerPlain, Buffer.from('coffer-pack-trailer-wo-v1'), nonce(34));
const woUnpadded = woBlob.length + woHeader.length + woTrailer.length;
const woPadding = Buffer.from(Array.from({ length: padme(woUnpadded) - woUnpadded }, (_, i) => (i * 7) & 0xff));
const woPack = Buffer.concat([woBlob, woHeader, woPadding, woTrailer]);
const woPackId = plainHash(woPack);
{
  const t = decodeAnyPackTrailer(keys, woPack.subarray(woPack.length - 88), woPack.length);
  assert.deepEqual(t.ephPub, ephPub);
  const e = decodePackHeader(woMetaKey, woPack.subarray(t.offset, t.offset + t.length), t.offset);
  assert.deepEqual(openBlob({ blobKey: woBlobKey, blobIdKey: keys.blobIdKey }, 'data', e[0].id, woPack.subarray(0, e[0].length), e[0].rawLength), woBlobPlain);
}
// Index file version 2 (full key, innerKind 0) listing the normal pack and the write-only pack.
const idx2Packs = [...indexPacks, { id: hex(woPackId), length: woPack.length, blobs: [{ type: 'data', id: hex(woBlobId), offset: 0, length: woBlob.length, rawLength: woBlobPlain.length }], ref: ephPub }];
const idx2IdEntries = idx2Packs.flatMap((p) => p.blobs.map((b) => Buffer.concat([Buffer.from([b.type === 'data' ? 0 : 1]), Buffer.from(b.id, 'hex')])));
const idx2Ids = Buffer.concat([u32(2), u32(idx2IdEntries.length), ...idx2IdEntries]);
const idx2Body = Buffer.concat([
  u32(2),
  u32(idx2Packs.length),
  ...idx2Packs.map((p) =>
    Buffer.concat([Buffer.from(p.id, 'hex'), u64(p.length), Buffer.from([p.ref ? p.ref.length : 0]), p.ref ?? Buffer.alloc(0), u32(p.blobs.length), ...p.blobs.map((e) => Buffer.concat([u32(e.offset), u32(e.length), u32(e.rawLength)]))]),
  ),
]);
assert.deepEqual(encodeIndexV2(idx2Packs), { ids: idx2Ids, body: idx2Body });
// Encoding 0 (raw body); a writer may also use 1 (zstd) when smaller.
const idx2InnerAad = Buffer.concat([Buffer.from('coffer-index-v2'), plainHash(idx2Ids)]);
const idx2Inner = seal(keys.metaKey, Buffer.concat([Buffer.from([0]), idx2Body]), idx2InnerAad, nonce(35));
const idx2OuterBody = Buffer.concat([idx2Ids, Buffer.from([0]), idx2Inner]);
const idx2Plain = Buffer.alloc(padme(5 + idx2OuterBody.length + 40) - 40);
idx2Plain.writeUInt32LE(idx2OuterBody.length, 1);
idx2OuterBody.copy(idx2Plain, 5);
const idx2File = seal(keys.idListKey, idx2Plain, Buffer.from('coffer-file-v1:idlist'), nonce(36));
assert.deepEqual(decodeIndexFile(keys, idx2File).map((p) => p.id), idx2Packs.map((p) => p.id));
assert.equal(readIndexIds(keys.idListKey, idx2File).length, idx2IdEntries.length);

// --- key chain after one rotation (section 6.4) ------------------------------
const master1 = Buffer.from(Array.from({ length: 32 }, (_, i) => 0x20 + i)); // M_1 = 20 21 .. 3f
const chainKeys = deriveRepoKeys([master, master1]);
const chainAad = Buffer.concat([Buffer.from('coffer-key-chain-v1'), Buffer.from(kdfCanon)]);
const chainWrapped = seal(kek, Buffer.concat([master, master1]), chainAad, nonce(37));
{
  const got = unwrapSlot(kek, { coffer_key: 1, kdf, wrapped: chainWrapped.toString('base64'), meta: '' });
  assert.deepEqual(got.master, master1);
  assert.deepEqual(got.older, [master]);
  assert.deepEqual(chainKeys.blobIdKey, keys.blobIdKey);
  assert.deepEqual(chainKeys.metaKey, deriveKey(CONTEXTS.metadataEncryption, master1));
}

// --- chunking (section 7) ---------------------------------------------------
const CHUNK_BLOCKS = 8192; // input = H(u32le(0)) || H(u32le(1)) || ... || H(u32le(8191)): 262144 bytes
const chunkInput = Buffer.concat(Array.from({ length: CHUNK_BLOCKS }, (_, i) => plainHash(u32(i))));
const chunkParams = { minSize: 2048, avgSize: 8192, maxSize: 65536 };
const lengths = chunkLengths(new FastCdc(chunkParams, gearFromBytes(keys.gearBytes)), chunkInput);
assert.equal(lengths.reduce((a, b) => a + b, 0), chunkInput.length);

// --- padme (section 1) ------------------------------------------------------
const padmeTable = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 33, 100, 255, 1000, 1025, 4097, 65537, 1000000, 16777216, 16777217, 1073741825, 4294967296, 1099511627777].map((l) => [l, padme(l)]);

const vectors = {
  _comment: 'Test vectors for docs/FORMAT.md; see docs/VECTORS.md. Generated by scripts/make-vectors.mjs. Hex is lowercase; all integers little-endian.',
  nonces: 'nonce k (k = 1, 2, ...) is the 24 bytes (16k + i) mod 256 for i = 0..23',
  keys: {
    master: hex(master),
    contexts: CONTEXTS,
    blobIdKey: hex(keys.blobIdKey),
    chunkerKey: hex(chunkerKey),
    blobKey: hex(keys.blobKey),
    metaKey: hex(keys.metaKey),
    gearBytesFirst64: hex(keys.gearBytes.subarray(0, 64)),
    gearBytesBlake3: hex(plainHash(keys.gearBytes)),
    gearFirst4: Array.from(gearFromBytes(keys.gearBytes).subarray(0, 4)),
  },
  blobId: { key: 'blobIdKey', plaintext: blobPlain.toString('utf8'), id: hex(blobId) },
  seal: { key: hex(sealKey), nonce: hex(sealNonce), aad: sealAad.toString('utf8'), plaintext: sealPlain.toString('utf8'), subkey: hex(keyedHash(Buffer.from(sealKey), sealNonce.subarray(0, 12))), sealed: hex(sealed) },
  blobs: { key: 'blobKey', raw: rawBlob, zstdTree: treeBlob },
  padme: padmeTable,
  tree: { nodes: treeNodesJson, encoded: treeEncoded.toString('utf8'), id: hex(treeId) },
  smallFile: smallJson(snapshotFile),
  config: { json: configObj, smallFile: smallJson(configFile), stored: hex(configStored) },
  keyFile: {
    passphrase,
    kdf,
    kek: hex(kek),
    wrapAad: wrapAad.toString('utf8'),
    wrapNonce: hex(nonce(5)),
    wrapped: wrapped.toString('base64'),
    meta: smallJson(metaFile, { json: keyMeta }),
    file: keyFileText,
    name: hex(plainHash(Buffer.from(keyFileText))),
  },
  recoveryKey: {
    entropy: hex(recEntropy),
    checkInput: '"coffer-recovery-v1" || entropy',
    checkHashFirst3: hex(recCheck),
    check20Bits: (recCheck[0] << 12) | (recCheck[1] << 4) | (recCheck[2] >> 4),
    alphabet: ALPHA,
    code: recCode,
    typo: recTypo,
    typoError: 'checksum mismatch',
    kdf: recKdf,
    kekContext: 'coffer 2026-11 recovery key v1',
    kek: hex(recKek),
    wrapAad: recAad.toString('latin1'),
    wrapNonce: hex(nonce(20)),
    wrapped: recWrapped.toString('base64'),
    meta: smallJson(recMetaFile, { json: recMeta }),
    file: recFileText,
    name: hex(plainHash(Buffer.from(recFileText))),
  },
  pack: {
    blobs: packBlobs,
    headerNonce: hex(nonce(10)),
    headerPlaintext: hex(headerPlain),
    header: hex(header),
    padding: 'byte i is (7 i) mod 256',
    paddingLength: padding.length,
    trailerNonce: hex(nonce(11)),
    trailerPlaintext: hex(trailerPlain),
    trailer: hex(trailer),
    length: pack.length,
    pack: hex(pack),
    id: hex(packId),
  },
  index: { packs: indexPacks, body: hex(indexBody), file: smallJson(indexFile) },
  keyChain: {
    master1: hex(master1),
    kek: hex(kek),
    wrapAad: chainAad.toString('utf8'),
    wrapNonce: hex(nonce(37)),
    wrapped: chainWrapped.toString('base64'),
    epoch1: { blobKey: hex(chainKeys.blobKey), metaKey: hex(chainKeys.metaKey), idListKey: hex(chainKeys.idListKey), lockKey: hex(chainKeys.lockKey), ownerPub: hex(chainKeys.ownerPub) },
    epoch1PackRef: '01',
  },
  writeOnly: {
    ownerContexts: OWNER_CONTEXTS,
    idListKey: hex(keys.idListKey),
    lockKey: hex(keys.lockKey),
    ownerSecret: hex(ownerSecret),
    ownerPub: hex(ownerPub),
    wrapKey: hex(wrapKey),
    ephSecret: hex(ephSecret),
    ephPub: hex(ephPub),
    shared: hex(shared),
    K: hex(woK),
    blobKey: hex(woBlobKey),
    metaKey: hex(woMetaKey),
    ephBoxNonce: hex(nonce(30)),
    ephBox: hex(ephBox),
    snapshot: { body: woSnapBody.toString('utf8'), nonce: hex(nonce(31)), plaintext: hex(woSnapPlain), stored: hex(woSnapshot) },
    pack: { blobPlaintext: woBlobPlain.toString('utf8'), blobId: hex(woBlobId), blobNonce: hex(nonce(32)), headerNonce: hex(nonce(33)), trailerNonce: hex(nonce(34)), trailerPlaintext: hex(woTrailerPlain), pack: hex(woPack), id: hex(woPackId) },
    indexV2: { ids: hex(idx2Ids), body: hex(idx2Body), innerAad: hex(idx2InnerAad), innerNonce: hex(nonce(35)), outerBody: hex(idx2OuterBody), nonce: hex(nonce(36)), stored: hex(idx2File) },
  },
  chunking: {
    gear: 'keys.gearBytes read as 256 u32le',
    params: chunkParams,
    input: `H(u32le(0)) || H(u32le(1)) || ... || H(u32le(${CHUNK_BLOCKS - 1})), ${chunkInput.length} bytes`,
    inputBlake3: hex(plainHash(chunkInput)),
    lengths,
  },
};

const out = path.join(ROOT, 'fixtures', 'vectors.json');
writeFileSync(out, JSON.stringify(vectors, null, 2) + '\n');
console.log(`wrote ${path.relative(ROOT, out)} (${lengths.length} chunks, pack ${pack.length} bytes)`);
