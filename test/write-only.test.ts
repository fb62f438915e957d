/**
 * Write-only backup keys, end to end through the real CLI on a real
 * repository: a host with such a key backs up (incrementally, deduplicating
 * against data the owner wrote), the owner restores, checks, prunes and
 * copies it; the host can open nothing it wrote, every other command refuses
 * it, and the storage sees nothing that tells its objects apart.
 */
import { cpSync, mkdirSync, rmSync, readdirSync, readFileSync, statSync, writeFileSync, appendFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, expectOk, lastJson, noSecretsEnv, objectNames, objectPath, ROOT, scratch, type RunResult } from './helpers.js';
import { padme } from '../dist/src/format/padding.js';
import { parseKeyFile, unwrapSlot, decodeKeyMeta } from '../dist/src/format/keyfile.js';
import { deriveKek } from '../dist/src/crypto/kdf.js';
import { decodeBundle } from '../dist/src/format/write-only-bundle.js';
import { writeOnlyRepoKeys, deriveRepoKeys } from '../dist/src/crypto/keys.js';
import { openFromOwner, wrapKeyFrom } from '../dist/src/crypto/owner.js';
import { decodeFile } from '../dist/src/format/file.js';
import { decodeFileFromOwner, EPH_BOX_BYTES } from '../dist/src/format/owner-file.js';
import { decodeAnyPackTrailer, decodePackHeader, OWNER_TRAILER_BYTES } from '../dist/src/format/pack.js';
import { openBlob } from '../dist/src/format/blob.js';
import { decodeIndexFile, readIndexIds } from '../dist/src/repo/index-files.js';
import { writeLockFile } from '../dist/src/repo/lock.js';
import { openBackend } from '../dist/src/storage/location.js';

const OWNER = 'owner password';
const HOST = 'host write-only password';
const MARK = 'WOMARKER';

let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;

const env = (extra: Record<string, string | undefined> = {}) => noSecretsEnv(repo, extra);
/** The owner: a full key and its own cache. */
const owner = (extra: Record<string, string | undefined> = {}) => env({ COFFER_PASSWORD: OWNER, COFFER_CACHE_DIR: path.join(dir, 'owner-cache'), ...extra });
/** The backed-up host: the write-only key and its own cache. */
const host = (extra: Record<string, string | undefined> = {}) => env({ COFFER_PASSWORD: HOST, COFFER_CACHE_DIR: path.join(dir, 'host-cache'), ...extra });

const ok = expectOk;
const last = lastJson;
function summary(r: RunResult): Record<string, number | string> {
  ok(r);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as Record<string, number | string>;
}
const names = (type: string) => objectNames(repo, type);
const objPath = (type: string, name: string) => objectPath(repo, type, name);
function repoBytes(): number {
  return ['data', 'index', 'snapshots'].reduce((n, t) => n + names(t).reduce((m, x) => m + statSync(objPath(t, x)).size, 0), 0);
}
/** Every file under `root` as relative path → contents. */
function tree(root: string, rel = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) for (const [k, v] of tree(root, r)) out.set(k, v);
    else out.set(r, readFileSync(path.join(root, r)).toString('base64'));
  }
  return out;
}
function restoredEqualsSource(e: Record<string, string | undefined>, label: string): void {
  const target = path.join(dir, `restore-${label}`);
  ok(coffer(['restore', 'latest', '--target', target, '-q'], e));
  expect(tree(path.join(target, src))).toEqual(tree(src));
}

let fullSnapshots: string[] = [];
let hostObjects: { data: string[]; index: string[]; snapshots: string[] };
let woKeyId = '';

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-wo-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  mkdirSync(path.join(src, `dir-${MARK}`), { recursive: true });
  for (let i = 0; i < 6; i++) writeFileSync(path.join(src, `file-${MARK}-${i}.txt`), `${MARK} contents ${i}\n`.repeat(200 + i));
  writeFileSync(path.join(src, `dir-${MARK}`, 'big.bin'), randomBytes(700_000));
  writeFileSync(path.join(dir, 'owner-pw'), OWNER);
  ok(coffer(['init', '--chunk-min', '64K', '--chunk-avg', '128K', '--chunk-max', '512K'], owner()));
  ok(coffer(['backup', '-q', src], owner()));
  fullSnapshots = names('snapshots');
});
afterAll(() => cleanup?.());

