/**
 * Restore options through the real CLI: --include/--exclude patterns,
 * --overwrite always|if-changed|never, --delete, --dry-run, --verify, and
 * restoring into a directory that already holds most of the data (only what
 * differs is written).
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, scratch } from './helpers.js';

let dir: string;
let cleanup: () => void;
let src: string;
let env: Record<string, string>;
// Random, so that the chunker cuts it into several chunks (average 1 MiB).
const big = randomBytes(6 << 20);

function run(args: string[]) {
  const r = coffer(args, env);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} → ${r.code}\n${r.stderr}`);
  return r;
}

function summary(args: string[]) {
  const lines = run([...args, '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l));
  return { summary: lines.at(-1), lines };
}

/** All paths under `root`, relative, sorted. */
function tree(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, n.name);
      out.push(path.relative(root, p));
      if (n.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out.sort();
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-restore-opts-'));
  src = path.join(dir, 'src');
  env = { COFFER_PASSWORD: 'pw', COFFER_REPOSITORY: path.join(dir, 'repo'), COFFER_CACHE_DIR: path.join(dir, 'cache') };
  mkdirSync(path.join(src, 'docs/sub'), { recursive: true });
  mkdirSync(path.join(src, 'cfg'));
  mkdirSync(path.join(src, 'empty'));
  writeFileSync(path.join(src, 'docs/a.txt'), 'a');
  writeFileSync(path.join(src, 'docs/sub/b.txt'), 'b');
  writeFileSync(path.join(src, 'docs/c.log'), 'c');
  writeFileSync(path.join(src, 'cfg/app.conf'), 'conf');
  writeFileSync(path.join(src, 'big.bin'), big);
  run(['init']);
  run(['backup', '-q', src]);
});

afterAll(() => cleanup());

describe('patterns', () => {
  it('--include with a glob restores matches and the directories leading to them, nothing else', () => {
    const t = path.join(dir, 't-include');
    run(['restore', 'latest', '--target', t, '--include', '*.txt']);
    const rel = tree(path.join(t, src));
    expect(rel).toEqual(['docs', 'docs/a.txt', 'docs/sub', 'docs/sub/b.txt']);
  });

  it('--include of a path restores the subtree; --exclude prunes', () => {
    const t = path.join(dir, 't-exclude');
    run(['restore', 'latest', '--target', t, '--include', `${src}/docs`, '--exclude', 'sub', '--exclude', '*.log']);
    expect(tree(path.join(t, src))).toEqual(['docs', 'docs/a.txt']);
  });
});

