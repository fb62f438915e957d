/**
 * Backup file selection through the real CLI on real trees: exclude patterns
 * (restic semantics), pattern files, tag files, CACHEDIR.TAG, size limit,
 * one file system, --files-from* and --stdin. What ends up in the snapshot
 * is read back with `ls --json`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, coffer, scratch } from './helpers.js';
import { PatternList, createFilter } from '../dist/src/archiver/select.js';

let dir: string;
let cleanup: () => void;
let src: string;
let env: Record<string, string>;

function run(args: string[], input?: string) {
  const r = coffer(args, env, input);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} → ${r.code}\n${r.stderr}`);
  return r;
}

/** Paths (relative to src) stored in the latest snapshot. */
function listed(): string[] {
  const lines = run(['ls', 'latest', '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l));
  return lines
    .filter((l) => l.struct_type === 'node' && l.path.startsWith(src + '/'))
    .map((l) => l.path.slice(src.length + 1))
    .sort();
}

function backup(...args: string[]): string[] {
  run(['backup', '-q', ...args]);
  return listed();
}

function put(rel: string, content: string | Buffer = 'x'): void {
  const p = path.join(src, rel);
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, content);
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-select-'));
  src = path.join(dir, 'src');
  env = { COFFER_PASSWORD: 'pw', COFFER_REPOSITORY: path.join(dir, 'repo'), COFFER_CACHE_DIR: path.join(dir, 'cache') };
  put('keep.txt');
  put('junk.tmp');
  put('docs/a.md');
  put('docs/b.TMP');
  put('docs/deep/x/notes.txt');
  put('docs/deep/x/y/z.log');
  put('node_modules/pkg/index.js');
  put('app/node_modules/pkg/index.js');
  put('build/out/bin.o');
  put('cache/CACHEDIR.TAG', 'Signature: 8a477f597d28d172789f06886806bc55\nmore');
  put('cache/data.bin');
  put('fakecache/CACHEDIR.TAG', 'not the signature');
  put('fakecache/data.bin');
  put('tagged/.nobackup');
  put('tagged/secret.txt');
  put('big/large.bin', Buffer.alloc(200_000, 1));
  put('big/small.bin', Buffer.alloc(1000, 1));
  put('sp ace/# not a comment.txt');
  put('nl/line\nbreak.txt');
  put('price$1');
  symlinkSync('keep.txt', path.join(src, 'link'));
  run(['init']);
});

afterAll(() => cleanup());

describe('exclude patterns', () => {
  it('follow restic semantics: unanchored at any depth, anchored from the root, directories prune their contents', () => {
    const got = backup(src, '--exclude', '*.tmp', '--exclude', 'node_modules', '--exclude', `${src}/build`, '--exclude', 'deep/**/*.log');
    expect(got).not.toContain('junk.tmp');
    expect(got).toContain('docs/b.TMP'); // case-sensitive
    expect(got.some((p) => p.includes('node_modules'))).toBe(false);
    expect(got.some((p) => p.startsWith('build'))).toBe(false);
    expect(got).not.toContain('docs/deep/x/y/z.log');
    expect(got).toContain('docs/deep/x/notes.txt');
    expect(got).toContain('keep.txt');
    expect(got).toContain('link');
  });

  it('--iexclude ignores case; "!" re-includes; a pattern does not match part of a name', () => {
    let got = backup(src, '--iexclude', '*.tmp');
    expect(got).not.toContain('docs/b.TMP');
    expect(got).not.toContain('junk.tmp');
    got = backup(src, '--exclude', 'docs/*', '--exclude', '!docs/a.md', '--exclude', 'eep');
    expect(got).toContain('docs/a.md');
    expect(got).not.toContain('docs/b.TMP');
    expect(got).not.toContain('docs/deep');
    expect(got).toContain('keep.txt'); // "eep" is not a component
  });

  it('reads pattern files with comments, blank lines and $VARS', () => {
    const f = path.join(dir, 'excludes');
    writeFileSync(f, `# comment\n\n  *.tmp  \n$PART/pkg\nprice$$1\n`);
    const fi = path.join(dir, 'iexcludes');
    writeFileSync(fi, 'DOCS\n');
    const r = coffer(['backup', '-q', src, '--exclude-file', f, '--iexclude-file', fi], { ...env, PART: 'node_modules' });
    expect(r.code, r.stderr).toBe(0);
    const got = listed();
    expect(got).not.toContain('junk.tmp');
    expect(got.some((p) => p.includes('node_modules/pkg'))).toBe(false);
    expect(got).toContain('node_modules');
    expect(got.some((p) => p.startsWith('docs'))).toBe(false);
    expect(got).not.toContain('price$1');
  });

  it('a missing exclude file is one clear usage error', () => {
    const r = coffer(['backup', src, '--exclude-file', path.join(dir, 'nope')], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^coffer: cannot read .*nope: ENOENT\n$/);
  });

  it('match ~30k paths fast (compiled once)', () => {
    const pl = new PatternList(['*.tmp', 'node_modules', '/home/me/.cache', '**/build/**', '*.o', 'foo/bar', '[Tt]humbs.db', '.git'].map((pattern) => ({ pattern })));
    const paths = Array.from({ length: 30_000 }, (_, i) => `/home/me/src/p${i % 50}/d${i % 300}/file${i}.${['ts', 'tmp', 'o', 'js'][i % 4]}`);
    const t = performance.now();
    let n = 0;
    for (const p of paths) if (pl.matches(p)) n++;
    expect(n).toBe(15_000);
    expect(performance.now() - t).toBeLessThan(1000);
  });
});

