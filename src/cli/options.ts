/**
 * Global options and the small parsers main.ts needs to register commands,
 * kept apart from context.ts so that registering (and `--help`,
 * `--version`) does not load the repository code (docs/PERFORMANCE.md,
 * "Start-up").
 */
import { CofferError } from '../errors.js';

export interface GlobalOptions {
  repo?: string;
  passwordFile?: string;
  passwordCommand?: string;
  recoveryKey?: string;
  cacheDir?: string;
  cache?: boolean;
  json?: boolean;
  quiet?: boolean;
  verbose?: boolean;
  threads?: string;
}

export function envFlag(name: string): boolean | undefined {
  const v = process.env[name];
  if (v === undefined || v === '') return undefined;
  return !['0', 'false', 'no'].includes(v.toLowerCase());
}

/**
 * Fills global options not given on the command line from COFFER_*
 * variables (the command line wins): COFFER_JSON, COFFER_QUIET and
 * COFFER_VERBOSE ("1"/"true" or "0"/"false"); the others are read where they
 * are used (COFFER_REPOSITORY, COFFER_PASSWORD_FILE, COFFER_PASSWORD_COMMAND,
 * COFFER_CACHE_DIR, COFFER_NO_CACHE, COFFER_THREADS).
 */
export function withEnv(o: GlobalOptions): GlobalOptions {
  return {
    ...o,
    json: o.json ?? envFlag('COFFER_JSON'),
    quiet: o.quiet ?? envFlag('COFFER_QUIET'),
    verbose: o.verbose ?? envFlag('COFFER_VERBOSE'),
  };
}

/** Parses sizes like 512K, 1M, 8MiB, 1048576. */
export function parseSize(s: string): number {
  const m = /^(\d+)\s*([kmgt]?)(i?b)?$/i.exec(s.trim());
  if (!m) throw new CofferError('INVALID_ARGUMENT', `"${s}" is not a size (examples: 512K, 1M, 8MiB)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Number(m[1]) * mult;
}