describe('existing data', () => {
  const t = () => path.join(dir, 't-existing');
  const at = (rel: string) => path.join(t(), src, rel);

  it('restores, then a second restore writes only what differs', () => {
    const { summary: first, lines } = summary(['restore', 'latest', '--target', t()]);
    // JSON lines: status lines (the last one complete), then the summary.
    const last = lines.filter((l) => l.message_type === 'status').at(-1);
    expect(last).toMatchObject({ total_files: 5, files_done: 5, bytes_done: big.length + 7, percent_done: 1 });
    expect(lines.at(-1).message_type).toBe('summary');
    expect(first.files_restored).toBe(5);
    expect(first.bytes_restored).toBe(big.length + 1 + 1 + 1 + 4);
    const inodeA = statSync(at('docs/a.txt')).ino;
    // Damage one byte in the middle of the big file and change a small one; add a stray file.
    const damaged = Buffer.from(big);
    damaged[3 << 20] ^= 0xff;
    writeFileSync(at('big.bin'), damaged);
    const inodeBig = statSync(at('big.bin')).ino;
    writeFileSync(at('docs/c.log'), 'X');
    writeFileSync(at('docs/stray.tmp'), 'stray');
    const second = summary(['restore', 'latest', '--target', t()]).summary;
    expect(second.files_unchanged).toBe(3);
    // One chunk of the big file (chunks are at most 8 MiB, average 1 MiB) and the small file.
    expect(second.bytes_restored).toBeGreaterThan(1);
    expect(second.bytes_restored).toBeLessThan(big.length);
    expect(readFileSync(at('big.bin')).equals(big)).toBe(true);
    expect(readFileSync(at('docs/c.log'), 'utf8')).toBe('c');
    expect(statSync(at('docs/a.txt')).ino).toBe(inodeA);
    expect(statSync(at('big.bin')).ino).toBe(inodeBig);
    expect(existsSync(at('docs/stray.tmp'))).toBe(true); // no --delete
  });

  it('a file that is now shorter or longer is fixed in place: matching chunks are not written', () => {
    const target = at('big.bin');
    writeFileSync(target, big.subarray(0, 4 << 20)); // cut short
    writeFileSync(at('docs/a.txt'), 'a plus junk at the end');
    const r = summary(['restore', 'latest', '--target', t()]).summary;
    expect(readFileSync(target).equals(big)).toBe(true);
    expect(readFileSync(at('docs/a.txt'), 'utf8')).toBe('a');
    expect(r.bytes_restored).toBeLessThan((2 << 20) + (8 << 20));
    expect(r.bytes_restored).toBeLessThan(big.length);
    // Longer: the tail is cut off, nothing needs writing.
    writeFileSync(target, Buffer.concat([big, Buffer.from('tail')]));
    const r2 = summary(['restore', 'latest', '--target', t(), '--verify']).summary;
    expect(readFileSync(target).equals(big)).toBe(true);
    expect(r2.bytes_restored).toBe(0);
    expect(r2.files_verified).toBe(5);
  });

  it('--overwrite if-changed trusts size+mtime; always checks content; never keeps files', () => {
    // Same size, same mtime (to the nanosecond, as restored), other content.
    const ns = statSync(at('docs/a.txt'), { bigint: true }).mtimeNs;
    writeFileSync(at('docs/a.txt'), 'Z');
    execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, at('docs/a.txt')]);
    expect(statSync(at('docs/a.txt'), { bigint: true }).mtimeNs).toBe(ns);
    run(['restore', 'latest', '--target', t(), '--overwrite', 'if-changed']);
    expect(readFileSync(at('docs/a.txt'), 'utf8')).toBe('Z');
    run(['restore', 'latest', '--target', t(), '--overwrite', 'never']);
    expect(readFileSync(at('docs/a.txt'), 'utf8')).toBe('Z');
    run(['restore', 'latest', '--target', t()]);
    expect(readFileSync(at('docs/a.txt'), 'utf8')).toBe('a');
    expect(coffer(['restore', 'latest', '--target', t(), '--overwrite', 'sometimes'], env).code).toBe(2);
  });

  it('--dry-run --delete lists what would go and changes nothing; --delete removes it', () => {
    writeFileSync(at('docs/c.log'), 'Y');
    const dry = summary(['restore', 'latest', '--target', t(), '--delete', '--dry-run']);
    expect(dry.summary).toMatchObject({ dry_run: true, files_deleted: 1 });
    const actions = Object.fromEntries(dry.lines.filter((l) => l.message_type === 'verbose_status').map((l) => [path.relative(path.join(t(), src), l.item), l.action]));
    expect(actions['docs/stray.tmp']).toBe('deleted');
    expect(actions['docs/c.log']).toBe('updated');
    expect(actions['docs/a.txt']).toBe('unchanged');
    expect(existsSync(at('docs/stray.tmp'))).toBe(true);
    expect(readFileSync(at('docs/c.log'), 'utf8')).toBe('Y');

    const real = summary(['restore', 'latest', '--target', t(), '--delete', '--verify']).summary;
    expect(real.files_deleted).toBe(1);
    expect(real.files_verified).toBe(5);
    expect(existsSync(at('docs/stray.tmp'))).toBe(false);
    expect(readFileSync(at('docs/c.log'), 'utf8')).toBe('c');
    expect(tree(path.join(t(), src))).toEqual(tree(src));
  });

  it('--dry-run into a new directory creates nothing', () => {
    const t2 = path.join(dir, 't-dry');
    const r = run(['restore', 'latest', '--target', t2, '--dry-run', '-v']);
    expect(r.stdout).toMatch(/would have restored .*big\.bin \(6\.00 MiB\)/);
    expect(existsSync(t2)).toBe(false);
  });
});
