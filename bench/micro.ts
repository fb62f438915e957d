/**
 * Micro-benchmarks of every stage of coffer's data path, single-threaded, on
 * this machine (tinybench). Run after `tsc`:
 *
 *   node dist/bench/micro.js [--quick] [--only STAGE,...] [--json FILE]
 *
 * Stages: chunker, blake3, compress, cipher, pack, index.
 *   chunker   our FastCdc (dist/src/chunker/fastcdc.js) vs fastcdc-wasm on
 *             64 MiB of random data at 512 KiB / 1 MiB / 8 MiB (was bench/chunker.bench.ts)
 *   blake3    keyed BLAKE3 via @napi-rs/blake-hash (coffer's choice) vs hash-wasm,
 *             blake3-jit and @noble/hashes (devDependencies; each must give
 *             coffer's digest), SHA-256 of node:crypto for reference
 *   compress  zstd-napi (dist/src/compress.js compressIfSmaller) levels 1/3/6/9
 *             on 1 MiB of text and 1/3 on random data; node:zlib brotli q1 and
 *             gzip 1/6; decompression of each format
 *   cipher    coffer's AEAD (dist/src/crypto/aead.js seal/open) on 1 MiB; the addon's AES-GCM (Node's OpenSSL) on 1 MiB and 1 KiB;
 *             plain node:crypto AES-256-GCM and ChaCha20-Poly1305;
 *             @noble/ciphers AES-256-GCM and XChaCha20-Poly1305
 *   pack      pack tail encode / trailer+header decode for 16 blobs; the full
 *             blob path sealBlob/openBlob (compress + seal / open + decompress + id check) on 1 MiB
 *   index     SQLite IndexCache: addIndexFile with 200,000 blobs in one call,
 *             then 100,000 random lookups (scratch database file in the temp dir);
 *             raw inserts into the same table with 1, 100 and all rows per transaction
 *
 * MB/s are 10^6 bytes per second of input (plaintext) bytes. coffer runs
 * these stages on a worker pool (one worker per core), so its pipeline can
 * reach up to ~cores × the single-thread rates below, less the I/O.
 * The full run takes about 1.5 minutes; --quick uses smaller inputs and
 * shorter sampling (about 20 s in all).
 */
import { createRequire } from 'node:module';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { constants as zc, brotliCompressSync, brotliDecompressSync, gzipSync, gunzipSync } from 'node:zlib';
import { Bench } from 'tinybench';
import { Blake3Hasher } from '@napi-rs/blake-hash';
import { FastCdc, chunkLengths, type ChunkerParams } from '../src/chunker/fastcdc.js';
import { gearFromBytes } from '../src/chunker/gear.js';
import { keyedHash } from '../src/crypto/hash.js';
import { compressIfSmaller, decompressExact } from '../src/compress.js';
import { open, seal } from '../src/crypto/aead.js';
import { nativeGcm } from '../src/platform/addon.js';
import { encodePackTail, decodePackHeader, decodePackTrailer, TRAILER_BYTES, type PackEntry } from '../src/format/pack.js';
import { computeBlobId, openBlob, sealBlob } from '../src/format/blob.js';
import { IndexCache } from '../src/cache/index-cache.js';
import type { IndexedPack } from '../src/format/index-file.js';
import type { PackId } from '../src/ids.js';
import { KiB, MiB, fmtNum, machineBusySeconds, machineInfo, markdownTable, parseArgs } from './lib.js';

const require = createRequire(import.meta.url);
const STAGES = ['chunker', 'blake3', 'compress', 'cipher', 'pack', 'index'] as const;
type Stage = (typeof STAGES)[number];

const USAGE = `usage: node dist/bench/micro.js [--quick] [--only ${STAGES.join(',')}] [--json FILE]\n`;
const args = parseArgs(process.argv.slice(2), ['--quick'], ['--only', '--json'], USAGE);
const quick = args.flags.has('--quick');
const only = (args.values.get('--only') ?? STAGES.join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean) as Stage[];
for (const s of only) if (!STAGES.includes(s)) {
  process.stderr.write(`unknown stage "${s}"\n${USAGE}`);
  process.exit(2);
}

/** tinybench settings: the full run samples for 1.5 s per task (chunker: 3 s). */
const benchOpts = quick
  ? { time: 300, iterations: 5, warmupTime: 100, warmupIterations: 2 }
  : { time: 1500, iterations: 10, warmupTime: 250, warmupIterations: 3 };

interface Task {
  name: string;
  fn: () => void;
  /** input bytes per call (for MB/s); 0 = report ops/s only */
  bytes: number;
  /** per call: operations (for ops/s), default 1 */
  ops?: number;
  note?: string;
}
interface Row {
  stage: Stage;
  task: string;
  mean_ms: number;
  best_ms: number;
  mb_s: number | null;
  /** from the median latency: less sensitive than the mean to other processes on a shared machine */
  mb_s_median: number | null;
  mb_s_best: number | null;
  ops_s: number;
  samples: number;
  note?: string;
}
const allRows: Row[] = [];
const notes: Record<string, string[]> = {};
let sink = 0;
let exitCode = 0;

