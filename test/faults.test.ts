/**
 * Fault tolerance with a fault-injecting storage layer (seeded, so every run
 * is the same): transient failures and lost answers are absorbed by the retry
 * layer, backup → forget → prune keeps every remaining snapshot restorable
 * bit-exact; without retries a fault is a clean storage error; corrupted or
 * truncated reads are always detected (check reports them, restore fails or
 * reports errors).
 */
import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomFiles, scratch, SMALL_REPO } from './helpers.js';
import { compareScans, key, removeTree, scanTree, subScan } from './tree-fixture.js';
import { Repository, LocalBackend, backup, restore, isCofferError } from '../dist/src/index.js';
import { RetryBackend } from '../dist/src/storage/retry.js';
import { isTransient } from '../dist/src/storage/backend.js';
import { FaultyBackend } from '../dist/src/storage/faulty.js';
import { StorageError } from '../dist/src/storage/backend.js';
import { planPrune, executePrune } from '../dist/src/lifecycle/prune.js';
import { check } from '../dist/src/checker/checker.js';
import { withLock } from '../dist/src/repo/lock.js';

const PW = Buffer.from('faults everywhere');
let dir: string;

beforeAll(() => {
  ({ dir } = scratch('coffer-faults-'));
});
afterAll(() => {
  if (dir) removeTree(dir);
});

const small = SMALL_REPO;
const tree = randomFiles;

async function openWith(repoDir: string, wrap: (b: LocalBackend) => import('../dist/src/index.js').Backend) {
  return Repository.open(wrap(new LocalBackend(repoDir)), Buffer.from(PW), { noCache: true, threads: 1 });
}

