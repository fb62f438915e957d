/**
 * One conformance suite for every backend and every layer (restic's
 * internal/backend/test idea): local, the retry + limit layers, the cache
 * layer, REST against a real `rclone serve restic`, rclone over stdio, and S3
 * against a real s3rver — all started here on loopback. Then the layers' own
 * contracts with a fault-injecting wrapper, and the classification of real
 * server failures as transient or permanent.
 */
import { mkdirSync, readdirSync, writeFileSync, readFileSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blake3 } from '@napi-rs/blake-hash';
import { scratch } from './helpers.js';
import { rcloneMissing, startRcloneRestic, startS3rver, S3_ACCESS, type Server } from './servers.js';
import { StorageError, type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange } from '../dist/src/storage/backend.js';
import { LocalBackend } from '../dist/src/storage/local.js';
import { RetryBackend } from '../dist/src/storage/retry.js';
import { LimitBackend } from '../dist/src/storage/limit.js';
import { CacheBackend } from '../dist/src/storage/cache.js';
import { openBackend, parseLocation } from '../dist/src/storage/location.js';

const RCLONE = rcloneMissing();
const name = (b: Uint8Array) => blake3(Buffer.from(b)).toString('hex');
const obj = (size: number) => {
  const data = randomBytes(size);
  return { data, name: name(data) };
};

async function kindOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    if (e instanceof StorageError) return e.kind;
    if (e instanceof RangeError) return 'RangeError';
    throw e;
  }
}

const tmp = scratch('coffer-conformance-');
const servers: { rest?: Server; s3?: Server } = {};
let counter = 0;
const fresh = (prefix: string) => `${prefix}${++counter}`;

beforeAll(async () => {
  Object.assign(process.env, S3_ACCESS);
  const starts: Promise<void>[] = [];
  if (!RCLONE) {
    mkdirSync(path.join(tmp.dir, 'rest'));
    starts.push(startRcloneRestic(path.join(tmp.dir, 'rest')).then((s) => void (servers.rest = s)));
  }
  mkdirSync(path.join(tmp.dir, 's3'));
  starts.push(startS3rver(path.join(tmp.dir, 's3')).then((s) => void (servers.s3 = s)));
  await Promise.all(starts);
});

afterAll(async () => {
  await servers.rest?.kill();
  await servers.s3?.kill();
  tmp.cleanup();
});

interface Subject {
  name: string;
  skip?: string;
  /** The backend, and where on disk it keeps a snapshot file (for filling the big listing directly). */
  make(): { backend: Backend; snapshotFile(name: string): string };
}

const cacheDir = () => path.join(tmp.dir, fresh('cache'));
/** A backend over a directory that the test can also fill directly (for the big listing). */
function onDir(dirName: string, make: (dir: string) => Backend): Subject['make'] {
  return () => {
    const dir = path.join(tmp.dir, dirName, fresh('repo'));
    return { backend: make(dir), snapshotFile: (name) => path.join(dir, 'snapshots', name) };
  };
}
const subjects: Subject[] = [
  { name: 'local', make: onDir('local', (d) => new LocalBackend(d)) },
  { name: 'retry + limit layers over local', make: onDir('local', (d) => new RetryBackend(new LimitBackend(new LocalBackend(d), 3))) },
  { name: 'cache layer over local', make: onDir('local', (d) => new CacheBackend(new LocalBackend(d), cacheDir())) },
  { name: 'rest (rclone serve restic)', skip: RCLONE, make: onDir('rest', (d) => openBackend(`rest:${servers.rest!.url}${path.basename(d)}`, { cacheDir: cacheDir() })) },
  { name: 'rclone (stdio)', skip: RCLONE, make: onDir('stdio', (d) => openBackend(`rclone:${d}`, { cacheDir: cacheDir() })) },
  {
    name: 's3 (s3rver)',
    make: () => {
      const prefix = fresh('prefix');
      return {
        backend: openBackend(`s3:${servers.s3!.url}/bucket/${prefix}`, { cacheDir: cacheDir() }),
        // s3rver's file store: one `<key>._S3rver_object` file per object (the rest is optional).
        snapshotFile: (name) => path.join(tmp.dir, 's3', 'bucket', prefix, 'snapshots', `${name}._S3rver_object`),
      };
    },
  },
];