function absentRow(stage: Stage, task: string, why: string): Row {
  return { stage, task, mean_ms: NaN, best_ms: NaN, mb_s: null, mb_s_median: null, mb_s_best: null, ops_s: NaN, samples: 0, note: why };
}

async function runTasks(stage: Stage, tasks: Task[], opts = benchOpts): Promise<Row[]> {
  const bench = new Bench(opts);
  for (const t of tasks) bench.add(t.name, t.fn);
  await bench.run();
  return tasks.map((t, i) => {
    const r = bench.tasks[i].result;
    if (!r || (r as { error?: unknown }).error) {
      const err = (r as { error?: unknown } | undefined)?.error;
      exitCode = 1;
      return absentRow(stage, t.name, `ERROR: ${err instanceof Error ? err.message : String(err)}`);
    }
    const mean = r.latency.mean;
    const best = r.latency.min;
    const median = r.latency.p50 ?? mean;
    const ops = t.ops ?? 1;
    return {
      stage,
      task: t.name,
      mean_ms: mean,
      best_ms: best,
      mb_s: t.bytes ? t.bytes / 1e6 / (mean / 1e3) : null,
      mb_s_median: t.bytes ? t.bytes / 1e6 / (median / 1e3) : null,
      mb_s_best: t.bytes ? t.bytes / 1e6 / (best / 1e3) : null,
      ops_s: (ops * 1e3) / mean,
      samples: r.latency.samples.length,
      ...(t.note ? { note: t.note } : {}),
    };
  });
}

function printStage(stage: Stage, title: string, rows: Row[], extra?: { header: string; cell: (r: Row) => string }): void {
  allRows.push(...rows);
  const headers = ['task', 'mean ms', 'MB/s (median)', 'MB/s (mean)', 'MB/s (best)', 'ops/s (mean)', ...(extra ? [extra.header] : []), 'samples', 'note'];
  const body = rows.map((r) => [
    r.task,
    Number.isFinite(r.mean_ms) ? (r.mean_ms < 0.1 ? r.mean_ms.toFixed(4) : r.mean_ms.toFixed(2)) : '–',
    r.mb_s_median === null ? '–' : fmtNum(r.mb_s_median, 0),
    r.mb_s === null ? '–' : fmtNum(r.mb_s, 0),
    r.mb_s_best === null ? '–' : fmtNum(r.mb_s_best, 0),
    Number.isFinite(r.ops_s) ? (r.ops_s >= 100 ? Math.round(r.ops_s).toLocaleString('en-US') : r.ops_s.toFixed(1)) : '–',
    ...(extra ? [extra.cell(r)] : []),
    String(r.samples),
    r.note ?? '',
  ]);
  process.stdout.write(`\n### ${stage}: ${title}\n\n${markdownTable(headers, body)}\n`);
  for (const n of notes[stage] ?? []) process.stdout.write(`\n${n}\n`);
}

/** Whether a package can be resolved from here (installed), without installing anything. */
function installed(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    try {
      // ESM-only packages have no "require" export condition.
      return existsSync(path.join(process.cwd(), 'node_modules', name, 'package.json'));
    } catch {
      return false;
    }
  }
}

// ---------------------------------------------------------------- inputs

/** 1 MiB of text: JavaScript sources from the src corpus if present, else generated words. */
function textMiB(): { data: Buffer; from: string } {
  const root = path.join(process.env.OUT ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'coffer-corpus'), 'src', 'typescript-5.9.3', 'lib');
  if (existsSync(root)) {
    const parts: Buffer[] = [];
    let n = 0;
    for (const f of readdirSync(root).sort()) {
      if (!f.endsWith('.js') && !f.endsWith('.d.ts')) continue;
      const p = path.join(root, f);
      if (!statSync(p).isFile()) continue;
      const b = readFileSync(p);
      parts.push(b);
      n += b.length;
      if (n >= MiB) break;
    }
    if (n >= MiB) return { data: Buffer.concat(parts).subarray(0, MiB), from: `${root}/*.{js,d.ts}` };
  }
  const words = 'the of and to in is for on that with function return const let var if else import export class new value error result data file path index buffer chunk hash key node tree'.split(' ');
  let s = '';
  let seed = 12345;
  while (s.length < MiB) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    s += words[seed % words.length] + (seed % 11 === 0 ? ';\n' : ' ');
  }
  return { data: Buffer.from(s.slice(0, MiB)), from: 'generated words (src corpus not found)' };
}

const text = textMiB();
const random1 = randomBytes(MiB);

// ---------------------------------------------------------------- stages

