/**
 * Property-style test over seeded random histories (no extra dependency: a
 * small PRNG): random changes to a source tree, backups, forgets, prunes, and
 * "crashes" — the storage stops accepting anything after a random number of
 * operations, which is what a SIGKILL looks like to the repository (every
 * object is written atomically). After every step, through clean storage,
 * `check --read-data` finds no problem; at the end every snapshot that was
 * reported complete restores bit-exact.
 */
import { cpSync, mkdirSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupFromTwoSessions, scratch } from './helpers.js';
import { compareScans, key, removeTree, scanTree, subScan, type Scan } from './tree-fixture.js';
import { Repository, LocalBackend, backup, restore } from '../dist/src/index.js';
import { StorageError, type Backend } from '../dist/src/storage/backend.js';
import { planPrune, executePrune } from '../dist/src/lifecycle/prune.js';
import { check } from '../dist/src/checker/checker.js';
import { prng } from '../dist/src/storage/faulty.js';

const PW = 'property';
let dir: string;

beforeAll(() => {
  ({ dir } = scratch('coffer-prop-'));
});
afterAll(() => {
  if (dir) removeTree(dir);
});


/** Storage that "dies" after `budget` operations: everything after fails, as if the process had been killed. */
function crashing(inner: Backend): Backend & { arm: (budget: number) => void; ops: () => number } {
  let left = Infinity;
  let ops = 0;
  const gate = () => {
    ops++;
    if (left-- <= 0) throw new StorageError('io', 'simulated crash');
  };
  return {
    location: inner.location,
    arm: (budget) => {
      left = budget;
      ops = 0;
    },
    ops: () => ops,
    async read(h, r) {
      gate();
      return inner.read(h, r);
    },
    async stat(h) {
      gate();
      return inner.stat(h);
    },
    async list(t) {
      gate();
      return inner.list(t);
    },
    create: () => inner.create(),
    async write(h, d) {
      gate();
      return inner.write(h, d);
    },
    async remove(h) {
      gate();
      return inner.remove(h);
    },
  };
}

function bytesFrom(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((rand() * 2 ** 32) >>> 0, Math.min(i, n - 4));
  return b;
}

function mutate(rand: () => number, src: string): void {
  const actions = 1 + Math.floor(rand() * 3);
  for (let i = 0; i < actions; i++) {
    const names = readdirSync(src).filter((n) => n.startsWith('f'));
    const r = rand();
    if (r < 0.5 || names.length < 2) {
      const sub = rand() < 0.5 ? src : path.join(src, 'sub');
      mkdirSync(sub, { recursive: true });
      writeFileSync(path.join(sub, `f${Math.floor(rand() * 1e6)}`), bytesFrom(rand, 1000 + Math.floor(rand() * 60_000)));
    } else if (r < 0.8) {
      writeFileSync(path.join(src, names[Math.floor(rand() * names.length)]), bytesFrom(rand, 1000 + Math.floor(rand() * 40_000)));
    } else {
      rmSync(path.join(src, names[Math.floor(rand() * names.length)]));
    }
  }
}

const small = { packSize: 64 * 1024, chunker: { minSize: 8 * 1024, avgSize: 16 * 1024, maxSize: 32 * 1024 } };