for (const s of subjects) {
  describe.skipIf(s.skip)(`backend conformance: ${s.name}${s.skip ? ` (skipped: ${s.skip})` : ''}`, () => {
    let b: Backend;
    let snapshotFile: (name: string) => string;
    beforeAll(async () => {
      ({ backend: b, snapshotFile } = s.make());
      await b.create();
    });
    afterAll(async () => {
      await b.close?.();
    });

    it('config: absent, written once, read back; create() refuses a used place', async () => {
      const h: Handle = { type: 'config', name: 'config' };
      expect(await b.stat(h)).toBeUndefined();
      expect(await b.list('config')).toEqual([]);
      const data = randomBytes(300);
      await b.write(h, data);
      expect(await b.read(h)).toEqual(data);
      expect(await b.stat(h)).toEqual({ name: 'config', size: 300 });
      expect(await b.list('config')).toEqual([{ name: 'config', size: 300 }]);
      expect(await kindOf(b.write(h, randomBytes(10)))).toBe('exists');
      expect(await kindOf(b.create())).toBe('exists');
      expect(await b.read(h)).toEqual(data);
    });

    it('every type: write (one buffer or several), read, stat, list with sizes', async () => {
      for (const type of ['keys', 'data', 'index', 'snapshots', 'locks'] as FileType[]) {
        const a = obj(1000);
        const parts = [randomBytes(7), randomBytes(0), randomBytes(4096)];
        const whole = Buffer.concat(parts);
        await b.write({ type, name: a.name }, a.data);
        await b.write({ type, name: name(whole) }, parts);
        expect(await b.read({ type, name: a.name })).toEqual(a.data);
        expect(await b.read({ type, name: name(whole) })).toEqual(whole);
        expect(await b.stat({ type, name: a.name })).toEqual({ name: a.name, size: 1000 });
        const listed = (await b.list(type)).sort((x, y) => x.name.localeCompare(y.name));
        expect(listed).toEqual([{ name: a.name, size: 1000 }, { name: name(whole), size: whole.length }].sort((x, y) => x.name.localeCompare(y.name)));
      }
    });

    it('ranges: inside, across the end (short), past the end (empty), zero length', async () => {
      const a = obj(1000);
      const h: Handle = { type: 'data', name: a.name };
      await b.write(h, a.data);
      expect(await b.read(h, { offset: 10, length: 100 })).toEqual(a.data.subarray(10, 110));
      expect(await b.read(h, { offset: 0, length: 1000 })).toEqual(a.data);
      expect(await b.read(h, { offset: 999, length: 1 })).toEqual(a.data.subarray(999));
      expect(await b.read(h, { offset: 990, length: 100 })).toEqual(a.data.subarray(990));
      expect((await b.read(h, { offset: 1000, length: 10 })).length).toBe(0);
      expect((await b.read(h, { offset: 5, length: 0 })).length).toBe(0);
      // A range marked as metadata reads the same bytes, twice.
      expect(await b.read(h, { offset: 200, length: 50, metadata: true })).toEqual(a.data.subarray(200, 250));
      expect(await b.read(h, { offset: 200, length: 50, metadata: true })).toEqual(a.data.subarray(200, 250));
    });

    it('readInto (where offered): the same bytes as read, into the caller\'s buffer; short at the end; notFound', async () => {
      if (!b.readInto) return;
      const a = obj(1000);
      const h: Handle = { type: 'data', name: a.name };
      await b.write(h, a.data);
      const into = Buffer.alloc(1200, 0xee);
      expect(await b.readInto(h, into)).toBe(1000);
      expect(into.subarray(0, 1000)).toEqual(a.data);
      expect(into[1000]).toBe(0xee);
      expect(await b.readInto(h, into, { offset: 10, length: 100 })).toBe(100);
      expect(into.subarray(0, 100)).toEqual(a.data.subarray(10, 110));
      expect(await b.readInto(h, into, { offset: 990, length: 100 })).toBe(10);
      expect(into.subarray(0, 10)).toEqual(a.data.subarray(990));
      await expect(b.readInto(h, Buffer.alloc(10), { offset: 0, length: 100 })).rejects.toThrow(RangeError);
      expect(await kindOf(b.readInto({ type: 'data', name: 'ab'.repeat(32) }, into))).toBe('notFound');
    });

    it('missing objects: read → notFound, stat → undefined, remove → notFound', async () => {
      const h: Handle = { type: 'snapshots', name: 'ab'.repeat(32) };
      expect(await kindOf(b.read(h))).toBe('notFound');
      expect(await kindOf(b.read({ type: 'data', name: h.name }, { offset: 0, length: 10 }))).toBe('notFound');
      expect(await b.stat(h)).toBeUndefined();
      expect(await kindOf(b.remove(h))).toBe('notFound');
    });

    it('bad object names are refused before any request', async () => {
      expect(await kindOf(b.write({ type: 'data', name: '../../etc/passwd' }, randomBytes(1)))).toBe('RangeError');
      expect(await kindOf(b.read({ type: 'keys', name: 'AB'.repeat(32) }))).toBe('RangeError');
    });

    it('overwrite refused: the first content stays', async () => {
      const a = obj(500);
      const h: Handle = { type: 'index', name: a.name };
      await b.write(h, a.data);
      expect(await kindOf(b.write(h, randomBytes(500)))).toBe('exists');
      expect(await kindOf(b.write(h, a.data))).toBe('exists');
      expect(await b.read(h)).toEqual(a.data);
    });

    it('concurrent writes and reads all land', async () => {
      const objs = Array.from({ length: 40 }, (_, i) => obj(100 + i * 37));
      await Promise.all(objs.map((o) => b.write({ type: 'keys', name: o.name }, o.data)));
      const back = await Promise.all(objs.map((o) => b.read({ type: 'keys', name: o.name })));
      back.forEach((d, i) => expect(d.equals(objs[i].data)).toBe(true));
      const listed = new Map((await b.list('keys')).map((o) => [o.name, o.size]));
      for (const o of objs) expect(listed.get(o.name)).toBe(o.data.length);
    });

    it('remove deletes exactly one object', async () => {
      const a = obj(64);
      const c = obj(64);
      await b.write({ type: 'locks', name: a.name }, a.data);
      await b.write({ type: 'locks', name: c.name }, c.data);
      await b.remove({ type: 'locks', name: a.name });
      expect(await b.stat({ type: 'locks', name: a.name })).toBeUndefined();
      expect(await kindOf(b.read({ type: 'locks', name: a.name }))).toBe('notFound');
      const names = (await b.list('locks')).map((o) => o.name);
      expect(names).toContain(c.name);
      expect(names).not.toContain(a.name);
    });

    // The objects are put in place on the server's disk directly: writes are
    // tested above, and 2000 of them through the protocol take long (s3rver
    // stores three files per object). S3 lists in pages of 1000.
    const count = 2000;
    it(`lists ${count} objects with their sizes`, async () => {
      const before = (await b.list('snapshots')).length;
      const objs = Array.from({ length: count }, (_, i) => obj(16 + (i % 50)));
      mkdirSync(path.dirname(snapshotFile(objs[0].name)), { recursive: true });
      for (const o of objs) writeFileSync(snapshotFile(o.name), o.data);
      const listed = await b.list('snapshots');
      expect(listed.length).toBe(before + count);
      const sizes = new Map(listed.map((o) => [o.name, o.size]));
      for (const o of objs) expect(sizes.get(o.name)).toBe(o.data.length);
    });
  });
}

