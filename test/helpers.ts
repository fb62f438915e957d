/** Shared test helpers: scratch directories and running the real CLI. */
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { Repository, LocalBackend, backup } from '../dist/src/index.js';
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BIN = path.join(ROOT, 'bin', 'coffer.js');

/** A fresh directory under the system temp dir, removed by the returned cleanup. */
export function scratch(prefix = 'coffer-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `coffer ARGS` synchronously with a low-cost KDF and the given environment. */
export function coffer(args: string[], env: Record<string, string | undefined> = {}, input?: string): RunResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, COFFER_TEST_LOW_KDF: '1', ...env },
    input,
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Starts `coffer ARGS` in the background (for kill tests). */
export function cofferSpawn(args: string[], env: Record<string, string | undefined> = {}) {
  return spawn(process.execPath, [BIN, ...args], { env: { ...process.env, COFFER_TEST_LOW_KDF: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Repository options with small chunks and packs: a few hundred KB make several packs. */
export const SMALL_REPO = { packSize: 64 * 1024, chunker: { minSize: 8 * 1024, avgSize: 16 * 1024, maxSize: 32 * 1024 } };

/** Writes `files` files f0, f1, … of random bytes (`size` + 101·i bytes) into `root`. */
export function randomFiles(root: string, files: number, size: number): void {
  mkdirSync(root, { recursive: true });
  for (let i = 0; i < files; i++) writeFileSync(path.join(root, `f${i}`), randomBytes(size + i * 101));
}

/** An environment for the CLI with every password source cleared, then `extra` (tests pick exactly one source). */
export function noSecretsEnv(repo: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    COFFER_REPOSITORY: repo,
    COFFER_PASSWORD: undefined,
    COFFER_PASSWORD_FILE: undefined,
    COFFER_PASSWORD_COMMAND: undefined,
    COFFER_RECOVERY_KEY: undefined,
    COFFER_NEW_PASSWORD: undefined,
    ...extra,
  };
}

/** Asserts exit 0 (showing stderr otherwise) and returns the result. */
export function expectOk(r: RunResult): RunResult {
  expect(r.code, r.stderr).toBe(0);
  return r;
}

/** The last line of a successful command's stdout, parsed as JSON (the --json summary). */
export function lastJson(r: RunResult): Record<string, unknown> {
  expectOk(r);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, unknown>;
}

/** Names of a local repository's objects of one type (data packs live in 2-hex-digit subfolders). */
export function objectNames(repo: string, type: string): string[] {
  const d = path.join(repo, type);
  if (type !== 'data') return readdirSync(d).filter((n) => /^[0-9a-f]{64}$/.test(n));
  return readdirSync(d).flatMap((s) => readdirSync(path.join(d, s)).filter((n) => /^[0-9a-f]{64}$/.test(n)));
}

/** Where a local repository keeps object `name` of `type`. */
export function objectPath(repo: string, type: string, name: string): string {
  return type === 'data' ? path.join(repo, 'data', name.slice(0, 2), name) : path.join(repo, type, name);
}

/**
 * Backs `src` up twice into the repository at `repoDir` from two sessions
 * opened before either writes (hosts "a" and "b"): neither knows the other's
 * blobs, as with two machines at once, so each stores its own copy of every blob.
 */
export async function backupFromTwoSessions(repoDir: string, src: string, password: string): Promise<void> {
  const open = () => Repository.open(new LocalBackend(repoDir), Buffer.from(password), { noCache: true, threads: 1 });
  const [a, b] = [await open(), await open()];
  try {
    await backup(a, { paths: [src], hostname: 'a' });
    await backup(b, { paths: [src], hostname: 'b' });
  } finally {
    await a.close();
    await b.close();
  }
}
