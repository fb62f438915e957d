/**
 * A Backend wrapper that retries transient failures with exponential backoff
 * and jitter. Only errors that may go away are retried (StorageError `io`,
 * and network errnos); `notFound`, `exists`, `noSpace` and `permission` are
 * final. A write retried after a failed attempt may find its object already
 * there (the attempt succeeded but its answer was lost): since every object
 * but `config` is named by the hash of its bytes, an existing object of the
 * same name and size is the same object, and the write counts as done.
 */
import { StorageError, type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange } from './backend.js';
import { errnoCode } from '../errors.js';

export interface RetryOptions {
  /** Attempts in all, including the first (default 5). */
  attempts?: number;
  /** First delay in ms (default 200); doubles each time, with ±50 % jitter. */
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Called before each retry (for logging in the CLI). */
  onRetry?(info: { op: string; attempt: number; delayMs: number; error: unknown }): void;
  /** Injected for tests. */
  sleep?(ms: number): Promise<void>;
}

const TRANSIENT_ERRNO = new Set(['ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'EPIPE', 'ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EBUSY', 'EAGAIN']);

/** True for failures that may succeed when tried again. */
export function isTransient(e: unknown): boolean {
  if (e instanceof StorageError) {
    if (e.kind !== 'io') return false;
    const code = errnoCode(e.cause);
    // A local I/O error without an errno (or a network one) may be transient; a disk error (EIO) usually is not, but one retry is cheap.
    return code === undefined || TRANSIENT_ERRNO.has(code) || code === 'EIO';
  }
  const code = errnoCode(e);
  return code !== undefined && TRANSIENT_ERRNO.has(code);
}

export class RetryBackend implements Backend {
  private readonly attempts: number;
  private readonly base: number;
  private readonly max: number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(
    readonly inner: Backend,
    private readonly opts: RetryOptions = {},
  ) {
    this.attempts = Math.max(1, opts.attempts ?? 5);
    this.base = opts.baseDelayMs ?? 200;
    this.max = opts.maxDelayMs ?? 10_000;
    this.sleep = opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  get location(): string {
    return this.inner.location;
  }

  private async retry<T>(op: string, fn: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn(attempt);
      } catch (e) {
        if (attempt >= this.attempts || !isTransient(e)) throw e;
        const exp = Math.min(this.max, this.base * 2 ** (attempt - 1));
        const delayMs = Math.round(exp * (0.5 + Math.random()));
        this.opts.onRetry?.({ op, attempt, delayMs, error: e });
        await this.sleep(delayMs);
      }
    }
  }

  read(h: Handle, range?: ReadRange): Promise<Buffer> {
    return this.retry(`read ${h.type}/${h.name}`, () => this.inner.read(h, range));
  }

  stat(h: Handle): Promise<ObjectInfo | undefined> {
    return this.retry(`stat ${h.type}/${h.name}`, () => this.inner.stat(h));
  }

  list(type: FileType): Promise<ObjectInfo[]> {
    return this.retry(`list ${type}`, () => this.inner.list(type));
  }

  create(): Promise<void> {
    return this.inner.create();
  }

  write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const size = (data instanceof Uint8Array ? [data] : data).reduce((a, p) => a + p.length, 0);
    return this.retry(`write ${h.type}/${h.name}`, async (attempt) => {
      try {
        await this.inner.write(h, data);
      } catch (e) {
        if (attempt > 1 && h.type !== 'config' && e instanceof StorageError && e.kind === 'exists') {
          const st = await this.inner.stat(h);
          if (st && st.size === size) return;
        }
        throw e;
      }
    });
  }

  remove(h: Handle): Promise<void> {
    return this.retry(`remove ${h.type}/${h.name}`, async (attempt) => {
      try {
        await this.inner.remove(h);
      } catch (e) {
        // An earlier attempt removed it but its answer was lost.
        if (attempt > 1 && e instanceof StorageError && e.kind === 'notFound') return;
        throw e;
      }
    });
  }
}
