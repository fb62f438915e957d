#!/usr/bin/env node
/**
 * Writes fixtures/repo-v1/: a small repository in format version 1, checked
 * by test/fixture-repo.test.ts so that a change which breaks reading existing
 * repositories fails a test. Regenerate it ONLY for a deliberate format change
 * (then add a new fixtures/repo-vN instead of replacing this one).
 *
 *   npm run build && node scripts/make-fixture-repo.mjs
 *
 * Password "coffer-fixture", low-cost KDF (COFFER_TEST_LOW_KDF=1). The source
 * tree is built under /tmp/coffer-fixture-v1/src (that absolute path is
 * recorded in the snapshots); its contents are fixed and repeated in the test.
 * Two snapshots: the tree as below (2026-01-01), then with hello.txt changed
 * and added.txt added (2026-01-02). Empty folders are removed afterwards, as a
 * git checkout would not have them.
 */
import { chmodSync, lstatSync, lutimesSync, mkdirSync, readdirSync, rmSync, rmdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.COFFER_TEST_LOW_KDF = '1';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { initRepository, openRepository, backup } = await import(path.join(ROOT, 'dist', 'src', 'index.js'));
const { plainHash } = await import(path.join(ROOT, 'dist', 'src', 'crypto', 'hash.js'));

const PASSWORD = 'coffer-fixture';
const REPO = path.join(ROOT, 'fixtures', 'repo-v1');
const BASE = '/tmp/coffer-fixture-v1';
const SRC = path.join(BASE, 'src');

/** 40960 bytes: BLAKE3(u32le(i)) for i = 0..1279. */
function dataBin() {
  const parts = [];
  for (let i = 0; i < 1280; i++) {
    const c = Buffer.alloc(4);
    c.writeUInt32LE(i);
    parts.push(plainHash(c));
  }
  return Buffer.concat(parts);
}

const T1 = new Date('2025-06-15T12:34:56.789Z');
const T2 = new Date('2025-07-01T00:00:00.000Z');

rmSync(BASE, { recursive: true, force: true });
rmSync(REPO, { recursive: true, force: true });
mkdirSync(path.join(SRC, 'docs', 'nested'), { recursive: true });
mkdirSync(path.join(SRC, 'empty-dir'));
writeFileSync(path.join(SRC, 'hello.txt'), 'hello, coffer\n');
writeFileSync(path.join(SRC, 'empty.txt'), '');
writeFileSync(path.join(SRC, 'docs', 'readme.md'), '# Fixture\n\n' + 'This line repeats to make the file compressible.\n'.repeat(100));
writeFileSync(path.join(SRC, 'docs', 'nested', 'deep.txt'), 'deep\n');
writeFileSync(Buffer.from(SRC + '/caf\xe9-latin1.txt', 'latin1'), 'latin-1 name\n'); // name bytes 63 61 66 e9 ...: not UTF-8
writeFileSync(path.join(SRC, 'ünïcødé-名前.txt'), 'utf-8 name\n');
writeFileSync(path.join(SRC, 'data.bin'), dataBin());
writeFileSync(path.join(SRC, 'script.sh'), '#!/bin/sh\necho fixture\n');
chmodSync(path.join(SRC, 'script.sh'), 0o755);
chmodSync(path.join(SRC, 'empty.txt'), 0o600);
symlinkSync('docs/readme.md', path.join(SRC, 'link'));

/** Sets atime and mtime of everything below SRC (and SRC) to t, children first. */
function setTimes(dir, t) {
  for (const name of readdirSync(dir, { encoding: 'buffer' })) {
    const p = Buffer.concat([dir, Buffer.from('/'), name]);
    if (lstatSync(p).isDirectory()) setTimes(p, t);
    lutimesSync(p, t, t);
  }
}
function setAllTimes(t) {
  setTimes(Buffer.from(SRC), t);
  utimesSync(SRC, t, t);
}
setAllTimes(T1);

await initRepository(REPO, PASSWORD, { chunker: { minSize: 2048, avgSize: 8192, maxSize: 65536 }, packSize: 64 * 1024, compressionLevel: 3, keyLabel: 'fixture key' });
const repo = await openRepository(REPO, PASSWORD, { noCache: true, threads: 1 });
try {
  const a = await backup(repo, { paths: [SRC], hostname: 'fixture-host', tags: ['first'], time: new Date('2026-01-01T00:00:00.000Z') });
  writeFileSync(path.join(SRC, 'hello.txt'), 'hello again, coffer\n');
  writeFileSync(path.join(SRC, 'added.txt'), 'added in the second snapshot\n');
  setAllTimes(T2);
  const b = await backup(repo, { paths: [SRC], hostname: 'fixture-host', tags: ['second'], time: new Date('2026-01-02T00:00:00.000Z') });
  console.log(JSON.stringify({ first: a.snapshot.id, second: b.snapshot.id, parent: b.snapshot.parent, tree1: a.snapshot.tree, tree2: b.snapshot.tree }, null, 2));
} finally {
  await repo.close();
}

// Drop empty folders (data/XX, locks): git keeps none.
function prune(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) prune(path.join(dir, e.name));
  if (dir !== REPO && readdirSync(dir).length === 0) rmdirSync(dir);
}
prune(REPO);
let total = 0;
const walk = (d) => {
  for (const e of readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p);
    else {
      total += statSync(p).size;
      chmodSync(p, 0o644); // as git checks it out
    }
  }
};
walk(REPO);
console.log(`wrote ${path.relative(ROOT, REPO)}: ${total} bytes`);
rmSync(BASE, { recursive: true, force: true });
