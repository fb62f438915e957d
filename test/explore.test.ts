/**
 * Exploring snapshots through the real CLI: ls, find, diff, stats, dump (file
 * and tar), tag, cat, and the ambiguous-prefix message.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, linkSync, mkdirSync, statSync, readFileSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, coffer, cofferSpawn, scratch } from './helpers.js';

let dir: string;
let cleanup: () => void;
let src: string;
let env: Record<string, string>;
let snap1: string;
let snap2: string;
const big = Buffer.alloc(2 << 20);

function run(args: string[]) {
  const r = coffer(args, env);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} → ${r.code}\n${r.stderr}`);
  return r;
}

function jsonLines(s: string) {
  return s.trim().split('\n').map((l) => JSON.parse(l));
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-explore-'));
  src = path.join(dir, 'src');
  env = { COFFER_PASSWORD: 'pw', COFFER_REPOSITORY: path.join(dir, 'repo'), COFFER_CACHE_DIR: path.join(dir, 'cache') };
  for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
  mkdirSync(path.join(src, 'docs/sub'), { recursive: true });
  mkdirSync(path.join(src, 'gone'));
  writeFileSync(path.join(src, 'docs/report.pdf'), 'pdf v1');
  writeFileSync(path.join(src, 'docs/sub/notes.txt'), 'notes');
  writeFileSync(path.join(src, 'docs/same.txt'), 'same');
  writeFileSync(path.join(src, 'gone/old.txt'), 'old');
  writeFileSync(path.join(src, 'big.bin'), big);
  writeFileSync(path.join(src, 'a'.repeat(120) + '-é.txt'), 'long name');
  symlinkSync('docs/report.pdf', path.join(src, 'link'));
  linkSync(path.join(src, 'docs/sub/notes.txt'), path.join(src, 'docs/sub/hardlink.txt'));
  // An old modification time (for find --oldest/--newest); the hard link shares it.
  const notesTime = new Date('2020-06-15T12:00:00Z');
  utimesSync(path.join(src, 'docs/sub/notes.txt'), notesTime, notesTime);
  run(['init']);
  run(['backup', '-q', src, '--tag', 'first']);
  writeFileSync(path.join(src, 'docs/report.pdf'), 'pdf v2!');
  chmodSync(path.join(src, 'docs/same.txt'), 0o600);
  rmSync(path.join(src, 'gone'), { recursive: true });
  writeFileSync(path.join(src, 'new.txt'), 'new');
  run(['backup', '-q', src]);
  const snaps = JSON.parse(run(['snapshots', '--json']).stdout);
  snap1 = snaps[0].id;
  snap2 = snaps[1].id;
});

afterAll(() => cleanup());

describe('ls', () => {
  it('lists a directory, long format, recursive, JSON', () => {
    const plain = run(['ls', snap2, `${src}/docs`]).stdout.trim().split('\n');
    expect(plain).toEqual([`${src}/docs`, `${src}/docs/report.pdf`, `${src}/docs/same.txt`, `${src}/docs/sub`]);
    const rec = run(['ls', snap2, `${src}/docs`, '--recursive']).stdout;
    expect(rec).toContain(`${src}/docs/sub/notes.txt`);
    expect(rec).toContain(`${src}/docs/sub/hardlink.txt`);
    const long = run(['ls', '-l', snap2, `${src}/docs`]).stdout;
    expect(long).toMatch(/^-rw------- .* 4 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d .*\/docs\/same\.txt$/m);
    expect(run(['ls', '-l', snap2, src]).stdout).toMatch(/^lrwxrwxrwx .*\/link -> docs\/report\.pdf$/m);
    const j = jsonLines(run(['ls', snap2, src, '--json']).stdout);
    expect(j[0]).toMatchObject({ struct_type: 'snapshot', id: snap2 });
    expect(j.find((n) => n.name === 'big.bin')).toMatchObject({ type: 'file', size: big.length, struct_type: 'node' });
  });

  it('a path that is not in the snapshot is one clear error', () => {
    const r = coffer(['ls', snap2, `${src}/nope`], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(`coffer: ${src}/nope: no such file or directory in the snapshot\n`);
  });
});

describe('find', () => {
  it('finds by name across snapshots, and by path with **', () => {
    const out = run(['find', '*.txt']).stdout;
    expect(out).toContain(`Found matching entries in snapshot ${snap1.slice(0, 8)}`);
    expect(out).toContain(`${src}/gone/old.txt`);
    expect(out).toContain(`${src}/new.txt`);
    const j = JSON.parse(run(['find', 'docs/**/*.txt', '--json']).stdout);
    expect(j).toHaveLength(2);
    expect(j[1].matches.map((m: { path: string }) => m.path).sort()).toEqual([`${src}/docs/same.txt`, `${src}/docs/sub/hardlink.txt`, `${src}/docs/sub/notes.txt`]);
    const none = JSON.parse(run(['find', 'NEW.TXT', '--json']).stdout);
    expect(none).toEqual([]);
    const ci = JSON.parse(run(['find', '-i', 'NEW.TXT', '--json']).stdout);
    expect(ci.map((s: { snapshot: string }) => s.snapshot)).toEqual([snap2]);
  });

  it('--oldest/--newest keep only entries modified in that range, both ends inclusive (restic)', () => {
    const paths = (args: string[]) =>
      (JSON.parse(run(['find', ...args, '--json']).stdout) as { matches: { path: string }[] }[]).map((s) => s.matches.map((m) => m.path.slice(src.length)).sort());
    const old = ['/docs/sub/hardlink.txt', '/docs/sub/notes.txt'];
    expect(paths(['*.txt', '--oldest', '2020-06-15T12:00:00Z', '--newest', '2020-06-15 12:00:00 +0000'])).toEqual([old, old]);
    expect(paths(['*.txt', '-N', '15.06.2020 13:00:00 +0100'])).toEqual([old, old]);
    expect(paths(['*.txt', '-N', '2020-06-15 11:59:59 +0000'])).toEqual([]);
    // Entries modified after 2020-06-16: everything but the old ones (the pattern matches files only).
    const recent = paths(['*.txt', '--oldest', '2020-06-16']);
    expect(recent).toHaveLength(2);
    for (const r of recent) expect(r.some((p) => old.includes(p))).toBe(false);
    expect(recent[1]).toEqual(['/' + 'a'.repeat(120) + '-é.txt', '/docs/same.txt', '/new.txt']);
    for (const [args, says] of [
      [['x', '--oldest', '2026-02-30'], /--oldest: "2026-02-30" is not a date\/time/],
      [['x', '--newest', 'yesterday'], /--newest: "yesterday" is not a date\/time/],
      [['x', '--oldest', '2026-02-01', '--newest', '2026-01-01'], /--oldest is later than --newest/],
    ] as const) {
      const r = coffer(['find', ...args], env);
      expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(says)]);
    }
  });
});

