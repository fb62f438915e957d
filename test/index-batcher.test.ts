/**
 * IndexBatcher (prune and repair index): packs go into index files of about
 * maxBlobs blobs each; every file decodes to its share of the packs, in
 * order; nothing is written for no packs; a storage failure is a CofferError.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scratch } from './helpers.js';
import { LocalBackend } from '../dist/src/storage/local.js';
import { StorageError } from '../dist/src/storage/backend.js';
import { decodeIndexFile, IndexBatcher } from '../dist/src/repo/index-files.js';
import { deriveRepoKeys, newMasterSecret } from '../dist/src/crypto/keys.js';

const { dir, cleanup } = scratch('coffer-index-batcher-');
afterAll(cleanup);

const keys = deriveRepoKeys(newMasterSecret());
const pack = (blobs: number) => ({
  id: randomBytes(32).toString('hex') as never,
  length: 1000 + blobs * 100,
  blobs: Array.from({ length: blobs }, (_, i) => ({ type: 'data' as const, id: randomBytes(32).toString('hex'), offset: i * 100, length: 100, rawLength: 90 })),
});

describe('IndexBatcher', () => {
  it('splits packs into index files of about maxBlobs blobs, in order, each decoding to its packs', async () => {
    const repo = path.join(dir, 'split');
    const backend = new LocalBackend(repo);
    await backend.create();
    const b = new IndexBatcher(backend, keys, 10);
    const packs = [pack(4), pack(4), pack(3), pack(12), pack(1), pack(2)];
    for (const p of packs) await b.add(p);
    // 4+4+3 ≥ 10 → file; 12 ≥ 10 → file; 1+2 waits for flush.
    expect(b.written).toHaveLength(2);
    await b.flush();
    await b.flush(); // nothing left: no empty file
    expect(b.written).toHaveLength(3);
    expect(readdirSync(path.join(repo, 'index')).sort()).toEqual([...b.written].sort());
    const decoded = b.written.map((name) => decodeIndexFile(keys, readFileSync(path.join(repo, 'index', name))));
    expect(decoded.map((d) => d.map((p) => p.id))).toEqual([packs.slice(0, 3).map((p) => p.id), [packs[3].id], packs.slice(4).map((p) => p.id)]);
    expect(decoded.flat()).toEqual(packs);
  });

  it('writes nothing without packs; a failed write is a storage CofferError and keeps the batch', async () => {
    const repo = path.join(dir, 'fail');
    const inner = new LocalBackend(repo);
    await inner.create();
    const empty = new IndexBatcher(inner, keys);
    await empty.flush();
    expect(empty.written).toEqual([]);
    let failing = true;
    const flaky = Object.assign(Object.create(inner), {
      write: async (...a: Parameters<LocalBackend['write']>) => {
        if (failing) throw new StorageError('io', 'disk went away');
        return inner.write(...a);
      },
    }) as LocalBackend;
    const b = new IndexBatcher(flaky, keys, 5);
    await expect(b.add(pack(6))).rejects.toMatchObject({ name: 'CofferError', code: 'STORAGE' });
    failing = false;
    await b.flush();
    expect(b.written).toHaveLength(1);
    expect(decodeIndexFile(keys, readFileSync(path.join(repo, 'index', b.written[0])))).toHaveLength(1);
  });
});
