import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { seal, open, openInto, AuthenticationError, NONCE_BYTES, TAG_BYTES } from '../dist/src/crypto/aead.js';
import { sealBlob, openBlobInto, computeBlobId, BlobCorruptError } from '../dist/src/format/blob.js';
import { nativeGcm } from '../dist/src/platform/addon.js';

// Opening decrypts into the caller's buffer: with the native addon in one
// call (subkey + OpenSSL GCM), without it through node:crypto. Both must
// agree with `open` and fail closed the same way, wiping their output.

const key = randomBytes(32);
const keys = { blobKey: randomBytes(32), blobIdKey: randomBytes(32) };

function roundTrips(): void {
  for (const n of [0, 1, 15, 16, 17, 70_000, 300_001]) {
    const pt = randomBytes(n);
    const aad = randomBytes(9);
    const sealed = seal(key, pt, aad);
    const out = Buffer.alloc(n + 3, 9);
    expect(openInto(key, sealed, aad, out, 3)).toBe(n);
    expect(out.subarray(3).equals(open(key, sealed, aad))).toBe(true);
    expect(out.subarray(3).equals(pt)).toBe(true);
    for (const at of [0, NONCE_BYTES, sealed.length - TAG_BYTES - 1, sealed.length - 1]) {
      if (at < 0 || (n === 0 && at === NONCE_BYTES)) continue;
      const bad = Buffer.from(sealed);
      bad[at] ^= 1;
      const dst = Buffer.alloc(n, 7);
      expect(() => openInto(key, bad, aad, dst, 0)).toThrow(AuthenticationError);
      expect(dst.every((b) => b === 0)).toBe(true);
    }
    expect(() => openInto(key, sealed, Buffer.from('other'), Buffer.alloc(n), 0)).toThrow(AuthenticationError);
    expect(() => openInto(key, sealed, aad, Buffer.alloc(n), 1)).toThrow(RangeError);
  }
}

function blobs(): void {
  const text = Buffer.from('compressible '.repeat(20_000));
  const noise = randomBytes(100_000);
  for (const pt of [text, noise]) {
    const id = computeBlobId(keys.blobIdKey, pt);
    const stored = sealBlob(keys.blobKey, 'data', id, pt, 3);
    const out = Buffer.alloc(pt.length);
    openBlobInto(keys, 'data', id.toString('hex'), stored, out);
    expect(out.equals(pt)).toBe(true);
    const bad = Buffer.from(stored);
    bad[NONCE_BYTES] ^= 1; // the (encrypted) flag byte
    expect(() => openBlobInto(keys, 'data', id.toString('hex'), bad, Buffer.alloc(pt.length))).toThrow(/does not authenticate/);
    expect(() => openBlobInto(keys, 'tree', id.toString('hex'), stored, Buffer.alloc(pt.length))).toThrow(BlobCorruptError);
    expect(() => openBlobInto(keys, 'data', id.toString('hex'), stored, Buffer.alloc(pt.length + 1))).toThrow(/wrong length|decompress/);
    // Upper-case ids (as a user may type them) are accepted; another id is not.
    openBlobInto(keys, 'data', id.toString('hex').toUpperCase(), stored, Buffer.alloc(pt.length));
    const other = Buffer.from(id);
    other[0] ^= 1;
    expect(() => openBlobInto(keys, 'data', other.toString('hex'), stored, Buffer.alloc(pt.length))).toThrow(BlobCorruptError);
  }
}

describe('openInto / openBlobInto', () => {
  it('round-trips and fails closed (native path when the addon is built)', () => {
    roundTrips();
    blobs();
  });

  it('round-trips and fails closed without the addon (node:crypto path)', () => {
    const file = fileURLToPath(import.meta.url);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { seal, openInto } = await import(${JSON.stringify(new URL('../dist/src/crypto/aead.js', `file://${file}`).href)});
      const { nativeGcm } = await import(${JSON.stringify(new URL('../dist/src/platform/addon.js', `file://${file}`).href)});
      if (nativeGcm() !== null) throw new Error('addon still in use');
      const { randomBytes } = await import('node:crypto');
      const key = randomBytes(32), aad = randomBytes(5);
      for (const n of [1, 2, 70000, 300001]) {
        const pt = randomBytes(n), sealed = seal(key, pt, aad), out = Buffer.alloc(n);
        openInto(key, sealed, aad, out, 0);
        if (!out.equals(pt)) throw new Error('mismatch ' + n);
        sealed[sealed.length - 1] ^= 1;
        const dst = Buffer.alloc(n, 7);
        let failed = false;
        try { openInto(key, sealed, aad, dst, 0); } catch (e) { failed = e.name === 'AuthenticationError'; }
        if (!failed || !dst.every((b) => b === 0)) throw new Error('tamper not detected ' + n);
      }
      console.log('ok');
    `], { env: { ...process.env, COFFER_NO_NATIVE: '1' }, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
  });

  it('the native path is the one tested above whenever the addon loads', () => {
    const r = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', fileURLToPath(new URL('../native/build/Release/coffer_native.node', import.meta.url))], { encoding: 'utf8' });
    if (r.status === 0) expect(nativeGcm()).not.toBeNull();
  });
});
