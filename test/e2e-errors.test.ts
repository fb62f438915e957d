/**
 * Failure modes through the real CLI, on the real file system: wrong
 * password, missing repository, unreadable sources, and a repository damaged
 * in every way a disk can damage it (flipped byte, truncation, missing
 * file) — in data packs, trees, index, snapshots, config and keys.
 *
 * Each error must be one clear line on stderr (warnings aside), never a
 * stack trace, with the documented exit code; a damaged restore must restore
 * everything it can bit-exact and must never leave a file with wrong content.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, lstatSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, coffer, scratch, type RunResult } from './helpers.js';
import { compareScans, IS_ROOT, key, removeTree, scanTree, show, subScan, type Scan } from './tree-fixture.js';
import { openBackend } from '../dist/src/storage/location.js';
import { Repository } from '../dist/src/repo/repository.js';
import { decodeTree, type TreeNode } from '../dist/src/format/tree.js';

const PASSWORD = 'the right password';
const NOBODY = 65534;

let dir: string;
let src: string;
let pristine: string;
let srcScan: Scan;
let snapshotId: string;
let caseNo = 0;

/** A fresh copy of the good repository, with its own (cold) cache, as on a new machine. */
function freshRepo(): { repo: string; env: Record<string, string>; run: (args: string[]) => RunResult } {
  const n = ++caseNo;
  const repo = path.join(dir, `repo-${n}`);
  cpSync(pristine, repo, { recursive: true });
  const env = { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(dir, `cache-${n}`) };
  return { repo, env, run: (args) => coffer(args, env) };
}

/** Exactly one error line (besides warnings), matching `re`; no stack trace; the given exit code. */
function expectCleanError(r: RunResult, code: number | number[], re: RegExp): string {
  const codes = Array.isArray(code) ? code : [code];
  const detail = `exit ${r.code}\nstderr:\n${r.stderr}`;
  expect(codes, detail).toContain(r.code);
  expect(r.stderr, detail).not.toMatch(/^\s+at /m);
  expect(r.stderr, detail).not.toContain('internal error');
  expect(r.stderr.endsWith('\n'), detail).toBe(true);
  const lines = r.stderr.trimEnd().split('\n').filter((l) => !l.startsWith('warning: '));
  expect(lines, detail).toHaveLength(1);
  expect(lines[0], detail).toMatch(/^coffer: /);
  expect(lines[0], detail).toMatch(re);
  return lines[0];
}

function expectNoStack(r: RunResult): void {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr).not.toContain('internal error');
}

/** Every file under the repository (relative), to see whether a command wrote anything. */
function listRepo(repo: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d)) {
      const p = path.join(d, n);
      if (lstatSync(p).isDirectory()) walk(p, `${rel}${n}/`);
      else out.push(`${rel}${n}`);
    }
  };
  walk(repo, '');
  return out.sort();
}

/** Paths named by "warning: PATH: ..." lines that lie under `root` (relative to it). */
function warnedPaths(stderr: string, root: string): Set<string> {
  const out = new Set<string>();
  for (const line of stderr.split('\n')) {
    if (!line.startsWith(`warning: ${root}/`)) continue;
    const rest = line.slice(`warning: ${root}/`.length);
    out.add(rest.slice(0, rest.indexOf(': ')));
  }
  return out;
}

/**
 * The restore into `target` got everything right except the entries in
 * `lost` (relative to src): those must be absent, everything else identical.
 */
async function expectRestoredExcept(target: string, lost: Set<string>): Promise<void> {
  const restored = subScan(await scanTree(target), key(src.slice(1)));
  const diffs = compareScans(srcScan, restored, { notExpected: (e) => lost.has(e.rel.toString()) || [...lost].some((l) => e.rel.toString().startsWith(`${l}/`)) });
  expect(diffs).toEqual([]);
}

interface BlobAt {
  pack: string;
  offset: number;
  length: number;
}

