/**
 * Repository lifecycle through the real CLI, part 1: forget policies and
 * prune (plan, repack, --prune, bad arguments), and prune killed with SIGKILL
 * at chosen steps. After every change `check --read-data` passes and the
 * remaining snapshots restore bit-exact. (Locks, concurrency and resume:
 * lifecycle-locks.test.ts; check and repair: lifecycle-check.test.ts.)
 */
import { rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './helpers.js';
import { scanTree, type Scan } from './tree-fixture.js';
import { state, setUp, envFor, ok, lastJson, snapshotIds, backup, expectCheck, expectRestores, files, packBytes, writeFiles, killWhen } from './lifecycle-helpers.js';

let cleanup: () => void;
beforeAll(() => {
  cleanup = setUp('coffer-life-');
});
afterAll(() => cleanup?.());

describe('forget and prune', () => {
  let repo: string;
  let src: string;
  const ids: string[] = [];
  let scan3: Scan;

  beforeAll(async () => {
    repo = path.join(state.dir, 'repo-fp');
    src = path.join(state.dir, 'src-fp');
    state.env = envFor(repo);
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

  it('forget --keep-within-hourly: the newest of each hour within the duration, and the oldest (restic)', () => {
    const r = lastJson(ok(['forget', '--keep-within-hourly', '1d', '--dry-run', '--json']).stdout);
    const keep = r.groups[0].keep as { id: string; reasons: string[] }[];
    expect(keep[0]).toMatchObject({ id: ids[3], reasons: ['hourly within 1d'] });
    expect(keep.at(-1)!.id).toBe(ids[0]); // the oldest, in range
    for (const k of keep) expect(k.reasons.join()).toMatch(/^(oldest )?hourly within 1d$/);
    expect(snapshotIds()).toHaveLength(4);
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
      ['forget', '--keep-within-daily', '3w'],
      ['forget', '--keep-last', '1', '--group-by', 'color'],
      ['forget', 'not-hex'],
      ['prune', '--max-unused', 'lots'],
      ['check', '--read-data-subset', '3/2'],
      ['check', '--read-data-subset', '0%'],
    ]) {
      const r = coffer(args, state.env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/^coffer: /);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    }
    expect(coffer(['forget', 'abcdef0123'], state.env).code).toBe(14);
    expect(ok(['forget']).stdout).toMatch(/no policy/);
  });
});

describe('prune killed with SIGKILL', () => {
  it('leaves a valid repository at every step, and a rerun finishes the job', async () => {
    const repo = path.join(state.dir, 'repo-kill');
    const src = path.join(state.dir, 'src-kill');
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
    for (const k of keep.slice(0, -1)) ok(['restore', k.id, '--target', path.join(state.dir, `r-${k.id.slice(0, 8)}`)], e);
    await expectRestores(keep.at(-1)!.id, keep.at(-1)!.scan, src, e);
  });
});

