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
/** Default memory; iterations are calibrated to about half a second of CPU work. */
export const DEFAULT_MEMORY_KIB = 128 * 1024;
/**
 * Lanes of new keys. An attacker pays the total work of a derivation (memory
 * × passes) whatever the lane count, so two lanes cost a guess exactly as
 * much as one, while a defender with two cores waits half as long.
 */
export const DEFAULT_PARALLELISM = 2;
/** CPU time (all lanes together) one derivation of a new key should take. */
export const TARGET_CPU_MS = 500;
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
 * Picks parameters for a new key: fixed memory and lanes, iterations scaled
 * so one derivation costs about TARGET_CPU_MS of CPU on this machine (about
 * half that in wall time on two free cores).
 */
export async function calibrate(salt: Buffer): Promise<KdfParams> {
  const base = { algorithm: 'argon2id' as const, salt: salt.toString('base64') };
  if (lowCostKdfAllowed()) return { ...base, ...TEST_PARAMS };
  const probe: KdfParams = { ...base, parallelism: DEFAULT_PARALLELISM, memoryKiB: DEFAULT_MEMORY_KIB, iterations: 2 };
  // The first derivation also pays for faulting in 128 MiB of fresh memory
  // (measured here: ~2x slower), which made the calibration pick too few
  // iterations; time a second run too and keep the cheaper. CPU time, not
  // wall time: the lanes run on their own threads, and the attacker's cost is
  // their sum.
  let best = Infinity;
  for (let i = 0; i < 2; i++) {
    const c0 = process.cpuUsage();
    await deriveKek(Buffer.from('calibration'), probe);
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1000);
  }
  const perIteration = best / probe.iterations;
  const iterations = Math.min(MAX_ITERATIONS, Math.max(MIN_PARAMS.iterations, Math.round(TARGET_CPU_MS / perIteration)));
  return { ...probe, iterations };
}