describe('write-only keys', () => {
  it('key add --write-only adds a slot that key list shows as write-only', () => {
    const r = ok(coffer(['key', 'add', '--write-only', '--label', `srv-${MARK}`, '--json'], owner({ COFFER_NEW_PASSWORD: HOST })));
    const j = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { id: string; kind: string };
    expect(j.kind).toBe('write-only');
    woKeyId = j.id;
    const list = JSON.parse(ok(coffer(['key', 'list', '--json'], owner())).stdout) as { id: string; kind: string; label: string }[];
    expect(list.find((k) => k.id === woKeyId)).toMatchObject({ kind: 'write-only', label: `srv-${MARK}` });
  });

  it('backs up, deduplicating against what the full key stored', () => {
    const before = { data: names('data'), index: names('index'), snapshots: names('snapshots') };
    const size0 = repoBytes();
    writeFileSync(path.join(src, `new-${MARK}.txt`), `${MARK} new file\n`.repeat(50));
    writeFileSync(path.join(src, `gone-${MARK}.txt`), `${MARK} a file deleted later\n`.repeat(50));
    const s = summary(coffer(['backup', '--json', '-q', src], host()));
    // No local state yet: every file is read, but only the new files' blobs are new to the repository.
    expect(s.files_new).toBe(9);
    expect(s.data_blobs).toBe(2);
    expect(repoBytes() - size0).toBeLessThan(40_000); // the 700 KB file and the others were not stored again
    hostObjects = {
      data: names('data').filter((n) => !before.data.includes(n)),
      index: names('index').filter((n) => !before.index.includes(n)),
      snapshots: names('snapshots').filter((n) => !before.snapshots.includes(n)),
    };
    expect(hostObjects.snapshots).toHaveLength(1);
    expect(hostObjects.data.length).toBeGreaterThan(0);
    expect(hostObjects.index.length).toBeGreaterThan(0);
  });

  it('skips unchanged files on the next backup (local state) and stores only the change', () => {
    appendFileSync(path.join(src, `file-${MARK}-0.txt`), 'changed\n');
    rmSync(path.join(src, `gone-${MARK}.txt`));
    const s = summary(coffer(['backup', '--json', '-q', src], host()));
    expect(s.files_unmodified).toBe(7);
    expect(s.files_changed).toBe(1);
    expect(s.files_new).toBe(0);
    expect(s.data_blobs).toBe(1);
    // The local state names nothing in plain.
    const stateDir = readdirSync(path.join(dir, 'host-cache'));
    const files = stateDir.flatMap((id) => {
      const d = path.join(dir, 'host-cache', id, 'write-only');
      return readdirSync(d).map((n) => readFileSync(path.join(d, n)));
    });
    expect(files.length).toBe(1);
    for (const f of files) {
      expect(f.includes(MARK)).toBe(false);
      expect(f.includes('big.bin')).toBe(false);
    }
  });

  it('the owner restores exactly the source and sees the host snapshots', () => {
    const snaps = JSON.parse(ok(coffer(['snapshots', '--json'], owner())).stdout) as { id: string; paths: string[] }[];
    expect(snaps).toHaveLength(3);
    restoredEqualsSource(owner(), 'a');
    const ls = ok(coffer(['ls', 'latest'], owner())).stdout;
    expect(ls).toContain(`new-${MARK}.txt`);
    ok(coffer(['diff', fullSnapshots[0].slice(0, 8), 'latest'], owner()));
    expect(ok(coffer(['dump', 'latest', path.join(src, `new-${MARK}.txt`)], owner())).stdout).toContain(`${MARK} new file`);
    ok(coffer(['find', `new-${MARK}*`], owner()));
  });

  it('the host cannot open what it wrote with anything its slot holds', async () => {
    const keyFile = parseKeyFile(readFileSync(path.join(repo, 'keys', woKeyId)));
    const kek = await deriveKek(Buffer.from(HOST), keyFile.kdf as never);
    const got = unwrapSlot(kek, keyFile);
    expect(got && 'bundle' in got).toBe(true);
    const bundle = decodeBundle((got as { bundle: Buffer }).bundle);
    const text = (got as { bundle: Buffer }).bundle.toString();
    expect(text).not.toMatch(/blobKey|metaKey|master/);
    const wo = writeOnlyRepoKeys(bundle);
    const candidates: Buffer[] = [bundle.ownerPub, bundle.blobIdKey, bundle.chunkerKey, bundle.idListKey, bundle.lockKey, bundle.cacheKey, wo.wrapKey, wrapKeyFrom(bundle.ownerPub)];
    // Snapshot file.
    const snap = readFileSync(objPath('snapshots', hostObjects.snapshots[0]));
    for (const k of candidates) {
      expect(() => decodeFile(k, 'snapshot', snap)).toThrow();
      expect(() => decodeFile(k, 'snapshot', snap.subarray(EPH_BOX_BYTES))).toThrow();
      expect(() => decodeFileFromOwner({ ownerSecret: k, ownerPub: bundle.ownerPub, wrapKey: wo.wrapKey }, 'snapshot', snap)).toThrow();
    }
    // Packs: the trailer gives the ephemeral public key (by design), but no key opens the header or a blob.
    for (const name of hostObjects.data) {
      const pack = readFileSync(objPath('data', name));
      const loc = decodeAnyPackTrailer({ metaKey: Buffer.alloc(32), wrapKey: wo.wrapKey }, pack.subarray(pack.length - OWNER_TRAILER_BYTES), pack.length);
      expect(loc.ephPub).toHaveLength(32);
      const header = pack.subarray(loc.offset, loc.offset + loc.length);
      for (const k of candidates) {
        expect(() => decodePackHeader(k, header, loc.offset)).toThrow();
        const sk = openFromOwner(k, bundle.ownerPub, loc.ephPub!);
        expect(() => decodePackHeader(sk.metaKey, header, loc.offset)).toThrow();
        expect(() => openBlob({ blobKey: sk.blobKey, blobIdKey: bundle.blobIdKey }, 'data', '00'.repeat(32), pack.subarray(0, Math.min(200, loc.offset)), 10)).toThrow();
      }
    }
    // Index files: the id list opens (by design), the packs and offsets do not.
    for (const name of hostObjects.index) {
      const stored = readFileSync(objPath('index', name));
      expect(readIndexIds(bundle.idListKey, stored)?.length).toBeGreaterThan(0);
      for (const k of candidates) expect(() => decodeIndexFile({ ...wo, ownerSecret: k, metaKey: k }, stored)).toThrow();
    }
    // The owner's keys do open them (the same objects, so the failures above are not format errors).
    const slot = parseKeyFile(readFileSync(path.join(repo, 'keys', names('keys').find((n) => n !== woKeyId)!)));
    const master = (unwrapSlot(await deriveKek(Buffer.from(OWNER), slot.kdf as never), slot) as { master: Buffer }).master;
    const full = deriveRepoKeys(master);
    expect(decodeFileFromOwner(full, 'snapshot', snap).toString()).toContain('"paths"');
    for (const name of hostObjects.index) expect(decodeIndexFile(full, readFileSync(objPath('index', name))).length).toBeGreaterThan(0);
    expect(decodeKeyMeta(full.metaKey, parseKeyFile(readFileSync(path.join(repo, 'keys', woKeyId)))).kind).toBe('write-only');
  });

  it('every other command refuses the write-only key with one line and exit 12', () => {
    const target = path.join(dir, 'never');
    const cmds: string[][] = [
      ['snapshots'],
      ['ls', 'latest'],
      ['find', 'x'],
      ['diff', 'latest', 'latest'],
      ['dump', 'latest', '/x'],
      ['stats'],
      ['cat', 'config'],
      ['restore', 'latest', '--target', target],
      ['check'],
      ['forget', '--keep-last', '1'],
      ['prune'],
      ['tag', 'latest', '--add', 'x'],
      ['repair', 'index'],
      ['unlock'],
      ['key', 'list'],
      ['key', 'add'],
      ['key', 'passwd'],
      ['key', 'remove', woKeyId.slice(0, 8)],
    ];
    for (const c of cmds) {
      const r = coffer(c, host({ COFFER_NEW_PASSWORD: 'x' }));
      expect(r.code, `${c.join(' ')}: ${r.stderr}`).toBe(12);
      expect(r.stderr.trim(), c.join(' ')).toBe('coffer: this key is write-only: it can only back up');
    }
    cmds.push(['copy', '--from-repo', repo, '--from-password-file', path.join(dir, 'owner-pw')]);
    const cp = coffer(cmds.at(-1)!, host());
    expect(cp.code, cp.stderr).toBe(12);
    expect(cp.stderr.trim()).toBe('coffer: this key is write-only: it can only back up');
    expect(coffer(['backup', '--parent', 'latest', src], host()).code).toBe(2);
    expect(names('snapshots')).toHaveLength(3);
  });

  it('the storage cannot tell the host objects apart: no names or markers, Padmé sizes', () => {
    for (const [type, list] of Object.entries(hostObjects)) {
      for (const name of list) {
        const b = readFileSync(objPath(type, name));
        expect(padme(b.length), `${type}/${name}`).toBe(b.length);
        // A marker shorter than 6 bytes turns up in random ciphertext by chance (a host named "vm": in half the runs).
        for (const m of [MARK, 'big.bin', os.hostname(), '"paths"', src].filter((x) => x.length >= 6)) expect(b.includes(m), `${type}/${name} holds ${m}`).toBe(false);
      }
    }
    const key = readFileSync(path.join(repo, 'keys', woKeyId)).toString();
    expect(key).not.toContain(MARK);
    expect(key).not.toContain('write-only');
  });

  it('a write-only backup waits for an exclusive lock like any other; key commands take the lock', async () => {
    const slot = parseKeyFile(readFileSync(path.join(repo, 'keys', names('keys').find((n) => n !== woKeyId)!)));
    const master = (unwrapSlot(await deriveKek(Buffer.from(OWNER), slot.kdf as never), slot) as { master: Buffer }).master;
    const backend = openBackend(repo);
    const lock = await writeLockFile({ backend, keys: deriveRepoKeys(master) }, { version: 1, time: new Date().toISOString(), exclusive: true, hostname: os.hostname(), username: 'x', pid: process.pid });
    try {
      const r = coffer(['backup', '-q', src], host());
      expect(r.code, r.stderr).toBe(11);
      expect(r.stderr).toMatch(/exclusive lock/);
    } finally {
      await backend.remove({ type: 'locks', name: lock });
    }
    // Key commands take the lock too: a shared one (a backup running) lets `key list` through, not `key add`.
    const shared = await writeLockFile({ backend, keys: deriveRepoKeys(master) }, { version: 1, time: new Date().toISOString(), exclusive: false, hostname: os.hostname(), username: 'x', pid: process.pid });
    try {
      ok(coffer(['key', 'list'], owner()));
      const r = coffer(['key', 'add', '--label', 'x'], owner({ COFFER_NEW_PASSWORD: 'another' }));
      expect(r.code, r.stderr).toBe(11);
      expect(r.stderr).toMatch(/needs the repository alone/);
      expect(coffer(['key', 'passwd'], owner({ COFFER_NEW_PASSWORD: 'another' })).code).toBe(11);
    } finally {
      await backend.remove({ type: 'locks', name: shared });
    }
  });

  it('check --read-data, forget + prune (repacking host packs under the full keys), then restore', () => {
    ok(coffer(['check', '--read-data'], owner()));
    // Forget the host's first snapshot and the owner's: their unique blobs become unused, so
    // the host's packs are repacked (opened with their own keys, sealed again with the repository's).
    const snaps = JSON.parse(ok(coffer(['snapshots', '--json'], owner())).stdout) as { id: string }[];
    ok(coffer(['forget', snaps[0].id, snaps[1].id, '-q'], owner()));
    const hostPacksBefore = hostObjects.data.filter((n) => names('data').includes(n));
    expect(hostPacksBefore.length).toBeGreaterThan(0);
    ok(coffer(['prune', '--max-unused', '0%', '-q'], owner()));
    expect(hostObjects.data.filter((n) => names('data').includes(n)).length).toBeLessThan(hostPacksBefore.length);
    ok(coffer(['check', '--read-data'], owner()));
    restoredEqualsSource(owner(), 'b');
    // The host backs up on top of the pruned repository, still incrementally.
    const s = summary(coffer(['backup', '--json', '-q', src], host()));
    expect(s.files_unmodified).toBe(8);
    expect(s.data_blobs).toBe(0);
    ok(coffer(['check', '--read-data'], owner()));
  });

  it('repair index rebuilds the index from host packs too, and copy carries host snapshots', () => {
    ok(coffer(['repair', 'index', '-q'], owner()));
    ok(coffer(['check', '--read-data'], owner()));
    const dst = path.join(dir, 'copy');
    const dstEnv = env({ COFFER_REPOSITORY: dst, COFFER_PASSWORD: 'copy password', COFFER_CACHE_DIR: path.join(dir, 'copy-cache') });
    ok(coffer(['init'], dstEnv));
    ok(coffer(['copy', '--from-repo', repo, '--from-password-file', path.join(dir, 'owner-pw'), '-q'], dstEnv));
    restoredEqualsSource(dstEnv, 'c');
  });

  it('a passphrase that opens both a write-only and a full slot opens the full one for other commands', () => {
    // Slots are tried in name order: make the full slot come after the write-only one, the case that matters.
    // Key file names are content hashes, so draw again until the order is right: a new full slot when the
    // write-only one sorts low, else a new write-only slot (each draw succeeds with probability >= 1/2 or so).
    let r = last(coffer(['key', 'add', '--json', '--label', 'same password'], owner({ COFFER_NEW_PASSWORD: HOST })));
    for (let i = 0; i < 40 && String(r.id) < woKeyId; i++) {
      if (woKeyId < '8') {
        ok(coffer(['key', 'remove', String(r.id)], owner()));
        r = last(coffer(['key', 'add', '--json', '--label', 'same password'], owner({ COFFER_NEW_PASSWORD: HOST })));
      } else {
        ok(coffer(['key', 'remove', woKeyId], owner()));
        woKeyId = String(last(coffer(['key', 'add', '--write-only', '--json'], owner({ COFFER_NEW_PASSWORD: HOST }))).id);
      }
    }
    expect(String(r.id) > woKeyId).toBe(true);
    try {
      ok(coffer(['snapshots'], host()));
      ok(coffer(['key', 'list'], host()));
    } finally {
      ok(coffer(['key', 'remove', String(r.id)], owner()));
    }
    expect(coffer(['snapshots'], host()).code).toBe(12);
  });

  it('key add --write-only upgrades index files written before index version 2', () => {
    const fixture = path.join(dir, 'fixture');
    cpSync(path.join(ROOT, 'fixtures', 'repo-v1'), fixture, { recursive: true });
    const fx = env({ COFFER_REPOSITORY: fixture, COFFER_PASSWORD: 'coffer-fixture', COFFER_CACHE_DIR: path.join(dir, 'fx-cache') });
    const r = ok(coffer(['key', 'add', '--write-only', '--json'], { ...fx, COFFER_NEW_PASSWORD: HOST }));
    expect((JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { upgraded_index_files: number }).upgraded_index_files).toBeGreaterThan(0);
    ok(coffer(['check', '--read-data'], fx));
  });
});
