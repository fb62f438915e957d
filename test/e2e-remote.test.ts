/**
 * Remote repositories through the real CLI, against real servers started
 * here on loopback: REST (`rclone serve restic`), rclone over stdio, S3
 * (s3rver). For each: a backup and restore round trip (bit-exact), and a
 * server killed in the middle of a backup — after restarting it the
 * repository passes `check` and the next backup succeeds. Plus backups to an
 * append-only server.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, cpSync, existsSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, cofferSpawn, scratch, ROOT } from './helpers.js';
import { rcloneMissing, startRcloneRestic, startS3rver, S3_ACCESS, type Server } from './servers.js';
import { buildRandomTree, compareScans, key, removeTree, scanTree, subScan } from './tree-fixture.js';

const RCLONE = rcloneMissing();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const tmp = scratch('coffer-remote-');
const src = path.join(tmp.dir, 'src');
const big = path.join(tmp.dir, 'big');

beforeAll(() => {
  // A small realistic tree (coffer's own sources) plus incompressible data.
  cpSync(path.join(ROOT, 'src'), path.join(src, 'code'), { recursive: true });
  buildRandomTree(path.join(src, 'random'), 6, 3 << 20);
  // For the kill tests: more than one 16 MiB pack.
  buildRandomTree(big, 8, 24 << 20);
});

afterAll(() => removeTree(tmp.dir));

/** Every file under `dir` (recursively), as paths relative to it. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)));
}

interface Remote {
  name: string;
  skip?: string;
  /** Starts what is needed; returns the location and where the objects land on disk. */
  start(): Promise<{ location: string; dataDir: string; env?: Record<string, string> }>;
  /** Kills the server (or the rclone child). */
  kill(): Promise<void>;
  /** A backup goes on by itself after a kill (coffer restarts its own rclone). */
  survivesKill?: boolean;
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function restRemote(): Remote {
  let server: Server | undefined;
  let dir = '';
  return {
    name: 'rest (rclone serve restic)',
    skip: RCLONE,
    async start() {
      dir = path.join(tmp.dir, 'rest-server');
      mkdirSync(dir, { recursive: true });
      server = await startRcloneRestic(dir);
      return { location: `rest:${server.url}repo`, dataDir: path.join(dir, 'repo', 'data') };
    },
    kill: () => server!.kill(),
    async restart() {
      server = await startRcloneRestic(dir, { port: server!.port });
    },
    stop: async () => server?.kill(),
  };
}

