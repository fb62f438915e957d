/**
 * `coffer copy` through the CLI: snapshots move between repositories with
 * different keys and chunker settings (one of them remote, behind a real
 * `rclone serve restic`), restore bit-exact from the copy, are skipped when
 * already copied (also through a chain of copies), and an interrupted copy
 * resumes to a valid repository.
 */
import { mkdirSync, writeFileSync, cpSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, cofferSpawn, scratch, ROOT } from './helpers.js';
import { rcloneMissing, startRcloneRestic, type Server } from './servers.js';
import { buildRandomTree, compareScans, key, scanTree, subScan } from './tree-fixture.js';

const RCLONE = rcloneMissing();
const tmp = scratch('coffer-copy-');
const src = path.join(tmp.dir, 'src');
const A = path.join(tmp.dir, 'A');
const C = path.join(tmp.dir, 'C');
let B = path.join(tmp.dir, 'B');
let server: Server | undefined;
const base = { COFFER_CACHE_DIR: path.join(tmp.dir, 'cache') };

function ok(args: string[], env: Record<string, string>) {
  const r = coffer(args, { ...base, ...env });
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  return r;
}
const snaps = (repo: string, pw: string) => JSON.parse(ok(['snapshots', '--json', '-r', repo], { COFFER_PASSWORD: pw }).stdout);

beforeAll(async () => {
  cpSync(path.join(ROOT, 'src'), path.join(src, 'code'), { recursive: true });
  buildRandomTree(path.join(src, 'random'), 6, 6 << 20);
  if (!RCLONE) {
    mkdirSync(path.join(tmp.dir, 'server'));
    server = await startRcloneRestic(path.join(tmp.dir, 'server'));
    B = `rest:${server.url}B`;
  }
  ok(['init', '-r', A], { COFFER_PASSWORD: 'pw-a' });
  ok(['init', '-r', B, '--chunk-min', '64K', '--chunk-avg', '256K', '--chunk-max', '1M'], { COFFER_PASSWORD: 'pw-b' });
  ok(['init', '-r', C, '--compression', '0'], { COFFER_PASSWORD: 'pw-c' });
  ok(['backup', '-r', A, src, '--tag', 'first'], { COFFER_PASSWORD: 'pw-a' });
  writeFileSync(path.join(src, 'code', 'later.txt'), 'second snapshot\n');
  ok(['backup', '-r', A, src, '--tag', 'second'], { COFFER_PASSWORD: 'pw-a' });
});

afterAll(async () => {
  await server?.kill();
  tmp.cleanup();
});

describe(`coffer copy (destination ${RCLONE ? 'local' : 'REST'})`, () => {
  it('copies every snapshot, re-chunked and re-encrypted; the copy restores bit-exact and checks', async () => {
    const r = ok(['copy', '-r', B, '--from-repo', A, '--json'], { COFFER_PASSWORD: 'pw-b', COFFER_FROM_PASSWORD: 'pw-a' });
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(summary.copied).toHaveLength(2);
    const fromA = snaps(A, 'pw-a');
    const inB = snaps(B, 'pw-b');
    expect(inB.map((s: { original: string }) => s.original)).toEqual(fromA.map((s: { id: string }) => s.id));
    expect(inB.map((s: { tags: string[] }) => s.tags)).toEqual([['first'], ['second']]);
    expect(inB[1].parent).toBe(inB[0].id); // parents point to the copies
    expect(inB[0].tree).not.toBe(fromA[0].tree); // other keys: other ids
    const target = path.join(tmp.dir, 'restored');
    ok(['restore', 'latest', '-r', B, '--target', target], { COFFER_PASSWORD: 'pw-b' });
    expect(compareScans(await scanTree(src), subScan(await scanTree(target), key(src.slice(1))))).toEqual([]);
    ok(['check', '--read-data', '-r', B], { COFFER_PASSWORD: 'pw-b' });
    // The destination's own backup of the same files deduplicates against the copy.
    const own = JSON.parse(ok(['backup', '--json', '-r', B, '--force', src], { COFFER_PASSWORD: 'pw-b' }).stdout.trim().split('\n').at(-1)!);
    expect(own.data_blobs).toBe(0);
  });

  it('skips snapshots already copied, also through a chain of copies', () => {
    const again = JSON.parse(ok(['copy', '-r', B, '--from-repo', A, '--json'], { COFFER_PASSWORD: 'pw-b', COFFER_FROM_PASSWORD: 'pw-a' }).stdout.trim().split('\n').at(-1)!);
    expect([again.copied.length, again.skipped.length]).toEqual([0, 2]);
    // C takes only the first snapshot from A, then everything from B (the copies of A's).
    const first = snaps(A, 'pw-a')[0].id.slice(0, 10);
    ok(['copy', '-r', C, '--from-repo', A, first], { COFFER_PASSWORD: 'pw-c', COFFER_FROM_PASSWORD: 'pw-a' });
    const chain = JSON.parse(ok(['copy', '-r', C, '--from-repo', B, '--json'], { COFFER_PASSWORD: 'pw-c', COFFER_FROM_PASSWORD: 'pw-b' }).stdout.trim().split('\n').at(-1)!);
    // From B: its own backup (new) and the second copy (new); the first copy is skipped.
    expect([chain.copied.length, chain.skipped.length]).toEqual([2, 1]);
    expect(snaps(C, 'pw-c')).toHaveLength(3);
  });

  it('asks for the source password separately, with a clear error', () => {
    const r = coffer(['copy', '-r', C, '--from-repo', A], { ...base, COFFER_PASSWORD: 'pw-c' });
    expect(r.code).toBe(12);
    expect(r.stderr.trim()).toBe('coffer: no password for the source repository: use --from-password-file, --from-password-command or COFFER_FROM_PASSWORD');
    const wrong = coffer(['copy', '-r', C, '--from-repo', A], { ...base, COFFER_PASSWORD: 'pw-c', COFFER_FROM_PASSWORD: 'nope' });
    expect(wrong.code).toBe(12);
  });

  it('an interrupted copy resumes: the repository stays valid and the next run completes', async () => {
    const D = path.join(tmp.dir, 'D');
    ok(['init', '-r', D], { COFFER_PASSWORD: 'pw-d' });
    const child = cofferSpawn(['copy', '-r', D, '--from-repo', A], { ...base, COFFER_PASSWORD: 'pw-d', COFFER_FROM_PASSWORD: 'pw-a' });
    child.stderr.resume();
    const exited = new Promise<NodeJS.Signals | null>((r) => child.on('exit', (_code, sig) => r(sig)));
    // Killed as soon as the first snapshot is copied, while the second is under way.
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (/copied as/.test(out)) child.kill('SIGKILL');
    });
    expect(await exited).toBe('SIGKILL');
    expect(snaps(D, 'pw-d')).toHaveLength(1);
    ok(['check', '-r', D], { COFFER_PASSWORD: 'pw-d' });
    ok(['copy', '-r', D, '--from-repo', A], { COFFER_PASSWORD: 'pw-d', COFFER_FROM_PASSWORD: 'pw-a' });
    expect(snaps(D, 'pw-d').map((s: { original: string }) => s.original)).toEqual(snaps(A, 'pw-a').map((s: { id: string }) => s.id));
    ok(['check', '--read-data', '-r', D], { COFFER_PASSWORD: 'pw-d' });
  });
});
