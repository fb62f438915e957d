/**
 * The local backend's direct-I/O write path (storage/local.ts): large
 * aligned objects are written with O_DIRECT (head) plus the page cache
 * (the unaligned rest and further parts), and the backend falls back to
 * ordinary writes for good when the file system refuses O_DIRECT.
 */
import fsModule, { constants as fsc, readdirSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { blake3 } from '@napi-rs/blake-hash';
import { scratch } from './helpers.js';
import { LocalBackend } from '../dist/src/storage/local.js';
import { alignedView, hugeArrayBuffer, isIoAligned, IO_ALIGN } from '../dist/src/util/aligned.js';
import { usableBinding } from '../dist/src/platform/addon.js';
import { nativeAddonStatus } from '../dist/src/platform/native.js';

const tmp = scratch('coffer-direct-');
afterAll(() => tmp.cleanup());
afterEach(() => vi.restoreAllMocks());

const O_DIRECT = (fsc as Record<string, number | undefined>).O_DIRECT ?? 0;
const haveDirect = O_DIRECT !== 0 && nativeAddonStatus().loaded;
let n = 0;

async function freshBackend(): Promise<{ b: LocalBackend; dir: string }> {
  const dir = path.join(tmp.dir, `repo${++n}`);
  const b = new LocalBackend(dir);
  await b.create();
  return { b, dir };
}

/** `size` random bytes in an aligned pool-style buffer (as the packer holds a pack). */
function alignedData(size: number): Buffer {
  const v = alignedView(new ArrayBuffer(size + IO_ALIGN), size);
  v.set(randomBytes(size));
  return v;
}

/** Records the flags of every open() of a temporary object file. */
function watchOpens(): number[] {
  const flags: number[] = [];
  const real = fsModule.promises.open;
  vi.spyOn(fsModule.promises, 'open').mockImplementation(((p: string, f: number, mode?: number) => {
    if (String(p).includes('.tmp-')) flags.push(Number(f));
    return real(p, f as never, mode);
  }) as typeof real);
  return flags;
}

const direct = (f: number) => (f & O_DIRECT) !== 0;
const tmpFiles = (dir: string) => readdirSync(dir, { recursive: true }).filter((f) => String(f).includes('.tmp-'));

describe.skipIf(!haveDirect)('local backend: direct I/O for large aligned objects', () => {
  it('alignedView starts at an aligned address', () => {
    for (const size of [1, IO_ALIGN, 3 << 20]) expect(isIoAligned(alignedView(new ArrayBuffer(size + IO_ALIGN), size))).toBe(true);
    expect(() => alignedView(new ArrayBuffer(100), 100)).toThrow(RangeError);
  });

  it('writes with O_DIRECT, then the unaligned rest and the other parts: the object reads back byte for byte', async () => {
    const { b, dir } = await freshBackend();
    const flags = watchOpens();
    for (const size of [1 << 20, (1 << 20) + 1, (5 << 20) - 123, 16 << 20]) {
      const body = alignedData(size);
      const tail = randomBytes(777);
      const name = blake3(Buffer.concat([body, tail])).toString('hex');
      await b.write({ type: 'data', name }, [body, tail]);
      expect(blake3(await b.read({ type: 'data', name })).toString('hex')).toBe(name);
    }
    // One direct open per object, each followed by a buffered one for its rest.
    expect(flags.filter(direct)).toHaveLength(4);
    expect(flags.filter((f) => !direct(f))).toHaveLength(4);
    expect(tmpFiles(dir)).toEqual([]);
  });

  it('small or unaligned objects go through the page cache', async () => {
    const { b } = await freshBackend();
    const flags = watchOpens();
    const small = alignedData(64 << 10);
    await b.write({ type: 'data', name: blake3(small).toString('hex') }, [small]);
    const unaligned = alignedData((2 << 20) + 1).subarray(1);
    await b.write({ type: 'data', name: blake3(unaligned).toString('hex') }, [unaligned]);
    expect(flags).toHaveLength(2);
    expect(flags.some(direct)).toBe(false);
    expect(readFileSync(path.join(b.location, 'data', blake3(unaligned).toString('hex').slice(0, 2), blake3(unaligned).toString('hex')))).toEqual(Buffer.from(unaligned));
  });

  it('a file system that refuses O_DIRECT at open: written the ordinary way, and never tried again', async () => {
    const { b, dir } = await freshBackend();
    const flags: number[] = [];
    const real = fsModule.promises.open;
    vi.spyOn(fsModule.promises, 'open').mockImplementation(((p: string, f: number, mode?: number) => {
      if (String(p).includes('.tmp-')) flags.push(Number(f));
      if (direct(Number(f))) return Promise.reject(Object.assign(new Error('EINVAL: invalid argument, open'), { code: 'EINVAL' }));
      return real(p, f as never, mode);
    }) as typeof real);
    for (let i = 0; i < 2; i++) {
      const body = alignedData(2 << 20);
      const name = blake3(body).toString('hex');
      await b.write({ type: 'data', name }, [body]);
      expect(blake3(await b.read({ type: 'data', name })).toString('hex')).toBe(name);
    }
    expect(flags.map(direct)).toEqual([true, false, false]);
    expect(tmpFiles(dir)).toEqual([]);
  });

  it('a direct write refused with EINVAL: the partial file is removed and the object written the ordinary way', async () => {
    const { b, dir } = await freshBackend();
    const flags: number[] = [];
    const real = fsModule.promises.open;
    vi.spyOn(fsModule.promises, 'open').mockImplementation((async (p: string, f: number, mode?: number) => {
      if (String(p).includes('.tmp-')) flags.push(Number(f));
      const fh = await real(p, f as never, mode);
      if (direct(Number(f))) {
        fh.write = (() => Promise.reject(Object.assign(new Error('EINVAL: invalid argument, write'), { code: 'EINVAL' }))) as typeof fh.write;
      }
      return fh;
    }) as typeof real);
    const body = alignedData(3 << 20);
    const name = blake3(body).toString('hex');
    await b.write({ type: 'data', name }, [body]);
    expect(blake3(await b.read({ type: 'data', name })).toString('hex')).toBe(name);
    expect(flags.map(direct)).toEqual([true, false]);
    expect(tmpFiles(dir)).toEqual([]);
  });

  it('other errors of a direct write fail the write and leave no temporary file', async () => {
    const { b, dir } = await freshBackend();
    const real = fsModule.promises.open;
    vi.spyOn(fsModule.promises, 'open').mockImplementation((async (p: string, f: number, mode?: number) => {
      const fh = await real(p, f as never, mode);
      if (direct(Number(f))) fh.write = (() => Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }))) as typeof fh.write;
      return fh;
    }) as typeof real);
    const body = alignedData(2 << 20);
    await expect(b.write({ type: 'data', name: blake3(body).toString('hex') }, [body])).rejects.toMatchObject({ kind: 'noSpace' });
    expect(tmpFiles(dir)).toEqual([]);
  });
});

describe('huge-page buffers', () => {
  it('hugeArrayBuffer: a zeroed ArrayBuffer of the size asked, with or without the advice', () => {
    for (const size of [0, 4096, (2 << 20) - 1, 5 << 20]) {
      const ab = hugeArrayBuffer(size);
      expect(ab.byteLength).toBe(size);
      expect(new Uint8Array(ab).every((x) => x === 0)).toBe(true);
    }
  });
  it.skipIf(!nativeAddonStatus().loaded)('the addon advises only whole huge pages inside the buffer', () => {
    const advise = usableBinding()!.adviseHugePages!;
    // Under 2 MiB there is no whole aligned huge page: nothing to advise.
    expect(advise(Buffer.alloc(1 << 20))).toBe(false);
    expect(typeof advise(Buffer.from(new ArrayBuffer(8 << 20)))).toBe('boolean');
    expect(() => advise('x' as never)).toThrow(TypeError);
  });
});
