/**
 * Recovery codes (docs/FORMAT.md §6.1): round trips, reader leniency, and that
 * the checksum catches every single-character substitution and every adjacent
 * transposition of a fixed code (deterministic: the code is the vector's).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeRecoveryCode, encodeRecoveryCode, newRecoveryCode, RecoveryCodeError, RECOVERY_ENTROPY_BYTES } from '../dist/src/crypto/recovery.js';
import { ROOT } from './helpers.js';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const V = JSON.parse(readFileSync(path.join(ROOT, 'fixtures', 'vectors.json'), 'utf8')).recoveryKey as { code: string; entropy: string };

function reason(code: string): string | undefined {
  try {
    decodeRecoveryCode(code);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(RecoveryCodeError);
    return (e as RecoveryCodeError).reason;
  }
}

describe('recovery codes', () => {
  it('round-trip random entropy; codes are 9 groups of 4 from the Crockford alphabet', () => {
    for (let i = 0; i < 200; i++) {
      const e = randomBytes(RECOVERY_ENTROPY_BYTES);
      const c = encodeRecoveryCode(e);
      expect(c).toMatch(/^([0-9A-HJKMNP-TV-Z]{4}-){8}[0-9A-HJKMNP-TV-Z]{4}$/);
      expect(decodeRecoveryCode(c).equals(e)).toBe(true);
    }
    const { code, entropy } = newRecoveryCode();
    expect(entropy).toHaveLength(20);
    expect(decodeRecoveryCode(code).equals(entropy)).toBe(true);
    expect(() => encodeRecoveryCode(Buffer.alloc(16))).toThrow(RangeError);
  });

  it('reads lower case, spaces, no separators, and O/I/L as 0/1/1', () => {
    const e = Buffer.from(V.entropy, 'hex');
    const variants = [V.code.toLowerCase(), V.code.replace(/-/g, ''), V.code.replace(/-/g, ' '), ` ${V.code}\n`, V.code.replace(/0/g, 'O').replace(/1/g, 'l')];
    for (const v of variants) expect(decodeRecoveryCode(v).equals(e), v).toBe(true);
  });

  it('every single-character substitution and adjacent transposition is a checksum mismatch', () => {
    const chars = V.code.replace(/-/g, '');
    let tried = 0;
    for (let i = 0; i < chars.length; i++) {
      for (const c of ALPHABET) {
        if (c === chars[i]) continue;
        expect(reason(chars.slice(0, i) + c + chars.slice(i + 1)), `position ${i} → ${c}`).toBe('checksum');
        tried++;
      }
      if (i + 1 < chars.length && chars[i] !== chars[i + 1]) {
        expect(reason(chars.slice(0, i) + chars[i + 1] + chars[i] + chars.slice(i + 2))).toBe('checksum');
        tried++;
      }
    }
    expect(tried).toBeGreaterThan(1100);
  });

  it('wrong length or a character outside the alphabet is "malformed", and the message never echoes the code', () => {
    for (const bad of [V.code.slice(0, -1), V.code + 'A', 'U' + V.code.slice(1), V.code.replace('-', '_'), '']) {
      expect(reason(bad), bad).toBe('malformed');
    }
    try {
      decodeRecoveryCode('U' + V.code.slice(1));
    } catch (e) {
      expect((e as Error).message).not.toContain(V.code.slice(1, 9));
      expect((e as Error).message).toMatch(/character 1/);
    }
  });
});
