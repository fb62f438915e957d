/**
 * Concurrency layer: at most `limit` operations reach the backend at once;
 * the rest wait in order. Placed inside the retry layer, so a request that
 * waits to be retried does not hold a slot.
 */
import type { Backend } from './backend.js';
import { BackendLayer } from './layer.js';
import { Semaphore } from '../util/semaphore.js';

export class LimitBackend extends BackendLayer {
  override readonly connections: number;
  private readonly sem: Semaphore;

  constructor(inner: Backend, limit: number) {
    super(inner);
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`connection limit must be a positive integer, not ${limit}`);
    this.connections = limit;
    this.sem = new Semaphore(limit);
  }

  protected override async run<T>(op: () => Promise<T>): Promise<T> {
    await this.sem.acquire();
    try {
      return await op();
    } finally {
      this.sem.release();
    }
  }
}