describe('random histories with crashes', () => {
  for (const seed of [11, 13]) {
    it(`seed ${seed}`, async () => {
      const rand = prng(seed);
      const repoDir = path.join(dir, `repo-${seed}`);
      const src = path.join(dir, `src-${seed}`);
      mkdirSync(src, { recursive: true });
      await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
      const open = (b: Backend = new LocalBackend(repoDir)) => Repository.open(b, Buffer.from(PW), { noCache: true, threads: 1 });
      const model = new Map<string, Scan>();
      const log: string[] = [];
      for (let step = 0; step < 7; step++) {
        const r = rand();
        const crashAt = rand() < 0.5 ? Math.floor(rand() * 60) : Infinity;
        const storage = crashing(new LocalBackend(repoDir));
        const repo = await open(storage);
        // Counted from here: the crash hits the operation itself.
        storage.arm(crashAt);
        try {
          if (r < 0.5 || model.size === 0) {
            mutate(rand, src);
            const scan = await scanTree(src);
            const res = await backup(repo, { paths: [src] }).catch((e) => e as Error);
            if (res instanceof Error) log.push(`${step}: backup crashed at op ${crashAt}`);
            else {
              model.set(res.snapshot.id, scan);
              log.push(`${step}: backup ${res.snapshot.id.slice(0, 6)}`);
            }
          } else if (r < 0.75) {
            const ids = [...model.keys()];
            const victim = ids[Math.floor(rand() * ids.length)];
            const ok = await repo.backend.remove({ type: 'snapshots', name: victim }).then(
              () => true,
              () => false,
            );
            if (ok) model.delete(victim);
            log.push(`${step}: forget ${victim.slice(0, 6)} ${ok ? '' : 'crashed'}`);
          } else {
            const res = await planPrune(repo, { maxUnused: { percent: rand() < 0.5 ? 0 : 5 } })
              .then((plan) => executePrune(repo, plan))
              .catch((e) => e as Error);
            log.push(`${step}: prune ${res instanceof Error ? `crashed at op ${crashAt}` : `done (${storage.ops()} ops)`}`);
          }
        } finally {
          await repo.close();
        }
        // The repository is valid after every step, crash or not.
        const clean = await open();
        try {
          const c = await check(clean, { readData: step % 2 === 1 });
          expect(c.problems, log.join('\n')).toEqual([]);
          const ids = new Set((await clean.listSnapshots()).map((s) => s.id));
          for (const id of model.keys()) expect(ids.has(id), `${id} missing\n${log.join('\n')}`).toBe(true);
        } finally {
          await clean.close();
        }
      }
      console.info(`seed ${seed}: ${log.join('; ')}`);
      // A final prune without crash leaves nothing unreferenced; every reported snapshot restores bit-exact.
      const clean = await open();
      try {
        await executePrune(clean, await planPrune(clean, { maxUnused: { percent: 0 } }));
        const again = await planPrune(clean, { maxUnused: { percent: 0 } });
        clean.cache.endUsedSet();
        expect([again.remove.length, again.repack.length, again.unindexed.length], log.join('\n')).toEqual([0, 0, 0]);
        expect((await check(clean, { readData: true })).problems).toEqual([]);
        for (const s of await clean.listSnapshots()) {
          const want = model.get(s.id);
          if (!want) continue;
          const target = path.join(dir, `r-${seed}-${s.id.slice(0, 8)}`);
          const rr = await restore(clean, s, { target });
          expect(rr.errors).toBe(0);
          expect(compareScans(want, subScan(await scanTree(target), key(src.slice(1)))), `${s.id}\n${log.join('\n')}`).toEqual([]);
          rmSync(target, { recursive: true, force: true });
        }
      } finally {
        await clean.close();
      }
    });
  }
});

