/**
 * Scale benchmark of the blob index: fills coffer's real SQLite cache
 * (src/cache/index-cache.ts, through addIndexFile as a backup or an index
 * sync does) with 10 million synthetic blobs, then measures lookups.
 *
 *   node dist/bench/scale.js [--blobs N] [--blobs-per-pack N] [--packs-per-index N]
 *                            [--lookups N] [--dir DIR] [--keep] [--json FILE] [--sync]
 *
 * Blob ids are 32 pseudo-random bytes (AES-256-CTR keystream: blob i is block
 * pair 2i, 2i+1), so any id can be recomputed for lookups without keeping
 * the 10 million ids in memory. Packs hold --blobs-per-pack blobs (default 64,
 * between big-file packs of ~16 blobs and small-file packs of thousands); an
 * index file lists --packs-per-index packs (32, as the packer writes them).
 *
 * Printed: insert rate and RSS / JS heap / database size every 10 % of the
 * fill, then random lookups of present ids (lookup()), has() of present and
 * of absent ids, first with the database still open and again after a
 * reopen (empty SQLite page cache; the OS page cache stays warm).
 * Nothing is asserted: test/index-scale.test.ts asserts the memory bound.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { IndexCache } from '../src/cache/index-cache.js';
import type { IndexedPack } from '../src/format/index-file.js';
import type { PackEntry } from '../src/format/pack.js';
import type { PackId } from '../src/ids.js';
import { MiB, fail, machineInfo, markdownTable, parseArgs } from './lib.js';

const USAGE = `usage: node dist/bench/scale.js [--blobs N] [--blobs-per-pack N] [--packs-per-index N]
                               [--lookups N] [--dir DIR] [--keep] [--json FILE] [--sync]
--blobs            blobs to index (default 10000000)
--blobs-per-pack   default 64
--packs-per-index  default 32
--lookups          random lookups per measurement (default 200000)
--dir              where the database goes (default a new directory under ~/.cache/coffer-bench)
--keep             keep the database
--sync             fill as an index sync does (addIndexFiles, 65,536 blobs per transaction,
                   bulk page cache) instead of one addIndexFile per index file as a backup does
`;
const args = parseArgs(process.argv.slice(2), ['--keep', '--sync'], ['--blobs', '--blobs-per-pack', '--packs-per-index', '--lookups', '--dir', '--json'], USAGE);
const int = (name: string, def: number): number => {
  const v = args.values.get(name);
  if (v === undefined) return def;
  const n = Number(v.replace(/_/g, ''));
  if (!Number.isSafeInteger(n) || n <= 0) fail(`${name} must be a positive integer`, 2);
  return n;
};
const BLOBS = int('--blobs', 10_000_000);
const PER_PACK = int('--blobs-per-pack', 64);
const PACKS_PER_INDEX = int('--packs-per-index', 32);
const LOOKUPS = int('--lookups', 200_000);
const keep = args.flags.has('--keep');
const syncMode = args.flags.has('--sync');
/** As Repository.syncIndex batches (SYNC_BATCH_BLOBS). */
const SYNC_BATCH_BLOBS = 65_536;

const cacheRoot = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'coffer-bench');
mkdirSync(cacheRoot, { recursive: true });
const dir = args.values.has('--dir') ? path.resolve(args.values.get('--dir')!) : mkdtempSync(path.join(cacheRoot, 'scale-'));
mkdirSync(dir, { recursive: true });
const dbFile = path.join(dir, 'index.sqlite');
if (existsSync(dbFile)) fail(`${dbFile} exists already`, 2);

// ---------------------------------------------------------------- synthetic ids

const KEY = randomBytes(32);
const ZERO = Buffer.alloc(PER_PACK * PACKS_PER_INDEX * 64);

/** 32-byte ids of blobs first .. first+count-1 (AES-CTR keystream, 2 blocks per id). */
function idsFrom(first: number, count: number, out: Buffer = Buffer.allocUnsafe(count * 32)): Buffer {
  const iv = Buffer.alloc(16);
  // The counter is the low 64 bits; 2 * 10^7 blocks never carry into the high half.
  iv.writeBigUInt64BE(BigInt(first) * 2n, 8);
  const c = createCipheriv('aes-256-ctr', KEY, iv);
  const n = c.update(ZERO.subarray(0, count * 32)).copy(out);
  if (n !== count * 32) throw new Error('keystream too short');
  return out;
}
const idHex = (i: number): string => idsFrom(i, 1).toString('hex');
const packIdHex = (p: number): PackId => {
  const b = Buffer.alloc(32);
  b.writeUInt32BE(0xfacade, 0);
  b.writeUInt32BE(p, 28);
  return b.toString('hex') as PackId;
};
/** Where blob i lives (a pure function of i, so lookups can be checked). */
const locOf = (i: number) => ({ pack: Math.floor(i / PER_PACK), offset: (i % PER_PACK) * 300_000, length: 200_000 + (i % 100_000) });

