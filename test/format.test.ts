/**
 * The on-disk encodings of docs/FORMAT.md, one codec at a time: Padmé, blobs,
 * small files, config, key files, packs, index files, trees, snapshots.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { padme } from '../dist/src/format/padding.js';
import { computeBlobId, openBlob, openBlobInto, sealBlob, sealBlobInto, BlobCorruptError, BLOB_OVERHEAD } from '../dist/src/format/blob.js';
import { decodeFile, decodeJsonFile, encodeFile, encodeJsonFile, FileCorruptError, type FileKind } from '../dist/src/format/file.js';
import { decodeConfig, encodeConfig, hasConfigMagic, CONFIG_MAGIC, FORMAT_VERSION, type RepoConfig } from '../dist/src/format/config.js';
import { decodeKeyMeta, encodeKeyFile, parseKeyFile, unwrapMaster, KeyFileError } from '../dist/src/format/keyfile.js';
import { decodePackHeader, decodePackTrailer, encodePackTail, PackCorruptError, TRAILER_BYTES, type PackEntry } from '../dist/src/format/pack.js';
import { decodeIndex, encodeIndex, IndexCorruptError, type IndexedPack } from '../dist/src/format/index-file.js';
import { decodeTree, encodeTree, exactUtf8, TreeCorruptError, type TreeNode } from '../dist/src/format/tree.js';
import { validateSnapshot, type SnapshotData } from '../dist/src/format/snapshot.js';
import { open, seal, SEAL_OVERHEAD } from '../dist/src/crypto/aead.js';
import { deriveRepoKeys } from '../dist/src/crypto/keys.js';
import type { KdfParams } from '../dist/src/crypto/kdf.js';
import type { BlobType, PackId } from '../dist/src/ids.js';

const master = Buffer.from(Array.from({ length: 32 }, (_, i) => 0xa0 ^ i));
const keys = deriveRepoKeys(master);

/** Deterministic pseudo-random bytes (xorshift32). */
function prng(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

// ---------------------------------------------------------------------------
describe('Padmé', () => {
  it('known values', () => {
    const table: [number, number][] = [
      [0, 0],
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
      [5, 5],
      [7, 7],
      [8, 8],
      [9, 10],
      [17, 18],
      [100, 104],
      [1000, 1024],
      [1025, 1088],
      [65537, 67584],
      [16 * 1024 * 1024, 16 * 1024 * 1024],
      [16 * 1024 * 1024 + 1, 17301504],
    ];
    for (const [l, p] of table) expect(padme(l), `padme(${l})`).toBe(p);
  });

  it('matches a bit-exact BigInt reference around every power of two up to 2^53', () => {
    const ref = (L: number): number => {
      if (L < 2) return L;
      const b = BigInt(L);
      const e = b.toString(2).length - 1;
      const s = e.toString(2).length; // floor(log2 e) + 1
      const m = (1n << BigInt(e - s)) - 1n;
      return Number((b + m) & ~m);
    };
    for (let k = 1; k <= 53; k++) {
      for (const d of [-3, -2, -1, 0, 1, 2, 3]) {
        const L = 2 ** k + d;
        if (L < 0 || !Number.isSafeInteger(L)) continue;
        expect(padme(L), `padme(${L})`).toBe(ref(L));
      }
    }
  });

  it('is monotonic, never shrinks, idempotent, and costs at most 12 %', () => {
    let prev = 0;
    const lengths: number[] = [];
    for (let l = 0; l <= 70_000; l++) lengths.push(l);
    for (let l = 70_001; l < 2 ** 40; l = Math.floor(l * 1.37) + 11) lengths.push(l);
    const bad: number[] = [];
    for (const l of lengths) {
      const p = padme(l);
      if (p < l || p < prev || p - l > l * 0.12 || (l > 0 && padme(p) !== p)) bad.push(l);
      prev = p;
    }
    expect(bad).toEqual([]);
    expect(lengths.length).toBeGreaterThan(70_000);
  });

  it('rejects negative, fractional and unsafe lengths', () => {
    for (const bad of [-1, 1.5, NaN, Infinity, 2 ** 53]) expect(() => padme(bad)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
describe('blobs', () => {
  const text = Buffer.from('All work and no play makes Jack a dull boy.\n'.repeat(200));
  const noise = randomBytes(5000);

  const flagOf = (stored: Buffer, type: BlobType, id: Buffer) =>
    open(keys.blobKey, stored, Buffer.concat([Buffer.from('coffer-blob-v1'), Buffer.from([type === 'data' ? 0 : 1]), id]))[0];

  it('round-trips compressible data (stored as zstd, flag 1)', () => {
    const id = computeBlobId(keys.blobIdKey, text);
    const stored = sealBlob(keys.blobKey, 'data', id, text, 3);
    expect(stored.length).toBeLessThan(text.length / 4);
    expect(flagOf(stored, 'data', id)).toBe(1);
    expect(openBlob(keys, 'data', id.toString('hex'), stored, text.length).equals(text)).toBe(true);
  });

  it('round-trips incompressible data (stored raw, flag 0) and level 0 disables compression', () => {
    for (const [plain, level] of [
      [noise, 3],
      [text, 0],
      [Buffer.alloc(0), 3],
      [Buffer.from('x'), 3],
    ] as const) {
      const id = computeBlobId(keys.blobIdKey, plain);
      const stored = sealBlob(keys.blobKey, 'data', id, plain, level);
      expect(stored.length).toBe(plain.length + BLOB_OVERHEAD);
      expect(flagOf(stored, 'data', id)).toBe(0);
      expect(openBlob(keys, 'data', id.toString('hex'), stored, plain.length).equals(plain)).toBe(true);
    }
  });

  it('sealBlobInto produces a blob openBlob accepts', () => {
    const id = computeBlobId(keys.blobIdKey, text);
    const out = Buffer.alloc(text.length + BLOB_OVERHEAD + 20);
    const n = sealBlobInto(keys.blobKey, 'tree', id, text, 3, out, 7);
    expect(n).toBeLessThanOrEqual(text.length + BLOB_OVERHEAD);
    const into = Buffer.alloc(text.length);
    openBlobInto(keys, 'tree', id.toString('hex'), out.subarray(7, 7 + n), into);
    expect(into.equals(text)).toBe(true);
  });

  it('the blob id is MAC(blobIdKey, plaintext)', () => {
    expect(computeBlobId(keys.blobIdKey, text).length).toBe(32);
    expect(computeBlobId(keys.blobIdKey, text).equals(computeBlobId(deriveRepoKeys(Buffer.alloc(32, 1)).blobIdKey, text))).toBe(false);
  });

  for (const [name, plain] of [
    ['compressed', text],
    ['raw', noise],
  ] as const) {
    it(`openBlob rejects a ${name} blob with the wrong type, id, raw length, or any flipped byte`, () => {
      const id = computeBlobId(keys.blobIdKey, plain);
      const hexId = id.toString('hex');
      const stored = sealBlob(keys.blobKey, 'data', id, plain, 3);
      expect(() => openBlob(keys, 'tree', hexId, stored, plain.length)).toThrow(BlobCorruptError);
      const otherId = computeBlobId(keys.blobIdKey, Buffer.from('something else')).toString('hex');
      expect(() => openBlob(keys, 'data', otherId, stored, plain.length)).toThrow(BlobCorruptError);
      for (const len of [plain.length - 1, plain.length + 1, 0]) {
        expect(() => openBlob(keys, 'data', hexId, stored, len), `rawLength ${len}`).toThrow(BlobCorruptError);
      }
      for (let pos = 0; pos < stored.length; pos += Math.max(1, Math.floor(stored.length / 37))) {
        const t = Buffer.from(stored);
        t[pos] ^= 0x01;
        expect(() => openBlob(keys, 'data', hexId, t, plain.length), `byte ${pos}`).toThrow(BlobCorruptError);
      }
      expect(() => openBlob(keys, 'data', hexId, stored.subarray(0, stored.length - 1), plain.length)).toThrow(BlobCorruptError);
      expect(() => openBlob({ ...keys, blobKey: deriveRepoKeys(Buffer.alloc(32, 2)).blobKey }, 'data', hexId, stored, plain.length)).toThrow(BlobCorruptError);
    });
  }

  it('openBlob rejects an authentic blob whose plaintext does not match its id (writer bug)', () => {
    const id = computeBlobId(keys.blobIdKey, Buffer.from('the real content'));
    const aad = Buffer.concat([Buffer.from('coffer-blob-v1'), Buffer.from([0]), id]);
    const wrong = Buffer.from('the fake content');
    const stored = seal(keys.blobKey, [Buffer.from([0]), wrong], aad);
    expect(() => openBlob(keys, 'data', id.toString('hex'), stored, wrong.length)).toThrow(/does not match its id/);
    const badFlag = seal(keys.blobKey, [Buffer.from([2]), wrong], aad);
    expect(() => openBlob(keys, 'data', id.toString('hex'), badFlag, wrong.length)).toThrow(/unknown blob encoding/);
    const badZstd = seal(keys.blobKey, [Buffer.from([1]), wrong], aad);
    expect(() => openBlob(keys, 'data', id.toString('hex'), badZstd, wrong.length)).toThrow(BlobCorruptError);
  });
});

// ---------------------------------------------------------------------------
describe('small files', () => {
  const kinds: FileKind[] = ['config', 'keymeta', 'index', 'snapshot', 'lock'];

  it('round-trip for each kind; wrong kind fails', () => {
    for (const kind of kinds) {
      const body = Buffer.from(`{"kind":"${kind}","payload":"${'z'.repeat(300)}"}`);
      const stored = encodeFile(keys.metaKey, kind, body);
      expect(decodeFile(keys.metaKey, kind, stored).equals(body)).toBe(true);
      for (const other of kinds.filter((k) => k !== kind)) {
        expect(() => decodeFile(keys.metaKey, other, stored), `${kind} read as ${other}`).toThrow(FileCorruptError);
      }
    }
  });

  it('stored length is Padmé of the unpadded stored length (incompressible bodies)', () => {
    for (const n of [0, 1, 10, 63, 64, 100, 1000, 5000, 70_000]) {
      const body = randomBytes(n);
      const stored = encodeFile(keys.metaKey, 'index', body);
      expect(stored.length, `body ${n}`).toBe(padme(SEAL_OVERHEAD + 5 + n));
      expect(decodeFile(keys.metaKey, 'index', stored).equals(body)).toBe(true);
      const plain = open(keys.metaKey, stored, Buffer.from('coffer-file-v1:index'));
      expect(plain[0]).toBe(0);
      expect(plain.readUInt32LE(1)).toBe(n);
      expect(plain.subarray(5 + n).every((b) => b === 0)).toBe(true);
    }
  });

  it('compressible bodies are stored as zstd and still padded to a Padmé length', () => {
    const body = Buffer.from(JSON.stringify({ list: Array.from({ length: 2000 }, (_, i) => ({ i, name: `file-${i % 10}` })) }));
    const stored = encodeFile(keys.metaKey, 'snapshot', body);
    expect(stored.length).toBeLessThan(body.length / 3);
    expect(padme(stored.length)).toBe(stored.length);
    const plain = open(keys.metaKey, stored, Buffer.from('coffer-file-v1:snapshot'));
    expect(plain[0]).toBe(1);
    expect(decodeFile(keys.metaKey, 'snapshot', stored).equals(body)).toBe(true);
    expect(decodeJsonFile(keys.metaKey, 'snapshot', encodeJsonFile(keys.metaKey, 'snapshot', { a: [1, 2] }))).toEqual({ a: [1, 2] });
  });

  it('rejects tampering, a wrong key, bad lengths and unknown encodings', () => {
    const stored = encodeFile(keys.metaKey, 'lock', Buffer.from('hello'));
    const t = Buffer.from(stored);
    t[30] ^= 4;
    expect(() => decodeFile(keys.metaKey, 'lock', t)).toThrow(FileCorruptError);
    expect(() => decodeFile(deriveRepoKeys(Buffer.alloc(32, 3)).metaKey, 'lock', stored)).toThrow(FileCorruptError);
    expect(() => decodeFile(keys.metaKey, 'lock', stored.subarray(0, stored.length - 1))).toThrow(FileCorruptError);
    const aad = Buffer.from('coffer-file-v1:lock');
    const mk = (plain: Buffer) => seal(keys.metaKey, plain, aad);
    expect(() => decodeFile(keys.metaKey, 'lock', mk(Buffer.from([0, 1, 0])))).toThrow(/too short/);
    expect(() => decodeFile(keys.metaKey, 'lock', mk(Buffer.from([0, 9, 0, 0, 0, 1, 2])))).toThrow(/bad length/);
    expect(() => decodeFile(keys.metaKey, 'lock', mk(Buffer.from([7, 1, 0, 0, 0, 1])))).toThrow(/unknown encoding/);
    expect(() => decodeFile(keys.metaKey, 'lock', mk(Buffer.from([1, 3, 0, 0, 0, 1, 2, 3])))).toThrow(FileCorruptError);
    expect(() => decodeJsonFile(keys.metaKey, 'lock', encodeFile(keys.metaKey, 'lock', Buffer.from('{not json')))).toThrow(/not valid JSON/);
    // The padding is not interpreted: a hand-made file without padding decodes too.
    expect(decodeFile(keys.metaKey, 'lock', mk(Buffer.from([0, 2, 0, 0, 0, 0x68, 0x69]))).toString()).toBe('hi');
  });
});

// ---------------------------------------------------------------------------
describe('config', () => {
  const config: RepoConfig = {
    version: FORMAT_VERSION,
    id: 'ab'.repeat(32),
    chunker: { minSize: 2048, avgSize: 8192, maxSize: 65536 },
    compressionLevel: 3,
    packSize: 1 << 20,
  };

  it('round-trips behind the plaintext magic', () => {
    const stored = encodeConfig(keys.metaKey, config);
    expect(stored.subarray(0, 8).equals(CONFIG_MAGIC)).toBe(true);
    expect(CONFIG_MAGIC.toString('latin1')).toBe('COFFER\x00\x01');
    expect(hasConfigMagic(stored)).toBe(true);
    expect(hasConfigMagic(stored.subarray(0, 7))).toBe(false);
    expect(hasConfigMagic(Buffer.from('COFFER\x00\x02rest'))).toBe(false);
    expect(decodeConfig(keys.metaKey, stored)).toEqual(config);
    expect(stored.length - 8).toBe(padme(stored.length - 8));
  });

  it('rejects unsupported contents and the wrong key', () => {
    const bad = [
      { ...config, version: 2 },
      { ...config, id: 'AB'.repeat(32) },
      { ...config, id: 'ab' },
      { ...config, chunker: { minSize: 0, avgSize: 1, maxSize: 2 } },
      { ...config, packSize: 0 },
      { ...config, compressionLevel: 1.5 },
    ];
    for (const c of bad) expect(() => decodeConfig(keys.metaKey, encodeConfig(keys.metaKey, c as RepoConfig))).toThrow();
    expect(() => decodeConfig(deriveRepoKeys(Buffer.alloc(32, 4)).metaKey, encodeConfig(keys.metaKey, config))).toThrow(FileCorruptError);
  });
});

// ---------------------------------------------------------------------------
describe('key files', () => {
  const kdf: KdfParams = { algorithm: 'argon2id', memoryKiB: 1024, iterations: 1, parallelism: 1, salt: Buffer.alloc(16, 0x5a).toString('base64') };
  const kek = Buffer.alloc(32, 0x77);
  const meta = { label: 'laptop', created: '2026-01-01T00:00:00.000Z', kind: 'passphrase' as const };

  it('wraps the master secret and the metadata', () => {
    const stored = encodeKeyFile(kek, kdf, master, keys.metaKey, meta);
    const k = parseKeyFile(stored);
    expect(Object.keys(JSON.parse(stored.toString()))).toEqual(['coffer_key', 'kdf', 'wrapped', 'meta']);
    expect(k.kdf).toEqual(kdf);
    expect(unwrapMaster(kek, k)!.equals(master)).toBe(true);
    expect(unwrapMaster(Buffer.alloc(32, 0x78), k)).toBeUndefined();
    expect(decodeKeyMeta(keys.metaKey, k)).toEqual(meta);
    expect(stored.toString()).not.toContain('laptop');
  });

  it('binds the KDF parameters: editing any of them breaks the unwrap', () => {
    const k = parseKeyFile(encodeKeyFile(kek, kdf, master, keys.metaKey, meta));
    for (const edit of [{ iterations: 2 }, { memoryKiB: 2048 }, { parallelism: 2 }, { salt: Buffer.alloc(16, 0x5b).toString('base64') }]) {
      expect(unwrapMaster(kek, { ...k, kdf: { ...k.kdf, ...edit } })).toBeUndefined();
    }
  });

  it('parseKeyFile rejects malformed files', () => {
    const good = JSON.parse(encodeKeyFile(kek, kdf, master, keys.metaKey, meta).toString());
    const cases: unknown[] = [
      'not json',
      { ...good, coffer_key: 2 },
      { ...good, kdf: { ...good.kdf, algorithm: 'scrypt' } },
      { ...good, kdf: { ...good.kdf, memoryKiB: 0 } },
      { ...good, kdf: { ...good.kdf, iterations: 2 ** 32 } },
      { ...good, kdf: { ...good.kdf, salt: 5 } },
      { ...good, wrapped: undefined },
      { ...good, meta: 1 },
      null,
    ];
    for (const c of cases) {
      const buf = Buffer.from(typeof c === 'string' ? c : JSON.stringify(c));
      expect(() => parseKeyFile(buf), JSON.stringify(c)).toThrow(KeyFileError);
    }
  });
});

// ---------------------------------------------------------------------------
describe('packs', () => {
  function buildPack(blobs: { type: BlobType; plain: Buffer }[]) {
    const parts: Buffer[] = [];
    const entries: PackEntry[] = [];
    let offset = 0;
    for (const b of blobs) {
      const id = computeBlobId(keys.blobIdKey, b.plain);
      const stored = sealBlob(keys.blobKey, b.type, id, b.plain, 3);
      entries.push({ type: b.type, id: id.toString('hex'), offset, length: stored.length, rawLength: b.plain.length });
      parts.push(stored);
      offset += stored.length;
    }
    const tail = encodePackTail(keys.metaKey, entries, offset);
    return { pack: Buffer.concat([...parts, tail]), entries, blobsLength: offset, tailLength: tail.length };
  }
  const blobs = [
    { type: 'data' as const, plain: prng(3000, 1) },
    { type: 'data' as const, plain: Buffer.from('hello hello hello hello '.repeat(20)) },
    { type: 'data' as const, plain: Buffer.alloc(0) },
    { type: 'data' as const, plain: prng(100, 2) },
  ];

  it('tail encode/decode round trip; pack length is Padmé of the unpadded length', () => {
    const { pack, entries, blobsLength } = buildPack(blobs);
    const t = decodePackTrailer(keys.metaKey, pack.subarray(pack.length - TRAILER_BYTES), pack.length);
    expect(t.offset).toBe(blobsLength);
    expect(t.length).toBe(4 + entries.length * 41 + SEAL_OVERHEAD);
    const got = decodePackHeader(keys.metaKey, pack.subarray(t.offset, t.offset + t.length), t.offset);
    expect(got).toEqual(entries);
    expect(pack.length).toBe(padme(blobsLength + t.length + TRAILER_BYTES));
    for (const [i, e] of got.entries()) {
      expect(openBlob(keys, e.type, e.id, pack.subarray(e.offset, e.offset + e.length), e.rawLength).equals(blobs[i].plain)).toBe(true);
    }
  });

  it('an empty pack tail and a large count decode too', () => {
    const tail = encodePackTail(keys.metaKey, [], 0);
    const t = decodePackTrailer(keys.metaKey, tail.subarray(tail.length - TRAILER_BYTES), tail.length);
    expect(decodePackHeader(keys.metaKey, tail.subarray(t.offset, t.offset + t.length), 0)).toEqual([]);
    const many: PackEntry[] = Array.from({ length: 500 }, (_, i) => ({ type: 'tree', id: i.toString(16).padStart(64, '0'), offset: i * 100, length: 100, rawLength: 80 }));
    const tail2 = encodePackTail(keys.metaKey, many, 50_000);
    const len = 50_000 + tail2.length;
    const t2 = decodePackTrailer(keys.metaKey, tail2.subarray(tail2.length - TRAILER_BYTES), len);
    expect(decodePackHeader(keys.metaKey, tail2.subarray(t2.offset - 50_000, t2.offset - 50_000 + t2.length), t2.offset)).toEqual(many);
  });

  it('padding is random: two tails of the same entries differ', () => {
    const e: PackEntry[] = [{ type: 'data', id: 'cd'.repeat(32), offset: 0, length: 1000, rawLength: 990 }];
    expect(encodePackTail(keys.metaKey, e, 1000).equals(encodePackTail(keys.metaKey, e, 1000))).toBe(false);
  });

  it('refuses non-contiguous entries or entries that do not cover the blobs', () => {
    const e: PackEntry[] = [
      { type: 'data', id: 'cd'.repeat(32), offset: 0, length: 100, rawLength: 90 },
      { type: 'data', id: 'ce'.repeat(32), offset: 101, length: 100, rawLength: 90 },
    ];
    expect(() => encodePackTail(keys.metaKey, e, 201)).toThrow(RangeError);
    expect(() => encodePackTail(keys.metaKey, e.slice(0, 1), 101)).toThrow(RangeError);
  });

  it('detects trailer and header tampering', () => {
    const { pack, blobsLength } = buildPack(blobs);
    const trailerAt = pack.length - TRAILER_BYTES;
    for (let pos = trailerAt; pos < pack.length; pos += 5) {
      const t = Buffer.from(pack);
      t[pos] ^= 0x10;
      expect(() => decodePackTrailer(keys.metaKey, t.subarray(trailerAt), t.length), `trailer byte ${pos - trailerAt}`).toThrow(PackCorruptError);
    }
    const { offset, length } = decodePackTrailer(keys.metaKey, pack.subarray(trailerAt), pack.length);
    for (let pos = offset; pos < offset + length; pos += 7) {
      const t = Buffer.from(pack);
      t[pos] ^= 0x10;
      expect(() => decodePackHeader(keys.metaKey, t.subarray(offset, offset + length), offset), `header byte ${pos - offset}`).toThrow(PackCorruptError);
    }
    // A header read at the wrong place, or claiming a different offset, is refused.
    expect(() => decodePackHeader(keys.metaKey, pack.subarray(offset, offset + length), offset + 1)).toThrow(PackCorruptError);
    expect(() => decodePackHeader(keys.metaKey, pack.subarray(offset + 1, offset + length + 1), offset)).toThrow(PackCorruptError);
    // The trailer cannot be used as a header and vice versa (distinct AADs).
    expect(() => decodePackHeader(keys.metaKey, pack.subarray(trailerAt), blobsLength)).toThrow(PackCorruptError);
    expect(() => decodePackTrailer(keys.metaKey, pack.subarray(offset, offset + TRAILER_BYTES), pack.length)).toThrow(PackCorruptError);
    // Under another repository's key nothing opens.
    expect(() => decodePackTrailer(deriveRepoKeys(Buffer.alloc(32, 9)).metaKey, pack.subarray(trailerAt), pack.length)).toThrow(PackCorruptError);
  });

  it('detects truncated packs', () => {
    const { pack } = buildPack(blobs);
    for (const cut of [1, 2, 17, TRAILER_BYTES, 200]) {
      const p = pack.subarray(0, pack.length - cut);
      expect(() => decodePackTrailer(keys.metaKey, p.subarray(p.length - TRAILER_BYTES), p.length), `cut ${cut}`).toThrow(PackCorruptError);
    }
    expect(() => decodePackTrailer(keys.metaKey, pack.subarray(pack.length - TRAILER_BYTES + 1), pack.length)).toThrow(/truncated/);
    // An authentic trailer with a pack length that is too short to hold the header.
    const trailer = pack.subarray(pack.length - TRAILER_BYTES);
    const { offset, length } = decodePackTrailer(keys.metaKey, trailer, pack.length);
    expect(() => decodePackTrailer(keys.metaKey, trailer, offset + length + TRAILER_BYTES - 1)).toThrow(/outside the pack/);
  });
});

// ---------------------------------------------------------------------------
describe('index files', () => {
  const packs: IndexedPack[] = [
    {
      id: '11'.repeat(32) as PackId,
      length: 17301504,
      blobs: [
        { type: 'data', id: 'a1'.repeat(32), offset: 0, length: 1041, rawLength: 1000 },
        { type: 'data', id: 'a2'.repeat(32), offset: 1041, length: 65, rawLength: 4000 },
      ],
    },
    { id: '22'.repeat(32) as PackId, length: 2 ** 33 + 5, blobs: [{ type: 'tree', id: 'b1'.repeat(32), offset: 0, length: 300, rawLength: 900 }] },
    { id: '33'.repeat(32) as PackId, length: 56, blobs: [] },
  ];

  it('round-trips and has the documented layout', () => {
    const b = encodeIndex(packs);
    expect(b.length).toBe(8 + 3 * 44 + 3 * 45);
    expect(b.readUInt32LE(0)).toBe(1);
    expect(b.readUInt32LE(4)).toBe(3);
    expect(b.toString('hex', 8, 40)).toBe('11'.repeat(32));
    expect(b.readBigUInt64LE(40)).toBe(17301504n);
    expect(b.readUInt32LE(48)).toBe(2);
    expect(b[52]).toBe(0);
    expect(decodeIndex(b)).toEqual(packs);
    expect(decodeIndex(encodeIndex([]))).toEqual([]);
    expect(decodeFile(keys.metaKey, 'index', encodeFile(keys.metaKey, 'index', b)).equals(b)).toBe(true);
  });

  it('rejects every truncation, trailing bytes and unknown versions', () => {
    const b = encodeIndex(packs);
    for (let n = 0; n < b.length; n++) expect(() => decodeIndex(b.subarray(0, n)), `length ${n}`).toThrow(IndexCorruptError);
    expect(() => decodeIndex(Buffer.concat([b, Buffer.alloc(1)]))).toThrow(/trailing/);
    const v3 = Buffer.from(b);
    v3.writeUInt32LE(3, 0);
    expect(() => decodeIndex(v3)).toThrow(/version/);
    const huge = Buffer.from(b);
    huge.writeUInt32LE(0xffffffff, 48); // blob count of the first pack
    expect(() => decodeIndex(huge)).toThrow(IndexCorruptError);
  });

  it('rejects garbage', () => {
    for (let seed = 1; seed <= 200; seed++) {
      const g = prng(8 + (seed % 150), seed);
      if (seed % 2) g.writeUInt32LE(1, 0); // get past the version check half of the time
      expect(() => decodeIndex(g), `seed ${seed}`).toThrow();
    }
    const badType = encodeIndex(packs);
    badType[52] = 7;
    expect(() => decodeIndex(badType)).toThrow();
  });
});

// ---------------------------------------------------------------------------
describe('trees', () => {
  const ID = (c: string) => c.repeat(64);
  const base = { mode: 0o644, uid: 1000, gid: 100, mtimeNs: 1_700_000_000_123_456_789n, ctimeNs: 1_700_000_001_000_000_000n, inode: 2n ** 60n + 3n, dev: 66306n, links: 1, size: 0 };
  const node = (name: Buffer | string, extra: Partial<TreeNode> = {}): TreeNode => ({
    ...base,
    name: typeof name === 'string' ? Buffer.from(name) : name,
    type: 'file',
    content: [],
    ...extra,
  });

  it('round-trips raw non-UTF-8 names and link targets', () => {
    const nodes: TreeNode[] = [
      node(Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]), { size: 5, content: [ID('a')] }),
      node(Buffer.from([0xc3, 0x28])), // invalid 2-byte sequence
      node(Buffer.from([0xed, 0xa0, 0x80])), // encoded surrogate: not valid UTF-8
      node('link', { type: 'symlink', content: undefined, linkTarget: Buffer.from([0x2e, 0x2e, 0x2f, 0x80, 0x81]) }),
      node('ok-link', { type: 'symlink', content: undefined, linkTarget: Buffer.from('../ünïcødé/target') }),
      node('sub', { type: 'dir', content: undefined, subtree: ID('b'), mode: 0o1777 }),
      node('dev', { type: 'chardev', content: undefined, rdev: 259n }),
      node('x', { xattrs: [[Buffer.from('user.a'), Buffer.from([0, 1, 2, 255])]] }),
      node('unicode-é-日本-😀'),
    ];
    const enc = encodeTree(nodes);
    const json = JSON.parse(enc.toString('utf8'));
    const byName = (n: { name?: string; name_b64?: string }) => n.name ?? Buffer.from(n.name_b64!, 'base64').toString('hex');
    expect(json.nodes.find((n: { name?: string }) => n.name === 'link').linktarget_b64).toBe(Buffer.from([0x2e, 0x2e, 0x2f, 0x80, 0x81]).toString('base64'));
    expect(json.nodes.find((n: { name?: string }) => n.name === 'ok-link').linktarget).toBe('../ünïcødé/target');
    expect(json.nodes.filter((n: { name_b64?: string }) => n.name_b64).length).toBe(3);
    expect(json.nodes.map(byName)).toContain('unicode-é-日本-😀');
    expect(json.nodes[0].mtime).toBe('1700000000123456789');
    const dec = decodeTree(enc);
    const sorted = [...nodes].sort((a, b) => Buffer.compare(a.name, b.name));
    expect(dec.map((n) => n.name.toString('hex'))).toEqual(sorted.map((n) => n.name.toString('hex')));
    for (const [i, n] of dec.entries()) {
      const want = sorted[i];
      expect(n.type).toBe(want.type);
      expect(n.mtimeNs).toBe(want.mtimeNs);
      expect(n.inode).toBe(want.inode);
      expect(n.mode).toBe(want.mode);
      if (want.linkTarget) expect(n.linkTarget!.equals(want.linkTarget)).toBe(true);
      if (want.xattrs) expect(n.xattrs!.map(([k, v]) => [k.toString('hex'), v.toString('hex')])).toEqual(want.xattrs.map(([k, v]) => [k.toString('hex'), v.toString('hex')]));
      expect(n.subtree).toBe(want.subtree);
      expect(n.content).toEqual(want.content);
      expect(n.rdev).toBe(want.rdev);
    }
    // Encoding is canonical: re-encoding the decoded tree gives the same bytes.
    expect(encodeTree(dec).equals(enc)).toBe(true);
  });

  it('writes the bytes the JSON.stringify encoder wrote (random nodes of every kind, odd names, escapes, big numbers)', () => {
    // The encoder before session 6, kept here as the reference: a JSON object per node, stringified.
    const plainOrB64 = (key: string, b: Buffer, j: Record<string, unknown>) => {
      const s = exactUtf8(b);
      if (s !== undefined) j[key] = s;
      else j[`${key}_b64`] = b.toString('base64');
    };
    const reference = (nodes: TreeNode[]) =>
      Buffer.from(
        JSON.stringify({
          nodes: nodes.map((n) => {
            const j: Record<string, unknown> = {};
            plainOrB64('name', n.name, j);
            Object.assign(j, { type: n.type, mode: n.mode, uid: n.uid, gid: n.gid, mtime: n.mtimeNs.toString(), ctime: n.ctimeNs.toString(), inode: n.inode.toString(), dev: n.dev.toString(), links: n.links, size: n.size });
            if (n.content) j.content = n.content;
            if (n.subtree) j.subtree = n.subtree;
            if (n.linkTarget) plainOrB64('linktarget', n.linkTarget, j);
            if (n.rdev !== undefined) j.rdev = n.rdev.toString();
            if (n.xattrs?.length) j.xattrs = n.xattrs.map(([k, v]) => [k.toString('base64'), v.toString('base64')]);
            return j;
          }),
        }),
      );
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const pieces = ['a', 'Z', '"', '\\', '\n', '\t', '\b', '\f', '\r', '\x01', '\x1f', '\x7f', ' ', '/x', 'é', '日本', '😀', '\u2028', '{}', ',:'];
    const name = (): Buffer => {
      if (rnd(6) === 0) return Buffer.from(Array.from({ length: 1 + rnd(12) }, () => 1 + rnd(255)).filter((b) => b !== 0x2f)); // any bytes (often not UTF-8)
      let s = '';
      for (let k = 1 + rnd(5); k > 0; k--) s += pieces[rnd(pieces.length)];
      return Buffer.from(s.replaceAll('/', '_'));
    };
    const big = () => [0n, 7n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, -1n, -(2n ** 62n), 1_700_000_000_123_456_789n][rnd(8)];
    const small = () => [0, 1, 9, 10, 99, 1000, 65534, 2 ** 31, 2 ** 53 - 1][rnd(9)];
    const types = ['file', 'dir', 'symlink', 'fifo', 'socket', 'chardev', 'blockdev'] as const;
    for (let t = 0; t < 200; t++) {
      const byName = new Map<string, TreeNode>();
      for (let k = rnd(12); k >= 0; k--) {
        const type = types[rnd(types.length)];
        const n: TreeNode = { name: name(), type, mode: small() & 0o7777, uid: small(), gid: small(), mtimeNs: big(), ctimeNs: big(), inode: big(), dev: big(), links: small(), size: small() };
        if (type === 'file') n.content = Array.from({ length: rnd(4) }, () => ID('0123456789abcdef'[rnd(16)]));
        if (type === 'dir') n.subtree = ID('e');
        if (type === 'symlink') n.linkTarget = rnd(3) === 0 ? Buffer.alloc(0) : name();
        if (type === 'chardev' || type === 'blockdev') n.rdev = big();
        if (rnd(4) === 0) n.xattrs = rnd(3) === 0 ? [] : [[Buffer.from('user.x'), name()], [Buffer.from('user.y'), Buffer.alloc(0)]];
        byName.set(n.name.toString('latin1'), n);
      }
      const nodes = [...byName.values()].sort((a, b) => Buffer.compare(a.name, b.name));
      const enc = encodeTree(nodes);
      expect(enc.toString('hex')).toBe(reference(nodes).toString('hex'));
      expect(encodeTree(decodeTree(enc)).equals(enc)).toBe(true);
    }
    // A tree larger than the encoder's first buffer.
    const many = Array.from({ length: 3000 }, (_, i) => node(`file-${String(i).padStart(5, '0')}`, { content: [ID('a'), ID('b')] }));
    expect(encodeTree(many).equals(reference(many))).toBe(true);
  });

  it('sorts by raw bytes, not by JavaScript string order', () => {
    // U+FF5E (EF BD 9E) sorts before U+1F600 (F0 9F 98 80) as bytes, after it as UTF-16.
    const names = ['😀', '～', 'b', 'B', 'a', 'é'];
    const enc = encodeTree(names.map((n) => node(n)));
    const got = JSON.parse(enc.toString()).nodes.map((n: { name: string }) => n.name);
    expect(got).toEqual(['B', 'a', 'b', 'é', '～', '😀']);
    expect([...names].sort()).not.toEqual(got); // the string sort would differ
  });

  it('rejects duplicate names when encoding', () => {
    expect(() => encodeTree([node('a'), node('b'), node('a')])).toThrow(/duplicate/);
    expect(() => encodeTree([node(Buffer.from([0xff])), node(Buffer.from([0xff]))])).toThrow(/duplicate/);
  });

  it('decode rejects "..", ".", "/", NUL, empty names, unsorted and duplicate nodes', () => {
    const good = JSON.parse(encodeTree([node('a'), node('b')]).toString());
    const withName = (name: unknown, key = 'name') => {
      const j = structuredClone(good);
      delete j.nodes[0].name;
      j.nodes[0][key] = name;
      return Buffer.from(JSON.stringify(j));
    };
    for (const bad of ['..', '.', 'a/b', '/', 'a\u0000b', '']) expect(() => decodeTree(withName(bad)), JSON.stringify(bad)).toThrow(TreeCorruptError);
    for (const bad of ['..', 'x/y', '']) expect(() => decodeTree(withName(Buffer.from(bad).toString('base64'), 'name_b64'))).toThrow(TreeCorruptError);
    expect(() => decodeTree(withName(undefined))).toThrow(TreeCorruptError);
    const unsorted = structuredClone(good);
    unsorted.nodes.reverse();
    expect(() => decodeTree(Buffer.from(JSON.stringify(unsorted)))).toThrow(/not sorted/);
    const dup = structuredClone(good);
    dup.nodes[1] = dup.nodes[0];
    expect(() => decodeTree(Buffer.from(JSON.stringify(dup)))).toThrow(/not sorted/);
  });

  it('decode rejects malformed nodes and documents', () => {
    const good = JSON.parse(encodeTree([node('a', { content: [ID('c')] })]).toString());
    const edit = (f: (n: Record<string, unknown>) => void) => {
      const j = structuredClone(good);
      f(j.nodes[0]);
      return Buffer.from(JSON.stringify(j));
    };
    const edits: [string, (n: Record<string, unknown>) => void][] = [
      ['type', (n) => (n.type = 'door')],
      ['mode', (n) => (n.mode = -1)],
      ['uid', (n) => (n.uid = '0')],
      ['mtime', (n) => (n.mtime = 12)],
      ['mtime text', (n) => (n.mtime = '1.5')],
      ['size', (n) => (n.size = 2 ** 53)],
      ['content', (n) => (n.content = ['xyz'])],
      ['content upper', (n) => (n.content = [ID('C')])],
      ['dir without subtree', (n) => (n.type = 'dir')],
      ['symlink without target', (n) => (n.type = 'symlink')],
      ['xattrs', (n) => (n.xattrs = [['a']])],
    ];
    for (const [what, f] of edits) expect(() => decodeTree(edit(f)), what).toThrow(TreeCorruptError);
    for (const doc of ['', 'nope', '{}', '{"nodes":{}}', 'null', '[]']) expect(() => decodeTree(Buffer.from(doc)), doc).toThrow(TreeCorruptError);
    expect(decodeTree(Buffer.from('{"nodes":[]}'))).toEqual([]);
  });

  it('exactUtf8 accepts exactly the byte strings that round-trip', () => {
    expect(exactUtf8(Buffer.from('plain ascii'))).toBe('plain ascii');
    expect(exactUtf8(Buffer.from('ünïcødé 😀'))).toBe('ünïcødé 😀');
    for (const b of [[0xff], [0xc3], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xef, 0xbb]]) {
      expect(exactUtf8(Buffer.from(b)), Buffer.from(b).toString('hex')).toBeUndefined();
    }
    expect(exactUtf8(Buffer.from([0xef, 0xbf, 0xbd]))).toBe('\ufffd'); // a real U+FFFD is fine
  });
});

// ---------------------------------------------------------------------------
describe('snapshots', () => {
  const snap: SnapshotData = {
    version: 1,
    time: '2026-01-02T03:04:05.678Z',
    hostname: 'host',
    username: 'me',
    uid: 1000,
    gid: 1000,
    paths: ['/home/me'],
    tags: ['daily'],
    tree: 'ef'.repeat(32),
    program_version: 'coffer 0.1.0',
    summary: {
      backup_start: '2026-01-02T03:04:05.678Z',
      backup_end: '2026-01-02T03:04:06.000Z',
      files_new: 1,
      files_changed: 0,
      files_unmodified: 0,
      dirs_new: 1,
      dirs_changed: 0,
      dirs_unmodified: 0,
      data_blobs: 1,
      tree_blobs: 1,
      data_added: 10,
      data_added_packed: 60,
      total_files_processed: 1,
      total_bytes_processed: 10,
      errors: 0,
    },
  };

  it('accepts a valid snapshot (also through the small-file encoding)', () => {
    expect(validateSnapshot(snap)).toBe(snap);
    expect(validateSnapshot(decodeJsonFile(keys.metaKey, 'snapshot', encodeJsonFile(keys.metaKey, 'snapshot', snap)))).toEqual(snap);
    expect(validateSnapshot({ ...snap, parent: '12'.repeat(32), tags: [] })).toBeTruthy();
  });

  it('rejects invalid snapshots', () => {
    const bad: unknown[] = [
      null,
      {},
      { ...snap, version: 2 },
      { ...snap, time: 'yesterday' },
      { ...snap, time: undefined },
      { ...snap, hostname: 5 },
      { ...snap, paths: '/home/me' },
      { ...snap, paths: [1] },
      { ...snap, tags: [null] },
      { ...snap, tree: 'EF'.repeat(32) },
      { ...snap, tree: 'ef'.repeat(31) },
      { ...snap, tree: undefined },
    ];
    for (const b of bad) expect(() => validateSnapshot(b), JSON.stringify(b)?.slice(0, 60)).toThrow(RangeError);
  });
});
