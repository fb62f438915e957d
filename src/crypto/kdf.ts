/**
 * Passphrase → key-encryption key, with Argon2id (memory-hard), via the
 * native @node-rs/argon2 binding. Parameters are stored in each key file.
 */
import { createRequire } from 'node:module';
import type * as Argon2 from '@node-rs/argon2';
import { Algorithm } from '@node-rs/argon2'; // a const enum: inlined, no runtime import

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let argon2: typeof Argon2 | undefined;
const hashRaw: typeof Argon2.hashRaw = (...a) => (argon2 ??= createRequire(import.meta.url)('@node-rs/argon2') as typeof Argon2).hashRaw(...a);

export interface KdfParams {
  algorithm: 'argon2id';
  /** Memory in KiB. */
  memoryKiB: number;
  iterations: number;
  parallelism: number;
  /** Base64 salt, 16+ bytes. */
  salt: string;
}

/** Floor for any key created outside tests: refuses weak settings. */
export const MIN_PARAMS = { memoryKiB: 64 * 1024, iterations: 2, parallelism: 1 };
/** Documented low-cost setting for tests only (COFFER_TEST_LOW_KDF=1). */
export const TEST_PARAMS = { memoryKiB: 1024, iterations: 1, parallelism: 1 };
/** Default memory; iterations are calibrated to about half a second. */
export const DEFAULT_MEMORY_KIB = 128 * 1024;
export const TARGET_MS = 500;
const MAX_ITERATIONS = 64;

export function lowCostKdfAllowed(): boolean {
  return process.env.COFFER_TEST_LOW_KDF === '1';
}

export async function deriveKek(passphrase: Uint8Array, p: KdfParams): Promise<Buffer> {
  if (p.algorithm !== 'argon2id') throw new RangeError(`unsupported KDF ${String(p.algorithm)}`);
  return hashRaw(Buffer.from(passphrase), {
    algorithm: Algorithm.Argon2id,
    memoryCost: p.memoryKiB,
    timeCost: p.iterations,
    parallelism: p.parallelism,
    outputLen: 32,
    salt: Buffer.from(p.salt, 'base64'),
  });
}

export function checkKdfStrength(p: Pick<KdfParams, 'memoryKiB' | 'iterations' | 'parallelism'>): void {
  if (lowCostKdfAllowed()) return;
  if (p.memoryKiB < MIN_PARAMS.memoryKiB || p.iterations < MIN_PARAMS.iterations) {
    throw new RangeError(
      `KDF settings too weak (m=${p.memoryKiB} KiB, t=${p.iterations}); minimum is m=${MIN_PARAMS.memoryKiB} KiB, t=${MIN_PARAMS.iterations}`,
    );
  }
}

/**
 * Picks parameters for a new key: fixed memory, iterations scaled so one
 * derivation takes about TARGET_MS on this machine.
 */
export async function calibrate(salt: Buffer): Promise<KdfParams> {
  const base = { algorithm: 'argon2id' as const, salt: salt.toString('base64'), parallelism: 1 };
  if (lowCostKdfAllowed()) return { ...base, ...TEST_PARAMS };
  const probe: KdfParams = { ...base, memoryKiB: DEFAULT_MEMORY_KIB, iterations: 2 };
  // The first derivation also pays for faulting in 128 MiB of fresh memory
  // (measured here: ~2x slower), which made the calibration pick too few
  // iterations; time a second run too and keep the faster.
  let best = Infinity;
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    await deriveKek(Buffer.from('calibration'), probe);
    best = Math.min(best, performance.now() - t0);
  }
  const perIteration = best / 2;
  const iterations = Math.min(MAX_ITERATIONS, Math.max(MIN_PARAMS.iterations, Math.round(TARGET_MS / perIteration)));
  return { ...probe, iterations };
}
