/**
 * Repository lifecycle through the real CLI, part 2: locks (stale, damaged,
 * live, crashed holders, refresh), concurrent backups, resumed backups.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, cofferSpawn } from './helpers.js';
import { scanTree } from './tree-fixture.js';
import { initRepository, openRepository } from '../dist/src/index.js';
import { lockRepository, writeLockFile } from '../dist/src/repo/lock.js';
import { PASSWORD, state, setUp, envFor, ok, lastJson, snapshotIds, backup, expectCheck, expectRestores, files, packBytes, writeFiles, sleep, killWhen } from './lifecycle-helpers.js';

let cleanup: () => void;
beforeAll(() => {
  cleanup = setUp('coffer-life-locks-');
});
afterAll(() => cleanup?.());

describe('locks', () => {
  let repo: string;
  let src: string;
  let e: Record<string, string>;

  beforeAll(() => {
    repo = path.join(state.dir, 'repo-lock');
    src = path.join(state.dir, 'src-lock');
    e = envFor(repo);
    ok(['init'], e);
    writeFiles(src, ['a', 'b'], 100_000);
  });

  async function addLock(data: { pid: number; exclusive: boolean; hostname?: string; ageMs?: number }): Promise<string> {
    const r = await openRepository(repo, PASSWORD, { noCache: true });
    try {
      return await writeLockFile(r, {
        version: 1,
        time: new Date(Date.now() - (data.ageMs ?? 0)).toISOString(),
        exclusive: data.exclusive,
        hostname: data.hostname ?? os.hostname(),
        username: 'tester',
        pid: data.pid,
      });
    } finally {
      await r.close();
    }
  }

  it('a stale lock (dead pid on this host, or not refreshed for 30 minutes) is removed automatically', async () => {
    const dead = spawnSync(process.execPath, ['-e', '']).pid!;
    await addLock({ pid: dead, exclusive: true });
    await addLock({ pid: 1, exclusive: true, hostname: 'elsewhere', ageMs: 31 * 60_000 });
    expect(files(repo, 'locks')).toHaveLength(2);
    backup(src, [], e);
    expect(files(repo, 'locks')).toEqual([]);
  });

  it('damaged lock files (garbage, empty, truncated) never block and are removed by unlock', async () => {
    const good = await addLock({ pid: process.pid, exclusive: false });
    const stored = readFileSync(path.join(repo, 'locks', good));
    rmSync(path.join(repo, 'locks', good));
    const bad = [randomBytes(300), Buffer.alloc(0), stored.subarray(0, 50)];
    for (const b of bad) writeFileSync(path.join(repo, 'locks', createHash('sha256').update(b).update(randomBytes(8)).digest('hex')), b);
    backup(src, [], e);
    const prune = coffer(['prune'], e);
    expect(prune.code, prune.stderr).toBe(0);
    expect(files(repo, 'locks')).toHaveLength(3);
    expect(ok(['unlock'], e).stdout).toMatch(/3 locks removed/);
    expect(files(repo, 'locks')).toEqual([]);
  });

  it('a live exclusive lock blocks a backup with exit 11, naming host, pid and age', async () => {
    const name = await addLock({ pid: process.pid, exclusive: true });
    const r = coffer(['backup', src], e);
    expect(r.code).toBe(11);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^coffer: repository is locked: an exclusive lock held by pid ${process.pid} on host ${os.hostname()} .*refreshed \\d+s ago`));
    expect(coffer(['check'], e).code).toBe(11);
    expect(coffer(['restore', 'latest', '--target', path.join(state.dir, 'nope')], e).code).toBe(11);
    // A live lock from another host blocks too, until it goes stale.
    expect(ok(['unlock'], e).stdout).toMatch(/no stale locks/);
    expect(files(repo, 'locks')).toEqual([name]);
    expect(ok(['unlock', '--remove-all'], e).stdout).toMatch(/1 lock removed/);
    expect(files(repo, 'locks')).toEqual([]);
  });

  it('a live shared lock lets backups and checks run but blocks prune and forget', async () => {
    await addLock({ pid: process.pid, exclusive: false, hostname: 'other-host' });
    backup(src, [], e);
    expectCheck(e, false);
    const p = coffer(['prune'], e);
    expect(p.code).toBe(11);
    expect(p.stderr).toMatch(/a shared lock held by pid \d+ on host other-host.*needs the repository alone/);
    expect(coffer(['forget', '--keep-last', '1'], e).code).toBe(11);
    // --dry-run only reads: a shared lock is enough.
    ok(['prune', '--dry-run'], e);
    ok(['unlock', '--remove-all'], e);
  });

  it('a SIGKILLed backup does not block the next check or prune', async () => {
    const big = path.join(state.dir, 'src-lock-big');
    writeFiles(big, ['1', '2', '3', '4', '5', '6'], 8 << 20);
    const r = await killWhen(['backup', big], e, () => files(repo, 'locks').length > 0 && files(repo, 'data').length > 2);
    expect(r.killed).toBe(true);
    expect(files(repo, 'locks')).toHaveLength(1);
    expectCheck(e, false);
    const p = coffer(['prune'], e);
    expect(p.code, p.stderr).toBe(0);
    expect(files(repo, 'locks')).toEqual([]);
    expectCheck(e);
    rmSync(big, { recursive: true });
  });

  it('a held lock is refreshed (new file, old one removed) and notices when it is taken away', async () => {
    const r = await openRepository(repo, PASSWORD, { noCache: true });
    try {
      const lock = await lockRepository(r, { exclusive: false, refreshMs: 150 });
      const first = lock.name;
      expect(files(repo, 'locks')).toEqual([first]);
      for (let i = 0; i < 100 && lock.name === first; i++) await sleep(20);
      expect(lock.name).not.toBe(first);
      expect(files(repo, 'locks')).toEqual([lock.name]);
      rmSync(path.join(repo, 'locks', lock.name));
      for (let i = 0; i < 100 && !lock.signal.aborted; i++) await sleep(20);
      expect(lock.signal.aborted).toBe(true);
      expect(() => lock.throwIfLost()).toThrow(/lost the repository lock/);
      await lock.release();
      expect(files(repo, 'locks')).toEqual([]);
    } finally {
      await r.close();
    }
  });

  it('a lock taken away while it is being refreshed is noticed too (the old file is gone when the refresh removes it)', async () => {
    const r = await openRepository(repo, PASSWORD, { noCache: true });
    try {
      const lock = await lockRepository(r, { exclusive: false, refreshMs: 100 });
      const first = lock.name;
      // Fault injection: another process removes our lock file just after the
      // refresh has checked it and while it writes the new one.
      const backend = r.backend as { write: (...a: unknown[]) => Promise<unknown> };
      const write = backend.write.bind(backend);
      let armed = true;
      backend.write = async (h: unknown, ...rest: unknown[]) => {
        if (armed && (h as { type: string }).type === 'locks') {
          armed = false;
          rmSync(path.join(repo, 'locks', first));
        }
        return write(h, ...rest);
      };
      for (let i = 0; i < 100 && !lock.signal.aborted; i++) await sleep(20);
      backend.write = write;
      expect(armed).toBe(false);
      expect(lock.signal.aborted).toBe(true);
      expect(() => lock.throwIfLost()).toThrow(/lost the repository lock \(the lock was removed by another process\)/);
      await lock.release();
      expect(files(repo, 'locks')).toEqual([]);
    } finally {
      await r.close();
    }
  });
});

describe('concurrent backups', () => {
  it('two backups at once both succeed; prune then keeps one copy; both restore', async () => {
    const repo = path.join(state.dir, 'repo-conc');
    const src = path.join(state.dir, 'src-conc');
    const e = envFor(repo);
    ok(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K'], e);
    writeFiles(src, ['1', '2', '3', '4'], 1 << 20);
    const scan = await scanTree(src);
    const run = (host: string) =>
      new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const c = cofferSpawn(['backup', '--json', '--host', host, src], e);
        let out = '';
        let err = '';
        c.stdout.on('data', (d) => (out += d));
        c.stderr.on('data', (d) => (err += d));
        c.on('exit', (code) => resolve({ code, out, err }));
      });
    const [a, b] = await Promise.all([run('host-a'), run('host-b')]);
    expect(a.code, a.err).toBe(0);
    expect(b.code, b.err).toBe(0);
    const ids = [lastJson(a.out).snapshot_id, lastJson(b.out).snapshot_id];
    expect(snapshotIds(e).sort()).toEqual([...ids].sort());
    expectCheck(e);
    const plan = lastJson(ok(["prune", "--dry-run", "--json"], e).stdout);
    console.info(`concurrent: prune plan keeps ${plan.keep.packs}, removes ${plan.remove.packs}, repacks ${plan.repack.packs} packs`);
    // Later backups dedupe against both (they still add a tree pack: measured after it).
    expect(backup(src, ['--host', 'host-c'], e).dataAdded).toBeLessThan(10_000);
    const before = packBytes(repo);
    ok(['prune', '--max-unused', '0%'], e);
    const after = packBytes(repo);
    // If the two ran truly in parallel, each stored the data: prune keeps one copy.
    expect(after).toBeLessThanOrEqual(before);
    expect(after).toBeLessThan(4.4 * (1 << 20));
    expectCheck(e);
    for (const id of ids) await expectRestores(id, scan, src, e);
  });
});

describe('resume after a killed backup', () => {
  it('packs indexed before the kill are reused by the next backup', async () => {
    const repo = path.join(state.dir, 'repo-resume');
    const src = path.join(state.dir, 'src-resume');
    const e = envFor(repo);
    // Small packs, so index files (one per 32 packs) are written early.
    await initRepository(repo, PASSWORD, { packSize: 64 * 1024, chunker: { minSize: 16 * 1024, avgSize: 32 * 1024, maxSize: 64 * 1024 } });
    writeFiles(src, ['1', '2', '3', '4', '5', '6', '7', '8'], 768 << 10);
    const total = 6 << 20;
    // Killed once the first index file (32 packs) is durable, well before the end (about 100 packs).
    const r = await killWhen(['backup', src], e, () => files(repo, 'index').length >= 1);
    expect(r.killed, 'the backup finished before it could be killed').toBe(true);
    expect(snapshotIds(e)).toEqual([]);
    const indexed = files(repo, 'index').length;
    expect(indexed).toBeGreaterThanOrEqual(1);
    const s = backup(src, [], e);
    // The blobs of at least those 32 packs were not uploaded again. A pack
    // closes before a blob would overflow it, so each holds at least one
    // chunk of at least the 16 KiB minimum (random data does not compress).
    expect(s.dataAdded).toBeLessThan(total - indexed * 32 * 16 * 1024);
    console.info(`resume: ${indexed} index files survived the kill; the next backup added ${s.dataAdded} of ${total} bytes`);
    expectCheck(e);
    await expectRestores(s.id, await scanTree(src), src, e);
    // Packs written after the last index file are garbage that prune removes.
    ok(['prune'], e);
    const none = lastJson(ok(['prune', '--dry-run', '--json'], e).stdout);
    expect(none.unindexed.packs).toBe(0);
  });
});

