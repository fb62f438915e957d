/**
 * A backup whose parent snapshot's trees are damaged must not produce a
 * snapshot that points at the damaged tree blobs again (the rebuilt trees
 * have the same ids, and the index says they exist): they are stored anew,
 * and reading falls back to the good copy.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { coffer, scratch } from './helpers.js';
import { openRepository } from '../dist/src/index.js';

const PW = 'damaged-parent-pw';
let s: ReturnType<typeof scratch>;

beforeAll(() => {
  s = scratch('coffer-damaged-parent-');
});
afterAll(() => s.cleanup());

describe('backup over a parent with damaged trees', () => {
  it('stores the trees again, so the new snapshot restores completely', async () => {
    const src = path.join(s.dir, 'src');
    mkdirSync(path.join(src, 'a', 'b'), { recursive: true });
    writeFileSync(path.join(src, 'a', 'b', 'f'), 'hello\n');
    writeFileSync(path.join(src, 'g'), 'x\n');
    const env = { COFFER_REPOSITORY: path.join(s.dir, 'repo'), COFFER_PASSWORD: PW, COFFER_CACHE_DIR: path.join(s.dir, 'cache') };
    expect(coffer(['init', '-q'], env).code).toBe(0);
    expect(coffer(['backup', '-q', src], env).code).toBe(0);

    // Find the packs holding tree blobs (through the library) and flip a byte in each.
    const repo = await openRepository(env.COFFER_REPOSITORY, PW, { cacheDir: env.COFFER_CACHE_DIR, threads: 1 });
    const treePacks = repo.cache.packs().filter((p) => repo.cache.blobsInPack(p.id).some((b) => b.type === 'tree'));
    await repo.close();
    expect(treePacks.length).toBeGreaterThan(0);
    for (const p of treePacks) {
      const file = path.join(env.COFFER_REPOSITORY, 'data', p.id.slice(0, 2), p.id);
      const b = readFileSync(file);
      b[20] ^= 1;
      writeFileSync(file, b);
    }

    expect(coffer(['restore', '-q', 'latest', '--target', path.join(s.dir, 't1')], env).code).not.toBe(0);
    expect(coffer(['backup', '-q', src], env).code).toBe(0);
    const r = coffer(['restore', '-q', 'latest', '--target', path.join(s.dir, 't2')], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = path.join(s.dir, 't2', src);
    expect(readFileSync(path.join(out, 'a', 'b', 'f'), 'utf8')).toBe('hello\n');
    expect(readFileSync(path.join(out, 'g'), 'utf8')).toBe('x\n');
  });
});
