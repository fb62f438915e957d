/**
 * Master-key rotation: `key rotate` and `key reencrypt` through the real CLI,
 * what an old key file (with its passphrase) can still open afterwards, and a
 * crash at every storage mutation of a rotation (library level, with a
 * backend that fails from the k-th write or remove on).
 */
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, expectOk, lastJson, noSecretsEnv, objectNames, objectPath, scratch, type RunResult } from './helpers.js';
import { parseKeyFile, unwrapSlot } from '../dist/src/format/keyfile.js';
import { deriveKek } from '../dist/src/crypto/kdf.js';
import { deriveRepoKeys } from '../dist/src/crypto/keys.js';
import { decodeAnyFile } from '../dist/src/format/owner-file.js';
import { decodeAnyPackTrailer } from '../dist/src/format/pack.js';
import { decodeIndexFile, indexFileEpoch } from '../dist/src/repo/index-files.js';
import { KeyAdmin } from '../dist/src/repo/key-admin.js';
import { Repository } from '../dist/src/repo/repository.js';
import { reencrypt } from '../dist/src/lifecycle/reencrypt.js';
import { openBackend } from '../dist/src/storage/location.js';
import { StorageError, type Backend, type Handle } from '../dist/src/storage/backend.js';

const A = 'password before rotation';
const B = 'password after rotation';

let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;

const env = (extra: Record<string, string | undefined> = {}) => noSecretsEnv(repo, { COFFER_CACHE_DIR: path.join(dir, 'cache'), ...extra });
const pw = (p: string, extra: Record<string, string | undefined> = {}) => env({ COFFER_PASSWORD: p, ...extra });
const ok = expectOk;
const last = lastJson;
const names = objectNames;
function files(root: string, rel = ''): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) for (const [k, v] of files(root, r)) out.set(k, v);
    else out.set(r, readFileSync(path.join(root, r)).toString('base64'));
  }
  return out;
}
/** Restores snapshot `ref` and returns its files (relative to the backed-up folder). */
function restored(e: Record<string, string | undefined>, ref: string, label: string): Map<string, string> {
  const target = path.join(dir, `restore-${label}`);
  ok(coffer(['restore', ref, '--target', target, '-q'], e));
  return files(path.join(target, src));
}
/** The keys a key file opens with `pass` (M_0 only for a pre-rotation slot). */
async function keysOf(file: Buffer, pass: string) {
  const k = parseKeyFile(file);
  const got = unwrapSlot(await deriveKek(Buffer.from(pass), k.kdf as never), k) as { master: Buffer; older?: Buffer[] };
  return deriveRepoKeys([...(got.older ?? []), got.master]);
}

let oldKeyFile: Buffer;
let oldKeyId: string;
let v1: Map<string, string>;
let before: { data: string[]; index: string[]; snapshots: string[] };

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-rotate-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  mkdirSync(src);
  writeFileSync(path.join(src, 'a.txt'), 'alpha\n'.repeat(500));
  writeFileSync(path.join(src, 'b.bin'), randomBytes(80_000));
  ok(coffer(['init'], pw(A)));
  ok(coffer(['backup', '-q', src], pw(A)));
  v1 = files(src);
  ok(coffer(['key', 'add', '--recovery', '--json'], pw(A)));
  ok(coffer(['key', 'add', '--write-only'], pw(A, { COFFER_NEW_PASSWORD: 'wo' })));
  writeFileSync(path.join(src, 'c.txt'), 'from the write-only host\n');
  ok(coffer(['backup', '-q', src], pw('wo', { COFFER_CACHE_DIR: path.join(dir, 'wo-cache') })));
  rmSync(path.join(src, 'c.txt'));
  const keys = JSON.parse(ok(coffer(['key', 'list', '--json'], pw(A))).stdout) as { id: string; kind: string }[];
  oldKeyId = keys.find((k) => k.kind === 'passphrase')!.id;
  oldKeyFile = readFileSync(path.join(repo, 'keys', oldKeyId));
  before = { data: names(repo, 'data'), index: names(repo, 'index'), snapshots: names(repo, 'snapshots') };
});
afterAll(() => cleanup?.());

