/**
 * Repository lifecycle through the real CLI, part 3: check (subsets, damaged,
 * missing or resized packs, --json), repair index, repair snapshots, damaged
 * snapshot files.
 */
import { cpSync, rmSync, statSync, writeFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer } from './helpers.js';
import { state, setUp, envFor, ok, lastJson, snapshotIds, backup, expectCheck, files, writeFiles } from './lifecycle-helpers.js';

let cleanup: () => void;
beforeAll(() => {
  cleanup = setUp('coffer-life-check-');
});
afterAll(() => cleanup?.());

describe('check subsets and repair index', () => {
  let repo: string;
  let e: Record<string, string>;

  beforeAll(() => {
    repo = path.join(state.dir, 'repo-check');
    const src = path.join(state.dir, 'src-check');
    e = envFor(repo);
    ok(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '256K'], e);
    for (let i = 0; i < 4; i++) {
      writeFiles(src, [`f${i}`], 300_000);
      backup(src, [], e);
    }
  });

  it('--read-data-subset n/t covers every pack once over t runs; x% reads a share; --json', () => {
    const packs = files(repo, 'data').length;
    let read = 0;
    for (const n of [1, 2]) {
      const r = lastJson(ok(['check', '--read-data-subset', `${n}/2`, '--json'], e).stdout);
      expect(r.problems).toEqual([]);
      expect(r.read_data_subset).toBe(`${n}/2`);
      read += r.packsRead;
    }
    expect(read).toBe(packs);
    expect(ok(['check', '--read-data-subset', '50%'], e).stdout).toMatch(/data of \d+ read/);
  });

  it('finds a damaged pack in the subset that holds it, and with --read-data', () => {
    const copy = path.join(state.dir, 'repo-check-damaged');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-damaged') };
    // The largest pack holds data blobs (a damaged tree would fail even the structural check).
    const size = (n: string) => statSync(path.join(copy, 'data', n.slice(0, 2), n)).size;
    const victim = files(copy, 'data').sort((a, b) => size(b) - size(a))[0];
    const p = path.join(copy, 'data', victim.slice(0, 2), victim);
    const fd = openSync(p, 'r+');
    writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 100);
    closeSync(fd);
    expect(coffer(['check'], ec).code).toBe(0); // headers and sizes are intact
    const t = 2;
    const n = (Number.parseInt(victim.slice(0, 8), 16) % t) + 1;
    const hit = coffer(['check', '--read-data-subset', `${n}/${t}`, '--json'], ec);
    expect(hit.code).toBe(13);
    expect(lastJson(hit.stdout).problems.some((q: { object: string }) => q.object === `data/${victim}`)).toBe(true);
    const other = (n % t) + 1;
    expect(coffer(['check', '--read-data-subset', `${other}/${t}`], ec).code).toBe(0);
    const full = coffer(['check', '--read-data'], ec);
    expect(full.code).toBe(13);
    expect(full.stderr).toMatch(new RegExp(`error: data/${victim}: `));
  });

  it('--read-data with several packs in flight reports each pack\'s problems together, in pack order', () => {
    const copy = path.join(state.dir, 'repo-check-many');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-many') };
    const packs = files(copy, 'data').sort();
    expect(packs.length).toBeGreaterThanOrEqual(4);
    const missing = packs[1];
    rmSync(path.join(copy, 'data', missing.slice(0, 2), missing));
    for (const n of packs) {
      if (n === missing) continue;
      const fd = openSync(path.join(copy, 'data', n.slice(0, 2), n), 'r+');
      writeSync(fd, Buffer.from([0xff, 0x00, 0xff]), 0, 3, 100);
      closeSync(fd);
    }
    const r = coffer(['check', '--read-data', '--json'], ec);
    expect(r.code).toBe(13);
    const problems = (lastJson(r.stdout).problems as { object: string; message: string }[]).filter((q) => q.object.startsWith('data/'));
    // Every pack, in pack order (the cache lists packs by id), each one's problems in one run.
    const order = problems.map((q) => q.object).filter((o, i, a) => i === 0 || a[i - 1] !== o);
    expect(order).toEqual(packs.map((n) => `data/${n}`));
    for (const n of packs) {
      const mine = problems.filter((q) => q.object === `data/${n}`).map((q) => q.message);
      if (n === missing) expect(mine).toEqual(['pack is missing']);
      else {
        expect(mine[0]).toBe('pack content does not match its name');
        expect(mine.length).toBeGreaterThanOrEqual(2);
      }
    }
  });

  it('check names a pack that is missing or has the wrong size', () => {
    const copy = path.join(state.dir, 'repo-check-missing');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-missing') };
    const [a, b] = files(copy, 'data');
    rmSync(path.join(copy, 'data', a.slice(0, 2), a));
    writeFileSync(path.join(copy, 'data', b.slice(0, 2), b), randomBytes(100), { flag: 'a' });
    const r = coffer(['check', '--json'], ec);
    expect(r.code).toBe(13);
    const problems = lastJson(r.stdout).problems as { object: string; message: string }[];
    expect(problems.find((q) => q.object === `data/${a}`)?.message).toMatch(/missing/);
    expect(problems.find((q) => q.object === `data/${b}`)?.message).toMatch(/bytes, the index says/);
    // prune refuses to run when snapshots need data that is gone.
    const p = coffer(['prune'], ec);
    expect(p.code).toBe(13);
    expect(p.stderr).toMatch(/prune refuses/);
  });

  it('repair index rebuilds damaged or lost index files from the pack headers', async () => {
    const copy = path.join(state.dir, 'repo-repair');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-repair') };
    const idx = files(copy, 'index');
    expect(idx.length).toBeGreaterThanOrEqual(2);
    // One index file lost, one damaged.
    rmSync(path.join(copy, 'index', idx[0]));
    writeFileSync(path.join(copy, 'index', idx[1]), randomBytes(300));
    expect(coffer(['check'], ec).code).toBe(13);
    const r = lastJson(ok(['repair', 'index', '--json'], ec).stdout);
    expect(r.packs).toBe(files(copy, 'data').length);
    expect(r.damaged).toEqual([]);
    expect(files(copy, 'index')).toHaveLength(r.new_index_files);
    expectCheck(ec);
    expect(files(copy, 'locks')).toEqual([]);
  });

  it('repair snapshots keeps what is intact, prune then drops the lost pack, check passes', async () => {
    const copy = path.join(state.dir, 'repo-repair-snap');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-repair-snap') };
    const before = snapshotIds(ec);
    // Lose the largest data pack (one file's content).
    const size = (n: string) => statSync(path.join(copy, 'data', n.slice(0, 2), n)).size;
    const victim = files(copy, 'data').sort((a, b) => size(b) - size(a))[0];
    rmSync(path.join(copy, 'data', victim.slice(0, 2), victim));
    expect(coffer(['check'], ec).code).toBe(13);
    const dry = lastJson(ok(['repair', 'snapshots', '--dry-run', '--json'], ec).stdout);
    const hurt = dry.snapshots.filter((x: { damaged: unknown[] }) => x.damaged.length);
    expect(hurt.length).toBeGreaterThanOrEqual(1);
    expect(hurt[0].damaged[0]).toMatchObject({ kind: 'file', message: expect.stringMatching(/data blobs missing/) });
    expect(snapshotIds(ec)).toEqual(before);
    const r = lastJson(ok(['repair', 'snapshots', '--forget', '--json'], ec).stdout);
    const repaired = r.snapshots.filter((x: { repaired_id: string | null }) => x.repaired_id).map((x: { repaired_id: string }) => x.repaired_id);
    expect(repaired).toHaveLength(hurt.length);
    const now = JSON.parse(ok(['snapshots', '--json'], ec).stdout) as { id: string; tags: string[] }[];
    expect(now).toHaveLength(before.length);
    expect(now.filter((x) => x.tags.includes('repaired')).map((x) => x.id).sort()).toEqual([...repaired].sort());
    // The index still names the lost pack until prune drops it.
    ok(['prune'], ec);
    expectCheck(ec);
    for (const id of repaired) ok(['restore', id, '--target', path.join(state.dir, `rr-${id.slice(0, 8)}`)], ec);
    expect(lastJson(ok(['repair', 'snapshots', '--json'], ec).stdout).snapshots.every((x: { damaged: unknown[] }) => x.damaged.length === 0)).toBe(true);
  });

  it('a damaged snapshot file: prune refuses, forget policies leave it alone, forget ID removes it', () => {
    const copy = path.join(state.dir, 'repo-bad-snap');
    cpSync(repo, copy, { recursive: true });
    const ec = { ...envFor(copy), COFFER_CACHE_DIR: path.join(state.dir, 'cache-bad-snap') };
    const [bad, ...rest] = files(copy, 'snapshots');
    writeFileSync(path.join(copy, 'snapshots', bad), randomBytes(200));
    const p = coffer(['prune'], ec);
    expect(p.code).toBe(13);
    const f = coffer(['forget', '--keep-last', '100'], ec);
    expect(f.code, f.stderr).toBe(0);
    expect(f.stderr).toMatch(new RegExp(`warning: snapshots/${bad} is damaged`));
    expect(files(copy, 'snapshots')).toHaveLength(rest.length + 1);
    ok(['forget', bad.slice(0, 12)], ec);
    expect(files(copy, 'snapshots')).toEqual(rest);
    ok(['prune'], ec);
    expectCheck(ec);
  });
});