describe('diff', () => {
  it('reports added, removed, modified and metadata-only changes', () => {
    const j = jsonLines(run(['diff', snap1, snap2, '--json']).stdout);
    const changes = Object.fromEntries(j.filter((l) => l.message_type === 'change' && l.path.startsWith(`${src}/`)).map((l) => [l.path.slice(src.length), l.modifier]));
    expect(changes).toEqual({
      '/docs/report.pdf': 'M',
      '/docs/same.txt': 'U',
      '/gone/': '-',
      '/gone/old.txt': '-',
      '/new.txt': '+',
      '/': 'U', // src itself: an entry was added and one removed
    });
    const stats = j.at(-1);
    expect(stats).toMatchObject({ message_type: 'statistics', changed_files: 1, added: { files: 1, bytes: 3 }, removed: { files: 1, dirs: 1, bytes: 3 } });
    const text = run(['diff', snap1, snap2]).stdout;
    expect(text).toMatch(/^M {4}.*\/docs\/report\.pdf$/m);
    expect(text).toMatch(/^Files: +1 new, 1 removed, 1 changed$/m);
    expect(run(['diff', snap2, snap2, '--json']).stdout.trim().split('\n')).toHaveLength(1);
    // Only one directory of each snapshot.
    const sub = jsonLines(run(['diff', `${snap1}:${src}/docs`, `${snap2}:${src}/docs`, '--json']).stdout);
    expect(sub.filter((l) => l.message_type === 'change').map((l) => `${l.modifier} ${l.path}`)).toEqual([`M ${src}/docs/report.pdf`, `U ${src}/docs/same.txt`]);
    expect(coffer(['diff', `${snap1}:${src}/big.bin`, snap2], env).code).toBe(2);
  });
});

