/**
 * Repository lifecycle through the real CLI: forget policies, prune (plan,
 * repack, crash safety under SIGKILL at each step), locks (stale, live,
 * crashed holders, refresh), concurrent backups, resumed backups, check
 * subsets and repair index. After every change: `check --read-data` passes
 * and the remaining snapshots restore bit-exact.
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, cofferSpawn, scratch } from './helpers.js';
import { compareScans, key, removeTree, scanTree, subScan, type Scan } from './tree-fixture.js';
import { initRepository, openRepository } from '../dist/src/index.js';
import { lockRepository, writeLockFile } from '../dist/src/repo/lock.js';

const PASSWORD = 'lifecycle and its discontents';

let dir: string;
let env: Record<string, string>;

function envFor(repo: string): Record<string, string> {
  return { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(dir, 'cache') };
}

function ok(args: string[], e = env) {
  const r = coffer(args, e);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  return r;
}

function lastJson(stdout: string) {
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

function snapshotIds(e = env): string[] {
  return JSON.parse(ok(['snapshots', '--json'], e).stdout).map((s: { id: string }) => s.id);
}

function backup(src: string, extra: string[] = [], e = env): { id: string; dataAdded: number } {
  const s = lastJson(ok(['backup', '--json', ...extra, src], e).stdout);
  return { id: s.snapshot_id, dataAdded: s.data_added };
}

function expectCheck(e = env, readData = true): void {
  const r = coffer(['check', ...(readData ? ['--read-data'] : [])], e);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

async function expectRestores(snapshot: string, expected: Scan, src: string, e = env): Promise<void> {
  const target = path.join(dir, `restore-${randomBytes(4).toString('hex')}`);
  ok(['restore', snapshot, '--target', target], e);
  const got = subScan(await scanTree(target), key(src.slice(1)));
  expect(compareScans(expected, got)).toEqual([]);
  rmSync(target, { recursive: true, force: true });
}

function files(repo: string, type: 'data' | 'index' | 'locks' | 'snapshots'): string[] {
  const root = path.join(repo, type);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (/^[0-9a-f]{64}$/.test(e.name)) out.push(e.name);
    }
  };
  walk(root);
  return out.sort();
}

function packBytes(repo: string): number {
  let n = 0;
  const data = path.join(repo, 'data');
  for (const d of readdirSync(data)) for (const f of readdirSync(path.join(data, d))) n += statSync(path.join(data, d, f)).size;
  return n;
}

function writeFiles(d: string, names: string[], size: number): void {
  mkdirSync(d, { recursive: true });
  for (const n of names) writeFileSync(path.join(d, n), randomBytes(size));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spawns coffer and SIGKILLs it once `when()` holds (or its stderr matches). */
async function killWhen(args: string[], e: Record<string, string>, when: (stderr: string) => boolean): Promise<{ killed: boolean; stderr: string }> {
  const child = cofferSpawn(args, e);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  while (!done) {
    if (when(stderr)) {
      child.kill('SIGKILL');
      break;
    }
    if (Date.now() - t0 > 30_000) {
      child.kill('SIGKILL');
      throw new Error(`coffer ${args.join(' ')} did not reach the kill point: ${stderr}`);
    }
    await sleep(2);
  }
  const r = await exited;
  return { killed: r.signal === 'SIGKILL', stderr };
}

beforeAll(() => {
  ({ dir } = scratch('coffer-life-'));
});

afterAll(() => {
  if (dir) removeTree(dir);
});