/**
 * Fault injection: wraps a backend and, per method, fails the next calls
 * with a given kind, optionally after letting the call reach the backend
 * (a reply lost on the way back).
 */
class FaultyBackend implements Backend {
  readonly location: string;
  calls: Record<string, number> = {};
  inFlight = 0;
  maxInFlight = 0;
  private faults: { method: string; kind: StorageError['kind']; times: number; after?: boolean }[] = [];
  constructor(
    readonly inner: Backend,
    private readonly delayMs = 0,
  ) {
    this.location = inner.location;
  }
  fail(method: string, kind: StorageError['kind'], times: number, after = false): this {
    this.faults.push({ method, kind, times, after });
    return this;
  }
  private async run<T>(method: string, op: () => Promise<T>): Promise<T> {
    this.calls[method] = (this.calls[method] ?? 0) + 1;
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      const f = this.faults.find((x) => x.method === method && x.times > 0);
      if (f) f.times--;
      if (f && !f.after) throw new StorageError(f.kind, `injected ${f.kind} in ${method}`);
      const r = await op();
      if (f) throw new StorageError(f.kind, `injected ${f.kind} after ${method}`);
      return r;
    } finally {
      this.inFlight--;
    }
  }
  read(h: Handle, range?: ReadRange) {
    return this.run('read', () => this.inner.read(h, range));
  }
  stat(h: Handle) {
    return this.run('stat', () => this.inner.stat(h));
  }
  list(type: FileType): Promise<ObjectInfo[]> {
    return this.run('list', () => this.inner.list(type));
  }
  create() {
    return this.run('create', () => this.inner.create());
  }
  write(h: Handle, data: Uint8Array | readonly Uint8Array[]) {
    return this.run('write', () => this.inner.write(h, data));
  }
  remove(h: Handle) {
    return this.run('remove', () => this.inner.remove(h));
  }
}

