/**
 * Encoding of every small repository file (config body, key metadata, index,
 * snapshot, lock):
 *
 *   stored    = seal(metaKey, plaintext, aad = "coffer-file-v1:" || kind)
 *   plaintext = u8 encoding (0 raw, 1 zstd) || u32le n || body' (n bytes) || zero padding
 *
 * The padding brings the stored length to Padmé(length), so file sizes reveal
 * little about how many snapshots, files or blobs they describe.
 */
import { open, seal, AuthenticationError, SEAL_OVERHEAD } from '../crypto/aead.js';
import { compressIfSmaller, decompressExact, frameContentSize } from '../compress.js';
import { padme } from './padding.js';

export type FileKind = 'config' | 'keymeta' | 'index' | 'snapshot' | 'lock' | 'idlist' | 'wostate';

const HEADER = 5;
const MAX_BODY = 1 << 30;

export class FileCorruptError extends Error {
  constructor(kind: FileKind, reason: string) {
    super(`${kind} file ${reason}`);
    this.name = 'FileCorruptError';
  }
}

function aad(kind: FileKind): Buffer {
  return Buffer.from(`coffer-file-v1:${kind}`);
}

/**
 * `prefix`: bytes the caller stores before the sealed file (the ephemeral
 * key box of a file sealed to the owner); the padding then brings the
 * whole object to Padmé.
 */
export function encodeFile(metaKey: Uint8Array, kind: FileKind, body: Uint8Array, prefix = 0): Buffer {
  const z = compressIfSmaller(body, 3);
  const payload = z ?? body;
  const used = HEADER + payload.length;
  const plaintext = Buffer.alloc(padme(prefix + used + SEAL_OVERHEAD) - SEAL_OVERHEAD - prefix);
  plaintext[0] = z ? 1 : 0;
  plaintext.writeUInt32LE(payload.length, 1);
  Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).copy(plaintext, HEADER);
  return seal(metaKey, plaintext, aad(kind));
}

export function decodeFile(metaKey: Uint8Array, kind: FileKind, stored: Uint8Array): Buffer {
  let plain: Buffer;
  try {
    plain = open(metaKey, stored, aad(kind));
  } catch (e) {
    if (e instanceof AuthenticationError) throw new FileCorruptError(kind, 'does not authenticate');
    throw e;
  }
  if (plain.length < HEADER) throw new FileCorruptError(kind, 'is too short');
  const n = plain.readUInt32LE(1);
  if (n > plain.length - HEADER) throw new FileCorruptError(kind, 'has a bad length');
  const payload = plain.subarray(HEADER, HEADER + n);
  if (plain[0] === 0) return payload;
  if (plain[0] !== 1) throw new FileCorruptError(kind, 'has an unknown encoding');
  const size = frameContentSize(payload);
  if (size === null || size > MAX_BODY) throw new FileCorruptError(kind, 'has a bad compressed body');
  try {
    return decompressExact(payload, size);
  } catch {
    throw new FileCorruptError(kind, 'does not decompress');
  }
}

export function encodeJsonFile(metaKey: Uint8Array, kind: FileKind, value: unknown): Buffer {
  return encodeFile(metaKey, kind, Buffer.from(JSON.stringify(value)));
}

export function decodeJsonFile(metaKey: Uint8Array, kind: FileKind, stored: Uint8Array): unknown {
  const body = decodeFile(metaKey, kind, stored);
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new FileCorruptError(kind, 'is not valid JSON');
  }
}
