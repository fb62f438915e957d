/** What every command shares: parsed global options, output, password, opening the repository. */
import { CofferError } from '../errors.js';
import { openBackend } from '../storage/location.js';
import { Repository, defaultCacheDir } from '../repo/repository.js';
import type { RepoSecret } from '../repo/keyring.js';
import { decodeRecoveryCode, RecoveryCodeError } from '../crypto/recovery.js';
import type { Backend } from '../storage/backend.js';
import { readPassword } from './password.js';
import { lowCostKdfAllowed } from '../crypto/kdf.js';

export { withEnv, parseSize, type GlobalOptions } from './options.js';
import { envFlag, type GlobalOptions } from './options.js';

export class Output {
  constructor(readonly opts: GlobalOptions) {}
  get json(): boolean {
    return this.opts.json === true;
  }
  /** Normal human output (stdout); suppressed by --quiet and --json. */
  info(msg: string): void {
    if (!this.opts.quiet && !this.opts.json) process.stdout.write(msg + '\n');
  }
  verbose(msg: string): void {
    if (this.opts.verbose && !this.opts.json) process.stderr.write(msg + '\n');
  }
  warn(msg: string): void {
    if (this.opts.json) process.stderr.write(JSON.stringify({ message_type: 'warning', message: msg }) + '\n');
    else process.stderr.write(`warning: ${msg}\n`);
  }
  /** One JSON value on stdout (for --json). */
  emit(value: unknown): void {
    process.stdout.write(JSON.stringify(value) + '\n');
  }
}

export function repoLocation(g: GlobalOptions): string {
  const loc = g.repo ?? process.env.COFFER_REPOSITORY;
  if (!loc) throw new CofferError('INVALID_ARGUMENT', 'no repository given: use -r/--repo or set COFFER_REPOSITORY');
  return loc;
}

/** Decodes a typed-in recovery code; a typo is a "checksum mismatch" (exit 12), never "wrong key". */
export function recoverySecret(code: string): RepoSecret {
  try {
    return { kind: 'recovery', entropy: decodeRecoveryCode(code) };
  } catch (e) {
    if (e instanceof RecoveryCodeError) throw new CofferError('BAD_RECOVERY_CODE', e.message);
    throw e;
  }
}

/**
 * What opens the repository: --recovery-key, else --password-file /
 * --password-command, else COFFER_RECOVERY_KEY, else the other password
 * sources (see password.ts).
 */
export async function readSecret(g: GlobalOptions): Promise<RepoSecret> {
  if (g.recoveryKey !== undefined) return recoverySecret(g.recoveryKey);
  if (!g.passwordFile && !g.passwordCommand && process.env.COFFER_RECOVERY_KEY) return recoverySecret(process.env.COFFER_RECOVERY_KEY);
  return { kind: 'passphrase', passphrase: await readPassword(g) };
}

export function wipeSecret(s: RepoSecret): void {
  (s.kind === 'passphrase' ? s.passphrase : s.entropy).fill(0);
}

/** Said whenever a slot below the KDF floor opens the repository outside tests. */
export function warnIfWeakKey(g: GlobalOptions, weak: boolean): void {
  if (weak && !lowCostKdfAllowed()) {
    new Output(g).warn('the password in use has a weak key-derivation setting (made for tests); replace it with "coffer key passwd"');
  }
}

function positiveInt(v: string | undefined, name: string): number | undefined {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new CofferError('INVALID_ARGUMENT', `${name} must be a whole number, not "${v}"`);
  return n;
}

/** The repository's backend with the standard layers, configured from options and COFFER_* variables. */
export function openRepoBackend(g: GlobalOptions): Backend {
  const cacheDir = g.cacheDir ?? process.env.COFFER_CACHE_DIR;
  const connections = positiveInt(process.env.COFFER_CONNECTIONS, 'COFFER_CONNECTIONS');
  const retries = positiveInt(process.env.COFFER_RETRIES, 'COFFER_RETRIES');
  return openBackend(repoLocation(g), {
    cacheDir: cacheDir ?? defaultCacheDir(),
    noCache: g.cache === false || envFlag('COFFER_NO_CACHE') === true,
    connections: connections || undefined,
    retry: {
      ...(retries === undefined ? {} : { retries }),
      onRetry: (e, attempt, ms) => new Output(g).verbose(`${e.message}; retry ${attempt} in ${(ms / 1000).toFixed(1)} s`),
    },
  });
}

/**
 * `indexWarnings: false`: the command reports damaged index files itself (check).
 * `allowWriteOnly`: only `backup` accepts a write-only key; every other command fails with WRITE_ONLY_KEY (exit 12).
 * `secret`: open with this instead of asking (wiped afterwards).
 * `workers`, `whileDeriving`: see OpenOptions.
 */
export async function openRepo(
  g: GlobalOptions,
  o: { indexWarnings?: boolean; allowWriteOnly?: boolean; secret?: RepoSecret; workers?: boolean; whileDeriving?: () => void } = {},
): Promise<Repository> {
  const backend = openRepoBackend(g);
  let repo: Repository;
  try {
    const secret = o.secret ?? (await readSecret(g));
    try {
      repo = await Repository.open(backend, secret, {
        cacheDir: g.cacheDir ?? process.env.COFFER_CACHE_DIR,
        noCache: g.cache === false || envFlag('COFFER_NO_CACHE') === true,
        threads: threadCount(g.threads),
        allowWriteOnly: o.allowWriteOnly,
        workers: o.workers,
        whileDeriving: o.whileDeriving,
        onWarning: o.indexWarnings === false ? undefined : (w) => new Output(g).warn(w.message),
      });
    } finally {
      wipeSecret(secret);
    }
  } catch (e) {
    await backend.close?.().catch(() => undefined);
    throw e;
  }
  warnIfWeakKey(g, repo.weakKey);
  return repo;
}

function threadCount(option: string | undefined): number | undefined {
  // COFFER_THREADS is checked here too: a bad value must not be ignored silently.
  const env = process.env.COFFER_THREADS;
  const s = option ?? (env === '' ? undefined : env);
  if (s === undefined) return undefined;
  const n = Number(s);
  const name = option === undefined ? 'COFFER_THREADS' : '--threads';
  if (!/^\d+$/.test(s.trim()) || !Number.isInteger(n) || n < 1 || n > 64) throw new CofferError('INVALID_ARGUMENT', `${name} must be a whole number 1–64, not "${s}"`);
  return n;
}

