/**
 * The provider view: everything the storage holds, scanned byte by byte, must
 * reveal none of what was backed up; a brand-new machine restores with only
 * the repository and a passphrase or recovery key, and with neither, nothing.
 * Plus tampering the storage could do, beyond test/e2e-errors.test.ts:
 * swapping, renaming and replaying objects.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { plainHash } from '../dist/src/crypto/hash.js';
import { padme } from '../dist/src/format/padding.js';
import { decodeTree } from '../dist/src/format/tree.js';
import { Repository } from '../dist/src/repo/repository.js';
import { openBackend } from '../dist/src/storage/location.js';
import { coffer, scratch, type RunResult } from './helpers.js';

const PASSWORD = 'provider view passphrase';
let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;
let code: string;

/** Unique markers: each appears in a file name, a directory name, or file contents. */
const tag = randomBytes(6).toString('hex');
const M = {
  fileName: `fn-marker-${tag}-invoice.txt`,
  dirName: `dir-marker-${tag}-secret-project`,
  content: `CONTENT-MARKER-${tag}-the-launch-code`,
  symlinkTarget: `link-target-marker-${tag}`,
  xname: `other-marker-${tag}.bin`,
};

interface StoredObject {
  rel: string;
  type: string;
  name: string;
  bytes: Buffer;
}

function walk(root: string, rel = ''): StoredObject[] {
  const out: StoredObject[] = [];
  for (const e of readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (e.isDirectory()) out.push(...walk(root, r));
    else out.push({ rel: r, type: r.split(path.sep)[0], name: e.name, bytes: readFileSync(path.join(root, r)) });
  }
  return out;
}

/** Environment of a brand-new machine: empty home and cache, no password source. */
function freshMachine(name: string, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const home = path.join(dir, `${name}-home`);
  mkdirSync(path.join(home, 'xdg-cache'), { recursive: true });
  return {
    HOME: home,
    XDG_CACHE_HOME: path.join(home, 'xdg-cache'),
    COFFER_CACHE_DIR: undefined,
    COFFER_PASSWORD: undefined,
    COFFER_PASSWORD_FILE: undefined,
    COFFER_PASSWORD_COMMAND: undefined,
    COFFER_RECOVERY_KEY: undefined,
    ...extra,
  };
}

function sameTree(a: string, b: string): void {
  const list = (d: string): string[] => readdirSync(d, { recursive: true, encoding: 'utf8' }).sort();
  expect(list(b)).toEqual(list(a));
  for (const rel of list(a)) {
    const st = statSync(path.join(a, rel), { throwIfNoEntry: false });
    if (st?.isFile()) expect(readFileSync(path.join(b, rel)).equals(readFileSync(path.join(a, rel))), rel).toBe(true);
  }
}

function ok(r: RunResult): RunResult {
  expect(r.code, r.stderr).toBe(0);
  return r;
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-provider-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  const deep = path.join(src, M.dirName, 'nested');
  mkdirSync(deep, { recursive: true });
  // Compressible text with markers, so zstd cannot hide them by accident either way.
  writeFileSync(path.join(src, M.dirName, M.fileName), `${M.content}\n`.repeat(2000));
  writeFileSync(path.join(deep, 'small.txt'), `${M.content} small\n`);
  // A "known file" of several chunks (random, so chunks are distinct).
  writeFileSync(path.join(src, M.xname), randomBytes(900_000));
  // A file whose marker sits in the middle of random data.
  writeFileSync(path.join(deep, 'mixed.bin'), Buffer.concat([randomBytes(100_000), Buffer.from(M.content), randomBytes(100_000)]));
  // Two identical files (one blob), and a symlink.
  const twin = randomBytes(30_000);
  writeFileSync(path.join(src, 'twin-1'), twin);
  writeFileSync(path.join(src, 'twin-2'), twin);
  symlinkSync(M.symlinkTarget, path.join(src, 'link'));
  const env = { COFFER_REPOSITORY: repo, COFFER_PASSWORD: PASSWORD, COFFER_CACHE_DIR: path.join(dir, 'cache') };
  ok(coffer(['init', '--chunk-min', '16K', '--chunk-avg', '64K', '--chunk-max', '256K'], env));
  ok(coffer(['backup', '-q', src], env));
  ok(coffer(['backup', '-q', '--force', src], env)); // a second snapshot
  code = JSON.parse(ok(coffer(['key', 'add', '--recovery', '--json'], env)).stdout).recovery_key;
});
afterAll(() => cleanup?.());