describe('prune crashing at every single storage operation', () => {
  it('leaves a valid repository whatever operation it dies at, and a rerun completes', async () => {
    const rand = prng(99);
    const base = path.join(dir, 'exhaustive-base');
    const src = path.join(dir, 'exhaustive-src');
    mkdirSync(src, { recursive: true });
    await Repository.init(new LocalBackend(base), Buffer.from(PW), small);
    const open = (d: string, b: Backend = new LocalBackend(d)) => Repository.open(b, Buffer.from(PW), { noCache: true, threads: 1 });
    // History: three backups with changes; forget the middle one, so packs are unused or partly used.
    const ids: string[] = [];
    let lastScan!: Scan;
    {
      const repo = await open(base);
      try {
        for (let i = 0; i < 3; i++) {
          mutate(rand, src);
          mutate(rand, src);
          ids.push((await backup(repo, { paths: [src] })).snapshot.id);
        }
        lastScan = await scanTree(src);
        await repo.backend.remove({ type: 'snapshots', name: ids[1] });
      } finally {
        await repo.close();
      }
    }
    // How many operations a full prune takes.
    const probeDir = path.join(dir, 'exhaustive-probe');
    cpSync(base, probeDir, { recursive: true });
    const probe = crashing(new LocalBackend(probeDir));
    {
      const repo = await open(probeDir, probe);
      try {
        probe.arm(Infinity);
        const plan = await planPrune(repo, { maxUnused: { percent: 0 } });
        expect(plan.remove.length + plan.repack.length).toBeGreaterThan(0);
        await executePrune(repo, plan);
      } finally {
        await repo.close();
      }
    }
    const total = probe.ops();
    expect(total).toBeGreaterThan(10);
    for (let k = 0; k < total; k++) {
      const d = path.join(dir, `exhaustive-${k}`);
      cpSync(base, d, { recursive: true });
      const storage = crashing(new LocalBackend(d));
      const repo = await open(d, storage);
      storage.arm(k);
      const err = await planPrune(repo, { maxUnused: { percent: 0 } })
        .then((plan) => executePrune(repo, plan))
        .then(
          () => undefined,
          (e) => e as Error,
        );
      await repo.close();
      expect(err, `crash at op ${k} of ${total}`).toBeInstanceOf(Error);
      const clean = await open(d);
      try {
        const c = await check(clean, { readData: k % 6 === 0 });
        expect(c.problems, `crash at op ${k} of ${total}`).toEqual([]);
        expect((await clean.listSnapshots()).map((s) => s.id).sort()).toEqual([ids[0], ids[2]].sort());
        if (k % 10 === 0 || k === total - 1) {
          // The rerun finishes the job and the newest snapshot restores bit-exact.
          await executePrune(clean, await planPrune(clean, { maxUnused: { percent: 0 } }));
          const again = await planPrune(clean, { maxUnused: { percent: 0 } });
          clean.cache.endUsedSet();
          expect([again.remove.length, again.repack.length, again.unindexed.length]).toEqual([0, 0, 0]);
          const target = path.join(dir, `exhaustive-r-${k}`);
          const [snap] = (await clean.listSnapshots()).filter((s) => s.id === ids[2]);
          expect((await restore(clean, snap, { target })).errors).toBe(0);
          expect(compareScans(lastScan, subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
        }
      } finally {
        await clean.close();
      }
      rmSync(d, { recursive: true, force: true });
    }
    console.info(`prune crashed at each of its ${total} storage operations; the repository stayed valid every time`);
  });
});

describe('duplicates from concurrent sessions', () => {
  it('two sessions that stored the same data: prune deletes one copy instead of rewriting both', async () => {
    const repoDir = path.join(dir, 'dups');
    const src = path.join(dir, 'dups-src');
    mkdirSync(src, { recursive: true });
    const rand = prng(5);
    for (let i = 0; i < 6; i++) writeFileSync(path.join(src, `f${i}`), bytesFrom(rand, 150_000));
    await Repository.init(new LocalBackend(repoDir), Buffer.from(PW), small);
    const open = () => Repository.open(new LocalBackend(repoDir), Buffer.from(PW), { noCache: true, threads: 1 });
    await backupFromTwoSessions(repoDir, src, PW);
    const repo = await open();
    try {
      const plan = await planPrune(repo);
      const packs = plan.keep.length + plan.remove.length + plan.repack.length;
      expect(plan.repack).toEqual([]);
      expect(plan.remove.length).toBeGreaterThanOrEqual(Math.floor(packs / 2) - 1);
      await executePrune(repo, plan);
      expect((await check(repo, { readData: true })).problems).toEqual([]);
      expect((await repo.listSnapshots()).length).toBe(2);
    } finally {
      await repo.close();
    }
  });
});
