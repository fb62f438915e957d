/**
 * Bad input, systematically: every kind of repository file (config, key
 * files, a data pack, a tree pack, an index file, a snapshot file, a lock)
 * damaged in every way (emptied, cut in half, one byte flipped at the start,
 * in the middle or at the end, replaced by random bytes of the same length,
 * replaced by one byte), and every command run against it through the real
 * CLI with a time limit.
 *
 * Each run must end in time with a documented exit code — the one the
 * damage calls for — and say so in clean lines: no stack trace, no
 * "internal error", every stderr line a `coffer: ` error, a `warning: ` or
 * (check) an `error: ` problem line. A restore never writes a file whose
 * content differs from the original; what it cannot restore is absent and
 * named in a warning.
 *
 * The second half feeds every command malformed arguments.
 */
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, scratch } from './helpers.js';
import { openBackend } from '../dist/src/storage/location.js';
import { Repository } from '../dist/src/repo/repository.js';
import { writeLockFile } from '../dist/src/repo/lock.js';
import { decodeTree } from '../dist/src/format/tree.js';
import { TRAILER_BYTES } from '../dist/src/format/pack.js';
import { SEAL_OVERHEAD } from '../dist/src/crypto/aead.js';
import { hasConfigMagic } from '../dist/src/format/config.js';
import { decodeIndexFile } from '../dist/src/repo/index-files.js';

const PASSWORD = 'bad input password';
/** Every spawned command must end within this; a hang fails the test. */
const TIMEOUT_MS = 20_000;
const DOCUMENTED = new Set([0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 130]);
/** Processes running at once (the machine is shared). */
const PARALLEL = 3;

interface Run {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

let running = 0;
const waiting: (() => void)[] = [];

/** Runs `coffer ARGS` asynchronously (at most PARALLEL at once), killing it after TIMEOUT_MS. */
async function run(args: string[], env: Record<string, string | undefined>, input?: string): Promise<Run> {
  while (running >= PARALLEL) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await new Promise<Run>((resolve) => {
      const child = spawn(process.execPath, [BIN, ...args], {
        env: { ...process.env, COFFER_TEST_LOW_KDF: '1', COFFER_PASSWORD: PASSWORD, ...env },
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      let timedOut = false;
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdin.on('error', () => undefined);
      child.stdin.end(input ?? '');
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill('SIGKILL');
      }, TIMEOUT_MS);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ args, code: code ?? (signal ? -1 : -2), stdout, stderr, timedOut });
      });
    });
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * The clean-failure rules; returns what is wrong (empty when all is well).
 * `expected`: the exit code(s) the case calls for.
 */
function problems(r: Run, expected: number | number[], label: string, says?: RegExp): string[] {
  const out: string[] = [];
  const say = (what: string) => out.push(`${label}: coffer ${r.args.join(' ')}: ${what}\n  exit ${r.code}\n  stderr: ${r.stderr.trimEnd().split('\n').join('\n          ')}`);
  if (r.timedOut) {
    say(`did not finish within ${TIMEOUT_MS / 1000} s`);
    return out;
  }
  const want = Array.isArray(expected) ? expected : [expected];
  if (!DOCUMENTED.has(r.code)) say('exit code is not a documented one');
  else if (!want.includes(r.code)) say(`expected exit ${want.join(' or ')}`);
  if (/^\s+at /m.test(r.stderr)) say('stack trace on stderr');
  if (/internal error/.test(r.stderr)) say('"internal error"');
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  const isCheck = r.args[0] === 'check';
  // check prints one "error: OBJECT: ..." line per problem; ls its header (stdout holds only the listing).
  const info = (l: string) => (isCheck && l.startsWith('error: ')) || (r.args[0] === 'ls' && /^snapshot [0-9a-f]{8} of \[/.test(l));
  const bad = lines.filter((l) => !(l.startsWith('coffer: ') || l.startsWith('warning: ') || info(l)));
  if (bad.length) say(`stderr lines that are neither errors nor warnings: ${JSON.stringify(bad.slice(0, 3))}`);
  const errors = lines.filter((l) => l.startsWith('coffer: '));
  if (r.code === 0 || r.code === 3) {
    if (errors.length) say('an error line although the command succeeded');
  } else if (!(isCheck && r.code === 13 && errors.length === 0 && lines.some((l) => l.startsWith('error: ')))) {
    if (errors.length !== 1) say(`expected exactly one "coffer: " error line, got ${errors.length}`);
    else if (says && !says.test(errors[0])) say(`the error does not match ${says}`);
  }
  return out;
}

// ---------------------------------------------------------------------------
// The repository under test

let dir: string;
let src: string;
let pristine: string;
let recoveryCode: string;
let passKey: string;
let recoveryKey: string;
/** A lock file (exclusive, held by this live test process), not in the pristine repository. */
let liveLock: { name: string; bytes: Buffer };
/** The same, held by a process that is gone. */
let deadLock: { name: string; bytes: Buffer };
let latestId: string;

interface Blob {
  pack: string;
  offset: number;
  length: number;
}
interface PackInfo {
  name: string;
  /** End of the last blob: the header starts here. */
  blobsEnd: number;
  headerLength: number;
  length: number;
  blobs: Map<string, Blob>;
}
/** Files of the latest snapshot (relative to src): their data blobs and the trees on the way to them. */
let files: { rel: string; data: string[]; trees: string[] }[];
/** Every tree of every snapshot (check reads them all). */
let allTrees: Set<string>;
let packs: Map<string, PackInfo>;
/** Index file name → the blobs it lists ("type:id"). */
let indexBlobs: Map<string, Set<string>>;
let dataPack: PackInfo;
let treePack: PackInfo;

function write(p: string, content: string | Buffer): void {
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, content);
}

