/**
 * Crash safety through the real CLI: a backup killed with SIGKILL at
 * different moments (during start-up, while the first pack is being written,
 * with several packs written but no index or snapshot yet, during an
 * incremental backup) must leave a repository that lists only complete
 * snapshots, passes `check`, and takes the next backup normally; the final
 * snapshot must restore bit-exact. Leftover temporary files (".tmp-*") must
 * not confuse anything. A killed restore, re-run into the same target, must
 * give the right result too.
 */
import { existsSync, readdirSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, cofferSpawn, scratch } from './helpers.js';
import { buildRandomTree, compareScans, key, removeTree, scanTree, subScan, type Scan } from './tree-fixture.js';

const PASSWORD = 'kill -9 proof';

let dir: string;
let src: string;
let repo: string;
let env: Record<string, string>;

function ok(args: string[]) {
  const r = coffer(args, env);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  return r;
}

/** Pack files and temporary files under data/. */
function dataFiles(): { packs: number; tmp: number } {
  let packs = 0;
  let tmp = 0;
  const data = path.join(repo, 'data');
  for (const d of readdirSync(data)) {
    for (const n of readdirSync(path.join(data, d))) {
      if (n.startsWith('.tmp-')) tmp++;
      else packs++;
    }
  }
  return { packs, tmp };
}

function tmpFilesEverywhere(): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (e.name.startsWith('.tmp-')) out.push(path.relative(repo, path.join(d, e.name)));
    }
  };
  walk(repo);
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface KillResult {
  /** The process was killed by us (and had not finished by itself). */
  killed: boolean;
  code: number | null;
  signal: NodeJS.Signals | null;
  atMs: number;
  packsAtKill: number;
}

/** Starts `coffer ARGS` and sends `sig` as soon as `when()` is true. */
async function runAndKill(args: string[], when: (elapsedMs: number) => boolean, sig: NodeJS.Signals = 'SIGKILL'): Promise<KillResult & { stderr: string }> {
  const child = cofferSpawn(args, env);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  let killed = false;
  let atMs = 0;
  let packsAtKill = 0;
  while (!done) {
    const elapsed = Date.now() - t0;
    if (when(elapsed)) {
      packsAtKill = dataFiles().packs;
      killed = child.kill(sig);
      atMs = elapsed;
      break;
    }
    if (elapsed > 30_000) {
      child.kill('SIGKILL');
      throw new Error('the backup neither finished nor reached the kill point in 30 s');
    }
    await sleep(1);
  }
  const { code, signal } = await exited;
  return { killed: killed && (signal === sig || code === 130), code, signal, atMs, packsAtKill, stderr };
}

function snapshotIds(): string[] {
  return JSON.parse(ok(['snapshots', '--json']).stdout).map((s: { id: string }) => s.id);
}

/** The repository is consistent: check passes (orphaned packs from the kill are harmless). */
function expectCheckOk(): void {
  const r = coffer(['check'], env);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toBe('');
}

async function expectRestoresTo(expected: Scan, name: string, snapshot = 'latest'): Promise<void> {
  const target = path.join(dir, name);
  ok(['restore', snapshot, '--target', target]);
  const got = subScan(await scanTree(target), key(src.slice(1)));
  expect(compareScans(expected, got)).toEqual([]);
}

beforeAll(() => {
  ({ dir } = scratch('coffer-kill-'));
  src = path.join(dir, 'src');
  repo = path.join(dir, 'repo');
  env = { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(dir, 'cache') };
  // ~64 MiB of incompressible data: about four 16 MiB packs.
  buildRandomTree(src, 16, 64 << 20);
  ok(['init']);
});

afterAll(() => {
  if (dir) removeTree(dir);
});