async function stageChunker(): Promise<void> {
  const wasm = require('fastcdc-wasm') as {
    get_chunks(bytes: Uint8Array, min: number, avg: number, max: number): Uint32Array;
  };
  const SIZE = (quick ? 16 : 64) * MiB;
  const params: ChunkerParams = { minSize: 512 * KiB, avgSize: 1 * MiB, maxSize: 8 * MiB };
  const data = new Uint8Array(randomBytes(SIZE));
  const cdc = new FastCdc(params);
  const cdcKeyed = new FastCdc(params, gearFromBytes(new Uint8Array(randomBytes(1024))));

  // Sanity check: identical cut points.
  const ourLens = chunkLengths(cdc, data);
  const offsets = wasm.get_chunks(data, params.minSize, params.avgSize, params.maxSize);
  const wasmLens: number[] = [];
  for (let i = 1; i < offsets.length; i++) wasmLens.push(offsets[i] - offsets[i - 1]);
  const same = ourLens.length === wasmLens.length && ourLens.every((n, i) => n === wasmLens[i]);
  if (!same) exitCode = 1;
  // The first minSize bytes of every chunk are skipped, so fewer bytes are hashed
  // than chunked; report both rates (the cut points, hence this count, are identical).
  let hashed = 0;
  for (const n of ourLens) hashed += Math.max(0, n - params.minSize);

  const rows = await runTasks(
    'chunker',
    [
      { name: 'coffer FastCdc (default gear)', bytes: SIZE, fn: () => void (sink += chunkLengths(cdc, data).length) },
      { name: 'coffer FastCdc (keyed gear)', bytes: SIZE, fn: () => void (sink += chunkLengths(cdcKeyed, data).length) },
      {
        name: 'fastcdc-wasm get_chunks',
        bytes: SIZE,
        // Includes fastcdc-wasm's copy of the input into wasm memory (and back).
        fn: () => void (sink += wasm.get_chunks(data, params.minSize, params.avgSize, params.maxSize).length),
      },
    ],
    quick ? benchOpts : { time: 3000, iterations: 10, warmupTime: 500, warmupIterations: 3 },
  );
  notes.chunker = [
    `${SIZE / MiB} MiB random data, min/avg/max = ${params.minSize / KiB} KiB / ${params.avgSize / KiB} KiB / ${params.maxSize / KiB} KiB. ` +
      `Chunks: ours ${ourLens.length}, fastcdc-wasm ${wasmLens.length}, identical cut points: ${same}${same ? '' : ' — MISMATCH'}; ` +
      `bytes hashed per pass: ${(hashed / MiB).toFixed(1)} MiB of ${SIZE / MiB} MiB (the first min bytes of a chunk are skipped).`,
  ];
  printStage('chunker', 'content-defined chunking (MB/s of input)', rows, {
    header: 'hashed MB/s',
    cell: (r) => fmtNum(hashed / 1e6 / (r.mean_ms / 1e3), 0),
  });
}

async function stageBlake3(): Promise<void> {
  const key = randomBytes(32);
  const reused = Blake3Hasher.newKeyed(key);
  const small = randomBytes(64);
  const kb4 = randomBytes(4 * KiB);
  const big = randomBytes(16 * MiB);
  /** Candidates over 1 MiB: each returns the keyed digest, which must equal coffer's keyedHash. */
  const candidates: { name: string; digest: (d: Uint8Array) => Uint8Array }[] = [
    {
      name: '@napi-rs/blake-hash keyed, reused hasher',
      digest: (d) => {
        reused.reset();
        return reused.update(Buffer.from(d.buffer, d.byteOffset, d.byteLength)).digestBuffer();
      },
    },
    { name: '@napi-rs/blake-hash keyed, new hasher per call', digest: (d) => Blake3Hasher.newKeyed(key).update(Buffer.from(d.buffer, d.byteOffset, d.byteLength)).digestBuffer() },
    { name: 'coffer keyedHash (crypto/hash.js)', digest: (d) => keyedHash(key, d) },
  ];
  const absent: Row[] = [];
  if (installed('hash-wasm')) {
    const hw = (await import('hash-wasm' as string)) as {
      createBLAKE3(bits?: number, key?: Uint8Array): Promise<{ init(): unknown; update(d: Uint8Array): unknown; digest(f: 'binary'): Uint8Array }>;
    };
    const h = await hw.createBLAKE3(256, key);
    candidates.push({
      name: 'hash-wasm createBLAKE3 keyed (wasm)',
      digest: (d) => {
        h.init();
        h.update(d);
        return h.digest('binary');
      },
    });
  } else absent.push(absentRow('blake3', 'hash-wasm', 'not installed (npm install --save-dev hash-wasm)'));
  if (!installed('blake3-jit')) absent.push(absentRow('blake3', 'blake3-jit', 'not installed (npm install --save-dev blake3-jit)'));
  else {
    const bj = (await import('blake3-jit' as string)) as {
      createKeyed?: (k: Uint8Array) => { update(d: Uint8Array): { finalize(n?: number): Uint8Array } };
      warmupSimd?: () => boolean;
    };
    const simd = bj.warmupSimd?.() ?? false;
    const createKeyed = bj.createKeyed;
    if (createKeyed) candidates.push({ name: `blake3-jit createKeyed (JS + wasm SIMD ${simd ? 'on' : 'off'})`, digest: (d) => createKeyed(key).update(d).finalize(32) });
    else absent.push(absentRow('blake3', 'blake3-jit', 'installed, but no createKeyed export found'));
  }
  if (!installed('@noble/hashes')) absent.push(absentRow('blake3', '@noble/hashes', 'not installed (npm install --save-dev @noble/hashes)'));
  else {
    const nh = (await import('@noble/hashes/blake3.js' as string)) as { blake3(d: Uint8Array, o?: { key?: Uint8Array }): Uint8Array };
    candidates.push({ name: '@noble/hashes blake3 keyed (pure JS)', digest: (d) => nh.blake3(d, { key }) });
  }
  const expect = Buffer.from(keyedHash(key, random1));
  const wrong: string[] = [];
  for (const c of candidates) if (!Buffer.from(c.digest(random1)).equals(expect)) wrong.push(c.name);
  if (wrong.length) exitCode = 1;
  const tasks: Task[] = [
    ...candidates.map((c) => ({ name: `${c.name}, 1 MiB`, bytes: MiB, fn: () => void (sink += c.digest(random1)[0]) })),
    { name: 'coffer keyedHash, 16 MiB', bytes: 16 * MiB, fn: () => void (sink += keyedHash(key, big)[0]) },
    { name: 'coffer keyedHash, 4 KiB', bytes: 4 * KiB, fn: () => void (sink += keyedHash(key, kb4)[0]) },
    { name: 'coffer keyedHash, 12 B (AEAD subkey)', bytes: 0, fn: () => void (sink += keyedHash(key, small.subarray(0, 12))[0]) },
    { name: 'node:crypto sha256, 1 MiB (reference)', bytes: MiB, fn: () => void (sink += createHash('sha256').update(random1).digest()[0]) },
  ];
  const rows = await runTasks('blake3', tasks);
  notes.blake3 = [
    `All ${candidates.length} keyed candidates ${wrong.length ? `DISAGREE with coffer's keyedHash: ${wrong.join(', ')}` : "return the same digest as coffer's keyedHash on the 1 MiB input"}.`,
  ];
  printStage('blake3', 'keyed BLAKE3 (blob ids, AEAD subkeys)', [...rows, ...absent]);
}

