/** What every command shares: parsed global options, output, password, opening the repository. */
import { CofferError } from '../errors.js';
import { openBackend } from '../storage/location.js';
import { Repository } from '../repo/repository.js';
import { RetryBackend } from '../storage/retry.js';
import { readPassword } from './password.js';

export interface GlobalOptions {
  repo?: string;
  passwordFile?: string;
  passwordCommand?: string;
  cacheDir?: string;
  cache?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
}

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

/** The repository's backend with transient failures retried (reported with --verbose). */
export function openRetryingBackend(g: GlobalOptions): RetryBackend {
  return new RetryBackend(openBackend(repoLocation(g)), {
    onRetry: ({ op, attempt, delayMs, error }) => {
      if (g.verbose && !g.json) process.stderr.write(`retrying ${op} in ${delayMs} ms (attempt ${attempt} failed: ${(error as Error).message})\n`);
    },
  });
}

export async function openRepo(g: GlobalOptions): Promise<Repository> {
  const backend = openRetryingBackend(g);
  const password = await readPassword(g);
  try {
    return await Repository.open(backend, password, {
      cacheDir: g.cacheDir ?? process.env.COFFER_CACHE_DIR,
      noCache: g.cache === false || process.env.COFFER_NO_CACHE === '1',
    });
  } finally {
    password.fill(0);
  }
}

/** Parses sizes like 512K, 1M, 8MiB, 1048576. */
export function parseSize(s: string): number {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new CofferError('INVALID_ARGUMENT', `"${s}" is not a size (examples: 512K, 1M, 8MiB)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Number(m[1]) * mult;
}
