/**
 * One error type for the whole library: a stable `code` that callers and tests
 * switch on, a process exit code the CLI uses, and structured `data`.
 * Messages are one line, meant for users, and never contain secrets.
 */

/**
 * Stable error codes (see `EXIT_CODES` for the exit code of each).
 * @example
 * ```ts
 * const code: ErrorCode = 'INTEGRITY';
 * ```
 */
export type ErrorCode =
  | 'REPO_NOT_FOUND'
  | 'REPO_EXISTS'
  | 'REPO_INVALID'
  | 'WRONG_PASSWORD'
  | 'NO_PASSWORD'
  | 'BAD_RECOVERY_CODE'
  /** The key is a write-only backup key and the command needs more than backing up (exit 12). */
  | 'WRITE_ONLY_KEY'
  | 'INTEGRITY'
  | 'SNAPSHOT_NOT_FOUND'
  | 'SNAPSHOT_AMBIGUOUS'
  | 'BLOB_NOT_FOUND'
  | 'INVALID_ARGUMENT'
  | 'SOURCE_UNREADABLE'
  | 'TARGET_ERROR'
  | 'STORAGE'
  | 'NO_SPACE'
  | 'LOCKED'
  | 'INTERRUPTED'
  | 'INCOMPLETE'
  | 'INTERNAL';

/**
 * Exit codes, documented in README.md.
 * @example
 * ```ts
 * process.exitCode = EXIT_CODES[err.code]; // e.g. 12 for WRONG_PASSWORD
 * ```
 */
export const EXIT_CODES: Record<ErrorCode, number> = {
  INTERNAL: 1,
  STORAGE: 1,
  TARGET_ERROR: 1,
  SOURCE_UNREADABLE: 1,
  INVALID_ARGUMENT: 2,
  SNAPSHOT_AMBIGUOUS: 2,
  INCOMPLETE: 3,
  REPO_NOT_FOUND: 10,
  REPO_EXISTS: 10,
  REPO_INVALID: 10,
  LOCKED: 11,
  WRONG_PASSWORD: 12,
  NO_PASSWORD: 12,
  BAD_RECOVERY_CODE: 12,
  WRITE_ONLY_KEY: 12,
  INTEGRITY: 13,
  BLOB_NOT_FOUND: 13,
  SNAPSHOT_NOT_FOUND: 14,
  NO_SPACE: 15,
  INTERRUPTED: 130,
};

/**
 * The one error type of the library: a stable `code` to switch on, the process `exitCode` the CLI uses, and structured `data`. Messages are one line and never contain secrets.
 * @example
 * ```ts
 * try { await openRepository(dir, pw); } catch (e) { if (e instanceof CofferError && e.code === 'WRONG_PASSWORD') askAgain(); else throw e; }
 * ```
 */
export class CofferError extends Error {
  readonly code: ErrorCode;
  readonly data: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, data: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CofferError';
    this.code = code;
    this.data = data;
  }
  get exitCode(): number {
    return EXIT_CODES[this.code];
  }
}

/**
 * True if `e` is a {@link CofferError} (with the given `code`, when one is given).
 * @example
 * ```ts
 * if (isCofferError(e, 'SNAPSHOT_NOT_FOUND')) console.log('no such snapshot');
 * ```
 */
export function isCofferError(e: unknown, code?: ErrorCode): e is CofferError {
  return e instanceof CofferError && (code === undefined || e.code === code);
}

/** Integrity failure: data read back did not authenticate or did not parse. */
export function integrityError(what: string, data: Record<string, unknown> = {}): CofferError {
  return new CofferError('INTEGRITY', `integrity check failed: ${what}`, data);
}

/** Node's system errors carry `code`; this reads it safely. */
export function errnoCode(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'string'
    ? (e as { code: string }).code
    : undefined;
}