describe('storage faults: retries, full disk, read-only storage', () => {
  it('classifies transient errors', () => {
    expect(isTransient(new StorageError('transient', 'x', undefined, { cause: Object.assign(new Error(), { code: 'ECONNRESET' }) }))).toBe(true);
    for (const k of ['notFound', 'exists', 'noSpace', 'permission', 'io'] as const) expect(isTransient(new StorageError(k, 'x'))).toBe(false);
    expect(isTransient(new Error('plain'))).toBe(false);
  });

  it('does not retry final errors, and gives up after the attempts', async () => {
    const repoDir = path.join(dir, 'final');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    let calls = 0;
    const inner = new LocalBackend(repoDir);
    const counting = Object.assign(Object.create(inner), {
      read: (h: never, r: never) => {
        calls++;
        return inner.read(h, r);
      },
    });
    const rb = new RetryBackend(counting, { retries: 3, sleep: async () => {} });
    await expect(rb.read({ type: 'snapshots', name: '0'.repeat(64) })).rejects.toMatchObject({ kind: 'notFound' });
    expect(calls).toBe(1);
    const always = new RetryBackend(new FaultyBackend(inner, { seed: 1, rate: 1, faults: ['fail'] }), { retries: 3, sleep: async () => {} });
    await expect(always.read({ type: 'config', name: 'config' })).rejects.toMatchObject({ kind: 'transient' });
    const faulty = new FaultyBackend(inner, { seed: 1, rate: 1, faults: ['fail'] });
    const rb2 = new RetryBackend(faulty, { retries: 3, sleep: async () => {} });
    await rb2.read({ type: 'config', name: 'config' }).catch(() => undefined);
    expect(faulty.injected).toHaveLength(4);
  });

  for (const seed of [1, 2, 3]) {
    it(`seed ${seed}: backup, forget, prune through flaky storage; every remaining snapshot restores bit-exact`, async () => {
      const repoDir = path.join(dir, `flaky-${seed}`);
      const src = path.join(dir, `src-${seed}`);
      await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
      let faulty!: FaultyBackend;
      const repo = await openWith(repoDir, (b) => {
        faulty = new FaultyBackend(b, { seed, rate: 0.3, faults: ['fail', 'failAfter', 'delay'], delayMs: 1 });
        return new RetryBackend(faulty, { retries: 11, sleep: async () => {} });
      });
      try {
        tree(src, 6, 40_000);
        const s1 = (await backup(repo, { paths: [src], parent: null })).snapshot;
        writeFileSync(path.join(src, 'f0'), randomBytes(50_000));
        const s2 = (await backup(repo, { paths: [src] })).snapshot;
        const expected = await scanTree(src);
        await repo.backend.remove({ type: 'snapshots', name: s1.id });
        const plan = await planPrune(repo, { maxUnused: { percent: 0 } });
        expect(plan.remove.length + plan.repack.length).toBeGreaterThan(0);
        await executePrune(repo, plan);
        expect(faulty.injected.length).toBeGreaterThanOrEqual(5);
        expect(faulty.injected.some((f) => f.fault === 'fail' || f.fault === 'failAfter')).toBe(true);

        // Verify through clean storage.
        const clean = await openWith(repoDir, (b) => b);
        try {
          const r = await check(clean, { readData: true });
          expect(r.problems).toEqual([]);
          expect(r.unindexedPacks).toBe(0);
          const [only] = await clean.listSnapshots();
          expect(only.id).toBe(s2.id);
          const target = path.join(dir, `restore-${seed}`);
          const rr = await restore(clean, only, { target });
          expect(rr.errors).toBe(0);
          expect(compareScans(expected, subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
        } finally {
          await clean.close();
        }
      } finally {
        await repo.close();
      }
    });
  }

  it('without retries a storage fault is a clean CofferError (no hang), and the repository stays valid', async () => {
    const repoDir = path.join(dir, 'noretry');
    const src = path.join(dir, 'src-noretry');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    // Several packs' worth, so seal tasks queue behind the failing pack write (this used to hang).
    tree(src, 12, 50_000);
    const repo = await openWith(repoDir, (b) => new FaultyBackend(b, { seed: 7, rate: 1, faults: ['fail'], ops: ['write'], types: ['data'] }));
    try {
      const err = await backup(repo, { paths: [src] }).then(
        () => undefined,
        (e) => e,
      );
      expect(isCofferError(err, 'STORAGE')).toBe(true);
      expect(err.exitCode).toBe(1);
    } finally {
      await repo.close();
    }
    expect(readdirSync(path.join(repoDir, 'snapshots'))).toEqual([]);
    const clean = await openWith(repoDir, (b) => b);
    try {
      expect((await check(clean, { readData: true })).problems).toEqual([]);
    } finally {
      await clean.close();
    }
  }, 30_000);

  it('corrupted or truncated reads are detected, never restored as data', async () => {
    const repoDir = path.join(dir, 'corrupt');
    const src = path.join(dir, 'src-corrupt');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    tree(src, 4, 60_000);
    const w = await openWith(repoDir, (b) => b);
    const snap = (await backup(w, { paths: [src] })).snapshot;
    await w.close();
    for (const fault of ['corrupt', 'truncate'] as const) {
      const repo = await openWith(repoDir, (b) => new FaultyBackend(b, { seed: 3, rate: 1, faults: [fault], ops: ['read'], types: ['data'] }));
      try {
        const r = await check(repo, { readData: true });
        expect(r.problems.length, fault).toBeGreaterThan(0);
        const target = path.join(dir, `restore-corrupt-${fault}`);
        const res = await restore(repo, snap, { target }).then(
          (x) => x.errors,
          (e) => (isCofferError(e) ? -1 : Promise.reject(e)),
        );
        expect(res === -1 || res > 0, fault).toBe(true);
      } finally {
        await repo.close();
      }
    }
  });

  it('read-only storage: reading commands run without a lock (and say so), writing ones fail cleanly', async () => {
    const repoDir = path.join(dir, 'readonly');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    const ro = (b: LocalBackend) =>
      Object.assign(Object.create(b), {
        write: async () => {
          throw new StorageError('permission', 'read-only file system');
        },
        remove: async () => {
          throw new StorageError('permission', 'read-only file system');
        },
      });
    const repo = await openWith(repoDir, ro);
    try {
      let warned = 0;
      expect(await withLock(repo, false, async () => 'read', { onReadOnly: () => warned++ })).toBe('read');
      expect(warned).toBe(1);
      await expect(withLock(repo, false, async () => 'read')).rejects.toMatchObject({ code: 'STORAGE' });
      await expect(withLock(repo, true, async () => 'write', { onReadOnly: () => warned++ })).rejects.toMatchObject({ code: 'STORAGE' });
      expect(warned).toBe(1);
    } finally {
      await repo.close();
    }
  });

  it('a disk that fills up mid-backup or mid-prune: exit 15, repository valid, cache consistent', async () => {
    const repoDir = path.join(dir, 'full');
    const src = path.join(dir, 'src-full');
    const cacheDir = path.join(dir, 'cache-full');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    tree(src, 10, 100_000);
    let budget = 400_000;
    const full = (b: LocalBackend) =>
      Object.assign(Object.create(b), {
        write: async (h: { type: string; name: string }, data: Uint8Array | Uint8Array[]) => {
          const n = (data instanceof Uint8Array ? [data] : data).reduce((a, x) => a + x.length, 0);
          if (n > budget) throw new StorageError('noSpace', `no space left on device while writing ${h.type}/${h.name}`);
          budget -= n;
          return b.write(h as never, data);
        },
      });
    const open = (wrap: (b: LocalBackend) => import('../dist/src/index.js').Backend) =>
      Repository.open(wrap(new LocalBackend(repoDir)), Buffer.from(PW), { cacheDir, threads: 1 });
    let repo = await open(full);
    const err = await backup(repo, { paths: [src] }).then(
      () => undefined,
      (e) => e,
    );
    await repo.close();
    expect(isCofferError(err, 'NO_SPACE'), String(err)).toBe(true);
    expect(err.exitCode).toBe(15);
    // Space is freed: the same cache goes on, the next backup completes and restores bit-exact.
    repo = await open((b) => b);
    try {
      expect(await repo.listSnapshots()).toEqual([]);
      expect((await check(repo, { readData: true })).problems).toEqual([]);
      const { snapshot } = await backup(repo, { paths: [src] });
      const target = path.join(dir, 'restore-full');
      expect((await restore(repo, snapshot, { target })).errors).toBe(0);
      expect(compareScans(await scanTree(src), subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
      // Make partly used packs, then run out of space while prune repacks them. Edit the middle of every
      // file: the changed chunks lose their use, their neighbours (often in the same pack) keep it. (Replacing
      // one whole file left its chunks alone in their packs now and then, and prune only deleted.)
      for (let i = 0; i < 10; i++) {
        const f = path.join(src, `f${i}`);
        const bytes = readFileSync(f);
        randomBytes(1000).copy(bytes, 50_000);
        writeFileSync(f, bytes);
      }
      await backup(repo, { paths: [src] });
      await repo.backend.remove({ type: 'snapshots', name: snapshot.id });
    } finally {
      await repo.close();
    }
    budget = 1000;
    repo = await open(full);
    const perr = await planPrune(repo, { maxUnused: { percent: 0 } })
      .then((plan) => {
        expect(plan.repack.length).toBeGreaterThan(0);
        return executePrune(repo, plan);
      })
      .then(
        () => undefined,
        (e) => e,
      );
    await repo.close();
    expect(isCofferError(perr, 'NO_SPACE'), String(perr)).toBe(true);
    repo = await open((b) => b);
    try {
      expect((await check(repo, { readData: true })).problems).toEqual([]);
      await executePrune(repo, await planPrune(repo, { maxUnused: { percent: 0 } }));
      expect((await check(repo, { readData: true })).problems).toEqual([]);
      const [only] = await repo.listSnapshots();
      const target = path.join(dir, 'restore-full-2');
      expect((await restore(repo, only, { target })).errors).toBe(0);
      expect(compareScans(await scanTree(src), subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
    } finally {
      await repo.close();
    }
  }, 60_000);

  it('an index file removed between listing and reading (a concurrent prune) does not fail the open', async () => {
    const repoDir = path.join(dir, 'vanishing-index');
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    const ghost = 'ab'.repeat(32);
    const repo = await openWith(repoDir, (b) =>
      Object.assign(Object.create(b), {
        list: async (t: 'index') => [...(await b.list(t)), ...(t === 'index' ? [{ name: ghost, size: 100 }] : [])],
      }),
    );
    await repo.close();
  });
});