async function stageCompress(): Promise<void> {
  const sizes = new Map<string, number>();
  const z = (name: string, data: Buffer, level: number): Task => {
    const probe = compressIfSmaller(data, level);
    sizes.set(name, probe ? probe.length : data.length);
    return { name, bytes: data.length, fn: () => void (sink += compressIfSmaller(data, level)?.length ?? 0) };
  };
  const brotli = (name: string, data: Buffer): Task => {
    const params = { params: { [zc.BROTLI_PARAM_QUALITY]: 1, [zc.BROTLI_PARAM_SIZE_HINT]: data.length } };
    sizes.set(name, brotliCompressSync(data, params).length);
    return { name, bytes: data.length, fn: () => void (sink += brotliCompressSync(data, params).length) };
  };
  const gzip = (name: string, data: Buffer, level: number): Task => {
    sizes.set(name, gzipSync(data, { level }).length);
    return { name, bytes: data.length, fn: () => void (sink += gzipSync(data, { level }).length) };
  };
  const textZ3 = Buffer.from(compressIfSmaller(text.data, 3)!);
  const textGz = gzipSync(text.data, { level: 1 });
  const textBr = brotliCompressSync(text.data, { params: { [zc.BROTLI_PARAM_QUALITY]: 1 } });
  const tasks: Task[] = [
    z('zstd-napi level 1, text', text.data, 1),
    z('zstd-napi level 3, text', text.data, 3),
    z('zstd-napi level 6, text', text.data, 6),
    z('zstd-napi level 9, text', text.data, 9),
    z('zstd-napi level 1, random (kept raw)', random1, 1),
    z('zstd-napi level 3, random (kept raw)', random1, 3),
    brotli('node:zlib brotli q1, text', text.data),
    brotli('node:zlib brotli q1, random', random1),
    gzip('node:zlib gzip level 1, text', text.data, 1),
    gzip('node:zlib gzip level 6, text', text.data, 6),
    gzip('node:zlib gzip level 1, random', random1, 1),
    { name: 'zstd-napi decompress (level 3 frame), text', bytes: MiB, fn: () => void (sink += decompressExact(textZ3, MiB).length) },
    { name: 'node:zlib brotli decompress (q1), text', bytes: MiB, fn: () => void (sink += brotliDecompressSync(textBr).length) },
    { name: 'node:zlib gunzip (level 1), text', bytes: MiB, fn: () => void (sink += gunzipSync(textGz).length) },
  ];
  for (const t of tasks.slice(-3)) sizes.set(t.name, NaN);
  const rows = await runTasks('compress', tasks);
  notes.compress = [`Text: 1 MiB of ${text.from}. Random: 1 MiB from randomBytes. MB/s of uncompressed bytes.`];
  printStage('compress', 'compression of 1 MiB blocks (compressIfSmaller: kept only if smaller)', rows, {
    header: 'size ratio',
    cell: (r) => (Number.isFinite(sizes.get(r.task)!) ? (sizes.get(r.task)! / MiB).toFixed(3) : '–'),
  });
}