/** Plaintext facts the storage must not see, gathered with the key (as the owner would). */
interface Known {
  /** Every chunk's plaintext, per file path, in order. */
  files: { path: string; chunks: Buffer[]; storedLengths: number[] }[];
  blobIds: string[];
}

async function gatherKnown(): Promise<Known> {
  const r = await Repository.open(openBackend(repo), Buffer.from(PASSWORD), { noCache: true });
  try {
    const snap = await r.findSnapshot('latest');
    const files: Known['files'] = [];
    const blobIds: string[] = [];
    const visit = async (treeId: string, at: string): Promise<void> => {
      blobIds.push(treeId);
      for (const n of decodeTree(await r.loadBlob('tree', treeId))) {
        const p = path.join(at, n.name.toString());
        if (n.type === 'dir') await visit(n.subtree!, p);
        if (n.type === 'file') {
          const chunks: Buffer[] = [];
          const storedLengths: number[] = [];
          for (const id of n.content ?? []) {
            blobIds.push(id);
            chunks.push(await r.loadBlob('data', id));
            storedLengths.push(r.lookupBlob('data', id)!.length);
          }
          files.push({ path: p, chunks, storedLengths });
        }
      }
    };
    await visit(snap.tree, '/');
    return { files, blobIds };
  } finally {
    await r.close();
  }
}

describe('what the storage sees', () => {
  let objects: StoredObject[];
  let all: Buffer;
  let known: Known;

  beforeAll(async () => {
    objects = walk(repo);
    all = Buffer.concat(objects.map((o) => o.bytes));
    known = await gatherKnown();
  });

  it('the known file was split into several chunks (the test is meaningful)', () => {
    const f = known.files.find((x) => x.path.endsWith(M.xname))!;
    expect(f.chunks.length).toBeGreaterThanOrEqual(4);
    expect(Buffer.concat(f.chunks).equals(readFileSync(path.join(src, M.xname)))).toBe(true);
    expect(objects.filter((o) => o.type === 'data').length).toBeGreaterThanOrEqual(2);
  });

  it('no marker, file name, path, symlink target, host or user name in any byte or object name', () => {
    // Strings shorter than 6 bytes could occur by chance in a few MB of ciphertext.
    const needles = [...Object.values(M), tag, src, path.basename(dir), 'small.txt', 'mixed.bin', 'twin-1', os.hostname(), os.userInfo().username].filter(
      (n) => n.length >= 6,
    );
    expect(needles.length).toBeGreaterThanOrEqual(10);
    const names = objects.map((o) => o.rel).join('\n');
    for (const n of needles) {
      for (const form of [Buffer.from(n), Buffer.from(n, 'utf16le'), Buffer.from(Buffer.from(n).toString('base64').slice(0, -4))]) {
        expect(all.includes(form), `${n} in repository bytes`).toBe(false);
      }
      expect(names.includes(n), `${n} in object names`).toBe(false);
    }
  });

  it('no plain BLAKE3 or SHA-256 of any chunk or file, and no blob id, appears anywhere (binary, hex or base64)', () => {
    const digests: Buffer[] = [];
    for (const f of known.files) {
      const whole = Buffer.concat(f.chunks);
      for (const data of [whole, ...f.chunks]) digests.push(plainHash(data), createHash('sha256').update(data).digest());
    }
    for (const id of known.blobIds) digests.push(Buffer.from(id, 'hex'));
    expect(digests.length).toBeGreaterThan(20);
    const names = new Set(objects.map((o) => o.name));
    const text = all.toString('latin1');
    for (const d of digests) {
      expect(all.includes(d.subarray(0, 16))).toBe(false);
      expect(names.has(d.toString('hex'))).toBe(false);
      expect(text.includes(d.toString('hex').slice(0, 32))).toBe(false);
      expect(text.includes(d.toString('base64').slice(0, 20))).toBe(false);
    }
  });

  it('no chunk-size sequence of a known file is visible: not as encoded integers, not as object sizes', () => {
    for (const f of known.files.filter((x) => x.chunks.length >= 2)) {
      const raw = f.chunks.map((c) => c.length);
      for (const seq of [raw, f.storedLengths]) {
        for (let i = 0; i + 1 < seq.length; i++) {
          const pair = (w: (b: Buffer, v: number, o: number) => void, size: number) => {
            const b = Buffer.alloc(2 * size);
            w(b, seq[i], 0);
            w(b, seq[i + 1], size);
            return b;
          };
          expect(all.includes(pair((b, v, o) => b.writeUInt32LE(v, o), 4)), `u32le ${seq[i]},${seq[i + 1]}`).toBe(false);
          expect(all.includes(pair((b, v, o) => b.writeUInt32BE(v, o), 4)), `u32be`).toBe(false);
          expect(all.includes(pair((b, v, o) => b.writeBigUInt64LE(BigInt(v), o), 8)), `u64le`).toBe(false);
          expect(all.includes(Buffer.from(`${seq[i]},${seq[i + 1]}`)), 'decimal').toBe(false);
        }
        // No pack, index or snapshot object is exactly one chunk. (config and key files hold no
        // chunk; their sizes are fixed by their structure and could match a tiny chunk by chance.)
        const sizes = new Set(objects.filter((o) => o.type !== 'config' && o.type !== 'keys').map((o) => o.bytes.length));
        for (const s of f.storedLengths) expect(sizes.has(s)).toBe(false);
      }
    }
  });

  it('packs, index and snapshot files are Padmé-padded and named by the BLAKE3 of their bytes', () => {
    const padded = objects.filter((o) => ['data', 'index', 'snapshots'].includes(o.type));
    expect(padded.length).toBeGreaterThanOrEqual(5);
    for (const o of padded) {
      expect(padme(o.bytes.length), o.rel).toBe(o.bytes.length);
      expect(plainHash(o.bytes).toString('hex')).toBe(o.name);
    }
    // The only plaintext outside key files: the 8-byte config magic.
    expect(readFileSync(path.join(repo, 'config')).subarray(0, 8).toString('latin1')).toBe('COFFER\x00\x01');
  });
});