describe('key rotate', () => {
  it('says which slots it would remove and does nothing without --yes', () => {
    const r = coffer(['key', 'rotate'], pw(A, { COFFER_NEW_PASSWORD: B }));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^coffer: key rotate removes every other key slot \(.*recovery.*write-only.*\); run it again with --yes/);
    expect(names(repo, 'keys')).toHaveLength(3);
  });

  it('rotates: one new slot, the old secrets open nothing, everything restores', async () => {
    const j = last(coffer(['key', 'rotate', '--yes', '--json'], pw(A, { COFFER_NEW_PASSWORD: B })));
    expect(j.epoch).toBe(1);
    expect((j.removed as string[]).length).toBe(3);
    expect(names(repo, 'keys')).toEqual([j.id]);
    expect(coffer(['snapshots'], pw(A)).code).toBe(12);
    expect(coffer(['backup', src], pw('wo')).code).toBe(12);
    const snaps = JSON.parse(ok(coffer(['snapshots', '--json'], pw(B))).stdout) as { id: string }[];
    expect(snaps).toHaveLength(2);
    expect(restored(pw(B), snaps[0].id, 'old')).toEqual(v1);
    // Every index file now belongs to the new epoch (the old id-list key reads none).
    const old = await keysOf(oldKeyFile, A);
    for (const n of names(repo, 'index')) expect(() => decodeIndexFile(old, readFileSync(objectPath(repo, 'index', n)))).toThrow();
  });

  it('what is written afterwards is out of reach of the old key file and its passphrase', async () => {
    writeFileSync(path.join(src, 'd.txt'), 'written after the rotation\n'.repeat(100));
    ok(coffer(['backup', '-q', src], pw(B)));
    expect(restored(pw(B), 'latest', 'new')).toEqual(files(src));
    const old = await keysOf(oldKeyFile, A);
    const newSnaps = names(repo, 'snapshots').filter((n) => !before.snapshots.includes(n));
    expect(newSnaps).toHaveLength(1);
    expect(() => decodeAnyFile(old, 'snapshot', readFileSync(objectPath(repo, 'snapshots', newSnaps[0])))).toThrow();
    const newPacks = names(repo, 'data').filter((n) => !before.data.includes(n));
    expect(newPacks.length).toBeGreaterThan(0);
    for (const n of newPacks) {
      const p = readFileSync(objectPath(repo, 'data', n));
      expect(() => decodeAnyPackTrailer([old], p.subarray(p.length - 88), p.length)).toThrow();
    }
    // Put the saved old key file back (an attacker's copy): the old passphrase opens the slot, but not the
    // index files (rewritten in the new epoch) nor the new snapshot.
    writeFileSync(path.join(repo, 'keys', oldKeyId), oldKeyFile);
    const r = coffer(['snapshots'], pw(A, { COFFER_CACHE_DIR: path.join(dir, 'attacker-cache') }));
    expect(r.code, r.stderr).toBe(13);
    // (Index files it cannot read are skipped with a warning; the new snapshot file fails to open.)
    expect(r.stderr).toMatch(new RegExp(`coffer: .*snapshots/${newSnaps[0]} is damaged, or sealed under a newer key: .*rotated out`));
    rmSync(path.join(repo, 'keys', oldKeyId));
    ok(coffer(['check', '--read-data'], pw(B)));
  });

  it('a write-only key added again deduplicates against data of both epochs', () => {
    ok(coffer(['key', 'add', '--write-only'], pw(B, { COFFER_NEW_PASSWORD: 'wo2' })));
    const j = last(coffer(['backup', '--json', '-q', src], pw('wo2', { COFFER_CACHE_DIR: path.join(dir, 'wo2-cache') })));
    expect(j.data_blobs).toBe(0);
    ok(coffer(['check', '--read-data'], pw(B)));
  });

  it('key reencrypt repacks old-epoch packs and rewrites old snapshots; then the old keys open nothing', async () => {
    const j = last(coffer(['key', 'reencrypt', '--json'], pw(B)));
    expect(j.packs_repacked as number).toBeGreaterThan(0);
    expect(j.snapshots_rewritten).toBe(2);
    const old = await keysOf(oldKeyFile, A);
    for (const n of names(repo, 'snapshots')) expect(() => decodeAnyFile(old, 'snapshot', readFileSync(objectPath(repo, 'snapshots', n)))).toThrow();
    for (const n of names(repo, 'data')) {
      const p = readFileSync(objectPath(repo, 'data', n));
      expect(() => decodeAnyPackTrailer([old], p.subarray(p.length - 88), p.length), n).toThrow();
    }
    ok(coffer(['check', '--read-data'], pw(B)));
    const snaps = JSON.parse(ok(coffer(['snapshots', '--json'], pw(B))).stdout) as { id: string; original?: string }[];
    expect(snaps).toHaveLength(4);
    expect(restored(pw(B), snaps[0].id, 'first-again')).toEqual(v1);
    expect(restored(pw(B), 'latest', 'latest-again')).toEqual(files(src));
    // Nothing left to do: a second run changes nothing.
    const again = last(coffer(['key', 'reencrypt', '--json'], pw(B)));
    expect(again.packs_repacked).toBe(0);
    expect(again.snapshots_rewritten).toBe(0);
  });
});