/** Where the snapshot keeps `rel` (a file's first data blob, or a directory's tree blob). */
async function locate(repo: string, rel: string): Promise<BlobAt & { node: TreeNode }> {
  const r = await Repository.open(openBackend(repo), Buffer.from(PASSWORD), { noCache: true });
  try {
    const snap = await r.findSnapshot(snapshotId);
    let nodes = decodeTree(await r.loadBlob('tree', snap.tree));
    let node: TreeNode | undefined;
    for (const part of [...src.split('/').filter(Boolean), ...rel.split('/')]) {
      node = nodes.find((n) => n.name.equals(Buffer.from(part)));
      if (!node) throw new Error(`${rel}: ${part} not in snapshot`);
      if (node.type === 'dir') nodes = decodeTree(await r.loadBlob('tree', node.subtree!));
    }
    const loc = node!.type === 'dir' ? r.lookupBlob('tree', node!.subtree!) : r.lookupBlob('data', node!.content![0]);
    return { pack: path.join(repo, 'data', loc!.packId.slice(0, 2), loc!.packId), offset: loc!.offset, length: loc!.length, node: node! };
  } finally {
    await r.close();
  }
}

function flipByte(file: string, offset: number): void {
  const b = readFileSync(file);
  b[offset] ^= 0x01;
  chmodSync(file, 0o600);
  writeFileSync(file, b);
}

function only(repo: string, sub: string): string {
  const names = readdirSync(path.join(repo, sub)).filter((n) => /^[0-9a-f]{64}$/.test(n));
  expect(names).toHaveLength(1);
  return path.join(repo, sub, names[0]);
}

function allPacks(repo: string): string[] {
  const out: string[] = [];
  for (const d of readdirSync(path.join(repo, 'data'))) for (const n of readdirSync(path.join(repo, 'data', d))) out.push(path.join(repo, 'data', d, n));
  return out;
}

beforeAll(async () => {
  ({ dir } = scratch('coffer-errors-'));
  src = path.join(dir, 'src');
  pristine = path.join(dir, 'pristine');
  mkdirSync(path.join(src, 'docs', 'deeper'), { recursive: true });
  mkdirSync(path.join(src, 'photos'), { recursive: true });
  mkdirSync(path.join(src, 'empty'));
  for (let i = 0; i < 12; i++) writeFileSync(path.join(src, 'photos', `img${i}.raw`), randomBytes(40_000 + i * 30_000));
  for (let i = 0; i < 8; i++) writeFileSync(path.join(src, 'docs', `note${i}.txt`), `note ${i}\n`.repeat(50 + i));
  writeFileSync(path.join(src, 'docs', 'deeper', 'plan.txt'), 'the plan\n');
  const shared = randomBytes(70_000);
  writeFileSync(path.join(src, 'twin-a.bin'), shared); // same content: one blob, two files
  writeFileSync(path.join(src, 'twin-b.bin'), shared);
  writeFileSync(path.join(src, 'empty.txt'), '');
  const env = { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: pristine, COFFER_CACHE_DIR: path.join(dir, 'cache-pristine') };
  expect(coffer(['init', '--chunk-min', '64K', '--chunk-avg', '256K', '--chunk-max', '1M'], env).code).toBe(0);
  const r = coffer(['backup', '--json', src], env);
  expect(r.code, r.stderr).toBe(0);
  snapshotId = JSON.parse(r.stdout.trim().split('\n').at(-1)!).snapshot_id;
  srcScan = await scanTree(src);
}, 60_000);

afterAll(() => {
  if (dir) removeTree(dir);
});

describe('password and repository', () => {
  it('wrong password: exit 12, one line, and nothing is written to the target or the repository', () => {
    const { repo, env } = freshRepo();
    const before = listRepo(repo);
    const target = path.join(dir, 'wrong-pw-target');
    const r = coffer(['restore', 'latest', '--target', target], { ...env, COFFER_PASSWORD: 'not the password' });
    expectCleanError(r, 12, /wrong password/);
    expect(existsSync(target)).toBe(false);

    const pwFile = path.join(dir, 'wrong-pw.txt');
    writeFileSync(pwFile, 'also wrong\n');
    mkdirSync(target);
    const r2 = coffer(['restore', 'latest', '--target', target, '--password-file', pwFile], { ...env, COFFER_PASSWORD: undefined });
    expectCleanError(r2, 12, /wrong password/);
    expect(readdirSync(target)).toEqual([]);

    const r3 = coffer(['backup', src], { ...env, COFFER_PASSWORD: 'nope' });
    expectCleanError(r3, 12, /wrong password/);
    const r4 = coffer(['snapshots'], { ...env, COFFER_PASSWORD: 'nope' });
    expectCleanError(r4, 12, /wrong password/);
    expect(listRepo(repo)).toEqual(before);
  });

  it('missing repository: exit 10 naming the location', () => {
    const missing = path.join(dir, 'no-such-repo');
    const env = { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: missing, COFFER_CACHE_DIR: path.join(dir, 'cache-missing') };
    for (const args of [['snapshots'], ['restore', 'latest', '--target', path.join(dir, 'missing-target')], ['backup', src], ['check']]) {
      const r = coffer(args, env);
      expectCleanError(r, 10, new RegExp(`${missing}.*`));
    }
    expect(existsSync(missing)).toBe(false);
    expect(existsSync(path.join(dir, 'missing-target'))).toBe(false);
    // An existing directory that is not a repository.
    const empty = path.join(dir, 'not-a-repo');
    mkdirSync(empty);
    expectCleanError(coffer(['snapshots'], { ...env, COFFER_REPOSITORY: empty }), 10, /not-a-repo/);
  });

  it('unknown snapshot id and a target that is a file: clear errors', () => {
    const { run } = freshRepo();
    expectCleanError(run(['restore', 'ffffffff', '--target', path.join(dir, 'x')]), 14, /no snapshot with id ffffffff/);
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'x');
    expectCleanError(run(['restore', 'latest', '--target', file]), [1, 2], /a-file/);
    expect(readFileSync(file, 'utf8')).toBe('x');
  });
});