describe('a brand-new machine', () => {
  let copy: string;
  beforeAll(() => {
    // Only the repository travels (copied as a provider would hand it over).
    copy = path.join(dir, 'repo-copy');
    cpSync(repo, copy, { recursive: true });
  });

  it('restores everything with only the repository and the passphrase', () => {
    const target = path.join(dir, 'restore-pw');
    ok(coffer(['restore', 'latest', '-r', copy, '--target', target], freshMachine('m1', { COFFER_PASSWORD: PASSWORD })));
    sameTree(src, path.join(target, src));
  });

  it('restores everything with only the repository and the recovery key (fresh --cache-dir)', () => {
    const target = path.join(dir, 'restore-rk');
    const env = freshMachine('m2');
    ok(coffer(['restore', 'latest', '-r', copy, '--target', target, '--cache-dir', path.join(dir, 'm2-fresh-cache'), '--recovery-key', code], env));
    sameTree(src, path.join(target, src));
  });

  it('with neither, nothing: exit 12 and no file written', () => {
    const target = path.join(dir, 'restore-none');
    const r = coffer(['restore', 'latest', '-r', copy, '--target', target], freshMachine('m3'));
    expect(r.code).toBe(12);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(existsSync(target) && readdirSync(target).length > 0).toBe(false);
    const wrong = coffer(['restore', 'latest', '-r', copy, '--target', target], freshMachine('m3', { COFFER_PASSWORD: 'guess' }));
    expect(wrong.code).toBe(12);
    expect(existsSync(target) && readdirSync(target).length > 0).toBe(false);
  });
});

