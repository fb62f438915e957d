/** Helpers shared by the lifecycle test files (CLI on real repositories). */
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { expect } from 'vitest';
import { coffer, cofferSpawn, scratch } from './helpers.js';
import { compareScans, key, removeTree, scanTree, subScan, type Scan } from './tree-fixture.js';

export const PASSWORD = 'lifecycle and its discontents';

/** Per test file: its scratch directory and the environment of its current repository. */
export const state = { dir: '', env: {} as Record<string, string> };

export function envFor(repo: string): Record<string, string> {
  return { COFFER_PASSWORD: PASSWORD, COFFER_REPOSITORY: repo, COFFER_CACHE_DIR: path.join(state.dir, 'cache') };
}

export function ok(args: string[], e = state.env) {
  const r = coffer(args, e);
  if (r.code !== 0) throw new Error(`coffer ${args.join(' ')} exited ${r.code}\n${r.stderr}`);
  return r;
}

export function lastJson(stdout: string) {
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

export function snapshotIds(e = state.env): string[] {
  return JSON.parse(ok(['snapshots', '--json'], e).stdout).map((s: { id: string }) => s.id);
}

export function backup(src: string, extra: string[] = [], e = state.env): { id: string; dataAdded: number } {
  const s = lastJson(ok(['backup', '--json', ...extra, src], e).stdout);
  return { id: s.snapshot_id, dataAdded: s.data_added };
}

export function expectCheck(e = state.env, readData = true): void {
  const r = coffer(['check', ...(readData ? ['--read-data'] : [])], e);
  expect(r.code, r.stdout + r.stderr).toBe(0);
}

export async function expectRestores(snapshot: string, expected: Scan, src: string, e = state.env): Promise<void> {
  const target = path.join(state.dir, `restore-${randomBytes(4).toString('hex')}`);
  ok(['restore', snapshot, '--target', target], e);
  const got = subScan(await scanTree(target), key(src.slice(1)));
  expect(compareScans(expected, got)).toEqual([]);
  rmSync(target, { recursive: true, force: true });
}

export function files(repo: string, type: 'data' | 'index' | 'locks' | 'snapshots'): string[] {
  const root = path.join(repo, type);
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else if (/^[0-9a-f]{64}$/.test(e.name)) out.push(e.name);
    }
  };
  walk(root);
  return out.sort();
}

export function packBytes(repo: string): number {
  let n = 0;
  const data = path.join(repo, 'data');
  for (const d of readdirSync(data)) for (const f of readdirSync(path.join(data, d))) n += statSync(path.join(data, d, f)).size;
  return n;
}

export function writeFiles(d: string, names: string[], size: number): void {
  mkdirSync(d, { recursive: true });
  for (const n of names) writeFileSync(path.join(d, n), randomBytes(size));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Spawns coffer and SIGKILLs it once `when()` holds (or its stderr matches). */
export async function killWhen(args: string[], e: Record<string, string>, when: (stderr: string) => boolean): Promise<{ killed: boolean; stderr: string }> {
  const child = cofferSpawn(args, e);
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  child.stdout.resume();
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  let done = false;
  void exited.then(() => (done = true));
  const t0 = Date.now();
  while (!done) {
    if (when(stderr)) {
      child.kill('SIGKILL');
      break;
    }
    if (Date.now() - t0 > 30_000) {
      child.kill('SIGKILL');
      throw new Error(`coffer ${args.join(' ')} did not reach the kill point: ${stderr}`);
    }
    await sleep(2);
  }
  const r = await exited;
  return { killed: r.signal === 'SIGKILL', stderr };
}

/** Creates the file's scratch directory; returns the cleanup. */
export function setUp(prefix: string): () => void {
  state.dir = scratch(prefix).dir;
  return () => {
    if (state.dir) removeTree(state.dir);
  };
}
