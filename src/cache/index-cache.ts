/**
 * The local SQLite cache (better-sqlite3): which index files are loaded, the
 * blobs they list, and the stored (still encrypted) bytes of snapshot files.
 * It holds no keys and no plaintext file data; blob ids are keyed hashes.
 * Deleting it loses nothing: it is rebuilt from the repository's index files.
 */
import { createRequire } from 'node:module';
import type Database from 'better-sqlite3';

// Loaded when the first cache opens, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let sqlite: typeof Database | undefined;
const openDatabase = (file: string): Database.Database => new (sqlite ??= createRequire(import.meta.url)('better-sqlite3') as typeof Database)(file);
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { BLOB_TYPE_CODE, blobTypeFromCode, type BlobType, type PackId } from '../ids.js';
import type { PackEntry } from '../format/pack.js';
import type { IndexedPack } from '../format/index-file.js';

export interface BlobLocation {
  packId: PackId;
  offset: number;
  length: number;
  rawLength: number;
}

/**
 * 3: adds complete_trees. A cache of another version is dropped and rebuilt
 * (an older coffer does not know to clear complete_trees when it forgets
 * an index file, so it must never share one with a newer one).
 */
const SCHEMA_VERSION = 3;
/** Ids per knownOf() query, largest first. */
const KNOWN_ARITIES = [64, 16, 4, 1];

/**
 * Splits `ids` (hex) into batches for the fixed-arity IN (…) statements: for
 * each, the statement index k and exactly KNOWN_ARITIES[k] binary ids (the
 * smallest arity that takes what is left, or the largest; padded with a
 * repeat, which an IN list ignores).
 */
function* idBatches(ids: string[]): Generator<[number, Buffer[]]> {
  for (let i = 0; i < ids.length; ) {
    const left = ids.length - i;
    let k = KNOWN_ARITIES.length - 1;
    while (k > 0 && KNOWN_ARITIES[k] < left) k--;
    const n = KNOWN_ARITIES[k];
    const params: Buffer[] = [];
    for (let j = i; j < Math.min(ids.length, i + n); j++) params.push(Buffer.from(ids[j], 'hex'));
    while (params.length < n) params.push(params[0]);
    yield [k, params];
    i += n;
  }
}

/** SQLite's page cache in normal use, KiB (better-sqlite3's default, 16 MB). */
const CACHE_KIB = 16_000;
/**
 * The page cache while a sync adds index files in bulk, KiB. Random ids land
 * on random B-tree pages; a cache that holds more of the tree's pages saves
 * reads and rewrites of the same pages (docs/PERFORMANCE.md, "Session 3
 * fixes"). Given back by endBulk().
 */
const BULK_CACHE_KIB = 40 * 1024;

export class IndexCache {
  private readonly db: Database.Database;
  private readonly stmts;

