/**
 * Retry layer: tries an operation again when it fails with a `transient`
 * StorageError, waiting an exponentially growing, fully jittered delay
 * (delay = random × min(maxDelay, baseDelay × 2^attempt)). Permanent errors
 * (notFound, exists, permission, noSpace, io) pass through at once.
 *
 * A write or remove that failed transiently may still have happened on the
 * server; so a retried write that then meets `exists` compares the stored
 * bytes (see afterLostWrite), and a retried remove that meets `notFound`
 * counts as done.
 */
import { type Backend, type Handle, StorageError, describe, isTransient } from './backend.js';
import { BackendLayer } from './layer.js';

/**
 * Settings of `RetryBackend`.
 * @example
 * ```ts
 * const o: RetryOptions = { retries: 3, baseDelayMs: 250 };
 * ```
 */
export interface RetryOptions {
  /** Tries after the first one (default 6). */
  retries?: number;
  /** Default 250 ms. */
  baseDelayMs?: number;
  /** Cap for one wait (default 15 s). */
  maxDelayMs?: number;
  /** Called before each wait (for logging). */
  onRetry?(e: StorageError, attempt: number, delayMs: number): void;
  /** Injectable for tests. */
  sleep?(ms: number): Promise<void>;
  random?(): number;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A Backend layer that retries transient failures with exponential backoff and full jitter.
 * @example
 * ```ts
 * const b = new RetryBackend(inner, { retries: 6 });
 * ```
 */
export class RetryBackend extends BackendLayer {
  private readonly retries: number;
  private readonly base: number;
  private readonly max: number;

  constructor(
    inner: Backend,
    private readonly opts: RetryOptions = {},
  ) {
    super(inner);
    this.retries = opts.retries ?? 6;
    this.base = opts.baseDelayMs ?? 250;
    this.max = opts.maxDelayMs ?? 15_000;
  }

  /** The wait before retry number `attempt` (0-based). */
  delay(attempt: number): number {
    const cap = Math.min(this.max, this.base * 2 ** attempt);
    return Math.floor((this.opts.random ?? Math.random)() * cap);
  }

  /** Runs `op` until it succeeds, fails for good, or the retries are used up; `retrying` is false on the first try. */
  private async attempts<T>(op: (retrying: boolean) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await op(attempt > 0);
      } catch (e) {
        if (!isTransient(e) || attempt >= this.retries) throw e;
        const ms = this.delay(attempt);
        this.opts.onRetry?.(e as StorageError, attempt + 1, ms);
        await (this.opts.sleep ?? defaultSleep)(ms);
      }
    }
  }

  protected override run<T>(op: () => Promise<T>): Promise<T> {
    return this.attempts(op);
  }

  override write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.attempts(async (retrying) => {
      try {
        await this.inner.write(h, data);
      } catch (e) {
        if (retrying && e instanceof StorageError && e.kind === 'exists') return this.afterLostWrite(h, data, e);
        throw e;
      }
    });
  }

  /**
   * A write failed transiently and the retry found the name taken: either
   * the failed attempt completed on the server, or it left a partial object
   * (servers that write in place, e.g. rclone's local backend before 1.63).
   * The bytes tell which. A partial object under a content-hash name can only
   * be our own leftover, so it is replaced; `config` is never replaced.
   */
  private async afterLostWrite(h: Handle, data: Uint8Array | readonly Uint8Array[], exists: StorageError): Promise<void> {
    const want = data instanceof Uint8Array ? Buffer.from(data.buffer, data.byteOffset, data.length) : Buffer.concat(data);
    const stored = await this.inner.read(h).catch(() => undefined);
    if (stored?.equals(want)) return;
    if (h.type === 'config') throw exists;
    try {
      await this.inner.remove(h);
    } catch (e) {
      if (e instanceof StorageError && e.kind === 'permission') {
        throw new StorageError('permission', `${describe(h)} was left incomplete by an interrupted upload and the server refuses to replace it (${e.message})`, h, { cause: e });
      }
      throw e;
    }
    await this.inner.write(h, data);
  }

  override remove(h: Handle): Promise<void> {
    return this.attempts(async (retrying) => {
      try {
        await this.inner.remove(h);
      } catch (e) {
        if (retrying && e instanceof StorageError && e.kind === 'notFound') return;
        throw e;
      }
    });
  }
}
