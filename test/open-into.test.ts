import { describe, it, expect } from 'vitest';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { seal, open, openInto, nativeAesGcm, AuthenticationError, NONCE_BYTES, TAG_BYTES } from '../dist/src/crypto/aead.js';
import { sealBlob, openBlobInto, computeBlobId, BlobCorruptError } from '../dist/src/format/blob.js';

// Blob opening decrypts into the caller's buffer: with the native addon in
// one OpenSSL call (aesGcmStart/aesGcmFinish), without it through node:crypto
// in pieces. Both must agree with `open` and fail closed the same way.

const key = randomBytes(32);
const keys = { blobKey: randomBytes(32), blobIdKey: randomBytes(32) };

function roundTrips(): void {
  for (const n of [0, 1, 15, 16, 17, 70_000, 300_001]) {
    const pt = randomBytes(n);
    const aad = randomBytes(9);
    const sealed = seal(key, pt, aad);
    const out = Buffer.alloc(Math.max(0, n - 1));
    let head: Buffer | undefined;
    if (n === 0) {
      expect(() => openInto(key, sealed, aad, 1, () => out)).toThrow(AuthenticationError);
      openInto(key, sealed, aad, 0, () => Buffer.alloc(0));
      continue;
    }
    openInto(key, sealed, aad, 1, (h) => {
      head = Buffer.from(h);
      return out;
    });
    expect(Buffer.concat([head!, out]).equals(open(key, sealed, aad))).toBe(true);
    for (const at of [0, NONCE_BYTES, sealed.length - TAG_BYTES - 1, sealed.length - 1]) {
      const bad = Buffer.from(sealed);
      bad[at] ^= 1;
      const dst = Buffer.alloc(n - 1, 7);
      expect(() => openInto(key, bad, aad, 1, () => dst)).toThrow(AuthenticationError);
      expect(dst.every((b) => b === 0)).toBe(true);
    }
    expect(() => openInto(key, sealed, Buffer.from('other'), 1, () => Buffer.alloc(n - 1))).toThrow(AuthenticationError);
    expect(() => openInto(key, sealed, aad, 1, () => Buffer.alloc(n))).toThrow(RangeError);
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
  }
}

describe('openInto / openBlobInto', () => {
  it('the native addon provides the AES-GCM open-into here', () => {
    expect(nativeAesGcm()).toBeDefined();
  });

  it('round-trips and fails closed (native path)', () => {
    roundTrips();
    blobs();
  });

  it('round-trips and fails closed without the addon (node:crypto path)', () => {
    const file = fileURLToPath(import.meta.url);
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
      const { seal, openInto, nativeAesGcm } = await import(${JSON.stringify(new URL('../dist/src/crypto/aead.js', `file://${file}`).href)});
      if (nativeAesGcm() !== undefined) throw new Error('addon still in use');
      const { randomBytes } = await import('node:crypto');
      const key = randomBytes(32), aad = randomBytes(5);
      for (const n of [1, 2, 70000, 300001]) {
        const pt = randomBytes(n), sealed = seal(key, pt, aad), out = Buffer.alloc(n - 1);
        let head;
        openInto(key, sealed, aad, 1, (h) => { head = Buffer.from(h); return out; });
        if (!Buffer.concat([head, out]).equals(pt)) throw new Error('mismatch ' + n);
        sealed[sealed.length - 1] ^= 1;
        const dst = Buffer.alloc(n - 1, 7);
        let failed = false;
        try { openInto(key, sealed, aad, 1, () => dst); } catch (e) { failed = e.name === 'AuthenticationError'; }
        if (!failed || !dst.every((b) => b === 0)) throw new Error('tamper not detected ' + n);
      }
      console.log('ok');
    `], { env: { ...process.env, COFFER_NO_NATIVE: '1' }, encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('ok');
  });
});
