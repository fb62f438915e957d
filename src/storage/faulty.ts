/**
 * A fault-injecting Backend wrapper, for tests: with a seeded PRNG it makes a
 * chosen share of operations fail (transiently or for good), get delayed, or
 * (reads only) come back truncated or with a flipped bit. Writes that "fail
 * after" reach the inner backend but report an error, like a lost answer.
 */
import { StorageError, type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange } from './backend.js';
import { BackendLayer } from './layer.js';

export type Fault = 'fail' | 'failAfter' | 'delay' | 'truncate' | 'corrupt';

export interface FaultOptions {
  seed: number;
  /** Share of operations (0–1) that get a fault. */
  rate: number;
  /** Which faults to pick from (default: fail, delay). */
  faults?: Fault[];
  /** Which operations may be hit (default: all). */
  ops?: ('read' | 'write' | 'list' | 'stat' | 'remove')[];
  /** Which file types may be hit (default: all). */
  types?: FileType[];
  delayMs?: number;
}

/** mulberry32: a tiny deterministic PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class FaultyBackend extends BackendLayer {
  private readonly rand: () => number;
  readonly injected: { op: string; fault: Fault }[] = [];

  constructor(
    inner: Backend,
    private readonly opts: FaultOptions,
  ) {
    super(inner);
    this.rand = prng(opts.seed);
  }

  private pick(op: 'read' | 'write' | 'list' | 'stat' | 'remove', type: FileType): Fault | undefined {
    if (this.opts.ops && !this.opts.ops.includes(op)) return undefined;
    if (this.opts.types && !this.opts.types.includes(type)) return undefined;
    if (this.rand() >= this.opts.rate) return undefined;
    let faults = this.opts.faults ?? ['fail', 'delay'];
    if (op !== 'read') faults = faults.filter((f) => f !== 'truncate' && f !== 'corrupt');
    if (op !== 'write') faults = faults.filter((f) => f !== 'failAfter');
    if (!faults.length) return undefined;
    const f = faults[Math.floor(this.rand() * faults.length)];
    this.injected.push({ op: `${op} ${type}`, fault: f });
    return f;
  }

  private transient(what: string): StorageError {
    return new StorageError('transient', `injected fault while ${what}`, undefined, { cause: Object.assign(new Error('injected'), { code: 'ECONNRESET' }) });
  }

  private async delay(): Promise<void> {
    await new Promise((r) => setTimeout(r, this.opts.delayMs ?? 5));
  }

  override async read(h: Handle, range?: ReadRange): Promise<Buffer> {
    const f = this.pick('read', h.type);
    if (f === 'fail') throw this.transient(`reading ${h.type}/${h.name}`);
    if (f === 'delay') await this.delay();
    const b = await this.inner.read(h, range);
    if (f === 'truncate' && b.length > 0) return b.subarray(0, Math.floor(this.rand() * b.length));
    if (f === 'corrupt' && b.length > 0) {
      const c = Buffer.from(b);
      c[Math.floor(this.rand() * c.length)] ^= 1 << Math.floor(this.rand() * 8);
      return c;
    }
    return b;
  }

  override async stat(h: Handle): Promise<ObjectInfo | undefined> {
    const f = this.pick('stat', h.type);
    if (f === 'fail') throw this.transient(`inspecting ${h.type}/${h.name}`);
    if (f === 'delay') await this.delay();
    return this.inner.stat(h);
  }

  override async list(type: FileType): Promise<ObjectInfo[]> {
    const f = this.pick('list', type);
    if (f === 'fail') throw this.transient(`listing ${type}`);
    if (f === 'delay') await this.delay();
    return this.inner.list(type);
  }

  override async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    const f = this.pick('write', h.type);
    if (f === 'fail') throw this.transient(`writing ${h.type}/${h.name}`);
    if (f === 'delay') await this.delay();
    await this.inner.write(h, data);
    if (f === 'failAfter') throw this.transient(`writing ${h.type}/${h.name} (answer lost)`);
  }

  override async remove(h: Handle): Promise<void> {
    const f = this.pick('remove', h.type);
    if (f === 'fail') throw this.transient(`removing ${h.type}/${h.name}`);
    if (f === 'delay') await this.delay();
    await this.inner.remove(h);
  }
}