/** Fails every write and remove from the k-th on, as a crash would stop them. */
class CrashAfter implements Backend {
  private n = 0;
  crashed = false;
  constructor(
    private readonly inner: Backend,
    private readonly k: number,
  ) {}
  get location() {
    return this.inner.location;
  }
  private tick(): void {
    if (++this.n >= this.k) {
      this.crashed = true;
      throw new StorageError('io', 'simulated crash');
    }
  }
  read(h: Handle, r?: { offset: number; length: number }) {
    return this.inner.read(h, r as never);
  }
  stat(h: Handle) {
    return this.inner.stat(h);
  }
  list(t: Parameters<Backend['list']>[0]) {
    return this.inner.list(t);
  }
  create() {
    return this.inner.create();
  }
  async write(h: Handle, d: Uint8Array | readonly Uint8Array[]) {
    this.tick();
    return this.inner.write(h, d);
  }
  async remove(h: Handle) {
    this.tick();
    return this.inner.remove(h);
  }
}

describe('key rotate and reencrypt, crashed at every step', () => {
  it('leaves a repository that opens (with the old or the new password) and passes check, after each mutation', async () => {
    const base = path.join(dir, 'crash-base');
    const r0 = { ...env(), COFFER_REPOSITORY: base, COFFER_PASSWORD: A };
    ok(coffer(['init'], r0));
    ok(coffer(['backup', '-q', src], r0));
    ok(coffer(['key', 'add', '--recovery'], r0));
    writeFileSync(path.join(src, 'e.txt'), 'one more\n');
    ok(coffer(['backup', '-q', src], r0));
    let finished = false;
    let steps = 0;
    for (let k = 1; !finished && k < 60; k++) {
      const copy = path.join(dir, `crash-${k}`);
      cpSync(base, copy, { recursive: true });
      const crashy = new CrashAfter(openBackend(copy), k);
      const admin = await KeyAdmin.open(crashy, Buffer.from(A));
      try {
        await admin.rotate(Buffer.from(B), 'rotated');
        finished = !crashy.crashed;
      } catch (e) {
        expect(crashy.crashed, String(e)).toBe(true);
      } finally {
        admin.close();
      }
      steps = k;
      const opens = [A, B].filter((p) => coffer(['snapshots', '-q'], { ...env(), COFFER_REPOSITORY: copy, COFFER_PASSWORD: p, COFFER_CACHE_DIR: path.join(dir, `cc-${k}`) }).code === 0);
      expect(opens.length, `crash at mutation ${k}`).toBeGreaterThan(0);
      const e = { ...env(), COFFER_REPOSITORY: copy, COFFER_PASSWORD: opens.at(-1), COFFER_CACHE_DIR: path.join(dir, `cc-${k}`) };
      ok(coffer(['check', '--read-data', '-q'], e));
      if (k % 3 === 0 || finished) {
        // Re-encrypting, crashed the same way, then run again to the end.
        if (opens.at(-1) === B) {
          const repoB = await Repository.open(new CrashAfter(openBackend(copy), 4), Buffer.from(B), { noCache: true });
          await reencrypt(repoB).catch(() => undefined);
          await repoB.close();
          ok(coffer(['key', 'reencrypt', '-q'], e));
          ok(coffer(['check', '--read-data', '-q'], e));
          // Every index file is of the new epoch now, also those an interrupted rotation left behind.
          const slot = names(copy, 'keys').map((n) => readFileSync(path.join(copy, 'keys', n)));
          let keysB;
          for (const f of slot) keysB ??= await keysOf(f, B).catch(() => undefined);
          for (const n of names(copy, 'index')) expect(indexFileEpoch(keysB!, readFileSync(objectPath(copy, 'index', n)))).toBe(1);
        }
      }
      rmSync(copy, { recursive: true, force: true });
    }
    expect(finished).toBe(true);
    expect(steps).toBeGreaterThan(3);
  });
});