describe('forget and prune', () => {
  let repo: string;
  let src: string;
  const ids: string[] = [];
  let scan3: Scan;

  beforeAll(async () => {
    repo = path.join(dir, 'repo-fp');
    src = path.join(dir, 'src-fp');
    env = envFor(repo);
    ok(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K']);
    writeFiles(src, ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'], 200_000);
    ids.push(backup(src, ['--tag', 'first']).id);
    for (const n of ['a', 'b', 'c', 'd']) rmSync(path.join(src, n));
    writeFiles(src, ['i', 'j'], 150_000);
    ids.push(backup(src).id);
    writeFileSync(path.join(src, 'e'), randomBytes(120_000));
    ids.push(backup(src, ['--tag', 'keepme']).id);
    scan3 = await scanTree(src);
    ids.push(backup(src).id);
  });

  it('forget --dry-run shows what would be kept and why, and changes nothing', () => {
    const r = lastJson(ok(['forget', '--keep-last', '2', '--dry-run', '--json']).stdout);
    expect(r.dry_run).toBe(true);
    expect(r.groups).toHaveLength(1);
    expect(r.groups[0].keep.map((k: { id: string }) => k.id)).toEqual([ids[3], ids[2]]);
    expect(r.groups[0].keep[0].reasons).toEqual(['last snapshot']);
    expect(r.groups[0].remove.map((k: { id: string }) => k.id).sort()).toEqual([ids[0], ids[1]].sort());
    expect(snapshotIds()).toHaveLength(4);
    const human = ok(['forget', '--keep-last', '2', '--dry-run']).stdout;
    expect(human).toMatch(/would remove/);
    expect(human).toMatch(/2 snapshots kept, 2 would be removed/);
  });

  it('forget with a policy removes the rest; keep-tag keeps tagged snapshots', () => {
    const r = lastJson(ok(['forget', '--keep-last', '1', '--keep-tag', 'keepme', '--json']).stdout);
    const kept = r.groups[0].keep;
    expect(kept.map((k: { id: string }) => k.id)).toEqual([ids[3], ids[2]]);
    expect(kept[1].reasons).toEqual(['has tags [keepme]']);
    expect(snapshotIds().sort()).toEqual([ids[2], ids[3]].sort());
    expect(files(repo, 'locks')).toEqual([]);
  });

  it('prune --dry-run prints the plan and changes nothing', () => {
    const before = files(repo, 'data');
    const indexBefore = files(repo, 'index');
    const plan = lastJson(ok(['prune', '--dry-run', '--json']).stdout);
    expect(plan.message_type).toBe('prune_plan');
    // The first backup's pack holds a, b, c, d, which no remaining snapshot uses.
    expect(plan.repack.packs + plan.remove.packs).toBeGreaterThanOrEqual(1);
    expect(plan.freed_bytes).toBeGreaterThan(600_000);
    expect(files(repo, 'data')).toEqual(before);
    expect(files(repo, 'index')).toEqual(indexBefore);
    expect(ok(['prune', '--dry-run']).stdout).toMatch(/packs to repack: +\d+/);
  });

  it('prune frees the space; check --read-data passes; snapshots restore bit-exact', async () => {
    const before = packBytes(repo);
    const plan = lastJson(ok(['prune', '--dry-run', '--json']).stdout);
    ok(['prune']);
    const after = packBytes(repo);
    expect(before - after).toBeGreaterThan(plan.freed_bytes * 0.9);
    // Nothing is left to do.
    const again = lastJson(ok(['prune', '--dry-run', '--json']).stdout);
    expect([again.repack.packs, again.remove.packs, again.unindexed.packs]).toEqual([0, 0, 0]);
    expectCheck();
    await expectRestores(ids[2], scan3, src);
    await expectRestores(ids[3], scan3, src);
    expect(files(repo, 'locks')).toEqual([]);
  });

  it('prune --max-unused 0% repacks every partly used pack', () => {
    // Remove one more file's data: its pack becomes partly used.
    rmSync(path.join(src, 'f'));
    const id5 = backup(src).id;
    ok(['forget', ids[2], ids[3]]);
    expect(snapshotIds()).toEqual([id5]);
    const lax = lastJson(ok(['prune', '--dry-run', '--json', '--max-unused', 'unlimited']).stdout);
    expect(lax.repack.packs).toBe(0);
    const strict = lastJson(ok(['prune', '--dry-run', '--json', '--max-unused', '0%']).stdout);
    expect(strict.repack.packs).toBeGreaterThanOrEqual(1);
    ok(['prune', '--max-unused', '0%']);
    const none = lastJson(ok(['prune', '--dry-run', '--json', '--max-unused', '0%']).stdout);
    expect([none.repack.packs, none.remove.packs, none.unused_after]).toEqual([0, 0, 0]);
    expectCheck();
    ids.push(id5);
  });

  it('forget --prune in one go; explicit ids; bad arguments are usage errors', async () => {
    writeFileSync(path.join(src, 'tmp-big'), randomBytes(500_000));
    const big = backup(src).id;
    rmSync(path.join(src, 'tmp-big'));
    const scan = await scanTree(src);
    const last = backup(src).id;
    const before = packBytes(repo);
    ok(['forget', big.slice(0, 10), '--prune']);
    expect(snapshotIds().sort()).toEqual([ids[4], last].sort());
    expect(before - packBytes(repo)).toBeGreaterThan(400_000);
    expectCheck();
    await expectRestores(last, scan, src);

    for (const args of [
      ['forget', '--keep-last', '1', last],
      ['forget', '--keep-daily', 'x'],
      ['forget', '--keep-within', '3w'],
      ['forget', '--keep-last', '1', '--group-by', 'color'],
      ['forget', 'not-hex'],
      ['prune', '--max-unused', 'lots'],
      ['check', '--read-data-subset', '3/2'],
      ['check', '--read-data-subset', '0%'],
    ]) {
      const r = coffer(args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^coffer: /);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    expect(coffer(['forget', 'abcdef0123'], env).code).toBe(14);
    expect(ok(['forget']).stdout).toMatch(/no policy/);
  });
});

describe('prune killed with SIGKILL', () => {
  it('leaves a valid repository at every step, and a rerun finishes the job', async () => {
    const repo = path.join(dir, 'repo-kill');
    const src = path.join(dir, 'src-kill');
    const e = envFor(repo);
    ok(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K'], e);
    const keep: { id: string; scan: Scan }[] = [];
    // (test/property.test.ts also crashes a prune at every single storage operation, in-process.)
    for (const phase of ['indexed', 'packs-removing']) {
      // Garbage to collect: a pack made partly unused and a whole snapshot's data.
      writeFiles(src, ['x', 'y', 'z'], 150_000);
      const old = backup(src, [], e).id;
      rmSync(path.join(src, 'x'));
      const cur = backup(src, [], e).id;
      keep.push({ id: cur, scan: await scanTree(src) });
      ok(['forget', old], e);
      const r = await killWhen(['prune', '--max-unused', '0%'], { ...e, COFFER_TEST_PRUNE_STALL: phase }, (s) => s.includes(`stalled at ${phase}`));
      expect(r.killed, `${phase}: ${r.stderr}`).toBe(true);
      // The dead prune's exclusive lock does not block check (its pid is gone).
      expectCheck(e, false);
      await expectRestores(cur, keep.at(-1)!.scan, src, e);
    }
    ok(['prune', '--max-unused', '0%'], e);
    const none = lastJson(ok(['prune', '--dry-run', '--json', '--max-unused', '0%'], e).stdout);
    expect([none.repack.packs, none.remove.packs, none.unindexed.packs]).toEqual([0, 0, 0]);
    expectCheck(e);
    // Every snapshot's files were rewritten each round, so only the last restore equals the current tree;
    // the earlier snapshots must still restore without errors.
    for (const k of keep.slice(0, -1)) ok(['restore', k.id, '--target', path.join(dir, `r-${k.id.slice(0, 8)}`)], e);
    await expectRestores(keep.at(-1)!.id, keep.at(-1)!.scan, src, e);
  });
});

describe('locks', () => {
  let repo: string;
  let src: string;
  let e: Record<string, string>;

  beforeAll(() => {
    repo = path.join(dir, 'repo-lock');
    src = path.join(dir, 'src-lock');
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
    expect(coffer(['restore', 'latest', '--target', path.join(dir, 'nope')], e).code).toBe(11);
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
    const big = path.join(dir, 'src-lock-big');
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
      const lock = await lockRepository(r, { exclusive: false, refreshMs: 40 });
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
});

describe('concurrent backups', () => {
  it('two backups at once both succeed; prune then keeps one copy; both restore', async () => {
    const repo = path.join(dir, 'repo-conc');
    const src = path.join(dir, 'src-conc');
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
    const before = packBytes(repo);
    const plan = lastJson(ok(["prune", "--dry-run", "--json"], e).stdout);
    console.info(`concurrent: prune plan keeps ${plan.keep.packs}, removes ${plan.remove.packs}, repacks ${plan.repack.packs} packs`);
    // Later backups dedupe against both.
    expect(backup(src, ['--host', 'host-c'], e).dataAdded).toBeLessThan(10_000);
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
    const repo = path.join(dir, 'repo-resume');
    const src = path.join(dir, 'src-resume');
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
    // The blobs of at least those 32 packs of ~64 KiB each were not uploaded again.
    expect(s.dataAdded).toBeLessThan(total - indexed * 32 * 60_000);
    console.info(`resume: ${indexed} index files survived the kill; the next backup added ${s.dataAdded} of ${total} bytes`);
    expectCheck(e);
    await expectRestores(s.id, await scanTree(src), src, e);
    // Packs written after the last index file are garbage that prune removes.
    ok(['prune'], e);
    const none = lastJson(ok(['prune', '--dry-run', '--json'], e).stdout);
    expect(none.unindexed.packs).toBe(0);
  });
});

describe('check subsets and repair index', () => {
  let repo: string;
  let e: Record<string, string>;

  beforeAll(() => {
    repo = path.join(dir, 'repo-check');
    const src = path.join(dir, 'src-check');
    e = envFor(repo);
    ok(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K'], e);
    for (let i = 0; i < 4; i++) {
      writeFiles(src, [`f${i}`], 300_000);
      backup(src, [], e);
    }
  });

  it('--read-data-subset n/t covers every pack once over t runs; x% reads a share; --json', () => {
    const packs = files(repo, 'data').length;
    let read = 0;
    for (const n of [1, 2]) {
      const r = lastJson(ok(['check', '--read-data-subset', `${n}/2`, '--json'], e).stdout);
      expect(r.problems).toEqual([]);
      expect(r.read_data_subset).toBe(`${n}/2`);
      read += r.packsRead;
    }
    expect(read).toBe(packs);
    expect(ok(['check', '--read-data-subset', '50%'], e).stdout).toMatch(/data of \d+ read/);
  });

  it('finds a damaged pack in the subset that holds it, and with --read-data', () => {
    const copy = path.join(dir, 'repo-check-damaged');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(dir, 'cache-damaged') };
    // The largest pack holds data blobs (a damaged tree would fail even the structural check).
    const size = (n: string) => statSync(path.join(copy, 'data', n.slice(0, 2), n)).size;
    const victim = files(copy, 'data').sort((a, b) => size(b) - size(a))[0];
    const p = path.join(copy, 'data', victim.slice(0, 2), victim);
    const fd = openSync(p, 'r+');
    writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 100);
    closeSync(fd);
    expect(coffer(['check'], ec).code).toBe(0); // headers and sizes are intact
    const t = 2;
    const n = (Number.parseInt(victim.slice(0, 8), 16) % t) + 1;
    const hit = coffer(['check', '--read-data-subset', `${n}/${t}`, '--json'], ec);
    expect(hit.code).toBe(13);
    expect(lastJson(hit.stdout).problems.some((q: { object: string }) => q.object === `data/${victim}`)).toBe(true);
    const other = (n % t) + 1;
    expect(coffer(['check', '--read-data-subset', `${other}/${t}`], ec).code).toBe(0);
    const full = coffer(['check', '--read-data'], ec);
    expect(full.code).toBe(13);
    expect(full.stderr).toMatch(new RegExp(`error: data/${victim}: `));
  });

  it('check names a pack that is missing or has the wrong size', () => {
    const copy = path.join(dir, 'repo-check-missing');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(dir, 'cache-missing') };
    const [a, b] = files(copy, 'data');
    rmSync(path.join(copy, 'data', a.slice(0, 2), a));
    writeFileSync(path.join(copy, 'data', b.slice(0, 2), b), randomBytes(100), { flag: 'a' });
    const r = coffer(['check', '--json'], ec);
    expect(r.code).toBe(13);
    const problems = lastJson(r.stdout).problems as { object: string; message: string }[];
    expect(problems.find((q) => q.object === `data/${a}`)?.message).toMatch(/missing/);
    expect(problems.find((q) => q.object === `data/${b}`)?.message).toMatch(/bytes, the index says/);
    // prune refuses to run when snapshots need data that is gone.
    const p = coffer(['prune'], ec);
    expect(p.code).toBe(13);
    expect(p.stderr).toMatch(/prune refuses/);
  });

  it('repair index rebuilds damaged or lost index files from the pack headers', async () => {
    const copy = path.join(dir, 'repo-repair');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(dir, 'cache-repair') };
    const idx = files(copy, 'index');
    expect(idx.length).toBeGreaterThanOrEqual(2);
    // One index file lost, one damaged.
    rmSync(path.join(copy, 'index', idx[0]));
    writeFileSync(path.join(copy, 'index', idx[1]), randomBytes(300));
    expect(coffer(['check'], ec).code).toBe(13);
    const r = lastJson(ok(['repair', 'index', '--json'], ec).stdout);
    expect(r.packs).toBe(files(copy, 'data').length);
    expect(r.damaged).toEqual([]);
    expect(files(copy, 'index')).toHaveLength(r.new_index_files);
    expectCheck(ec);
    expect(files(copy, 'locks')).toEqual([]);
  });

  it('repair snapshots keeps what is intact, prune then drops the lost pack, check passes', async () => {
    const copy = path.join(dir, 'repo-repair-snap');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(dir, 'cache-repair-snap') };
    const before = snapshotIds(ec);
    // Lose the largest data pack (one file's content).
    const size = (n: string) => statSync(path.join(copy, 'data', n.slice(0, 2), n)).size;
    const victim = files(copy, 'data').sort((a, b) => size(b) - size(a))[0];
    rmSync(path.join(copy, 'data', victim.slice(0, 2), victim));
    expect(coffer(['check'], ec).code).toBe(13);
    const dry = lastJson(ok(['repair', 'snapshots', '--dry-run', '--json'], ec).stdout);
    const hurt = dry.snapshots.filter((x: { damaged: unknown[] }) => x.damaged.length);
    expect(hurt.length).toBeGreaterThanOrEqual(1);
    expect(hurt[0].damaged[0]).toMatchObject({ kind: 'file', message: expect.stringMatching(/data blobs missing/) });
    expect(snapshotIds(ec)).toEqual(before);
    const r = lastJson(ok(['repair', 'snapshots', '--forget', '--json'], ec).stdout);
    const repaired = r.snapshots.filter((x: { repaired_id: string | null }) => x.repaired_id).map((x: { repaired_id: string }) => x.repaired_id);
    expect(repaired).toHaveLength(hurt.length);
    const now = JSON.parse(ok(['snapshots', '--json'], ec).stdout) as { id: string; tags: string[] }[];
    expect(now).toHaveLength(before.length);
    expect(now.filter((x) => x.tags.includes('repaired')).map((x) => x.id).sort()).toEqual([...repaired].sort());
    // The index still names the lost pack until prune drops it.
    ok(['prune'], ec);
    expectCheck(ec);
    for (const id of repaired) ok(['restore', id, '--target', path.join(dir, `rr-${id.slice(0, 8)}`)], ec);
    expect(lastJson(ok(['repair', 'snapshots', '--json'], ec).stdout).snapshots.every((x: { damaged: unknown[] }) => x.damaged.length === 0)).toBe(true);
  });

  it('a damaged snapshot file: prune refuses, forget policies leave it alone, forget ID removes it', () => {
    const copy = path.join(dir, 'repo-bad-snap');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(dir, 'cache-bad-snap') };
    const [bad, ...rest] = files(copy, 'snapshots');
    writeFileSync(path.join(copy, 'snapshots', bad), randomBytes(200));
    const p = coffer(['prune'], ec);
    expect(p.code).toBe(13);
    const f = coffer(['forget', '--keep-last', '100'], ec);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stderr).toMatch(new RegExp(`warning: snapshots/${bad} is damaged`));
    expect(files(copy, 'snapshots')).toHaveLength(rest.length + 1);
    ok(['forget', bad.slice(0, 12)], ec);
    expect(files(copy, 'snapshots')).toEqual(rest);
    ok(['prune'], ec);
    expectCheck(ec);
  });
});