beforeAll(async () => {
  ({ dir } = scratch('coffer-bad-input-'));
  src = path.join(dir, 'src');
  pristine = path.join(dir, 'pristine');
  write(path.join(src, 'big.bin'), randomBytes(300_000));
  write(path.join(src, 'docs', 'a.txt'), 'first version\n'.repeat(200));
  write(path.join(src, 'docs', 'b.txt'), 'bee\n'.repeat(300));
  write(path.join(src, 'docs', 'deep', 'c.txt'), 'deep down\n');
  write(path.join(src, 'sub', 'd.bin'), randomBytes(50_000));
  write(path.join(src, 'empty.txt'), '');
  const env = { COFFER_REPOSITORY: pristine, COFFER_CACHE_DIR: path.join(dir, 'cache-pristine') };
  const init = await run(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K'], env);
  expect(init.code, init.stderr).toBe(0);
  const b1 = await run(['backup', src], env);
  expect(b1.code, b1.stderr).toBe(0);
  write(path.join(src, 'docs', 'a.txt'), 'second version\n'.repeat(180));
  write(path.join(src, 'new.txt'), randomBytes(5000).toString('hex'));
  const b2 = await run(['backup', '--json', src], env);
  expect(b2.code, b2.stderr).toBe(0);
  latestId = JSON.parse(b2.stdout.trim().split('\n').at(-1)!).snapshot_id;
  const rk = await run(['key', 'add', '--recovery', '--json'], env);
  expect(rk.code, rk.stderr).toBe(0);
  recoveryCode = JSON.parse(rk.stdout).recovery_key;
  const keys = JSON.parse((await run(['key', 'list', '--json'], env)).stdout) as { id: string; kind: string }[];
  passKey = keys.find((k) => k.kind === 'passphrase')!.id;
  recoveryKey = keys.find((k) => k.kind === 'recovery')!.id;

  const repo = await Repository.open(openBackend(pristine), Buffer.from(PASSWORD), { noCache: true });
  try {
    packs = new Map();
    for (const p of repo.cache.packs()) {
      const blobs = repo.cache.blobsInPack(p.id);
      const info: PackInfo = { name: p.id, length: p.length, blobsEnd: 0, headerLength: 4 + blobs.length * 41 + SEAL_OVERHEAD, blobs: new Map() };
      for (const b of blobs) {
        info.blobs.set(`${b.type}:${b.id}`, { pack: p.id, offset: b.offset, length: b.length });
        info.blobsEnd = Math.max(info.blobsEnd, b.offset + b.length);
      }
      packs.set(p.id, info);
    }
    indexBlobs = new Map();
    for (const name of readdirSync(path.join(pristine, 'index'))) {
      const listed = decodeIndexFile(repo.keys, readFileSync(path.join(pristine, 'index', name)));
      indexBlobs.set(name, new Set(listed.flatMap((p) => p.blobs.map((b) => `${b.type}:${b.id}`))));
    }
    files = [];
    allTrees = new Set();
    const walk = async (tree: string, rel: string, trees: string[], record: boolean) => {
      allTrees.add(tree);
      for (const n of decodeTree(await repo.loadBlob('tree', tree))) {
        const name = n.name.toString();
        const r = rel ? `${rel}/${name}` : name;
        if (n.type === 'dir') await walk(n.subtree!, r, [...trees, tree], record);
        else if (n.type === 'file' && record) files.push({ rel: r, data: n.content ?? [], trees: [...trees, tree] });
      }
    };
    for (const s of await repo.listSnapshots()) await walk(s.tree, '', [], s.id === latestId);
    // The files of src, relative to it.
    const prefix = src.slice(1) + '/';
    files = files.filter((f) => f.rel.startsWith(prefix)).map((f) => ({ ...f, rel: f.rel.slice(prefix.length) }));
    expect(files.map((f) => f.rel).sort()).toEqual(['big.bin', 'docs/a.txt', 'docs/b.txt', 'docs/deep/c.txt', 'empty.txt', 'new.txt', 'sub/d.bin']);
    const latest = await repo.findSnapshot(latestId);
    const holding = (type: string, id: string) => [...packs.values()].find((p) => p.blobs.has(`${type}:${id}`))!;
    dataPack = holding('data', files.find((f) => f.rel === 'big.bin')!.data[0]);
    treePack = holding('tree', latest.tree);
    expect(dataPack.blobs.size).toBeGreaterThan(2);

    const lock = async (pid: number) => {
      const name = await writeLockFile(repo, { version: 1, time: new Date().toISOString(), exclusive: true, hostname: os.hostname(), username: 'test', pid });
      const p = path.join(pristine, 'locks', name);
      const bytes = readFileSync(p);
      rmSync(p);
      return { name, bytes };
    };
    liveLock = await lock(process.pid);
    const gone = spawn(process.execPath, ['-e', '0']);
    await new Promise((r) => gone.on('close', r));
    deadLock = await lock(gone.pid!);
  } finally {
    await repo.close();
  }
}, 60_000);

afterAll(() => {
  if (dir) {
    for (const d of readdirSync(dir)) chmodSync(path.join(dir, d), 0o755);
    rmSync(dir, { recursive: true, force: true });
  }
});

// ---------------------------------------------------------------------------
// Damage

interface Damage {
  name: string;
  apply(b: Buffer): Buffer;
  /** Byte positions of the original that no longer hold their value (a [from, to) range), for predictions. */
  touched(len: number): [number, number][];
}

const flip = (at: (len: number) => number): Pick<Damage, 'apply' | 'touched'> => ({
  apply: (b) => {
    const c = Buffer.from(b);
    c[at(b.length)] ^= 0x01;
    return c;
  },
  touched: (len) => [[at(len), at(len) + 1]],
});

const DAMAGES: Damage[] = [
  { name: 'emptied', apply: () => Buffer.alloc(0), touched: (len) => [[0, len]] },
  { name: 'cut in half', apply: (b) => b.subarray(0, Math.floor(b.length / 2)), touched: (len) => [[Math.floor(len / 2), len]] },
  { name: 'byte 10 flipped', ...flip((len) => Math.min(10, len - 1)) },
  { name: 'middle byte flipped', ...flip((len) => Math.floor(len / 2)) },
  { name: 'last byte flipped', ...flip((len) => len - 1) },
  { name: 'random bytes', apply: (b) => randomBytes(b.length), touched: (len) => [[0, len]] },
  { name: 'one byte', apply: () => Buffer.from('x'), touched: (len) => [[0, len]] },
];

const hits = (ranges: [number, number][], from: number, to: number) => ranges.some(([a, b]) => a < to && from < b);

let caseNo = 0;

/** A copy of the pristine repository with `rel` damaged (or written, for locks); its own cache. */
function damagedCopy(rel: string, damage: Damage, original?: Buffer): { repo: string; env: Record<string, string>; damaged: Buffer } {
  const n = ++caseNo;
  const repo = path.join(dir, `repo-${n}`);
  cpSync(pristine, repo, { recursive: true });
  const p = path.join(repo, rel);
  const damaged = damage.apply(original ?? readFileSync(p));
  mkdirSync(path.dirname(p), { recursive: true });
  if (existsSync(p)) chmodSync(p, 0o600);
  writeFileSync(p, damaged);
  return { repo, env: { COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(dir, `cache-${n}`) }, damaged };
}

function packPath(p: PackInfo): string {
  return path.join('data', p.name.slice(0, 2), p.name);
}

/**
 * Restores the latest snapshot and checks: every file written is identical
 * to the source; every file missing is named (or a directory above it is)
 * in a warning; with `lost` given, exactly those files are missing.
 */
async function restoreChecked(env: Record<string, string>, expected: number | number[], label: string, lost?: Set<string>, extra: string[] = [], says?: RegExp): Promise<string[]> {
  const target = path.join(dir, `target-${++caseNo}`);
  const r = await run(['restore', 'latest', '--target', target, ...extra], env);
  const out = problems(r, expected, label, says);
  const root = path.join(target, src);
  const warned = r.stderr.split('\n').filter((l) => l.startsWith('warning: '));
  const missing = new Set<string>();
  for (const f of files) {
    const p = path.join(root, f.rel);
    if (!existsSync(p)) {
      missing.add(f.rel);
      const named = warned.some((w) => {
        const m = /^warning: (.*?): /.exec(w);
        return m && (m[1] === root || p.startsWith(`${m[1]}/`) || m[1] === p);
      });
      if (r.code === 3 && !named) out.push(`${label}: restore: ${f.rel} is missing but no warning names it\n  stderr: ${r.stderr}`);
      continue;
    }
    if (!readFileSync(p).equals(readFileSync(path.join(src, f.rel)))) out.push(`${label}: restore wrote ${f.rel} with the wrong content (exit ${r.code})`);
  }
  if (r.code !== 0 && r.code !== 3 && existsSync(target) && readdirSync(target).length) out.push(`${label}: restore failed (exit ${r.code}) but wrote into the target`);
  if (r.code === 0 && missing.size) out.push(`${label}: restore exited 0 but ${[...missing].join(', ')} are missing`);
  if (lost && r.code === 3 && [...missing].sort().join() !== [...lost].sort().join()) {
    out.push(`${label}: restore lost ${[...missing].sort().join(', ') || 'nothing'}; expected exactly ${[...lost].sort().join(', ')}\n  stderr: ${r.stderr}`);
  }
  return out;
}

type Expect = number | number[];
/** A command (or a checked restore), the exit code it must end with and, for errors, what the error line must say. */
type Cmd = { args?: string[]; restore?: { lost?: Set<string>; extra?: string[] }; expect: Expect; says?: RegExp; warns?: RegExp };

/** The i-th of a list, round robin: each damage runs a few commands, and all of them run across the damages. */
const pick = <T>(i: number, list: T[]): T => list[i % list.length];

/** Runs the damage matrix for one object: `commands` says what to run on each damaged copy and what each must exit with. */
async function matrix(what: string, rel: string | ((i: number) => string), commands: (d: Damage, i: number, damaged: Buffer) => Cmd[], original?: Buffer): Promise<void> {
  const failures: string[] = [];
  await Promise.all(
    DAMAGES.map(async (d, i) => {
      const { repo, env, damaged } = damagedCopy(typeof rel === 'string' ? rel : rel(i), d, original);
      const label = `${what} ${d.name}`;
      // Sequential: the last commands (backup, prune) change the repository.
      for (const c of commands(d, i, damaged)) {
        if (c.restore) failures.push(...(await restoreChecked(env, c.expect, label, c.restore.lost, c.restore.extra, c.says)));
        else {
          const r = await run(c.args!, env);
          failures.push(...problems(r, c.expect, label, c.says));
          if (c.warns && !r.stderr.split('\n').some((l) => l.startsWith('warning: ') && c.warns!.test(l))) {
            failures.push(`${label}: coffer ${c.args!.join(' ')}: no warning matches ${c.warns}\n  stderr: ${r.stderr}`);
          }
        }
      }
      rmSync(repo, { recursive: true, force: true });
    }),
  );
  expect(failures.join('\n\n')).toBe('');
}

/** Objects read when the repository is opened: every command fails the same way, so each damage runs three of them. */
function atOpen(code: number, i: number, says: RegExp): Cmd[] {
  return [
    { args: ['snapshots'], expect: code, says },
    { restore: {}, expect: code, says },
    pick(i, [{ args: ['check'], expect: code }, { args: ['ls', 'latest'], expect: code, says }, { args: ['backup', src], expect: code, says }, { args: ['check', '--read-data'], expect: code }]),
  ];
}

describe('a damaged repository file: a clean error with the right exit code, in time', () => {
  it('config: 10 when it is no longer recognisable, else 13', async () => {
    await matrix('config', 'config', (_d, i, damaged) => (hasConfigMagic(damaged) ? atOpen(13, i, /config file is damaged/) : atOpen(10, i, /is not a coffer repository/)));
  });

  it('the passphrase key file: 12 with the password, a recovery key still opens', async () => {
    await matrix('passphrase key', path.join('keys', passKey), (_d, i) => [
      { args: ['snapshots'], expect: 12, says: /wrong password or no key file for it; 1 of 2 key files is damaged/ },
      { restore: { extra: ['--recovery-key', recoveryCode] }, expect: 0 },
      pick(i, [{ restore: {}, expect: 12, says: /damaged/ }, { args: ['check'], expect: 12, says: /damaged/ }, { args: ['backup', src], expect: 12, says: /damaged/ }, { args: ['check', '--read-data', '--recovery-key', recoveryCode], expect: 0 }]),
    ]);
  });

  it('the recovery key file: the password still opens, the recovery key gets 12', async () => {
    await matrix('recovery key', path.join('keys', recoveryKey), (_d, i) => [
      { args: ['snapshots', '--recovery-key', recoveryCode], expect: 12, says: /wrong recovery key .*; 1 of 2 key files is damaged/ },
      { restore: {}, expect: 0 },
      pick(i, [{ args: ['key', 'list'], expect: 0 }, { restore: { extra: ['--recovery-key', recoveryCode] }, expect: 12, says: /damaged/ }, { args: ['check'], expect: 0 }]),
    ]);
  });

  it('an index file: skipped with a warning; restore loses what only it lists (3), check 13, prune refuses (13); repair index mends all', async () => {
    const idx = [...indexBlobs.keys()].sort();
    expect(idx.length).toBeGreaterThanOrEqual(2);
    await matrix('index', (i) => path.join('index', pick(i, idx)), (_d, i) => {
      const name = pick(i, idx);
      const known = new Set<string>();
      for (const [n, blobs] of indexBlobs) if (n !== name) for (const b of blobs) known.add(b);
      const lost = new Set(files.filter((f) => f.data.some((id) => !known.has(`data:${id}`)) || f.trees.some((t) => !known.has(`tree:${t}`))).map((f) => f.rel));
      const treeLost = files.some((f) => f.trees.some((t) => !known.has(`tree:${t}`)));
      const skipped = new RegExp(`^warning: index/${name} .*was skipped`);
      return [
        { args: ['snapshots'], expect: 0, warns: skipped },
        { restore: { lost }, expect: lost.size ? 3 : 0 },
        { args: ['check'], expect: 13 },
        pick(i, [
          { args: ['prune'], expect: 13, says: new RegExp(`index/${name} is damaged; prune refuses`), warns: skipped },
          { args: ['ls', 'latest'], expect: treeLost ? 13 : 0, warns: skipped },
          { args: ['backup', src], expect: 0, warns: skipped },
          { args: ['repair', 'snapshots'], expect: 13, says: /repair snapshots refuses/ },
        ]),
        { args: ['repair', 'index'], expect: 0 },
        { restore: {}, expect: 0 },
        { args: ['check'], expect: 0 },
      ];
    });
  });

  it('a snapshot file (the latest or an older one): 13 for every command that reads snapshots', async () => {
    const names = readdirSync(path.join(pristine, 'snapshots')).sort();
    await matrix('snapshot', (i) => path.join('snapshots', pick(i, names)), (_d, i) => atOpen(13, i, /integrity check failed: snapshots\/[0-9a-f]{64} (?![^\n]*rotated)/));
  });

  it('a data pack: restore loses exactly the files whose blobs are damaged (exit 3); check finds it (13)', async () => {
    await matrix('data pack', packPath(dataPack), (d, i) => {
      const t = d.touched(dataPack.length);
      const bad = (id: string) => {
        const b = dataPack.blobs.get(`data:${id}`);
        return b !== undefined && hits(t, b.offset, b.offset + b.length);
      };
      const lost = new Set(files.filter((f) => f.data.some(bad)).map((f) => f.rel));
      const tail = hits(t, dataPack.blobsEnd, dataPack.blobsEnd + dataPack.headerLength) || hits(t, dataPack.length - TRAILER_BYTES, dataPack.length);
      const truncated = d.apply(Buffer.alloc(dataPack.length)).length !== dataPack.length;
      return [
        { restore: { lost }, expect: lost.size ? 3 : 0 },
        { args: ['check'], expect: tail || truncated ? 13 : 0 },
        { args: ['check', '--read-data'], expect: 13 },
        pick(i, [{ args: ['backup', src], expect: 0 }, { args: ['ls', 'latest'], expect: 0 }, { args: ['snapshots'], expect: 0 }]),
      ];
    });
  });

  it('a tree pack: restore loses what lies below damaged trees; ls and check report it', async () => {
    await matrix('tree pack', packPath(treePack), (d, i) => {
      const t = d.touched(treePack.length);
      const bad = (id: string) => {
        const b = treePack.blobs.get(`tree:${id}`);
        return b !== undefined && hits(t, b.offset, b.offset + b.length);
      };
      const lost = new Set(files.filter((f) => f.trees.some(bad)).map((f) => f.rel));
      const anyTree = [...allTrees].some(bad);
      const tail = hits(t, treePack.blobsEnd, treePack.blobsEnd + treePack.headerLength) || hits(t, treePack.length - TRAILER_BYTES, treePack.length);
      const truncated = d.apply(Buffer.alloc(treePack.length)).length !== treePack.length;
      return [
        { args: ['ls', 'latest'], expect: lost.size ? 13 : 0 },
        { restore: { lost }, expect: lost.size ? 3 : 0 },
        { args: ['check'], expect: tail || truncated || anyTree ? 13 : 0 },
        pick(i, [{ args: ['check', '--read-data'], expect: 13 }, { args: ['backup', src], expect: lost.size ? [0, 13] : 0 }, { args: ['snapshots'], expect: 0 }]),
      ];
    });
  });

  it('a lock file: a damaged lock never blocks anyone', async () => {
    await matrix(
      'lock',
      path.join('locks', liveLock.name),
      (_d, i) => [{ restore: {}, expect: 0 }, pick(i, [{ args: ['check'], expect: 0 }, { args: ['backup', src], expect: 0 }, { args: ['prune'], expect: 0 }, { args: ['snapshots'], expect: 0 }])],
      liveLock.bytes,
    );
  });
  it('an intact lock: a live exclusive one blocks (11), a dead one is removed', async () => {
    const failures: string[] = [];
    const same: Damage = { name: 'intact', apply: (b) => b, touched: () => [] };
    {
      const { env } = damagedCopy(path.join('locks', liveLock.name), same, liveLock.bytes);
      failures.push(...problems(await run(['snapshots'], env), 0, 'live lock'));
      failures.push(...(await restoreChecked(env, 11, 'live lock')));
      failures.push(...problems(await run(['check'], env), 11, 'live lock'));
      failures.push(...problems(await run(['backup', src], env), 11, 'live lock'));
      failures.push(...problems(await run(['unlock'], env), 0, 'live lock'));
      failures.push(...problems(await run(['prune'], env), 11, 'live lock'));
    }
    {
      const { repo, env } = damagedCopy(path.join('locks', deadLock.name), same, deadLock.bytes);
      failures.push(...(await restoreChecked(env, 0, 'dead lock')));
      failures.push(...problems(await run(['prune'], env), 0, 'dead lock'));
      expect(readdirSync(path.join(repo, 'locks'))).toEqual([]);
    }
    expect(failures.join('\n\n')).toBe('');
  });
});

// ---------------------------------------------------------------------------
// Malformed command lines

/** Every file of a repository except locks, with its size: to see that a refused command wrote nothing. */
function listing(repo: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      if (n.isDirectory()) walk(path.join(d, n.name), `${rel}${n.name}/`);
      else if (!rel.startsWith('locks/')) out.push(`${rel}${n.name} ${statSync(path.join(d, n.name)).size}`);
    }
  };
  walk(repo, '');
  return out.sort();
}

