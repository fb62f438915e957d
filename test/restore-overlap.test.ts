/**
 * Restore hands planned data to the workers while the plan goes on (every
 * few MiB, see Restorer.flush). A blob used again later in the walk either
 * joins its first read (queued or in flight) or is read again: both must give
 * exact files. Here the same contents (a one-chunk file and a several-chunk
 * file) come back before and after the flush thresholds, in many
 * directories, next to files that differ.
 */
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, utimesSync, chmodSync, chownSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { coffer, expectOk, scratch } from './helpers.js';

let dir: string;
let cleanup: () => void;
let src: string;
let env: Record<string, string>;

/** Relative path → [content, mode, mtime ms] of every file under `root`. */
function files(root: string): Map<string, [Buffer, number, number]> {
  const out = new Map<string, [Buffer, number, number]>();
  const walk = (d: string) => {
    for (const n of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, n.name);
      if (n.isDirectory()) walk(p);
      else {
        const st = statSync(p);
        out.set(path.relative(root, p), [readFileSync(p), st.mode, st.mtimeMs]);
      }
    }
  };
  walk(root);
  return out;
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-restore-overlap-'));
  src = path.join(dir, 'src');
  env = { COFFER_PASSWORD: 'pw', COFFER_REPOSITORY: path.join(dir, 'repo'), COFFER_CACHE_DIR: path.join(dir, 'cache') };
  const small = randomBytes(70_000);
  const multi = randomBytes(3 << 20); // several chunks (average 1 MiB)
  // Directories in walk (name) order: uses of `small`/`multi` before, between and after the fillers.
  const layout: [string, number][] = [['a', 0], ['b', 5 << 20], ['c', 0], ['d', 10 << 20], ['e', 0], ['f', 20 << 20], ['g', 0]];
  let t = 1_600_000_000;
  for (const [name, filler] of layout) {
    const d = path.join(src, name);
    mkdirSync(d, { recursive: true });
    if (filler) writeFileSync(path.join(d, 'filler.bin'), randomBytes(filler));
    for (let i = 0; i < 40; i++) {
      const sub = path.join(d, `s${String(i).padStart(2, '0')}`);
      mkdirSync(sub);
      writeFileSync(path.join(sub, 'same.txt'), small);
      writeFileSync(path.join(sub, 'own.txt'), randomBytes(1000 + i));
      // 0o666: bits the umask (022) takes away at creation, so the worker must still chmod.
      chmodSync(path.join(sub, 'same.txt'), [0o640, 0o604, 0o666][i % 3]);
      utimesSync(path.join(sub, 'same.txt'), t, t++);
    }
    writeFileSync(path.join(d, 'multi.bin'), multi);
    writeFileSync(path.join(d, 'multi-plus.bin'), Buffer.concat([multi, small]));
  }
  expectOk(coffer(['init'], env));
  expectOk(coffer(['backup', '-q', src], env));
}, 120_000);

afterAll(() => cleanup?.());

it('restores exactly when contents repeat across the plan’s batches (joined or read again)', () => {
  const target = path.join(dir, 'out');
  expectOk(coffer(['restore', '-q', 'latest', '--target', target], env));
  const want = files(src);
  const got = files(path.join(target, src));
  expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [p, [content, mode, mtime]] of want) {
    const g = got.get(p)!;
    expect(g[0].equals(content), p).toBe(true);
    expect(g[1], p).toBe(mode);
    expect(g[2], p).toBe(mtime);
  }
}, 120_000);

const IS_ROOT = process.getuid?.() === 0;

it.runIf(IS_ROOT)('as root, into a set-group-ID directory: files keep their own group (the worker chowns them there)', () => {
  const target = path.join(dir, 'sgid');
  mkdirSync(target);
  chownSync(target, 0, 5678);
  chmodSync(target, 0o2775);
  expectOk(coffer(['restore', '-q', 'latest', '--target', target, '--include', '/**/a/s0*'], env));
  const root = path.join(target, src, 'a');
  const st = statSync(path.join(root, 's01', 'same.txt'));
  expect(st.gid).toBe(0); // not the directory's 5678
  expect(st.mode & 0o7777).toBe(0o604);
  // A directory the restore made inside it inherited the bit: same there.
  expect(statSync(path.join(root, 's02', 'own.txt')).gid).toBe(0);
}, 60_000);