describe('tampering by the storage (swap, rename, replay)', () => {
  /** A private copy of the repository to damage. */
  function damaged(name: string): { repo: string; env: Record<string, string> } {
    const r = path.join(dir, `tamper-${name}`);
    cpSync(repo, r, { recursive: true });
    return { repo: r, env: { COFFER_REPOSITORY: r, COFFER_PASSWORD: PASSWORD, COFFER_CACHE_DIR: path.join(dir, `tamper-${name}-cache`) } };
  }
  const files = (r: string, type: string) => walk(r).filter((o) => o.type === type);
  const oneLine = (r: RunResult) => {
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    return r;
  };

  it('two pack files with swapped names: check exits 13 naming them; restore reports, never writes unverified data', () => {
    const t = damaged('swap-packs');
    const packs = files(t.repo, 'data');
    expect(packs.length).toBeGreaterThanOrEqual(2);
    const [a, b] = packs.map((p) => path.join(t.repo, p.rel));
    renameSync(a, a + '.x');
    renameSync(b, a);
    renameSync(a + '.x', b);
    const c = oneLine(coffer(['check'], t.env));
    expect(c.code).toBe(13);
    expect(c.stderr).toContain(path.basename(a).slice(0, 12));
    const target = path.join(dir, 'restore-swapped');
    const r = oneLine(coffer(['restore', 'latest', '--target', target], t.env));
    expect([3, 13]).toContain(r.code);
    // Whatever was restored is byte-identical to the source.
    if (existsSync(path.join(target, src))) {
      for (const rel of readdirSync(path.join(target, src), { recursive: true, encoding: 'utf8' })) {
        const p = path.join(target, src, rel);
        if (statSync(p).isFile()) expect(readFileSync(p).equals(readFileSync(path.join(src, rel))), rel).toBe(true);
      }
    }
  });

  it('an old index file replayed under a new name: skipped with a warning naming it; check exits 13 naming it', () => {
    const t = damaged('replay-index');
    const idx = files(t.repo, 'index')[0];
    const fake = randomBytes(32).toString('hex');
    cpSync(path.join(t.repo, idx.rel), path.join(t.repo, 'index', fake));
    const r = oneLine(coffer(['snapshots'], t.env));
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^warning: index/${fake} does not match its name .*was skipped`, 'm'));
    const c = oneLine(coffer(['check'], t.env));
    expect(c.code).toBe(13);
    expect(c.stderr).toMatch(new RegExp(`^error: index/${fake}: `, 'm'));
  });

  it('an old snapshot replayed under a new name, or a snapshot renamed: exit 13 naming it', () => {
    const t = damaged('replay-snapshot');
    const [s1, s2] = files(t.repo, 'snapshots');
    const fake = randomBytes(32).toString('hex');
    cpSync(path.join(t.repo, s1.rel), path.join(t.repo, 'snapshots', fake));
    let r = oneLine(coffer(['snapshots'], t.env));
    expect(r.code).toBe(13);
    expect(r.stderr).toContain(`snapshots/${fake}`);
    renameSync(path.join(t.repo, 'snapshots', fake), path.join(t.repo, 'snapshots', '0'.repeat(64)));
    renameSync(path.join(t.repo, s2.rel), path.join(t.repo, 'snapshots', 'f'.repeat(64)));
    r = oneLine(coffer(['snapshots', '--no-cache'], t.env));
    expect(r.code).toBe(13);
  });

  it('a pack renamed (moved to another name): check exits 13 (missing pack and unknown pack)', () => {
    const t = damaged('rename-pack');
    const p = files(t.repo, 'data')[0];
    const to = randomBytes(32).toString('hex');
    mkdirSync(path.join(t.repo, 'data', to.slice(0, 2)), { recursive: true });
    renameSync(path.join(t.repo, p.rel), path.join(t.repo, 'data', to.slice(0, 2), to));
    const r = oneLine(coffer(['check'], t.env));
    expect(r.code).toBe(13);
    expect(r.stderr).toContain(p.name.slice(0, 12));
  });

  it('a key file renamed: skipped as damaged (the passphrase no longer opens, exit 12); the recovery slot still opens', () => {
    const t = damaged('rename-key');
    const keys = files(t.repo, 'keys');
    expect(keys).toHaveLength(2); // passphrase + recovery
    const pwKey = keys.find((k) => k.bytes.includes(Buffer.from('argon2id')))!;
    renameSync(path.join(t.repo, pwKey.rel), path.join(t.repo, 'keys', randomBytes(32).toString('hex')));
    // The renamed passphrase slot fails its name check: the password no longer opens anything…
    const r = oneLine(coffer(['snapshots'], t.env));
    expect(r.code).toBe(12);
    // …but the recovery key still does.
    ok(coffer(['snapshots', '-q', '--recovery-key', code], { ...t.env, COFFER_PASSWORD: undefined } as Record<string, string>));
  });
});