describe('malformed command lines: exit 2 or the specific documented code, one line, nothing written', () => {
  it('every command', async () => {
    const repo = path.join(dir, 'args-repo');
    cpSync(pristine, repo, { recursive: true });
    // More snapshots, until two ids share their first hex digit: an ambiguous prefix.
    const r = await Repository.open(openBackend(repo), Buffer.from(PASSWORD), { noCache: true });
    let ambiguous: string | undefined;
    try {
      const { id: _id, ...data } = (await r.listSnapshots()).at(-1)!;
      const seen = new Set((await r.listSnapshots()).map((s) => s.id[0]));
      for (let i = 0; !ambiguous; i++) {
        const id = await r.saveSnapshot({ ...data, hostname: `other-host-${i}` });
        if (seen.has(id[0])) ambiguous = id[0];
        seen.add(id[0]);
      }
    } finally {
      await r.close();
    }
    const ids = readdirSync(path.join(repo, 'snapshots'));
    const missing = ['ffff', 'fffe', 'eeee', '0000'].find((p) => !ids.some((id) => id.startsWith(p)))!;
    const file = path.join(dir, 'a-file');
    writeFileSync(file, 'not a directory\n');
    const unreadable = path.join(dir, 'unreadable-password');
    writeFileSync(unreadable, PASSWORD, { mode: 0o000 });
    const newRepo = path.join(dir, 'never-created');
    const target = path.join(dir, 'args-target');
    const before = listing(repo);
    const env = { COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(dir, 'cache-args') };

    type Case = [args: string[], code: number, says?: RegExp, env?: Record<string, string | undefined>];
    const cases: Case[] = [
      // Commands and options that do not exist
      [['bogus'], 2, /unknown command 'bogus'/],
      [['--bogus'], 2, /unknown option '--bogus'/],
      [['restor'], 2, /did you mean restore\?/],
      [['snapshots', '--bogus'], 2, /unknown option/],
      [['snapshots', 'extra'], 2, /too many arguments/],
      [['snapshots', '--host'], 2, /argument missing/],
      [['restore', 'latest', '--targe', target], 2, /did you mean --target\?/],
      // Global options and variables
      [['--threads', '0', 'snapshots'], 2, /--threads must be a whole number/],
      [['restore', 'latest', '--target', target], 2, /COFFER_THREADS must be a whole number/, { COFFER_THREADS: 'x' }],
      [['snapshots'], 2, /COFFER_CONNECTIONS/, { COFFER_CONNECTIONS: 'many' }],
      [['snapshots', '-r', ''], 2, /no repository given/],
      [['snapshots', '-r', 'foo:bar'], 2, /unsupported repository type/],
      [['snapshots', '-r', 'rest:'], 2, /not a URL/],
      [['snapshots', '-r', file], 10, /no repository at/],
      [['snapshots', '-r', path.join(file, 'sub')], 10, /no repository at/],
      [['snapshots', '-r', path.join(dir, 'nothing-here')], 10, /no repository at/],
      [['snapshots', '--password-file', path.join(dir, 'no-password-file')], 12, /cannot read password file/],
      [['snapshots', '--password-file', dir], 12, /cannot read password file.*EISDIR/],
      // (root reads any file; as another user, a file without read permission)
      ...(process.getuid?.() === 0 ? [] : [[['snapshots', '--password-file', unreadable], 12, /cannot read password file.*EACCES/] as Case]),
      [['snapshots', '--password-command', 'exit 3'], 12, /password command failed \(exit status 3\)/],
      [['snapshots', '--password-command', 'echo not-the-password'], 12, /wrong password/],
      [['snapshots', '--recovery-key', 'xyz'], 12, /recovery code has 3 characters/],
      [['snapshots'], 12, /no password given/, { COFFER_PASSWORD: undefined }],
      // init
      [['init', '-r', newRepo, '--chunk-min', '3Q'], 2, /"3Q" is not a size/],
      [['init', '-r', newRepo, '--chunk-max', ''], 2, /"" is not a size/],
      [['init', '-r', newRepo, '--compression', '99'], 2, /compression level must be 0–19/],
      [['init', '-r', newRepo, '--compression', ''], 2, /--compression must be an integer/],
      [['init', '-r', newRepo, '--recovery-key', 'x'], 2, /init takes a password/],
      [['init', '-r', file], 2, /is not a directory/],
      [['init'], 10, /already exists/],
      // backup
      [['backup'], 2, /nothing to back up/],
      [['backup', ''], 2, /empty path/],
      [['backup', '--exclude-larger-than', '5X', src], 2, /"5X" is not a size/],
      [['backup', '--parent', 'zz', src], 2, /not a snapshot id/],
      [['backup', '--parent', missing, src], 14, /no snapshot with id/],
      [['backup', '--parent', ambiguous, src], 2, /is ambiguous/],
      [['backup', '--files-from', path.join(dir, 'no-list')], 2, /cannot read/],
      [['backup', '--stdin', src], 2, /--stdin cannot be combined/],
      [['backup', '--stdin', '--stdin-filename', '../x'], 2, /plain file name/],
      [['backup', '--exclude-if-present', '', src], 2, /needs a file name/],
      [['backup', path.join(file, 'sub')], 1, /ENOTDIR/],
      // restore
      [['restore'], 2, /missing required argument 'snapshot'/],
      [['restore', 'latest'], 2, /--target/],
      [['restore', 'zz', '--target', target], 2, /not a snapshot id/],
      [['restore', missing, '--target', target], 14, /no snapshot with id/],
      [['restore', ambiguous, '--target', target], 2, /is ambiguous/],
      [['restore', 'latest', '--target', target, '--host', 'no-such-host'], 14, /no snapshot matches/],
      [['restore', 'latest', '--target', file], 2, /is not a directory/],
      [['restore', 'latest', '--target', path.join(file, 'sub')], 2, /is not a directory/],
      [['restore', 'latest', '--target', file, '--dry-run'], 2, /is not a directory/],
      [['restore', 'latest', '--target', target, '--overwrite', 'sometimes'], 2, /--overwrite must be/],
      // check
      ...['0/0', '2/1', '1.5/3', '200%', '0%'].map((s): Case => [['check', '--read-data-subset', s], 2, /--read-data-subset must be/]),
      [['check', 'extra'], 2, /too many arguments/],
      // key
      [['key'], 2, /missing command: use one of list, add, passwd, remove/],
      [['key', 'lst'], 2, /did you mean list\?/],
      [['key', 'add', '--recover'], 2, /did you mean --recovery\?/],
      [['key', 'list', 'extra'], 2, /too many arguments/],
      [['key', 'add'], 12, /no new password given/],
      [['key', 'add', '--new-password-file', path.join(dir, 'no-new-password')], 12, /cannot read password file/],
      [['key', 'passwd', '--new-password-file', dir], 12, /cannot read password file/],
      [['key', 'remove', 'zz'], 2, /not a key id/],
      [['key', 'remove', 'ffffff'], 2, /no key with id/],
      // exploring
      [['ls', 'zz'], 2, /not a snapshot id/],
      [['ls', missing], 14, /no snapshot with id/],
      [['ls', ambiguous], 2, /is ambiguous/],
      [['ls', 'latest', '/no/such/dir'], 2, /no such file or directory in the snapshot/],
      [['find', ''], 2, /empty pattern/],
      [['find', '*', '-s', 'zz'], 2, /not a snapshot id/],
      [['find', '*', '--oldest', 'last week'], 2, /--oldest: "last week" is not a date\/time/],
      [['find', '*', '-O', '2026-02-01', '-N', '2026-01-01'], 2, /--oldest is later than --newest/],
      [['diff', 'latest', 'zz'], 2, /not a snapshot id/],
      [['diff', 'latest', missing], 14, /no snapshot with id/],
      [['diff', ':/x', 'latest'], 2, /not a snapshot id/],
      [['diff', 'latest:/no/such/dir', 'latest'], 2, /no such file or directory/],
      [['stats', '--mode', 'bogus'], 2, /--mode must be/],
      [['stats', ambiguous], 2, /is ambiguous/],
      [['dump', 'latest'], 2, /missing required argument 'path'/],
      [['dump', 'latest', '/no/such/file'], 2, /no such file or directory/],
      [['dump', missing, '/x'], 14, /no snapshot with id/],
      [['tag', 'latest'], 2, /nothing to do/],
      [['tag', 'zz', '--add', 'x'], 2, /not a snapshot id/],
      [['tag', missing, '--add', 'x'], 14, /no snapshot with id/],
      [['cat'], 2, /missing required argument/],
      [['cat', 'bogus'], 2, /cannot cat "bogus"/],
      [['cat', 'snapshot'], 2, /needs an id/],
      [['cat', 'tree', 'zz'], 2, /full 64-character tree id/],
      [['cat', 'index', 'zz'], 2, /not an id/],
      // copy
      [['copy'], 2, /no source repository/],
      [['copy', '--from-repo', pristine], 12, /no password for the source repository/],
      [['copy', '--from-repo', path.join(dir, 'nothing-here')], 10, /no repository at/, { COFFER_FROM_PASSWORD: PASSWORD }],
      [['copy', '--from-repo', pristine, 'zz'], 2, /not a snapshot id/, { COFFER_FROM_PASSWORD: PASSWORD }],
      [['copy', '--from-repo', pristine], 12, /source repository .*: wrong password/, { COFFER_FROM_PASSWORD: 'wrong' }],
      [['copy', '--from-repo', pristine, '--from-password-command', 'false'], 12, /password command failed/],
      // lifecycle
      [['unlock', 'extra'], 2, /too many arguments/],
      [['forget', '--keep-daily', 'x'], 2, /--keep-daily takes a number/],
      [['forget', '--keep-within', '3Q'], 2, /not a duration/],
      [['forget', '--keep-within-monthly', '1w'], 2, /--keep-within-monthly: "1w" is not a duration/],
      [['forget', '--group-by', 'bogus', '--keep-last', '1'], 2, /--group-by/],
      [['forget', '--keep-last', '1', '--prune', '--max-unused', '200%'], 2, /--max-unused must be/],
      [['forget', 'zz'], 2, /not a snapshot id/],
      [['forget', missing], 14, /no snapshot with id/],
      [['prune', '--max-unused', '200%'], 2, /--max-unused must be/],
      [['prune', '--max-unused', 'x'], 2, /not a size/],
      [['prune', 'extra'], 2, /too many arguments/],
      [['repair'], 2, /missing command: use one of index, snapshots/],
      [['repair', 'snapshot'], 2, /did you mean snapshots\?/],
      [['repair', 'index', '--bogus'], 2, /unknown option/],
      [['repair', 'snapshots', 'zz'], 2, /not a snapshot id/],
      [['repair', 'snapshots', missing], 14, /no snapshot with id/],
    ];
    const results = await Promise.all(cases.map(([args, code, says, extra]) => run(args, { ...env, ...extra }).then((r) => problems(r, code, 'malformed', says))));
    expect(results.flat().join('\n\n')).toBe('');
    expect(listing(repo)).toEqual(before);
    expect(existsSync(newRepo)).toBe(false);
    expect(existsSync(target)).toBe(false);
    expect(readFileSync(file, 'utf8')).toBe('not a directory\n');
  }, 300_000); // ~100 CLI runs: 64 s in a CI run, more on a loaded machine
});