describe('backup sources', () => {
  it('a nonexistent path: non-zero, names the path, no snapshot', () => {
    const { repo, run } = freshRepo();
    const snapsBefore = readdirSync(path.join(repo, 'snapshots'));
    const r = run(['backup', path.join(dir, 'does-not-exist')]);
    expectCleanError(r, 1, /does-not-exist.*no such file or directory/);
    expect(readdirSync(path.join(repo, 'snapshots'))).toEqual(snapsBefore);
  });

  it('unreadable file and directory: warnings naming them, exit 3, everything else in the snapshot', async () => {
    // Root reads everything, so as root the backup runs as "nobody".
    const base = path.join(dir, 'unreadable');
    const s = path.join(base, 'src');
    mkdirSync(path.join(s, 'locked'), { recursive: true });
    mkdirSync(path.join(s, 'open'));
    writeFileSync(path.join(s, 'ok.txt'), 'readable');
    writeFileSync(path.join(s, 'open', 'also-ok.bin'), randomBytes(200_000));
    writeFileSync(path.join(s, 'secret.txt'), 'cannot read me');
    writeFileSync(path.join(s, 'locked', 'inside.txt'), 'hidden');
    const repo = path.join(base, 'repo');
    const env = { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(base, 'cache'), COFFER_TEST_LOW_KDF: '1' };
    if (IS_ROOT) {
      chmodSync(dir, 0o755);
      chmodSync(base, 0o755);
      for (const p of [base, s, path.join(s, 'locked'), path.join(s, 'open'), path.join(s, 'ok.txt'), path.join(s, 'open', 'also-ok.bin'), path.join(s, 'secret.txt'), path.join(s, 'locked', 'inside.txt')]) chownSync(p, NOBODY, NOBODY);
    }
    chmodSync(path.join(s, 'secret.txt'), 0o000);
    chmodSync(path.join(s, 'locked'), 0o000);
    const as = (args: string[]): RunResult => {
      const r = spawnSync(process.execPath, [BIN, ...args], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        ...(IS_ROOT ? { uid: NOBODY, gid: NOBODY } : {}),
      });
      return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    };
    expect(as(['init']).code).toBe(0);
    const r = as(['backup', s]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain(`warning: ${path.join(s, 'secret.txt')}: `);
    expect(r.stderr).toContain(`warning: ${path.join(s, 'locked')}: `);
    expect(r.stderr).toMatch(/EACCES|permission denied/i);
    expect(r.stdout).toMatch(/snapshot [0-9a-f]{8} saved/);

    const target = path.join(base, 'target');
    const rr = coffer(['restore', 'latest', '--target', target], env);
    expect(rr.code, rr.stderr).toBe(0);
    // The unreadable directory is recorded (with its mode 000) but its contents could not be.
    expect(lstatSync(path.join(target, s, 'locked')).mode & 0o7777).toBe(0);
    chmodSync(path.join(target, s, 'locked'), 0o755);
    expect(readdirSync(path.join(target, s, 'locked'))).toEqual([]);
    const got = subScan(await scanTree(target), key(s.slice(1)));
    expect(readFileSync(path.join(target, s, 'ok.txt'), 'utf8')).toBe('readable');
    expect(readFileSync(path.join(target, s, 'open', 'also-ok.bin')).equals(readFileSync(path.join(s, 'open', 'also-ok.bin')))).toBe(true);
    expect(got.get(key('open/also-ok.bin'))?.size).toBe(200_000);
    expect(got.has(key('secret.txt'))).toBe(false);
    expect(got.has(key('locked/inside.txt'))).toBe(false);
    chmodSync(path.join(s, 'locked'), 0o755);
  });
});