describe('stats', () => {
  it('restore-size counts every snapshot; raw-data counts distinct blobs once', () => {
    const one = JSON.parse(run(['stats', snap1, '--json']).stdout);
    expect(one.total_file_count).toBe(7); // the hard link is a file too, its bytes count once
    expect(one.total_size).toBe(6 + 5 + 4 + 3 + big.length + 9);
    const all = JSON.parse(run(['stats', '--json']).stdout);
    expect(all.snapshots_count).toBe(2);
    expect(all.total_size).toBe(one.total_size + (7 + 5 + 4 + 3 + big.length + 9));
    const raw = JSON.parse(run(['stats', '--mode', 'raw-data', '--json']).stdout);
    // big.bin is stored once although both snapshots hold it.
    expect(raw.total_uncompressed_size).toBeGreaterThan(big.length);
    expect(raw.total_uncompressed_size).toBeLessThan(1.5 * big.length);
    expect(raw.dedup_ratio).toBeGreaterThan(1.5);
    expect(raw.compression_ratio).toBeGreaterThan(0.9);
    expect(raw.total_size).toBeGreaterThan(0);
    expect(coffer(['stats', '--mode', 'bogus'], env).code).toBe(2);
  });
});

describe('dump', () => {
  it('writes a file bit-exact and a directory as a tar that tar extracts', () => {
    const f = spawnSync(process.execPath, [BIN, 'dump', snap1, `${src}/big.bin`], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    expect(f.status).toBe(0);
    expect(f.stdout.equals(big)).toBe(true);
    const t = spawnSync(process.execPath, [BIN, 'dump', snap2, src], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    expect(t.status, t.stderr.toString()).toBe(0);
    const out = path.join(dir, 'untar');
    mkdirSync(out);
    const x = spawnSync('tar', ['-x', '-C', out], { input: t.stdout });
    expect(x.status, x.stderr.toString()).toBe(0);
    const root = path.join(out, src);
    expect(readFileSync(path.join(root, 'big.bin')).equals(big)).toBe(true);
    expect(readFileSync(path.join(root, 'docs/report.pdf'), 'utf8')).toBe('pdf v2!');
    expect(readFileSync(path.join(root, 'a'.repeat(120) + '-é.txt'), 'utf8')).toBe('long name');
    expect(statSync(path.join(root, 'docs/sub/hardlink.txt')).ino).toBe(statSync(path.join(root, 'docs/sub/notes.txt')).ino);
    expect(readFileSync(path.join(root, 'docs/sub/hardlink.txt'), 'utf8')).toBe('notes');
    expect(readdirSync(root).sort()).toEqual(['a'.repeat(120) + '-é.txt', 'big.bin', 'docs', 'link', 'new.txt'].sort());
  });
});

describe('interrupting', () => {
  it('Ctrl-C stops a read-only command at once with exit code 130', async () => {
    // Nobody reads stdout: dump blocks on the full pipe until interrupted.
    const child = cofferSpawn(['dump', snap1, `${src}/big.bin`], env);
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    await new Promise((r) => child.stdout.once('readable', r)); // it is writing (and the handler is installed)
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(130);
    expect(stderr).toBe('coffer: interrupted\n');
  });
});

describe('tag', () => {
  it('adds, removes and sets tags, rewriting the snapshot with "original"', () => {
    run(['tag', snap1, snap1.slice(0, 12), '--add', 'keep,monthly']);
    let snaps = JSON.parse(run(['snapshots', '--json']).stdout);
    expect(snaps).toHaveLength(2);
    const tagged = snaps.find((s: { tags: string[] }) => s.tags.includes('keep'));
    expect(tagged.tags).toEqual(['first', 'keep', 'monthly']);
    expect(tagged.id).not.toBe(snap1);
    const cat = JSON.parse(run(['cat', 'snapshot', tagged.id]).stdout);
    expect(cat.original).toBe(snap1);
    run(['tag', '--tag', 'keep', '--remove', 'first']);
    run(['tag', '--tag', 'keep', '--set', 'only']);
    snaps = JSON.parse(run(['snapshots', '--json']).stdout);
    const again = snaps.find((s: { tags: string[] }) => s.tags.includes('only'));
    expect(again.tags).toEqual(['only']);
    expect(JSON.parse(run(['cat', 'snapshot', again.id]).stdout).original).toBe(snap1);
    snap1 = again.id;
    expect(coffer(['tag', 'latest'], env).code).toBe(2);
  });
});

describe('cat', () => {
  it('prints config, snapshot, tree, index and key as JSON without secrets', () => {
    const config = JSON.parse(run(['cat', 'config']).stdout);
    expect(config.chunker.avgSize).toBe(1 << 20);
    const snap = JSON.parse(run(['cat', 'snapshot', 'latest']).stdout);
    const tree = JSON.parse(run(['cat', 'tree', snap.tree]).stdout);
    expect(Array.isArray(tree.nodes)).toBe(true);
    const indexName = readdirSync(path.join(env.COFFER_REPOSITORY, 'index'))[0];
    const index = JSON.parse(run(['cat', 'index', indexName.slice(0, 10)]).stdout);
    expect(index.packs.length).toBeGreaterThan(0);
    const keyName = readdirSync(path.join(env.COFFER_REPOSITORY, 'keys'))[0];
    const keyOut = run(['cat', 'key', keyName]).stdout;
    const key = JSON.parse(keyOut);
    expect(key).toMatchObject({ id: keyName, kind: 'passphrase', current: true });
    const stored = JSON.parse(readFileSync(path.join(env.COFFER_REPOSITORY, 'keys', keyName), 'utf8'));
    expect(keyOut).not.toContain(stored.wrapped);
    expect(keyOut).not.toContain(stored.meta);
    expect(coffer(['cat', 'nonsense'], env).code).toBe(2);
  });
});

describe('snapshot prefixes', () => {
  it('an ambiguous prefix names the candidates on one line', () => {
    // Find a one-character prefix shared by two snapshots, making more if needed.
    let ids: string[] = JSON.parse(run(['snapshots', '--json']).stdout).map((s: { id: string }) => s.id);
    for (let i = 0; i < 20 && !ids.some((a, k) => ids.some((b, m) => m !== k && a[0] === b[0])); i++) {
      run(['backup', '-q', '--force', `${src}/new.txt`]);
      ids = JSON.parse(run(['snapshots', '--json']).stdout).map((s: { id: string }) => s.id);
    }
    const a = ids.find((x, k) => ids.some((y, m) => m !== k && x[0] === y[0]))!;
    const r = coffer(['ls', a[0]], env);
    expect(r.code).toBe(2);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^coffer: snapshot prefix ${a[0]} is ambiguous: it matches ${a[0]}[0-9a-f]{7}, ${a[0]}[0-9a-f]{7}.*; give more characters$`));
  });
});

describe('environment', () => {
  it('COFFER_JSON, COFFER_QUIET and COFFER_THREADS stand in for --json, --quiet and --threads; the command line wins', () => {
    const j = coffer(['stats'], { ...env, COFFER_JSON: '1' });
    expect(j.code).toBe(0);
    expect(JSON.parse(j.stdout).mode).toBe('restore-size');
    const q = coffer(['tag', 'latest', '--add', 'envtest'], { ...env, COFFER_QUIET: 'true' });
    expect(q.code).toBe(0);
    expect(q.stdout).toBe('');
    const off = coffer(['stats'], { ...env, COFFER_JSON: '0' });
    expect(off.stdout).toMatch(/^Stats in restore-size mode:/);
    expect(coffer(['stats', '--threads', '1'], { ...env, COFFER_THREADS: '2' }).code).toBe(0);
    expect(coffer(['stats', '--threads', 'many'], env).code).toBe(2);
  });
});

describe('help and usage errors', () => {
  it('every command has examples in its --help', () => {
    const top = coffer(['--help']);
    expect(top.code).toBe(0);
    const commands = [...top.stdout.split('Commands:')[1].matchAll(/^ {2}([a-z-]+)/gm)].map((m) => m[1]).filter((c) => c !== 'help');
    expect(commands).toEqual(expect.arrayContaining(['backup', 'restore', 'ls', 'find', 'diff', 'stats', 'dump', 'tag', 'cat']));
    const missing = commands.filter((c) => !/\nExamples:\n {2}coffer /.test(coffer([c, '--help']).stdout));
    expect(missing).toEqual([]);
  });

  it('misuse gives one line with a suggestion and exit code 2', () => {
    for (const [args, re] of [
      [['backup', '--exclud', 'x'], /^coffer: unknown option '--exclud'; did you mean --exclude\? \(see "coffer backup --help"\)$/],
      [['lss'], /^coffer: unknown command 'lss'; did you mean ls\? \(see "coffer --help"\)$/],
      [['diff', 'abc'], /^coffer: missing required argument 'snapshot2' \(see "coffer diff --help"\)$/],
    ] as const) {
      const r = coffer([...args], env);
      expect(r.code).toBe(2);
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
      expect(r.stderr.trimEnd()).toMatch(re);
    }
  });
});