describe('layers', () => {
  async function faulty(delayMs = 0) {
    const local = new LocalBackend(path.join(tmp.dir, fresh('layers')));
    await local.create();
    return new FaultyBackend(local, delayMs);
  }
  const noSleep = { sleep: async () => undefined };

  it('retry: transient errors are retried with growing, jittered delays, then succeed', async () => {
    const f = (await faulty()).fail('read', 'transient', 3);
    const a = obj(100);
    await f.inner.write({ type: 'keys', name: a.name }, a.data);
    const delays: number[] = [];
    const r = new RetryBackend(f, { baseDelayMs: 100, maxDelayMs: 1000, random: () => 1, sleep: async (ms) => void delays.push(ms) });
    expect(await r.read({ type: 'keys', name: a.name })).toEqual(a.data);
    expect(f.calls.read).toBe(4);
    expect(delays).toEqual([100, 200, 400]);
    // Full jitter: delays are random × the exponential cap, capped at maxDelay.
    const j = new RetryBackend(f, { baseDelayMs: 100, maxDelayMs: 1000, random: () => 0.5 });
    expect([0, 1, 2, 3, 4, 5].map((i) => j.delay(i))).toEqual([50, 100, 200, 400, 500, 500]);
  });

  it('retry: permanent errors are not retried', async () => {
    for (const kind of ['notFound', 'exists', 'permission', 'noSpace', 'io'] as const) {
      const f = (await faulty()).fail('list', kind, 1);
      const r = new RetryBackend(f, noSleep);
      expect(await kindOf(r.list('keys'))).toBe(kind);
      expect(f.calls.list).toBe(1);
    }
  });

  it('retry: gives up after the configured retries with the transient error', async () => {
    const f = (await faulty()).fail('stat', 'transient', 100);
    const r = new RetryBackend(f, { ...noSleep, retries: 4 });
    expect(await kindOf(r.stat({ type: 'config', name: 'config' }))).toBe('transient');
    expect(f.calls.stat).toBe(5);
  });

  it('retry: a write whose reply was lost counts as done; a different object under the name does not', async () => {
    const f = (await faulty()).fail('write', 'transient', 1, true);
    const r = new RetryBackend(f, noSleep);
    const a = obj(300);
    await r.write({ type: 'index', name: a.name }, [a.data.subarray(0, 100), a.data.subarray(100)]);
    expect(f.calls.write).toBe(2);
    expect(await f.inner.read({ type: 'index', name: a.name })).toEqual(a.data);
    // Without a failed attempt first, "exists" is the caller's problem.
    expect(await kindOf(r.write({ type: 'index', name: a.name }, a.data))).toBe('exists');
    // A failed attempt that left a partial object (a server writing in place,
    // killed): the leftover is replaced.
    const c = obj(50);
    f.fail('write', 'transient', 1);
    await f.inner.write({ type: 'index', name: c.name }, c.data.subarray(0, 20));
    await r.write({ type: 'index', name: c.name }, c.data);
    expect(await f.inner.read({ type: 'index', name: c.name })).toEqual(c.data);
    // ... but never the config, which is not named by its content.
    f.fail('write', 'transient', 1);
    await f.inner.write({ type: 'config', name: 'config' }, randomBytes(10));
    expect(await kindOf(r.write({ type: 'config', name: 'config' }, randomBytes(10)))).toBe('exists');
  });

  it('retry: a remove whose reply was lost counts as done', async () => {
    const f = (await faulty()).fail('remove', 'transient', 1, true);
    const a = obj(10);
    await f.inner.write({ type: 'locks', name: a.name }, a.data);
    await new RetryBackend(f, noSleep).remove({ type: 'locks', name: a.name });
    expect(await f.inner.stat({ type: 'locks', name: a.name })).toBeUndefined();
    expect(f.calls.remove).toBe(2);
  });

  it('limit: never more requests in flight than the limit', async () => {
    const f = await faulty(5);
    const l = new LimitBackend(f, 3);
    const objs = Array.from({ length: 20 }, () => obj(64));
    await Promise.all(objs.map((o) => l.write({ type: 'keys', name: o.name }, o.data)));
    await Promise.all(objs.map((o) => l.read({ type: 'keys', name: o.name })));
    expect(f.maxInFlight).toBe(3);
    expect(() => new LimitBackend(f, 0)).toThrow(RangeError);
  });

  it('cache: keys, index and snapshots and metadata ranges come from disk the second time; other reads do not', async () => {
    const f = await faulty();
    const c = new CacheBackend(f, cacheDir());
    const k = obj(200);
    const snap = obj(300);
    const pack = obj(5000);
    await f.inner.write({ type: 'keys', name: k.name }, k.data);
    await c.write({ type: 'snapshots', name: snap.name }, snap.data); // write-through
    await f.inner.write({ type: 'data', name: pack.name }, pack.data);
    for (let i = 0; i < 3; i++) {
      expect(await c.read({ type: 'keys', name: k.name })).toEqual(k.data);
      expect(await c.read({ type: 'snapshots', name: snap.name })).toEqual(snap.data);
      expect(await c.read({ type: 'data', name: pack.name }, { offset: 100, length: 200, metadata: true })).toEqual(pack.data.subarray(100, 300));
      expect(await c.read({ type: 'data', name: pack.name }, { offset: 1000, length: 10 })).toEqual(pack.data.subarray(1000, 1010));
    }
    expect(f.calls.read).toBe(1 + 1 + 3); // the key once, the tree pack once, the data range every time
    expect(await c.read({ type: 'config', name: 'config' }).catch((e) => e.kind)).toBe('notFound'); // never cached
  });

  it('cache: a tree pack is downloaded once, for many tree reads at once, and serves them in the next process too', async () => {
    const f = await faulty(5);
    const dir = cacheDir();
    const c = new CacheBackend(f, dir);
    const pack = obj(100_000);
    await f.inner.write({ type: 'data', name: pack.name }, pack.data);
    const ranges = Array.from({ length: 30 }, (_, i) => ({ offset: i * 3000, length: 2000 + i, metadata: true }));
    const got = await Promise.all(ranges.map((r) => c.read({ type: 'data', name: pack.name }, r)));
    got.forEach((g, i) => expect(g.equals(pack.data.subarray(ranges[i].offset, ranges[i].offset + ranges[i].length))).toBe(true));
    expect(f.calls.read).toBe(1);
    expect(c.stats.misses).toBe(1);
    const next = new CacheBackend(f, dir);
    expect(await next.read({ type: 'data', name: pack.name }, { offset: 99_990, length: 100, metadata: true })).toEqual(pack.data.subarray(99_990));
    expect(f.calls.read).toBe(1);
  });

  it('cache: a damaged entry is dropped and read again; removed objects leave the cache', async () => {
    const f = await faulty();
    const dir = cacheDir();
    const c = new CacheBackend(f, dir);
    const a = obj(100);
    const pack = obj(1000);
    await f.inner.write({ type: 'index', name: a.name }, a.data);
    await f.inner.write({ type: 'data', name: pack.name }, pack.data);
    await c.read({ type: 'index', name: a.name });
    await c.read({ type: 'data', name: pack.name }, { offset: 0, length: 100, metadata: true });
    writeFileSync(path.join(dir, 'index', a.name), 'garbage');
    const treeDir = path.join(dir, 'packs', pack.name.slice(0, 2));
    const packFile = path.join(treeDir, pack.name);
    const bytes = readFileSync(packFile);
    bytes[40] ^= 1;
    writeFileSync(packFile, bytes);
    // A new process (a new layer) checks the cached pack before its first use.
    const c2 = new CacheBackend(f, dir);
    expect(await c2.read({ type: 'index', name: a.name })).toEqual(a.data);
    expect(await c2.read({ type: 'data', name: pack.name }, { offset: 0, length: 100, metadata: true })).toEqual(pack.data.subarray(0, 100));
    expect(f.calls.read).toBe(4);
    expect(readFileSync(packFile)).toEqual(pack.data);
    // Gone from the repository (another client pruned it): the next listing drops it.
    await f.inner.remove({ type: 'index', name: a.name });
    await f.inner.remove({ type: 'data', name: pack.name });
    expect(await c2.list('index')).toEqual([]);
    expect(await c2.list('data')).toEqual([]);
    expect(readdirSync(path.join(dir, 'index'))).toEqual([]);
    expect(readdirSync(treeDir)).toEqual([]);
    expect(await kindOf(c2.read({ type: 'index', name: a.name }))).toBe('notFound');
  });

  it('the CLI stack: openBackend layers remote backends (cache → retry → limit) and leaves local directories bare', () => {
    expect(openBackend(path.join(tmp.dir, 'x'), { cacheDir: cacheDir() })).toBeInstanceOf(LocalBackend);
    const rest = openBackend('rest:http://127.0.0.1:9/r', { cacheDir: cacheDir() });
    expect(rest).toBeInstanceOf(CacheBackend);
    expect(openBackend('rest:http://127.0.0.1:9/r', { noCache: true })).toBeInstanceOf(RetryBackend);
    expect(rest.location).toBe('rest:http://127.0.0.1:9/r');
    expect(openBackend('rest:http://u:secret@127.0.0.1:9/r', { noCache: true }).location).toBe('rest:http://127.0.0.1:9/r');
    expect(parseLocation('s3:https://s3.example.net:9000/bkt/a/b').location).toBe('s3:https://s3.example.net:9000/bkt/a/b');
    expect(parseLocation('s3:bkt/prefix').location).toBe('s3:bkt/prefix');
    for (const bad of ['ftp:x', 'rest:notaurl', 'rest:ftp://h/x', 's3:', 's3:https://host/', 'rclone:']) {
      expect(() => parseLocation(bad)).toThrow(/./);
    }
    expect(() => parseLocation('s3:b/p', { env: { COFFER_S3_PATH_STYLE: 'maybe' } })).toThrow(/COFFER_S3_PATH_STYLE/);
  });
});

