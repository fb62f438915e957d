/** Turns a repository location string into a backend. Only local directories exist so far. */
import { CofferError } from '../errors.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.js';

/**
 * Opens the storage at a location: a directory path or `local:PATH`.
 * @example
 * ```ts
 * const backend = openBackend('local:/mnt/backup/repo');
 * ```
 */
export function openBackend(location: string): Backend {
  if (!location) throw new CofferError('INVALID_ARGUMENT', 'no repository given: use -r/--repo or COFFER_REPOSITORY');
  const m = /^([a-z0-9]+):(.*)$/.exec(location);
  if (m && m[1] !== 'local' && m[1].length > 1) {
    throw new CofferError('INVALID_ARGUMENT', `unsupported repository type "${m[1]}:" (supported: a local path or local:PATH)`);
  }
  return new LocalBackend(m && m[1] === 'local' ? m[2] : location);
}