function indexFile(firstBlob: number, blobs: number): IndexedPack[] {
  const ids = idsFrom(firstBlob, blobs);
  const packs: IndexedPack[] = [];
  for (let j = 0; j < blobs; ) {
    const i0 = firstBlob + j;
    const p = locOf(i0).pack;
    const entries: PackEntry[] = [];
    for (; j < blobs && locOf(firstBlob + j).pack === p; j++) {
      const l = locOf(firstBlob + j);
      entries.push({ type: 'data', id: ids.toString('hex', j * 32, j * 32 + 32), offset: l.offset, length: l.length, rawLength: l.length + 1000 });
    }
    packs.push({ id: packIdHex(p), length: PER_PACK * 300_000, blobs: entries });
  }
  return packs;
}

// ---------------------------------------------------------------- measurement

const mem = () => {
  const m = process.memoryUsage();
  return { rss_mib: m.rss / MiB, heap_mib: m.heapUsed / MiB, external_mib: (m.external + m.arrayBuffers) / MiB };
};
const dbBytes = (): number => {
  let n = 0;
  for (const f of [dbFile, dbFile + '-wal', dbFile + '-shm']) if (existsSync(f)) n += statSync(f).size;
  return n;
};
const log = (s: string) => process.stderr.write(s + '\n');

interface FillRow {
  blobs: number;
  rate_per_s: number;
  rss_mib: number;
  heap_mib: number;
  db_mib: number;
  bytes_per_blob: number;
}
const fill: FillRow[] = [];
const started = new Date();
const mi = machineInfo();
log(`scale: ${BLOBS.toLocaleString('en-US')} blobs, ${PER_PACK} per pack, ${PACKS_PER_INDEX} packs per index file, database ${dbFile}`);

let cache = IndexCache.open(dbFile);
const perIndex = PER_PACK * PACKS_PER_INDEX;
const step = Math.max(perIndex, Math.ceil(BLOBS / 10 / perIndex) * perIndex);
const m0 = mem();
let done = 0;
let files = 0;
let tStep = performance.now();
let doneStep = 0;
const tFill = performance.now();
let batch: { name: string; packs: IndexedPack[] }[] = [];
let batchBlobs = 0;
while (done < BLOBS) {
  const n = Math.min(perIndex, BLOBS - done);
  if (syncMode) {
    batch.push({ name: `index-${files++}`, packs: indexFile(done, n) });
    batchBlobs += n;
    if (batchBlobs >= SYNC_BATCH_BLOBS || done + n === BLOBS || (done + n) % step === 0) {
      cache.addIndexFiles(batch);
      batch = [];
      batchBlobs = 0;
    }
  } else cache.addIndexFile(`index-${files++}`, indexFile(done, n));
  done += n;
  if (done % step === 0 || done === BLOBS) {
    const now = performance.now();
    const m = mem();
    const db = dbBytes();
    const row: FillRow = {
      blobs: done,
      rate_per_s: ((done - doneStep) * 1000) / (now - tStep),
      rss_mib: m.rss_mib,
      heap_mib: m.heap_mib,
      db_mib: db / MiB,
      bytes_per_blob: db / done,
    };
    fill.push(row);
    log(`  ${done.toLocaleString('en-US').padStart(12)} blobs  ${Math.round(row.rate_per_s).toLocaleString('en-US').padStart(8)} inserts/s  rss ${row.rss_mib.toFixed(0)} MiB  heap ${row.heap_mib.toFixed(0)} MiB  db ${row.db_mib.toFixed(0)} MiB`);
    tStep = now;
    doneStep = done;
  }
}
if (syncMode) cache.endBulk();
const fillSeconds = (performance.now() - tFill) / 1000;
if (cache.blobCount() !== BLOBS) fail(`blobCount() = ${cache.blobCount()}, expected ${BLOBS}`);

// ---------------------------------------------------------------- lookups