describe('SIGKILL during backup', () => {
  const kills: string[] = [];

  it('killed right after start: no snapshot, repository fine', async () => {
    const r = await runAndKill(['backup', src], (ms) => ms >= 60);
    expect(r.killed, `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
    kills.push(`start-up: ${r.atMs} ms, ${r.packsAtKill} packs`);
    expect(snapshotIds()).toEqual([]);
    expectCheckOk();
  });

  it('killed while the first pack is being written: no snapshot, repository fine', async () => {
    const r = await runAndKill(['backup', src], () => {
      const f = dataFiles();
      return f.tmp > 0 || f.packs > 0;
    });
    expect(r.killed, `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
    kills.push(`first pack: ${r.atMs} ms, ${r.packsAtKill} packs`);
    expect(snapshotIds()).toEqual([]);
    expectCheckOk();
  });

  it('killed with packs written but no index or snapshot yet: no snapshot, repository fine', async () => {
    const before = dataFiles().packs;
    // The first complete pack of about four.
    const r = await runAndKill(['backup', src], () => dataFiles().packs >= before + 1);
    expect(r.killed, `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
    kills.push(`mid-way: ${r.atMs} ms, ${r.packsAtKill} packs`);
    expect(snapshotIds()).toEqual([]);
    expectCheckOk();
  });

  it('the next backup succeeds and restores bit-exact; leftover temporary files do not matter', async () => {
    // Temporary files as a crash leaves them, in every directory of the layout.
    for (const d of ['data/00', 'data/ab', 'index', 'snapshots', 'keys', 'locks']) {
      mkdirSync(path.join(repo, d), { recursive: true });
      writeFileSync(path.join(repo, d, `.tmp-${randomBytes(8).toString('hex')}`), randomBytes(1000));
    }
    expect(tmpFilesEverywhere().length).toBeGreaterThanOrEqual(6);
    const srcScan = await scanTree(src);
    const r = ok(['backup', '--json', src]);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(summary.incomplete).toBe(false);
    expect(summary.files_new).toBe(17);
    expect(snapshotIds()).toEqual([summary.snapshot_id]);
    await expectRestoresTo(srcScan, 'restore-after-kills');
    const c = coffer(['check', '--read-data'], env);
    expect(c.code, c.stderr).toBe(0);
    console.info(`kill points: ${kills.join('; ')}`);
  });

  it('killed during an incremental backup: the old snapshot stays, the next one is complete', async () => {
    const [first] = snapshotIds();
    const before = await scanTree(src);
    // Change some files (new contents, about three packs' worth, so packs are written while it runs).
    for (let i = 0; i < 6; i++) writeFileSync(path.join(src, `d${i % 4}`, `f${i}.bin`), randomBytes(8 << 20));
    writeFileSync(path.join(src, 'new-file.txt'), 'added after the first snapshot');
    const base = dataFiles();
    const r = await runAndKill(['backup', src], () => {
      const f = dataFiles();
      return f.packs > base.packs || f.tmp > base.tmp;
    });
    expect(r.killed, `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
    expect(snapshotIds()).toEqual([first]);
    expectCheckOk();
    await expectRestoresTo(before, 'restore-first-after-incremental-kill', first);

    const after = await scanTree(src);
    const s = JSON.parse(ok(['backup', '--json', src]).stdout.trim().split('\n').at(-1)!);
    expect(s.files_changed).toBe(6);
    expect(s.files_new).toBe(1);
    expect(s.files_unmodified).toBe(11);
    expect(snapshotIds()).toEqual([first, s.snapshot_id]);
    await expectRestoresTo(after, 'restore-second');
  });

  it('SIGINT stops a backup cleanly: exit 130, one line, no snapshot', async () => {
    const ids = snapshotIds();
    // More new data than one pack holds, so the signal arrives with work still to do.
    for (let i = 0; i < 3; i++) writeFileSync(path.join(src, `d${i}`, `f${i}.bin`), randomBytes(8 << 20));
    const base = dataFiles();
    const r = await runAndKill(
      ['backup', src],
      () => {
        const f = dataFiles();
        return f.packs > base.packs || f.tmp > base.tmp;
      },
      'SIGINT',
    );
    expect(r.killed, `exit ${r.code} ${r.signal}: ${r.stderr}`).toBe(true);
    expect(r.code).toBe(130);
    expect(r.stderr).not.toMatch(/^\s+at /m);
    expect(r.stderr.trim().split('\n').filter((l) => !l.startsWith('warning: '))).toEqual([expect.stringMatching(/^coffer: .*interrupted/)]);
    expect(snapshotIds()).toEqual(ids);
    expectCheckOk();
  });
});

describe('SIGKILL during restore', () => {
  it('a killed restore, run again into the same target, gives the right result', async () => {
    const expected = await scanTree(src);
    ok(['backup', src]);
    const target = path.join(dir, 'restore-killed');
    // Kill once file contents are being written.
    const written = () =>
      [0, 1, 2, 3].some((i) => {
        const d = path.join(target, src, `d${i}`);
        return existsSync(d) && readdirSync(d).some((n) => statSync(path.join(d, n)).size > 0);
      });
    const r = await runAndKill(['restore', 'latest', '--target', target], written);
    expect(r.killed, `exit ${r.code} ${r.signal}`).toBe(true);
    expect(r.atMs).toBeGreaterThan(0);
    ok(['restore', 'latest', '--target', target]);
    const got = subScan(await scanTree(target), key(src.slice(1)));
    expect(compareScans(expected, got)).toEqual([]);
  });
});