async function stageCipher(): Promise<void> {
  const key = randomBytes(32);
  const aad = Buffer.from('coffer-bench-aad');
  const sealed = seal(key, random1, aad);
  const iv12 = randomBytes(12);
  const gcm = (() => {
    const c = createCipheriv('aes-256-gcm', key, iv12);
    c.setAAD(aad);
    const body = Buffer.concat([c.update(random1), c.final()]);
    return { body, tag: c.getAuthTag() };
  })();
  const chacha = (() => {
    const c = createCipheriv('chacha20-poly1305', key, iv12, { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: random1.length });
    const body = Buffer.concat([c.update(random1), c.final()]);
    return { body, tag: c.getAuthTag() };
  })();
  const tasks: Task[] = [
    { name: 'coffer aead seal (AES-256-GCM + BLAKE3 subkey), 1 MiB', bytes: MiB, fn: () => void (sink += seal(key, random1, aad).length) },
    { name: 'coffer aead open, 1 MiB', bytes: MiB, fn: () => void (sink += open(key, sealed, aad).length) },
    {
      name: 'node:crypto aes-256-gcm encrypt, 1 MiB',
      bytes: MiB,
      fn: () => {
        const c = createCipheriv('aes-256-gcm', key, randomBytes(12));
        c.setAAD(aad);
        sink += c.update(random1).length + c.final().length + c.getAuthTag().length;
      },
    },
    {
      name: 'node:crypto aes-256-gcm decrypt, 1 MiB',
      bytes: MiB,
      fn: () => {
        const d = createDecipheriv('aes-256-gcm', key, iv12);
        d.setAAD(aad);
        d.setAuthTag(gcm.tag);
        sink += d.update(gcm.body).length + d.final().length;
      },
    },
    {
      name: 'node:crypto chacha20-poly1305 encrypt, 1 MiB',
      bytes: MiB,
      fn: () => {
        const c = createCipheriv('chacha20-poly1305', key, randomBytes(12), { authTagLength: 16 });
        c.setAAD(aad, { plaintextLength: random1.length });
        sink += c.update(random1).length + c.final().length + c.getAuthTag().length;
      },
    },
    {
      name: 'node:crypto chacha20-poly1305 decrypt, 1 MiB',
      bytes: MiB,
      fn: () => {
        const d = createDecipheriv('chacha20-poly1305', key, iv12, { authTagLength: 16 });
        d.setAAD(aad, { plaintextLength: chacha.body.length });
        d.setAuthTag(chacha.tag);
        sink += d.update(chacha.body).length + d.final().length;
      },
    },
  ];
  const absent: Row[] = [];
  // The addon's seal step (one-block BLAKE3 subkey + AES-GCM through Node's
  // own OpenSSL, into a reused buffer), which coffer's seal/open use when it
  // is built, against the same step in JS (keyedHash + node:crypto's
  // Cipheriv), on 1 MiB and on 1 KiB (where the per-message set-up dominates).
  const addon = nativeGcm();
  if (addon) {
    const out = Buffer.allocUnsafe(MiB + 16);
    const plain = Buffer.allocUnsafe(MiB);
    const n24 = randomBytes(24);
    const jsSeal = (p: Uint8Array): Buffer => {
      const c = createCipheriv('aes-256-gcm', keyedHash(key, n24.subarray(0, 12)), n24.subarray(12));
      c.setAAD(aad);
      return Buffer.concat([c.update(p), c.final(), c.getAuthTag()]);
    };
    const jsOpen = (sealed: Buffer): number => {
      const d = createDecipheriv('aes-256-gcm', keyedHash(key, n24.subarray(0, 12)), n24.subarray(12));
      d.setAAD(aad);
      d.setAuthTag(sealed.subarray(sealed.length - 16));
      return d.update(sealed.subarray(0, sealed.length - 16)).length + d.final().length;
    };
    const kib = random1.subarray(0, KiB);
    const mibRef = jsSeal(random1);
    const kibRef = jsSeal(kib);
    const n = addon.gcmSeal(key, n24, aad, random1, null, out, 0);
    if (!out.subarray(0, n).equals(mibRef)) throw new Error('addon gcmSeal disagrees with keyedHash + node:crypto');
    if (!addon.gcmOpen(key, n24, aad, mibRef.subarray(0, MiB), mibRef.subarray(MiB), plain, 0) || !plain.equals(random1)) throw new Error('addon gcmOpen round trip failed');
    const ct = (r: Buffer) => r.subarray(0, r.length - 16);
    const tag = (r: Buffer) => r.subarray(r.length - 16);
    tasks.push(
      { name: 'JS subkey + node:crypto aes-256-gcm encrypt, 1 MiB', bytes: MiB, fn: () => void (sink += jsSeal(random1).length) },
      { name: 'addon subkey + aes-256-gcm encrypt into buffer, 1 MiB', bytes: MiB, fn: () => void (sink += addon.gcmSeal(key, n24, aad, random1, null, out, 0)) },
      { name: 'JS subkey + node:crypto aes-256-gcm decrypt, 1 MiB', bytes: MiB, fn: () => void (sink += jsOpen(mibRef)) },
      { name: 'addon subkey + aes-256-gcm decrypt into buffer, 1 MiB', bytes: MiB, fn: () => void (sink += +addon.gcmOpen(key, n24, aad, ct(mibRef), tag(mibRef), plain, 0)) },
      { name: 'JS subkey + node:crypto aes-256-gcm encrypt, 1 KiB', bytes: KiB, fn: () => void (sink += jsSeal(kib).length) },
      { name: 'addon subkey + aes-256-gcm encrypt into buffer, 1 KiB', bytes: KiB, fn: () => void (sink += addon.gcmSeal(key, n24, aad, kib, null, out, 0)) },
      { name: 'JS subkey + node:crypto aes-256-gcm decrypt, 1 KiB', bytes: KiB, fn: () => void (sink += jsOpen(kibRef)) },
      { name: 'addon subkey + aes-256-gcm decrypt into buffer, 1 KiB', bytes: KiB, fn: () => void (sink += +addon.gcmOpen(key, n24, aad, ct(kibRef), tag(kibRef), plain, 0)) },
    );
  } else absent.push(absentRow('cipher', 'addon AES-GCM', 'native addon not built or without OpenSSL headers'));
  if (installed('@noble/ciphers')) {
    try {
      type Aead = { encrypt(p: Uint8Array): Uint8Array; decrypt(c: Uint8Array): Uint8Array };
      const aes = (await import('@noble/ciphers/aes.js' as string)) as { gcm(k: Uint8Array, n: Uint8Array, aad?: Uint8Array): Aead };
      const cha = (await import('@noble/ciphers/chacha.js' as string)) as { xchacha20poly1305(k: Uint8Array, n: Uint8Array, aad?: Uint8Array): Aead };
      const n12 = randomBytes(12);
      const n24 = randomBytes(24);
      const gcmSealed = aes.gcm(key, n12, aad).encrypt(random1);
      const xSealed = cha.xchacha20poly1305(key, n24, aad).encrypt(random1);
      if (!Buffer.from(aes.gcm(key, n12, aad).decrypt(gcmSealed)).equals(random1)) throw new Error('@noble/ciphers gcm round trip failed');
      // Same key, nonce and AAD: noble's GCM must produce node:crypto's ciphertext and tag.
      const ref = createCipheriv('aes-256-gcm', key, n12);
      ref.setAAD(aad);
      const refOut = Buffer.concat([ref.update(random1), ref.final(), ref.getAuthTag()]);
      if (!refOut.equals(Buffer.from(gcmSealed))) throw new Error('@noble/ciphers gcm disagrees with node:crypto');
      tasks.push(
        { name: '@noble/ciphers aes-256-gcm encrypt, 1 MiB', bytes: MiB, fn: () => void (sink += aes.gcm(key, randomBytes(12), aad).encrypt(random1).length) },
        { name: '@noble/ciphers aes-256-gcm decrypt, 1 MiB', bytes: MiB, fn: () => void (sink += aes.gcm(key, n12, aad).decrypt(gcmSealed).length) },
        {
          name: '@noble/ciphers xchacha20poly1305 encrypt, 1 MiB',
          bytes: MiB,
          fn: () => void (sink += cha.xchacha20poly1305(key, randomBytes(24), aad).encrypt(random1).length),
        },
        { name: '@noble/ciphers xchacha20poly1305 decrypt, 1 MiB', bytes: MiB, fn: () => void (sink += cha.xchacha20poly1305(key, n24, aad).decrypt(xSealed).length) },
      );
    } catch (e) {
      exitCode = 1;
      absent.push(absentRow('cipher', '@noble/ciphers', `installed, but failed: ${(e as Error).message}`));
    }
  } else absent.push(absentRow('cipher', '@noble/ciphers', 'not installed (npm install --save-dev @noble/ciphers)'));
  const rows = await runTasks('cipher', tasks);
  printStage('cipher', 'authenticated encryption of 1 MiB', [...rows, ...absent]);
}

