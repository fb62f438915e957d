/** Shared test helpers: scratch directories and running the real CLI. */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