describe('other rules', () => {
  it('--exclude-caches needs the standard signature; --exclude-if-present takes NAME[:HEADER]; the directory and its tag file are kept', () => {
    let got = backup(src, '--exclude-caches', '--exclude-if-present', '.nobackup');
    expect(got.filter((p) => p.startsWith('cache'))).toEqual(['cache', 'cache/CACHEDIR.TAG']);
    expect(got).toContain('fakecache/data.bin');
    expect(got.filter((p) => p.startsWith('tagged'))).toEqual(['tagged', 'tagged/.nobackup']);
    got = backup(src, '--exclude-if-present', 'CACHEDIR.TAG:not the');
    expect(got).toContain('cache/data.bin');
    expect(got.filter((p) => p.startsWith('fakecache'))).toEqual(['fakecache', 'fakecache/CACHEDIR.TAG']);
  });

  it('--exclude-larger-than skips big files only', () => {
    const got = backup(src, '--exclude-larger-than', '100K');
    expect(got).not.toContain('big/large.bin');
    expect(got).toContain('big/small.bin');
    expect(coffer(['backup', src, '--exclude-larger-than', 'lots'], env).code).toBe(2);
  });

  const canMount = process.getuid?.() === 0 && spawnSync('mount', ['--version']).status === 0;
  it.skipIf(!canMount)('--one-file-system keeps a mount point as an empty directory', () => {
    const mnt = path.join(src, 'mnt');
    mkdirSync(mnt);
    try {
      execFileSync('mount', ['-t', 'tmpfs', 'none', mnt]);
    } catch {
      return; // not allowed here (e.g. an unprivileged container)
    }
    try {
      writeFileSync(path.join(mnt, 'inside.txt'), 'x');
      expect(backup(src)).toContain('mnt/inside.txt');
      const got = backup(src, '-x');
      expect(got).toContain('mnt');
      expect(got).not.toContain('mnt/inside.txt');
      expect(got).toContain('keep.txt');
    } finally {
      execFileSync('umount', [mnt]);
    }
  });

  it('filter library: size limit and tag file on a stat-like object', () => {
    const f = createFilter({ excludeLargerThan: 10 })!;
    const st = (size: number, dir = false) => ({ dev: 1n, size: BigInt(size), isDirectory: () => dir, isFile: () => !dir });
    expect(f('/x', st(11), 1n)).toBe('skip');
    expect(f('/x', st(10), 1n)).toBe('keep');
    expect(createFilter({})).toBeUndefined();
  });
});

describe('--files-from', () => {
  it('expands globs and skips comments; verbatim takes lines literally; raw takes NUL-separated names', () => {
    const list = path.join(dir, 'list');
    writeFileSync(list, `# comment\n  ${src}/docs/*.md\n\n${src}/keep.txt  \n`);
    let r = coffer(['backup', '-q', '--files-from', list], env);
    expect(r.code, r.stderr).toBe(0);
    let snap = JSON.parse(run(['snapshots', '--json']).stdout).at(-1);
    expect(snap.paths).toEqual([`${src}/docs/a.md`, `${src}/keep.txt`]);

    const verbatim = path.join(dir, 'verbatim');
    writeFileSync(verbatim, `${src}/sp ace/# not a comment.txt\n`);
    r = coffer(['backup', '-q', '--files-from-verbatim', verbatim], env);
    expect(r.code, r.stderr).toBe(0);
    snap = JSON.parse(run(['snapshots', '--json']).stdout).at(-1);
    expect(snap.paths).toEqual([`${src}/sp ace/# not a comment.txt`]);

    r = coffer(['backup', '-q', '--files-from-raw', '-'], env, `${src}/nl/line\nbreak.txt\0${src}/keep.txt\0`);
    expect(r.code, r.stderr).toBe(0);
    snap = JSON.parse(run(['snapshots', '--json']).stdout).at(-1);
    expect(snap.paths).toEqual([`${src}/keep.txt`, `${src}/nl/line\nbreak.txt`]);
  });

  it('a glob that matches nothing is a usage error', () => {
    const list = path.join(dir, 'list2');
    writeFileSync(list, `${src}/nothing-*.xyz\n`);
    const r = coffer(['backup', '--files-from', list], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/matches no files/);
  });
});

describe('--stdin', () => {
  it('stores standard input as /NAME and dumps it back bit-exact', () => {
    const data = Buffer.alloc(3 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) >>> 3;
    const r = spawnSync(process.execPath, [BIN, 'backup', '--stdin', '--stdin-filename', 'db.sql', '--json'], {
      env: { ...process.env, ...env, COFFER_TEST_LOW_KDF: '1' },
      input: data,
    });
    expect(r.status, r.stderr.toString()).toBe(0);
    const lines = r.stdout.toString().trim().split('\n').map((l) => JSON.parse(l));
    const summary = lines.at(-1);
    expect(summary.message_type).toBe('summary');
    expect(summary.total_bytes_processed).toBe(data.length);
    expect(lines.filter((l) => l.message_type === 'status').at(-1).bytes_done).toBe(data.length);
    const snap = JSON.parse(run(['snapshots', '--json']).stdout).at(-1);
    expect(snap.paths).toEqual(['/db.sql']);
    const d = spawnSync(process.execPath, [BIN, 'dump', 'latest', '/db.sql'], { env: { ...process.env, ...env, COFFER_TEST_LOW_KDF: '1' }, maxBuffer: 64 << 20 });
    expect(d.status).toBe(0);
    expect(Buffer.compare(d.stdout, data)).toBe(0);
  });

  it('rejects paths together with --stdin, and a file name with a slash', () => {
    expect(coffer(['backup', '--stdin', src], env, '').code).toBe(2);
    expect(coffer(['backup', '--stdin', '--stdin-filename', 'a/b'], env, '').code).toBe(2);
  });
});
