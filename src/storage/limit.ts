/**
 * Concurrency layer: at most `limit` operations reach the backend at once;
 * the rest wait in order. Placed inside the retry layer, so a request that
 * waits to be retried does not hold a slot.
 */
import type { Backend, FileType, Handle, ObjectInfo, ReadRange } from './backend.js';
import { Semaphore } from '../util/semaphore.js';

export class LimitBackend implements Backend {
  readonly location: string;
  readonly connections: number;
  private readonly sem: Semaphore;

  constructor(
    private readonly inner: Backend,
    limit: number,
  ) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`connection limit must be a positive integer, not ${limit}`);
    this.location = inner.location;
    this.connections = limit;
    this.sem = new Semaphore(limit);
  }

  private async run<T>(op: () => Promise<T>): Promise<T> {
    await this.sem.acquire();
    try {
      return await op();
    } finally {
      this.sem.release();
    }
  }

  read(h: Handle, range?: ReadRange): Promise<Buffer> {
    return this.run(() => this.inner.read(h, range));
  }
  stat(h: Handle): Promise<ObjectInfo | undefined> {
    return this.run(() => this.inner.stat(h));
  }
  list(type: FileType): Promise<ObjectInfo[]> {
    return this.run(() => this.inner.list(type));
  }
  create(): Promise<void> {
    return this.run(() => this.inner.create());
  }
  write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.run(() => this.inner.write(h, data));
  }
  remove(h: Handle): Promise<void> {
    return this.run(() => this.inner.remove(h));
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