async function stagePack(): Promise<void> {
  const metaKey = randomBytes(32);
  const blobKey = randomBytes(32);
  const blobIdKey = randomBytes(32);
  const keys = { blobKey, blobIdKey };
  // 16 entries as in a pack of 1 MiB chunks.
  const entries: PackEntry[] = [];
  let off = 0;
  for (let i = 0; i < 16; i++) {
    const length = MiB + 41;
    entries.push({ type: 'data', id: randomBytes(32).toString('hex'), offset: off, length, rawLength: MiB });
    off += length;
  }
  const blobsLength = off;
  const tail = encodePackTail(metaKey, entries, blobsLength);
  const packLength = blobsLength + tail.length;
  const decode = () => {
    const t = decodePackTrailer(metaKey, tail.subarray(tail.length - TRAILER_BYTES), packLength);
    const h = tail.subarray(t.offset - blobsLength, t.offset - blobsLength + t.length);
    return decodePackHeader(metaKey, h, t.offset);
  };
  if (decode().length !== 16) throw new Error('pack decode sanity check failed');

  const idText = computeBlobId(blobIdKey, text.data);
  const idRandom = computeBlobId(blobIdKey, random1);
  const storedText = sealBlob(blobKey, 'data', idText, text.data, 3);
  const storedRandom = sealBlob(blobKey, 'data', idRandom, random1, 3);
  if (!openBlob(keys, 'data', idText.toString('hex'), storedText, MiB).equals(text.data)) throw new Error('blob round trip failed');
  const idTextHex = idText.toString('hex');
  const idRandomHex = idRandom.toString('hex');
  const tasks: Task[] = [
    { name: 'encodePackTail, 16 blobs', bytes: 0, fn: () => void (sink += encodePackTail(metaKey, entries, blobsLength).length) },
    { name: 'decodePackTrailer + decodePackHeader, 16 blobs', bytes: 0, fn: () => void (sink += decode().length) },
    { name: 'id + sealBlob (zstd 3), text 1 MiB', bytes: MiB, fn: () => void (sink += sealBlob(blobKey, 'data', computeBlobId(blobIdKey, text.data), text.data, 3).length) },
    { name: 'id + sealBlob (zstd 3), random 1 MiB', bytes: MiB, fn: () => void (sink += sealBlob(blobKey, 'data', computeBlobId(blobIdKey, random1), random1, 3).length) },
    { name: 'openBlob (incl. id check), text 1 MiB', bytes: MiB, fn: () => void (sink += openBlob(keys, 'data', idTextHex, storedText, MiB).length) },
    { name: 'openBlob (incl. id check), random 1 MiB', bytes: MiB, fn: () => void (sink += openBlob(keys, 'data', idRandomHex, storedRandom, MiB).length) },
  ];
  const rows = await runTasks('pack', tasks);
  notes.pack = [`Stored sizes: text ${storedText.length} B (of ${MiB}), random ${storedRandom.length} B; pack tail ${tail.length} B.`];
  printStage('pack', 'pack tail encode/decode, full blob seal/open path', rows);
}