  private constructor(db: Database.Database) {
    this.db = db;
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 10000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version !== SCHEMA_VERSION) {
      db.exec(`
        DROP TABLE IF EXISTS index_files; DROP TABLE IF EXISTS blobs; DROP TABLE IF EXISTS packs; DROP TABLE IF EXISTS snapshots; DROP TABLE IF EXISTS complete_trees;
        CREATE TABLE index_files (name TEXT PRIMARY KEY) WITHOUT ROWID;
        CREATE TABLE packs (id BLOB NOT NULL, index_file TEXT NOT NULL, length INTEGER NOT NULL, ref BLOB, PRIMARY KEY (id, index_file)) WITHOUT ROWID;
        CREATE INDEX packs_by_file ON packs (index_file);
        CREATE TABLE blobs (id BLOB NOT NULL, type INTEGER NOT NULL, pack BLOB NOT NULL, offset INTEGER NOT NULL,
                            length INTEGER NOT NULL, raw_length INTEGER NOT NULL, PRIMARY KEY (id, type, pack)) WITHOUT ROWID;
        CREATE INDEX blobs_by_pack ON blobs (pack);
        CREATE TABLE snapshots (id TEXT PRIMARY KEY, stored BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE complete_trees (id BLOB PRIMARY KEY) WITHOUT ROWID;
      `);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    }
    this.stmts = {
      indexFiles: db.prepare('SELECT name FROM index_files').pluck(),
      addIndexFile: db.prepare('INSERT OR IGNORE INTO index_files (name) VALUES (?)'),
      addPack: db.prepare('INSERT OR IGNORE INTO packs (id, index_file, length, ref) VALUES (?, ?, ?, ?)'),
      packRef: db.prepare('SELECT ref FROM packs WHERE id = ? LIMIT 1').pluck(),
      addBlob: db.prepare('INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)'),
      packsOfFile: db.prepare('SELECT id FROM packs WHERE index_file = ?').pluck(),
      delPacksOfFile: db.prepare('DELETE FROM packs WHERE index_file = ?'),
      packStillListed: db.prepare('SELECT 1 FROM packs WHERE id = ? LIMIT 1').pluck(),
      delBlobsOfPack: db.prepare('DELETE FROM blobs WHERE pack = ?'),
      delIndexFile: db.prepare('DELETE FROM index_files WHERE name = ?'),
      lookup: db.prepare('SELECT pack, offset, length, raw_length FROM blobs WHERE id = ? AND type = ? LIMIT 1'),
      lookupAll: db.prepare('SELECT pack, offset, length, raw_length FROM blobs WHERE id = ? AND type = ?'),
      has: db.prepare('SELECT 1 FROM blobs WHERE id = ? AND type = ? LIMIT 1').pluck(),
      // One statement per arity, so a small directory does not pay for 64 lookups.
      knownOf: KNOWN_ARITIES.map((n) => db.prepare(`SELECT DISTINCT id FROM blobs WHERE type = ? AND id IN (${Array(n).fill('?').join(',')})`).pluck()),
      lookupMany: KNOWN_ARITIES.map((n) => db.prepare(`SELECT id, pack, offset, length, raw_length FROM blobs WHERE type = ? AND id IN (${Array(n).fill('?').join(',')})`)),
      packLength: db.prepare('SELECT length FROM packs WHERE id = ? LIMIT 1').pluck(),
      allPacks: db.prepare('SELECT id, MAX(length) AS length FROM packs GROUP BY id'),
      blobCount: db.prepare('SELECT COUNT(*) FROM blobs').pluck(),
      blobsInPack: db.prepare('SELECT id, type, offset, length, raw_length FROM blobs WHERE pack = ?'),
      // One buffer per pack, made by SQLite: check passes it to a worker without a JS object per blob.
      packEntryRows: db
        .prepare(`SELECT unhex(group_concat(printf('%02x%s%016x%016x%016x', type, hex(id), offset, length, raw_length), '')) FROM blobs WHERE pack = ?`)
        .pluck(),
      treePacks: db.prepare('SELECT DISTINCT pack FROM blobs WHERE type = 1').pluck(),
      // Ids in ascending ranges, concatenated by SQLite into one blob: no JS object per id.
      dataIdsAfter: db
        .prepare(`SELECT unhex(group_concat(hex(id), '' ORDER BY id)) FROM (SELECT DISTINCT id FROM blobs WHERE id > ? AND type = 0 ORDER BY id LIMIT ?)`)
        .pluck(),
      dataBlobCount: db.prepare('SELECT COUNT(*) FROM blobs WHERE type = 0').pluck(),
      snapshot: db.prepare('SELECT stored FROM snapshots WHERE id = ?').pluck(),
      putSnapshot: db.prepare('INSERT OR REPLACE INTO snapshots (id, stored) VALUES (?, ?)'),
      snapshotIds: db.prepare('SELECT id FROM snapshots').pluck(),
      delSnapshot: db.prepare('DELETE FROM snapshots WHERE id = ?'),
      isComplete: db.prepare('SELECT 1 FROM complete_trees WHERE id = ?').pluck(),
      addComplete: db.prepare('INSERT OR IGNORE INTO complete_trees (id) VALUES (?)'),
      clearComplete: db.prepare('DELETE FROM complete_trees'),
    };
  }

  /** Opens (creating) the cache file, or an in-memory cache when `file` is undefined. */
  static open(file: string | undefined): IndexCache {
    if (file) mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    return new IndexCache(openDatabase(file ?? ':memory:'));
  }

  indexFiles(): Set<string> {
    return new Set(this.stmts.indexFiles.all() as string[]);
  }

  /** Records the packs and blobs an index file lists, in one transaction. */
  addIndexFile(name: string, packs: IndexedPack[]): void {
    // Blobs in id order: each B-tree page is then visited once per file,
    // not once per blob (a backup adds a file every 20,000 new blobs).
    const rows: { b: IndexedPack['blobs'][number]; pid: Buffer }[] = [];
    const pids = packs.map((p) => Buffer.from(p.id, 'hex'));
    packs.forEach((p, i) => {
      for (const b of p.blobs) rows.push({ b, pid: pids[i] });
    });
    rows.sort((x, y) => (x.b.id < y.b.id ? -1 : x.b.id > y.b.id ? 1 : 0));
    this.db.transaction(() => {
      this.stmts.addIndexFile.run(name);
      packs.forEach((p, i) => this.stmts.addPack.run(pids[i], name, p.length, p.ref?.length ? p.ref : null));
      for (const { b, pid } of rows) this.stmts.addBlob.run(Buffer.from(b.id, 'hex'), BLOB_TYPE_CODE[b.type], pid, b.offset, b.length, b.rawLength);
    })();
  }

  private stageStmts?: { stage: Database.Statement; flush: Database.Statement; clear: Database.Statement };

  /**
   * Records several index files in one transaction (an index sync): packs go
   * in directly, blobs into a temporary staging table first and then into
   * the blob table in one statement, in key order, so each B-tree page is
   * visited once per batch rather than once per blob. Same result as
   * addIndexFile for each. Uses the larger bulk page cache until endBulk().
   */
  addIndexFiles(files: { name: string; packs: IndexedPack[] }[]): void {
    if (!this.stageStmts) {
      this.db.pragma(`cache_size = -${BULK_CACHE_KIB}`);
      this.db.exec(`CREATE TEMP TABLE IF NOT EXISTS stage_blobs (id BLOB NOT NULL, type INTEGER NOT NULL, pack BLOB NOT NULL, offset INTEGER NOT NULL,
                    length INTEGER NOT NULL, raw_length INTEGER NOT NULL)`);
      this.stageStmts = {
        stage: this.db.prepare('INSERT INTO temp.stage_blobs (id, type, pack, offset, length, raw_length) VALUES (?, ?, ?, ?, ?, ?)'),
        flush: this.db.prepare(
          'INSERT OR IGNORE INTO blobs (id, type, pack, offset, length, raw_length) SELECT id, type, pack, offset, length, raw_length FROM temp.stage_blobs ORDER BY id, type, pack',
        ),
        clear: this.db.prepare('DELETE FROM temp.stage_blobs'),
      };
    }
    const st = this.stageStmts;
    this.db.transaction(() => {
      for (const { name, packs } of files) {
        this.stmts.addIndexFile.run(name);
        for (const p of packs) {
          const pid = Buffer.from(p.id, 'hex');
          this.stmts.addPack.run(pid, name, p.length, p.ref?.length ? p.ref : null);
          for (const b of p.blobs) st.stage.run(Buffer.from(b.id, 'hex'), BLOB_TYPE_CODE[b.type], pid, b.offset, b.length, b.rawLength);
        }
      }
      st.flush.run();
      st.clear.run();
    })();
  }

  /** Ends bulk adding: gives the bulk page cache back. */
  endBulk(): void {
    if (!this.stageStmts) return;
    this.stageStmts = undefined;
    this.db.exec('DROP TABLE IF EXISTS temp.stage_blobs');
    this.db.pragma(`cache_size = -${CACHE_KIB}`);
    this.db.pragma('shrink_memory');
  }

  /** Forgets an index file that is gone from the repository (and blobs no other index file lists). */
  removeIndexFile(name: string): void {
    this.db.transaction(() => {
      // Blobs may leave the index: no tree is known to be complete any more.
      this.stmts.clearComplete.run();
      const packs = this.stmts.packsOfFile.all(name) as Buffer[];
      this.stmts.delPacksOfFile.run(name);
      for (const p of packs) if (!this.stmts.packStillListed.get(p)) this.stmts.delBlobsOfPack.run(p);
      this.stmts.delIndexFile.run(name);
    })();
  }

  /**
   * Whether `treeId` was recorded as complete: every tree and data blob
   * reachable from it was listed by the loaded index files when it was
   * recorded, and no index file has been removed from the cache since (that
   * clears the record). A backup whose parent root is complete skips the
   * per-blob index lookups for unchanged files.
   */
  isCompleteTree(treeId: string): boolean {
    return this.stmts.isComplete.get(Buffer.from(treeId, 'hex')) !== undefined;
  }

  /** Records `treeId` as complete (see isCompleteTree): only once all it reaches is in the loaded index files. */
  addCompleteTree(treeId: string): void {
    this.stmts.addComplete.run(Buffer.from(treeId, 'hex'));
  }

  /** The key reference of a pack (undefined: the repository's own keys). */
  packRef(packId: string): Buffer | undefined {
    const r = this.stmts.packRef.get(Buffer.from(packId, 'hex')) as Buffer | null | undefined;
    return r ?? undefined;
  }

  lookup(type: BlobType, id: string): BlobLocation | undefined {
    const r = this.stmts.lookup.get(Buffer.from(id, 'hex'), BLOB_TYPE_CODE[type]) as
      | { pack: Buffer; offset: number; length: number; raw_length: number }
      | undefined;
    return r && { packId: r.pack.toString('hex') as PackId, offset: r.offset, length: r.length, rawLength: r.raw_length };
  }

  /**
   * Locations of `ids` (hex) of `type`, one copy each, for those the index
   * lists: one query per up to 64 ids (restore plans a directory's files
   * with it).
   */
  lookupMany(type: BlobType, ids: string[]): Map<string, BlobLocation> {
    const found = new Map<string, BlobLocation>();
    type Row = { id: Buffer; pack: Buffer; offset: number; length: number; raw_length: number };
    for (const [k, params] of idBatches(ids)) {
      for (const r of this.stmts.lookupMany[k].all(BLOB_TYPE_CODE[type], ...params) as Row[]) {
        const id = r.id.toString('hex');
        if (!found.has(id)) found.set(id, { packId: r.pack.toString('hex') as PackId, offset: r.offset, length: r.length, rawLength: r.raw_length });
      }
    }
    return found;
  }

  /**
   * Which of `ids` (hex) the index lists as `type`: one query per
   * up to 64 ids instead of one per id (the per-call cost dominated a
   * backup of many small files).
   */
  knownOf(type: BlobType, ids: string[]): Set<string> {
    const known = new Set<string>();
    for (const [k, params] of idBatches(ids)) {
      for (const id of this.stmts.knownOf[k].all(BLOB_TYPE_CODE[type], ...params) as Buffer[]) known.add(id.toString('hex'));
    }
    return known;
  }

  /** Every stored copy of a blob (several after concurrent backups or a re-save of a damaged one). */
  lookupAll(type: BlobType, id: string): BlobLocation[] {
    return (this.stmts.lookupAll.all(Buffer.from(id, 'hex'), BLOB_TYPE_CODE[type]) as { pack: Buffer; offset: number; length: number; raw_length: number }[]).map(
      (r) => ({ packId: r.pack.toString('hex') as PackId, offset: r.offset, length: r.length, rawLength: r.raw_length }),
    );
  }

  /** Whether any blob of `type` is listed. */
  hasAny(type: BlobType): boolean {
    return this.db.prepare('SELECT 1 FROM blobs WHERE type = ? LIMIT 1').pluck().get(BLOB_TYPE_CODE[type]) !== undefined;
  }

  has(type: BlobType, id: string | Buffer): boolean {
    return this.stmts.has.get(typeof id === 'string' ? Buffer.from(id, 'hex') : id, BLOB_TYPE_CODE[type]) !== undefined;
  }

  packLength(id: PackId): number | undefined {
    return this.stmts.packLength.get(Buffer.from(id, 'hex')) as number | undefined;
  }

  packs(): { id: PackId; length: number }[] {
    return (this.stmts.allPacks.all() as { id: Buffer; length: number }[]).map((r) => ({ id: r.id.toString('hex') as PackId, length: r.length }));
  }

  blobsInPack(packId: PackId): PackEntry[] {
    return (this.stmts.blobsInPack.all(Buffer.from(packId, 'hex')) as { id: Buffer; type: number; offset: number; length: number; raw_length: number }[]).map(
      (r) => ({ id: r.id.toString('hex'), type: blobTypeFromCode(r.type), offset: r.offset, length: r.length, rawLength: r.raw_length }),
    );
  }

  /**
   * The blobs the index lists in a pack as one buffer of fixed-width rows,
   * in no particular order: type (1 byte), id (32), then offset, stored
   * length and raw length (u64 big-endian each); see worker/tasks.ts
   * PackCheck.indexed.
   */
  packEntryRows(packId: PackId): Buffer {
    return (this.stmts.packEntryRows.get(Buffer.from(packId, 'hex')) as Buffer | null) ?? Buffer.alloc(0);
  }

  /** The packs that hold tree blobs (by the index). */
  treePacks(): Set<PackId> {
    return new Set((this.stmts.treePacks.all() as Buffer[]).map((b) => b.toString('hex') as PackId));
  }

  /** How many data blob rows the index lists (copies counted). */
  dataBlobCount(): number {
    return this.stmts.dataBlobCount.get() as number;
  }

  /** The ids of every indexed data blob, ascending, 32 bytes each back to back, in buffers of up to `chunk` ids. */
  *dataIds(chunk = 65_536): Generator<Buffer> {
    let after: Buffer = Buffer.alloc(0); // sorts before every id
    for (;;) {
      const b = this.stmts.dataIdsAfter.get(after, chunk) as Buffer | null;
      if (!b?.length) return;
      yield b;
      if (b.length < chunk * 32) return;
      after = b.subarray(b.length - 32);
    }
  }

  blobCount(): number {
    return this.stmts.blobCount.get() as number;
  }

  snapshot(id: string): Buffer | undefined {
    return this.stmts.snapshot.get(id) as Buffer | undefined;
  }

  putSnapshot(id: string, stored: Buffer): void {
    this.stmts.putSnapshot.run(id, stored);
  }

  /** Drops cached snapshots that are no longer in the repository. */
  retainSnapshots(ids: Set<string>): void {
    for (const id of this.stmts.snapshotIds.all() as string[]) if (!ids.has(id)) this.stmts.delSnapshot.run(id);
  }

  // ---- Prune support: the set of blobs that snapshots use, kept in temporary
  // tables (spilled to disk by SQLite, so memory stays bounded). ----

  private usedStmts?: {
    mark: Database.Statement;
    absent: Database.Statement;
    usedInPack: Database.Statement;
  };

  /** Starts an empty used-blob set (and an empty set of packs absent from storage). */
  beginUsedSet(): void {
    this.db.exec(`
      CREATE TEMP TABLE IF NOT EXISTS used_blobs (id BLOB NOT NULL, type INTEGER NOT NULL, pack BLOB, PRIMARY KEY (id, type)) WITHOUT ROWID;
      CREATE TEMP TABLE IF NOT EXISTS absent_packs (id BLOB PRIMARY KEY) WITHOUT ROWID;
      DELETE FROM temp.used_blobs; DELETE FROM temp.absent_packs;
    `);
    this.usedStmts = {
      mark: this.db.prepare('INSERT OR IGNORE INTO temp.used_blobs (id, type) VALUES (?, ?)'),
      absent: this.db.prepare('INSERT OR IGNORE INTO temp.absent_packs (id) VALUES (?)'),
      usedInPack: this.db.prepare(
        `SELECT b.id, b.type, b.offset, b.length, b.raw_length FROM blobs b JOIN temp.used_blobs u ON u.id = b.id AND u.type = b.type AND u.pack = b.pack
         WHERE b.pack = ? ORDER BY b.offset`,
      ),
    };
  }

  private used() {
    if (!this.usedStmts) throw new Error('beginUsedSet() first');
    return this.usedStmts;
  }

  private marksInTx = 0;

  /** Adds a blob to the used set; true if it was not in it yet. Batched in transactions (only temp tables are written). */
  markUsed(type: BlobType, id: string): boolean {
    const st = this.used();
    if (this.marksInTx === 0) this.db.exec('BEGIN');
    const added = st.mark.run(Buffer.from(id, 'hex'), BLOB_TYPE_CODE[type]).changes > 0;
    if (++this.marksInTx >= 20_000) this.commitMarks();
    return added;
  }

  private commitMarks(): void {
    if (this.marksInTx > 0) this.db.exec('COMMIT');
    this.marksInTx = 0;
  }

  /** Records that an indexed pack is missing (or damaged) in storage: its copies do not count. */
  markPackAbsent(id: PackId): void {
    this.commitMarks();
    this.used().absent.run(Buffer.from(id, 'hex'));
  }

  /**
   * Picks, for every used blob, the one copy to keep among packs present in
   * storage: the copy in the pack holding the most used blobs (then the
   * lowest pack id). Ranking whole packs keeps duplicates together: when two
   * concurrent backups stored the same data, one set of packs keeps all of it
   * and the other becomes wholly unused (deleted, not repacked). Returns up
   * to `limit` used blobs with no copy.
   */
  assignUsedCopies(limit = 10): { type: BlobType; id: string }[] {
    this.commitMarks();
    this.db.exec(`
      DROP TABLE IF EXISTS temp.pack_rank;
      CREATE TEMP TABLE pack_rank (pack BLOB PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
      INSERT INTO temp.pack_rank SELECT b.pack, COUNT(*) FROM blobs b JOIN temp.used_blobs u ON u.id = b.id AND u.type = b.type
        WHERE b.pack NOT IN (SELECT id FROM temp.absent_packs) GROUP BY b.pack;
      UPDATE temp.used_blobs SET pack = (SELECT b.pack FROM blobs b JOIN temp.pack_rank r ON r.pack = b.pack
        WHERE b.id = used_blobs.id AND b.type = used_blobs.type ORDER BY r.n DESC, b.pack LIMIT 1);
      DROP TABLE temp.pack_rank;`);
    const rows = this.db.prepare('SELECT id, type FROM temp.used_blobs WHERE pack IS NULL LIMIT ?').all(limit) as { id: Buffer; type: number }[];
    return rows.map((r) => ({ type: blobTypeFromCode(r.type), id: r.id.toString('hex') }));
  }

  usedCount(): number {
    this.commitMarks();
    return this.db.prepare('SELECT COUNT(*) FROM temp.used_blobs').pluck().get() as number;
  }

  /** One row per indexed pack: its length, blob count and the used blobs (the chosen copies) in it. */
  packUsage(): { id: PackId; length: number; type?: BlobType; blobs: number; usedBlobs: number; usedBytes: number; blobBytes: number }[] {
    const rows = this.db
      .prepare(
        `SELECT p.id AS id, p.length AS length, MIN(b.type) AS type, COUNT(b.id) AS blobs, COALESCE(SUM(b.length), 0) AS blob_bytes,
                COALESCE(SUM(u.pack IS NOT NULL), 0) AS used_blobs, COALESCE(SUM(CASE WHEN u.pack IS NOT NULL THEN b.length ELSE 0 END), 0) AS used_bytes
         FROM (SELECT id, MAX(length) AS length FROM packs GROUP BY id) p
         LEFT JOIN blobs b ON b.pack = p.id
         LEFT JOIN temp.used_blobs u ON u.id = b.id AND u.type = b.type AND u.pack = b.pack
         GROUP BY p.id`,
      )
      .all() as { id: Buffer; length: number; type: number | null; blobs: number; blob_bytes: number; used_blobs: number; used_bytes: number }[];
    return rows.map((r) => ({
      id: r.id.toString('hex') as PackId,
      length: r.length,
      ...(r.type === null ? {} : { type: blobTypeFromCode(r.type) }),
      blobs: r.blobs,
      blobBytes: r.blob_bytes,
      usedBlobs: r.used_blobs,
      usedBytes: r.used_bytes,
    }));
  }

  /** The used blobs whose chosen copy is in `packId`, by offset. */
  usedBlobsInPack(packId: PackId): PackEntry[] {
    return (this.used().usedInPack.all(Buffer.from(packId, 'hex')) as { id: Buffer; type: number; offset: number; length: number; raw_length: number }[]).map(
      (r) => ({ id: r.id.toString('hex'), type: blobTypeFromCode(r.type), offset: r.offset, length: r.length, rawLength: r.raw_length }),
    );
  }

  endUsedSet(): void {
    if (this.marksInTx > 0 && this.db.inTransaction) this.db.exec('ROLLBACK');
    this.marksInTx = 0;
    this.usedStmts = undefined;
    this.db.exec('DROP TABLE IF EXISTS temp.used_blobs; DROP TABLE IF EXISTS temp.absent_packs;');
  }

  private reading = false;

  /**
   * Holds one read transaction open until `endRead` (restore's plan asks one
   * small query per directory and per tree: outside a transaction each takes
   * and drops SQLite's locks, ~4 system calls, about 5x the query itself).
   * Only for read-only work: nothing may be written meanwhile. Does nothing
   * inside another transaction.
   */
  beginRead(): void {
    if (this.db.inTransaction) return;
    this.db.exec('BEGIN');
    this.reading = true;
  }

  endRead(): void {
    if (!this.reading) return;
    this.reading = false;
    if (this.db.inTransaction) this.db.exec('COMMIT');
  }

  close(): void {
    this.reading = false;
    if (this.db.inTransaction) this.db.exec('ROLLBACK');
    this.db.close();
  }
}
