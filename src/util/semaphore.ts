/** A counting semaphore for bounding concurrent work. */
export class Semaphore {
  private waiters: (() => void)[] = [];
  constructor(private available: number) {}

  async acquire(): Promise<void> {
    if (this.available > 0) {
      this.available--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Takes a permit if one is free now; never waits. */
  tryAcquire(): boolean {
    if (this.available > 0) {
      this.available--;
      return true;
    }
    return false;
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.available++;
  }
}

/** A fixed set of equal-size buffers that each own their ArrayBuffer (transferable to workers). */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  private readonly sem: Semaphore;
  /** `alloc`: makes each new buffer (default `new ArrayBuffer(size)`). */
  constructor(
    readonly size: number,
    count: number,
    private readonly alloc: (size: number) => ArrayBuffer = (n) => new ArrayBuffer(n),
  ) {
    this.sem = new Semaphore(count);
  }

  async acquire(): Promise<Buffer> {
    await this.sem.acquire();
    return Buffer.from(this.free.pop() ?? this.alloc(this.size));
  }

  /** A buffer if one is free now (undefined: use acquire). */
  tryAcquire(): Buffer | undefined {
    if (!this.sem.tryAcquire()) return undefined;
    return Buffer.from(this.free.pop() ?? this.alloc(this.size));
  }

  /** Returns a buffer (or the ArrayBuffer that came back from a worker). */
  release(b: Buffer | ArrayBuffer): void {
    const ab = b instanceof ArrayBuffer ? b : (b.buffer as ArrayBuffer);
    if (ab.byteLength === this.size) this.free.push(ab);
    this.sem.release();
  }
}

/**
 * The bytes of `b` in an ArrayBuffer of their own (for transfer to a worker):
 * `b`'s own when it spans it exactly, else a copy. (Small Buffers live in a
 * shared pool at a non-zero offset; transferring that would hand over the
 * wrong bytes and detach everyone else's.)
 */
export function ownedArrayBuffer(b: Buffer): ArrayBuffer {
  if (b.byteOffset === 0 && b.buffer.byteLength === b.length && b.buffer instanceof ArrayBuffer) return b.buffer;
  const ab = new ArrayBuffer(b.length);
  new Uint8Array(ab).set(b);
  return ab;
}