describe('damaged repository', () => {
  it('a flipped byte in a data blob: only the files using it are lost, reported by name; exit 3; check finds it', async () => {
    const { repo, run } = freshRepo();
    const at = await locate(repo, 'twin-a.bin');
    flipByte(at.pack, at.offset + Math.floor(at.length / 2));
    const target = path.join(dir, 'flip-target');
    const r = run(['restore', snapshotId, '--target', target]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    const lost = warnedPaths(r.stderr, path.join(target, src));
    // Both twins share the blob; nothing else uses it.
    expect([...lost].sort()).toEqual(['twin-a.bin', 'twin-b.bin']);
    expect(r.stderr).toMatch(/damaged/);
    await expectRestoredExcept(target, lost);

    const c = run(['check', '--read-data']);
    expectNoStack(c);
    expect(c.code).toBe(13);
    expect(c.stderr).toContain(`data/${path.basename(at.pack)}`);
  });

  it('a flipped byte in every data pack header region does not stop the restore', async () => {
    // Restore reads blobs through the index, not through pack headers.
    const { repo, run } = freshRepo();
    for (const p of allPacks(repo)) {
      const size = lstatSync(p).size;
      flipByte(p, size - 1);
    }
    const target = path.join(dir, 'header-target');
    const r = run(['restore', snapshotId, '--target', target]);
    expect(r.code, r.stderr).toBe(0);
    await expectRestoredExcept(target, new Set());
    expect(run(['check']).code).toBe(13);
  });

  it('a truncated pack: what is still there is restored, the rest reported; exit 3', async () => {
    const { repo, run } = freshRepo();
    const at = await locate(repo, 'photos/img6.raw');
    const size = lstatSync(at.pack).size;
    truncateSync(at.pack, Math.floor(size / 2));
    const target = path.join(dir, 'truncate-target');
    const r = run(['restore', snapshotId, '--target', target]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    const lost = warnedPaths(r.stderr, path.join(target, src));
    expect(lost.size).toBeGreaterThan(0);
    await expectRestoredExcept(target, lost);
    // Files whose data lies in the first half of the pack are not lost with the rest.
    const withData = [...srcScan.values()].filter((e) => e.type === 'file' && e.size > 0).length;
    expect(lost.size).toBeLessThan(withData);
  });

  it('a missing pack: the files in it are reported, the rest restored; exit 3', async () => {
    const { repo, run } = freshRepo();
    const at = await locate(repo, 'docs/note3.txt');
    rmSync(at.pack);
    const target = path.join(dir, 'missing-pack-target');
    const r = run(['restore', snapshotId, '--target', target]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    const lost = warnedPaths(r.stderr, path.join(target, src));
    expect(lost).toContain('docs/note3.txt');
    await expectRestoredExcept(target, lost);
  });

  it('a damaged directory tree: that directory is reported, everything else restored; exit 3', async () => {
    const { repo, run } = freshRepo();
    const at = await locate(repo, 'docs');
    flipByte(at.pack, at.offset + Math.floor(at.length / 2));
    const target = path.join(dir, 'tree-target');
    const r = run(['restore', snapshotId, '--target', target]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toContain(`warning: ${path.join(target, src, 'docs')}: `);
    const restored = subScan(await scanTree(target), key(src.slice(1)));
    // docs itself is restored (empty, with its metadata); nothing below it; everything else exact.
    const diffs = compareScans(srcScan, restored, { notExpected: (e) => e.rel.toString().startsWith('docs/') });
    expect(diffs).toEqual([]);
    expect(restored.get(key('docs'))?.type).toBe('dir');
  });

  it('a flipped byte in an index file: the open skips it with a warning naming index/…; restore reports what it lacks (3); check 13', () => {
    const { repo, run } = freshRepo();
    const idx = only(repo, 'index');
    flipByte(idx, Math.floor(lstatSync(idx).size / 2));
    const target = path.join(dir, 'index-target');
    const r = run(['restore', 'latest', '--target', target]);
    expectNoStack(r);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`^warning: index/${path.basename(idx)} .*was skipped`, 'm'));
    expect(r.stderr).toMatch(/tree blob [0-9a-f]{12} is not in the index/);
    const s = run(['snapshots']);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(new RegExp(`^warning: index/${path.basename(idx)} `));
    const c = run(['check']);
    expect(c.code, c.stderr).toBe(13);
    expect(c.stderr).toMatch(new RegExp(`^error: index/${path.basename(idx)}: `, 'm'));
  });

  it('a truncated index file: skipped with a warning; repair index brings everything back', () => {
    const { repo, run } = freshRepo();
    const idx = only(repo, 'index');
    truncateSync(idx, 10);
    const r = run(['restore', 'latest', '--target', path.join(dir, 'index-trunc-target')]);
    expect(r.code, r.stderr).toBe(3);
    expect(r.stderr).toMatch(new RegExp(`^warning: index/${path.basename(idx)} does not match its name \\(damaged or truncated\\) and was skipped`, 'm'));
    expect(run(['repair', 'index']).code).toBe(0);
    const again = run(['restore', 'latest', '--target', path.join(dir, 'index-trunc-target-2')]);
    expect([again.code, again.stderr]).toEqual([0, '']);
  });

  it('a flipped byte or truncation in a snapshot file: exit 13 naming snapshots/…', () => {
    for (const damage of ['flip', 'truncate', 'empty'] as const) {
      const { repo, run } = freshRepo();
      const snap = only(repo, 'snapshots');
      if (damage === 'flip') flipByte(snap, 40);
      else truncateSync(snap, damage === 'empty' ? 0 : Math.floor(lstatSync(snap).size / 2));
      const target = path.join(dir, `snap-${damage}-target`);
      expectCleanError(run(['restore', 'latest', '--target', target]), 13, /snapshots\/[0-9a-f]{64}/);
      expectCleanError(run(['snapshots']), 13, /snapshots\/[0-9a-f]{64}/);
      expect(existsSync(target)).toBe(false);
    }
  });

  it('a damaged config: exit 13 (sealed part) or 10 (not recognisable), one clear line', () => {
    {
      const { repo, run } = freshRepo();
      const cfg = path.join(repo, 'config');
      flipByte(cfg, lstatSync(cfg).size - 5);
      expectCleanError(run(['snapshots']), 13, /config/);
    }
    {
      const { repo, run } = freshRepo();
      flipByte(path.join(repo, 'config'), 0);
      expectCleanError(run(['snapshots']), 10, /not a coffer repository/);
    }
    {
      const { repo, run } = freshRepo();
      truncateSync(path.join(repo, 'config'), 0);
      expectCleanError(run(['restore', 'latest', '--target', path.join(dir, 'cfg-target')]), 10, /not a coffer repository/);
      expect(existsSync(path.join(dir, 'cfg-target'))).toBe(false);
    }
    {
      const { repo, run } = freshRepo();
      rmSync(path.join(repo, 'config'));
      expectCleanError(run(['snapshots']), 10, /no repository/);
    }
  });

  it('check reads the repository, not the local cache: damage behind a warm cache is found', () => {
    const { repo, run } = freshRepo();
    expect(run(['snapshots']).code).toBe(0); // the cache now holds the index and the snapshot
    const snap = only(repo, 'snapshots');
    flipByte(snap, 40);
    const c = run(['check']);
    expectNoStack(c);
    expect(c.code, c.stderr).toBe(13);
    expect(c.stderr).toContain(`snapshots/${path.basename(snap)}`);
    const idx = only(repo, 'index');
    flipByte(idx, 40);
    const c2 = run(['check']);
    expectNoStack(c2);
    expect(c2.code, c2.stderr).toBe(13);
    expect(c2.stderr).toMatch(new RegExp(`^error: index/${path.basename(idx)}: `, 'm'));
  });

  it('the only key file replaced by garbage: a clear error, not "wrong password" with a stack', () => {
    const { repo, run } = freshRepo();
    const k = only(repo, 'keys');
    chmodSync(k, 0o600);
    writeFileSync(k, randomBytes(lstatSync(k).size));
    const line = expectCleanError(run(['snapshots']), 10, /key/);
    expect(line).toMatch(/damaged/);
    // And with no key file at all.
    rmSync(k);
    expectCleanError(run(['snapshots']), 10, /key/);
  });
});

export { show };