function stdioRemote(): Remote {
  const pids = path.join(tmp.dir, 'rclone-pids');
  const wrapper = path.join(tmp.dir, 'rclone-wrapper');
  let dir = '';
  const killAll = async () => {
    if (!existsSync(pids)) return;
    for (const pid of new Set(readFileSync(pids, 'utf8').split('\n').filter(Boolean))) {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await sleep(100);
  };
  return {
    name: 'rclone (stdio)',
    skip: RCLONE,
    survivesKill: true,
    async start() {
      dir = path.join(tmp.dir, 'rclone-stdio');
      // A wrapper that records the pid of every rclone coffer starts, so the test can kill it.
      writeFileSync(wrapper, `#!/bin/sh\necho $$ >> ${pids}\nexec rclone --config /dev/null "$@"\n`, { mode: 0o755 });
      return { location: `rclone:${dir}`, dataDir: path.join(dir, 'data'), env: { COFFER_RCLONE_PROGRAM: wrapper } };
    },
    kill: killAll,
    async restart() {
      /* coffer starts rclone itself */
    },
    stop: killAll,
  };
}

function s3Remote(): Remote {
  let server: Server | undefined;
  let dir = '';
  return {
    name: 's3 (s3rver)',
    async start() {
      dir = path.join(tmp.dir, 's3-server');
      mkdirSync(dir, { recursive: true });
      server = await startS3rver(dir);
      return { location: `s3:${server.url}/bucket/backups/coffer`, dataDir: path.join(dir, 'bucket', 'backups', 'coffer', 'data'), env: S3_ACCESS };
    },
    kill: () => server!.kill(),
    async restart() {
      // s3rver's own bookkeeping is not crash-safe (real S3 PUTs are atomic): a
      // kill can leave a truncated `._S3rver_metadata.json`, which makes every
      // later listing fail with HTTP 500. Drop those (s3rver treats a missing
      // one as default metadata); truncated objects themselves stay, the worst
      // case for the client.
      for (const f of filesUnder(dir).filter((n) => n.endsWith('._S3rver_metadata.json'))) {
        try {
          JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
        } catch {
          rmSync(path.join(dir, f));
        }
      }
      server = await startS3rver(dir, { port: server!.port });
    },
    stop: async () => server?.kill(),
  };
}

for (const remote of [restRemote(), stdioRemote(), s3Remote()]) {
  describe.skipIf(remote.skip)(`remote repository: ${remote.name}${remote.skip ? ` (skipped: ${remote.skip})` : ''}`, () => {
    let env: Record<string, string>;
    let dataDir: string;
    const run = (args: string[], extra: Record<string, string> = {}) => coffer(args, { ...env, ...extra });
    const ok = (args: string[]) => {
      const r = run(args);
      if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
      return r;
    };
    const restoreAndCompare = async (from: string, name: string) => {
      const target = path.join(tmp.dir, name);
      ok(['restore', 'latest', '--target', target, '--path', from]);
      expect(compareScans(await scanTree(from), subScan(await scanTree(target), key(from.slice(1))))).toEqual([]);
    };

    beforeAll(async () => {
      const s = await remote.start();
      dataDir = s.dataDir;
      const slug = remote.name.split(' ')[0];
      env = { COFFER_REPOSITORY: s.location, COFFER_PASSWORD: 'remote pw', COFFER_CACHE_DIR: path.join(tmp.dir, `cache-${slug}`), ...s.env };
      ok(['init']);
    });
    afterAll(() => remote.stop());

    it('backup, incremental backup, snapshots, restore bit-exact, check --read-data', async () => {
      const first = JSON.parse(ok(['backup', '--json', src]).stdout.trim().split('\n').at(-1)!);
      expect(first.files_new).toBeGreaterThan(40);
      writeFileSync(path.join(src, 'code', `new-file-${remote.name.split(' ')[0]}.txt`), 'added after the first backup\n');
      const second = JSON.parse(ok(['backup', '--json', src]).stdout.trim().split('\n').at(-1)!);
      expect(second.files_new).toBe(1);
      expect(second.files_unmodified).toBe(first.files_new);
      expect(JSON.parse(ok(['snapshots', '--json']).stdout)).toHaveLength(2);
      await restoreAndCompare(src, `restore-${remote.name.split(' ')[0]}`);
      const c = ok(['check', '--read-data']);
      expect(c.stdout).toMatch(/no errors were found/);
      // The metadata cache now holds the keys, index, snapshots and tree packs.
      const cached = filesUnder(path.join(env.COFFER_CACHE_DIR, 'remote'));
      for (const kind of ['keys/', 'index/', 'snapshots/', 'packs/']) expect(cached.some((f) => f.includes(kind)), kind).toBe(true);
    });

    it('server killed in the middle of a backup: after a restart, check passes and the next backup succeeds', async () => {
      const before = new Set(filesUnder(dataDir));
      // Few retries, so the backup gives up quickly while the server is down.
      const child = cofferSpawn(['backup', big], { ...env, COFFER_RETRIES: '2' });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => (stderr += d));
      child.stdout.resume();
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      let finished = false;
      void exited.then(() => (finished = true));
      const t0 = Date.now();
      while (!finished && filesUnder(dataDir).filter((f) => !before.has(f)).length === 0) {
        if (Date.now() - t0 > 60_000) throw new Error('no pack reached the server in 60 s');
        await sleep(5);
      }
      expect(finished, 'the backup finished before the kill; make the data bigger').toBe(false);
      await remote.kill();
      const code = await exited;
      if (remote.survivesKill) {
        // coffer started a new rclone and replaced the half-written pack.
        expect(code, stderr).toBe(0);
      } else {
        // With the server gone for good, the backup fails with one clear line, no stack trace.
        expect(code).toBe(1);
        expect(stderr.trim()).toMatch(/^coffer: cannot reach .*ECONNREFUSED/);
        expect(stderr.trim().split('\n')).toHaveLength(1);
      }
      await remote.restart();
      const c = run(['check']);
      expect(c.code, c.stderr).toBe(0);
      ok(['backup', big]);
      await restoreAndCompare(big, `restore-big-${remote.name.split(' ')[0]}`);
    });
  });
}

describe.skipIf(RCLONE)('append-only REST server', () => {
  it('init and backups work; the repository checks fine', async () => {
    const dir = path.join(tmp.dir, 'append-only');
    mkdirSync(dir);
    const server = await startRcloneRestic(dir, { appendOnly: true });
    try {
      const env = { COFFER_REPOSITORY: `rest:${server.url}ao`, COFFER_PASSWORD: 'ao', COFFER_CACHE_DIR: path.join(tmp.dir, 'cache-ao') };
      for (const args of [['init'], ['backup', src], ['backup', src], ['check']]) {
        const r = coffer(args, env);
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
      }
    } finally {
      await server.kill();
    }
  });
});

describe.skipIf(RCLONE)('remote errors through the CLI', () => {
  it('no repository, an unreachable server, a bad location: one line each, documented exit codes', async () => {
    const dir = path.join(tmp.dir, 'errors-server');
    mkdirSync(dir);
    const server = await startRcloneRestic(dir);
    try {
      const env = { COFFER_PASSWORD: 'x', COFFER_CACHE_DIR: path.join(tmp.dir, 'cache-errors'), COFFER_RETRIES: '1' };
      const missing = coffer(['snapshots', '-r', `rest:${server.url}nothing-here`], env);
      expect([missing.code, missing.stderr.trim()]).toEqual([10, `coffer: no repository at rest:${server.url}nothing-here (run "coffer init" first)`]);
      const bad = coffer(['snapshots', '-r', 'rest:ftp://x/y'], env);
      expect([bad.code, bad.stderr.trim()]).toEqual([2, 'coffer: rest: needs an http:// or https:// URL, not "ftp:"']);
      const unknown = coffer(['snapshots', '-r', 'sftp:host:/x'], env);
      expect(unknown.code).toBe(2);
      const port = server.port;
      await server.kill();
      const down = coffer(['snapshots', '-r', `rest:http://user:secret@127.0.0.1:${port}/repo`, '-v'], env);
      expect(down.code).toBe(1);
      const lines = down.stderr.trim().split('\n');
      expect(lines.at(-1)).toBe(`coffer: cannot reach http://127.0.0.1:${port}: ECONNREFUSED`);
      expect(lines[0]).toMatch(/ECONNREFUSED; retry 1 in \d+\.\d s$/); // -v shows the retry
      expect(down.stderr).not.toContain('secret');
    } finally {
      await server.kill();
    }
  });
});