describe('real failures are classified transient or permanent', () => {
  it.skipIf(RCLONE)('rest: a stopped server is transient, and the retry layer rides over a restart', async () => {
    const dir = path.join(tmp.dir, fresh('restart'));
    mkdirSync(dir);
    let server = await startRcloneRestic(dir);
    const bare = parseLocation(`rest:${server.url}repo`);
    await bare.create();
    const a = obj(1000);
    await bare.write({ type: 'keys', name: a.name }, a.data);
    expect(await kindOf(bare.read({ type: 'keys', name: 'cd'.repeat(32) }))).toBe('notFound');
    await server.kill();
    expect(await kindOf(bare.read({ type: 'keys', name: a.name }))).toBe('transient');
    expect(await kindOf(bare.list('keys'))).toBe('transient');
    // The retry layer (real timers) keeps trying until the server is back.
    const retried: number[] = [];
    const layered = new RetryBackend(bare, { baseDelayMs: 100, maxDelayMs: 400, retries: 20, onRetry: (_e, n) => void retried.push(n) });
    const pending = layered.read({ type: 'keys', name: a.name });
    await new Promise((r) => setTimeout(r, 300));
    server = await startRcloneRestic(dir, { port: server.port });
    try {
      expect(await pending).toEqual(a.data);
      expect(retried.length).toBeGreaterThan(0);
    } finally {
      await server.kill();
    }
  });

  it.skipIf(RCLONE)('rest --append-only: backups can write, deleting data is refused with a clear permission error', async () => {
    const dir = path.join(tmp.dir, fresh('append'));
    mkdirSync(dir);
    const server = await startRcloneRestic(dir, { appendOnly: true });
    try {
      const b = openBackend(`rest:${server.url}repo`, { noCache: true });
      await b.create();
      const a = obj(100);
      const lock = obj(50);
      await b.write({ type: 'data', name: a.name }, a.data);
      await b.write({ type: 'locks', name: lock.name }, lock.data);
      expect(await kindOf(b.write({ type: 'data', name: a.name }, a.data))).toBe('exists');
      await b.remove({ type: 'locks', name: lock.name }); // allowed: clients must release locks
      const err = await b.remove({ type: 'data', name: a.name }).catch((e) => e);
      expect(err).toBeInstanceOf(StorageError);
      expect(err.kind).toBe('permission');
      expect(err.message).toMatch(/refused to delete data\/[0-9a-f]{64}.*append-only/);
      expect(await b.read({ type: 'data', name: a.name })).toEqual(a.data);
    } finally {
      await server.kill();
    }
  });

  it.skipIf(RCLONE)('rclone: a missing program or a bad remote is permanent, with the reason; a crashed rclone is restarted', async () => {
    const missing = parseLocation(`rclone:${tmp.dir}/x`, { env: { COFFER_RCLONE_PROGRAM: path.join(tmp.dir, 'no-such-rclone') } });
    const e1 = await missing.stat({ type: 'config', name: 'config' }).catch((e) => e);
    expect([e1.kind, e1.message]).toEqual(['io', expect.stringMatching(/rclone is not installed/)]);
    const bad = parseLocation('rclone:nosuchremote:backups', { env: {} });
    const e2 = await bad.stat({ type: 'config', name: 'config' }).catch((e) => e);
    expect(e2.kind).toBe('io');
    expect(e2.message).toMatch(/nosuchremote/);
    await bad.close?.();

    // A wrapper that records the pid of each rclone it starts.
    const pids = path.join(tmp.dir, fresh('pids'));
    const wrapper = path.join(tmp.dir, fresh('rclone-wrapper'));
    writeFileSync(wrapper, `#!/bin/sh\necho $$ >> ${pids}\nexec rclone --config /dev/null "$@"\n`, { mode: 0o755 });
    const b = parseLocation(`rclone:${path.join(tmp.dir, fresh('stdio'))}`, { env: { COFFER_RCLONE_PROGRAM: wrapper } });
    await b.create();
    const a = obj(100);
    await b.write({ type: 'keys', name: a.name }, a.data);
    process.kill(Number(readFileSync(pids, 'utf8').trim()), 'SIGKILL');
    await new Promise((r) => setTimeout(r, 200));
    expect(await b.read({ type: 'keys', name: a.name })).toEqual(a.data); // a new rclone
    expect(readFileSync(pids, 'utf8').trim().split('\n').length).toBe(2);
    await b.close?.();
  });

  it('s3: wrong credentials are a permission error, a stopped server is transient', async () => {
    const dir = path.join(tmp.dir, fresh('s3stop'));
    mkdirSync(dir);
    const server = await startS3rver(dir);
    const b = parseLocation(`s3:${server.url}/bucket/p`);
    try {
      await b.create();
      const a = obj(100);
      await b.write({ type: 'keys', name: a.name }, a.data);
      const saved = process.env.AWS_ACCESS_KEY_ID;
      process.env.AWS_ACCESS_KEY_ID = 'nobody';
      const wrong = parseLocation(`s3:${server.url}/bucket/p`);
      try {
        expect(await kindOf(wrong.read({ type: 'keys', name: a.name }))).toBe('permission');
      } finally {
        process.env.AWS_ACCESS_KEY_ID = saved;
        await wrong.close?.();
      }
      await server.kill();
      expect(await kindOf(b.read({ type: 'keys', name: a.name }))).toBe('transient');
      expect(await kindOf(b.list('keys'))).toBe('transient');
    } finally {
      await server.kill();
      await b.close?.();
    }
  });
});
