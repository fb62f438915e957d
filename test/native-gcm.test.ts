// The addon's AES-256-GCM sealer (used by sealInto for every blob) must give
// exactly what node:crypto gives, and blobs sealed through it must open.
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createPlatform, nativeGcmSeal } from '../dist/src/platform/native.js';
import { open, sealInto, NONCE_BYTES, SEAL_OVERHEAD } from '../dist/src/crypto/aead.js';
import { keyedHash } from '../dist/src/crypto/hash.js';
import { sealBlobInto, openBlobInto } from '../dist/src/format/blob.js';

const hasNative = createPlatform({ native: true }).hasNative;

function reference(key: Buffer, iv: Buffer, aad: Buffer, parts: Buffer[]): Buffer {
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad);
  return Buffer.concat([...parts.map((p) => c.update(p)), c.final(), c.getAuthTag()]);
}

describe.skipIf(!hasNative)('native AES-256-GCM', () => {
  it('is available with the addon (it passed its known-answer test)', () => {
    expect(nativeGcmSeal()).toBeTypeOf('function');
  });

  it('matches node:crypto for one and two parts of many sizes, at any offset', () => {
    const seal = nativeGcmSeal()!;
    for (const [a, b] of [[0, 0], [1, 0], [15, 0], [16, 0], [17, 3], [1000, 1], [4095, 4097], [70_000, 0], [1, 1 << 20]]) {
      const key = randomBytes(32);
      const aad = randomBytes(a % 50);
      const p1 = randomBytes(a);
      const p2 = randomBytes(b);
      const offset = a % 7;
      const out = Buffer.alloc(offset + NONCE_BYTES + a + b + 16 + 3, 0xee);
      randomBytes(NONCE_BYTES).copy(out, offset);
      const n = seal(key, aad, p1, b ? p2 : null, out, offset);
      expect(n).toBe(a + b + 16);
      const want = reference(key, out.subarray(offset + 12, offset + 24), aad, b ? [p1, p2] : [p1]);
      expect(out.subarray(offset + NONCE_BYTES, offset + NONCE_BYTES + n).equals(want)).toBe(true);
      expect(out[offset + NONCE_BYTES + n]).toBe(0xee); // nothing written past the end
    }
  });

  it('refuses an output buffer that is too small and a key that is not 32 bytes', () => {
    const seal = nativeGcmSeal()!;
    expect(() => seal(randomBytes(32), Buffer.alloc(0), Buffer.alloc(10), null, Buffer.alloc(NONCE_BYTES + 10 + 15), 0)).toThrow(/too small/);
    expect(() => seal(randomBytes(16), Buffer.alloc(0), Buffer.alloc(10), null, Buffer.alloc(100), 0)).toThrow(/32 bytes/);
  });

  it('sealInto (which uses it) gives messages that open, and tampering is caught', () => {
    const key = randomBytes(32);
    const aad = Buffer.from('aad');
    const parts = [Buffer.from([1]), randomBytes(3000)];
    const out = Buffer.alloc(5 + SEAL_OVERHEAD + 3001);
    const n = sealInto(key, parts, aad, out, 5);
    expect(n).toBe(SEAL_OVERHEAD + 3001);
    const sealed = out.subarray(5, 5 + n);
    expect(open(key, sealed, aad).equals(Buffer.concat(parts))).toBe(true);
    sealed[40] ^= 1;
    expect(() => open(key, sealed, aad)).toThrow(/authentication failed/);
  });

  it('blobs sealed back to back (compressed, raw and large raw) open to their plaintext', () => {
    const keys = { blobKey: randomBytes(32), blobIdKey: randomBytes(32) };
    const blobs = [Buffer.alloc(5000, 'a'), randomBytes(100), randomBytes(40), randomBytes(200_000), Buffer.alloc(0)];
    const out = Buffer.alloc(blobs.reduce((s, b) => s + b.length + SEAL_OVERHEAD + 1, 0));
    let pos = 0;
    const at: [number, number][] = [];
    for (const b of blobs) {
      const n = sealBlobInto(keys.blobKey, 'data', keyedHash(keys.blobIdKey, b), b, 3, out, pos);
      at.push([pos, n]);
      pos += n;
    }
    expect(at[0][1]).toBeLessThan(5000); // compressed
    blobs.forEach((b, i) => {
      const got = Buffer.alloc(b.length);
      openBlobInto(keys, 'data', keyedHash(keys.blobIdKey, b).toString('hex'), out.subarray(at[i][0], at[i][0] + at[i][1]), got);
      expect(got.equals(b)).toBe(true);
    });
  });
});