async function stageIndex(): Promise<void> {
  const N = quick ? 50_000 : 200_000;
  const LOOKUPS = quick ? 20_000 : 100_000;
  const PER_PACK = 16;
  const runs = quick ? 1 : 3;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'coffer-micro-index-'));
  try {
    const ids: string[] = [];
    const packs: IndexedPack[] = [];
    for (let p = 0; p < N / PER_PACK; p++) {
      const blobs: PackEntry[] = [];
      let off = 0;
      for (let i = 0; i < PER_PACK; i++) {
        const id = randomBytes(32).toString('hex');
        ids.push(id);
        const length = 1000 + ((p * 7 + i * 13) % 100_000);
        blobs.push({ type: 'data', id, offset: off, length, rawLength: length + 17 });
        off += length;
      }
      packs.push({ id: randomBytes(32).toString('hex') as PackId, length: off + 800, blobs });
    }
    const insertMs: number[] = [];
    let cache: IndexCache | undefined;
    let dbFile = '';
    for (let r = 0; r < runs; r++) {
      cache?.close();
      dbFile = path.join(dir, `index-${r}.sqlite`);
      cache = IndexCache.open(dbFile);
      const t = performance.now();
      cache.addIndexFile(`index-file-${r}`, packs);
      insertMs.push(performance.now() - t);
    }
    const c = cache!;
    if (c.blobCount() !== N) throw new Error(`index sanity check failed: ${c.blobCount()} blobs`);
    const order = Array.from({ length: LOOKUPS }, () => ids[Math.floor(Math.random() * ids.length)]);
    const missing = Array.from({ length: LOOKUPS }, () => randomBytes(32).toString('hex'));
    const timeLoop = (fn: () => void): number[] => {
      fn(); // warm-up (statement caches, page cache)
      const out: number[] = [];
      for (let r = 0; r < runs; r++) {
        const t = performance.now();
        fn();
        out.push(performance.now() - t);
      }
      return out;
    };
    const lookup = timeLoop(() => {
      for (const id of order) if (!c.lookup('data', id)) throw new Error('lookup miss');
    });
    const hasHit = timeLoop(() => {
      for (const id of order) sink += c.has('data', id) ? 1 : 0;
    });
    const hasMiss = timeLoop(() => {
      for (const id of missing) sink += c.has('data', id) ? 1 : 0;
    });
    const dbBytes = statSync(dbFile).size + (existsSync(dbFile + '-wal') ? statSync(dbFile + '-wal').size : 0);
    c.close();

    // Transaction batching, on the same blobs table and pragmas as the cache (raw better-sqlite3).
    const Database = require('better-sqlite3') as typeof import('better-sqlite3');
    const rawRows = packs.flatMap((p) => p.blobs.map((b) => [Buffer.from(b.id, 'hex'), 0, Buffer.from(p.id, 'hex'), b.offset, b.length, b.rawLength] as const));
    const rawInsert = (file: string, rowsPerTx: number, count: number): number => {
      const db = new Database(path.join(dir, file));
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(`CREATE TABLE blobs (id BLOB NOT NULL, type INTEGER NOT NULL, pack BLOB NOT NULL, offset INTEGER NOT NULL,
                 length INTEGER NOT NULL, raw_length INTEGER NOT NULL, PRIMARY KEY (id, type, pack)) WITHOUT ROWID;
               CREATE INDEX blobs_by_pack ON blobs (pack);`);
      const ins = db.prepare('INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)');
      const tx = db.transaction((from: number, to: number) => {
        for (let i = from; i < to; i++) ins.run(...rawRows[i]);
      });
      const t = performance.now();
      for (let i = 0; i < count; i += rowsPerTx) {
        if (rowsPerTx === 1) ins.run(...rawRows[i]);
        else tx(i, Math.min(count, i + rowsPerTx));
      }
      const ms = performance.now() - t;
      db.close();
      return ms;
    };
    const RAW = quick ? 10_000 : 40_000;
    const batchRuns = (rowsPerTx: number, count: number) => Array.from({ length: runs }, (_, r) => rawInsert(`raw-${rowsPerTx}-${r}.sqlite`, rowsPerTx, count));
    const autoMs = batchRuns(1, RAW);
    const b100 = batchRuns(100, RAW);
    const b10k = batchRuns(RAW, RAW);
    const row = (task: string, ms: number[], ops: number): Row => {
      const mean = ms.reduce((a, b) => a + b, 0) / ms.length;
      const best = Math.min(...ms);
      return { stage: 'index', task, mean_ms: mean, best_ms: best, mb_s: null, mb_s_median: null, mb_s_best: null, ops_s: (ops * 1e3) / mean, samples: ms.length };
    };
    const rows = [
      row(`addIndexFile, ${N.toLocaleString('en-US')} blobs in ${N / PER_PACK} packs (one call)`, insertMs, N),
      row(`lookup() of ${LOOKUPS.toLocaleString('en-US')} random present ids`, lookup, LOOKUPS),
      row(`has() of ${LOOKUPS.toLocaleString('en-US')} random present ids`, hasHit, LOOKUPS),
      row(`has() of ${LOOKUPS.toLocaleString('en-US')} absent ids`, hasMiss, LOOKUPS),
      row(`raw INSERT of ${RAW.toLocaleString('en-US')} blobs, one transaction per blob (autocommit)`, autoMs, RAW),
      row(`raw INSERT of ${RAW.toLocaleString('en-US')} blobs, 100 per transaction`, b100, RAW),
      row(`raw INSERT of ${RAW.toLocaleString('en-US')} blobs, all in one transaction`, b10k, RAW),
    ];
    notes.index = [
      `ops/s = blobs inserted or ids looked up per second; mean ms is per whole call/loop. Database file after the insert: ` +
        `${(dbBytes / MiB).toFixed(1)} MiB (WAL included), ${dir} (removed).`,
    ];
    printStage('index', 'SQLite index cache (better-sqlite3, scratch file database)', rows);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

const mi = machineInfo();
process.stdout.write(
  `## coffer micro-benchmarks${quick ? ' (--quick)' : ''} — ${new Date().toISOString()}\n\n` +
    `Machine: ${mi.cpu}, ${mi.cores} cores, ${mi.memory_gib} GiB RAM, node ${mi.node}, load average ${(mi.loadavg as number[]).join(' ')}. ` +
    `Single-threaded; MB/s = 10^6 input bytes per second.\n`,
);
const runners: Record<Stage, () => Promise<void>> = {
  chunker: stageChunker,
  blake3: stageBlake3,
  compress: stageCompress,
  cipher: stageCipher,
  pack: stagePack,
  index: stageIndex,
};
const otherLoad: Record<string, number> = {};
for (const s of only) {
  const t0 = performance.now();
  const busy0 = machineBusySeconds();
  const cpu0 = process.cpuUsage();
  try {
    await runners[s]();
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - t0) / 1000;
    otherLoad[s] = +Math.max(0, (machineBusySeconds() - busy0 - (cpu.user + cpu.system) / 1e6) / wall).toFixed(2);
    process.stdout.write(`\nOther processes kept ${fmtNum(otherLoad[s])} of ${mi.cores} cores busy during this stage (${wall.toFixed(0)} s).\n`);
  } catch (e) {
    exitCode = 1;
    process.stdout.write(`\n### ${s}: FAILED\n\n${(e as Error).stack ?? e}\n`);
  }
}
const jsonFile = args.values.get('--json');
if (jsonFile) {
  mkdirSync(path.dirname(path.resolve(jsonFile)), { recursive: true });
  writeFileSync(jsonFile, JSON.stringify({ format: 'coffer-micro-v1', date: new Date().toISOString(), quick, machine: mi, rows: allRows, notes, other_load: otherLoad }, null, 2) + '\n');
  process.stderr.write(`results: ${jsonFile}\n`);
}
if (sink === -1) console.log(sink);
process.exitCode = exitCode;