const sample = Array.from({ length: LOOKUPS }, () => Math.floor(Math.random() * BLOBS));
const presentIds = sample.map(idHex);
const absentIds = Array.from({ length: LOOKUPS }, () => randomBytes(32).toString('hex'));
interface LookupRow {
  what: string;
  db: string;
  per_s: number;
  us_each: number;
}
const lookups: LookupRow[] = [];
function timeIt(what: string, db: string, fn: () => void): void {
  const t = performance.now();
  fn();
  const ms = performance.now() - t;
  lookups.push({ what, db, per_s: (LOOKUPS * 1000) / ms, us_each: (ms * 1000) / LOOKUPS });
  log(`  ${what} (${db}): ${Math.round((LOOKUPS * 1000) / ms).toLocaleString('en-US')}/s`);
}
function measureLookups(db: string): void {
  timeIt('lookup() of present ids', db, () => {
    for (let k = 0; k < LOOKUPS; k++) {
      const r = cache.lookup('data', presentIds[k]);
      const l = locOf(sample[k]);
      if (!r || r.offset !== l.offset || r.length !== l.length || r.packId !== packIdHex(l.pack)) throw new Error(`wrong location for blob ${sample[k]}`);
    }
  });
  timeIt('has() of present ids', db, () => {
    for (const id of presentIds) if (!cache.has('data', id)) throw new Error('present id not found');
  });
  timeIt('has() of absent ids', db, () => {
    for (const id of absentIds) if (cache.has('data', id)) throw new Error('absent id found');
  });
}
log('lookups, database open since the fill:');
measureLookups('warm');
cache.close();
cache = IndexCache.open(dbFile);
log('lookups after reopening the database:');
measureLookups('reopened');
const mEnd = mem();
const peakRssMiB = process.resourceUsage().maxRSS / 1024;
const finalDb = dbBytes();
cache.close();

// ---------------------------------------------------------------- report

const out: string[] = [];
out.push(`## coffer index scale — ${started.toISOString()}`);
out.push('');
out.push(
  `Machine: ${mi.cpu}, ${mi.cores} cores, node ${mi.node}, load average before ${(mi.loadavg as number[]).join(' ')}. ` +
    `${BLOBS.toLocaleString('en-US')} blobs in ${Math.ceil(BLOBS / PER_PACK).toLocaleString('en-US')} packs (${PER_PACK} blobs each), ` +
    (syncMode
      ? `${files.toLocaleString('en-US')} index files of ${perIndex} blobs added as an index sync does (addIndexFiles, about ${SYNC_BATCH_BLOBS.toLocaleString('en-US')} blobs per transaction)`
      : `${files.toLocaleString('en-US')} addIndexFile calls of ${perIndex} blobs (one transaction each)`) + `; fill took ${fillSeconds.toFixed(0)} s (${Math.round(BLOBS / fillSeconds).toLocaleString('en-US')} blobs/s).`,
);
out.push('');
out.push('### Fill');
out.push('');
out.push(
  markdownTable(
    ['blobs', 'inserts/s (this step)', 'RSS MiB', 'JS heap MiB', 'database MiB', 'bytes/blob'],
    fill.map((r) => [r.blobs.toLocaleString('en-US'), Math.round(r.rate_per_s).toLocaleString('en-US'), r.rss_mib.toFixed(0), r.heap_mib.toFixed(0), r.db_mib.toFixed(0), r.bytes_per_blob.toFixed(0)]),
  ),
);
out.push('');
out.push(`RSS before the fill ${m0.rss_mib.toFixed(0)} MiB, at the end ${mEnd.rss_mib.toFixed(0)} MiB, peak ${peakRssMiB.toFixed(0)} MiB; database ${(finalDb / MiB).toFixed(0)} MiB on disk.`);
out.push('');
out.push(`### Lookups (${LOOKUPS.toLocaleString('en-US')} random ids each)`);
out.push('');
out.push(markdownTable(['lookup', 'database', 'per second', 'µs each'], lookups.map((r) => [r.what, r.db, Math.round(r.per_s).toLocaleString('en-US'), r.us_each.toFixed(1)])));
out.push('');
process.stdout.write(out.join('\n') + '\n');

const jsonFile = args.values.get('--json');
if (jsonFile) {
  mkdirSync(path.dirname(path.resolve(jsonFile)), { recursive: true });
  writeFileSync(
    jsonFile,
    JSON.stringify(
      {
        format: 'coffer-scale-v1',
        date: started.toISOString(),
        machine: mi,
        blobs: BLOBS,
        mode: syncMode ? 'sync' : 'backup',
        blobs_per_pack: PER_PACK,
        packs_per_index: PACKS_PER_INDEX,
        fill_seconds: fillSeconds,
        fill,
        lookups,
        rss_start_mib: m0.rss_mib,
        rss_end_mib: mEnd.rss_mib,
        peak_rss_mib: peakRssMiB,
        db_bytes: finalDb,
      },
      null,
      2,
    ) + '\n',
  );
  log(`results: ${jsonFile}`);
}
if (keep) log(`database kept: ${dbFile}`);
else if (args.values.has('--dir')) for (const f of [dbFile, dbFile + '-wal', dbFile + '-shm']) rmSync(f, { force: true });
else rmSync(dir, { recursive: true, force: true });
