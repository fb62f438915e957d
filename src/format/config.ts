/**
 * The `config` file: an 8-byte plaintext magic (so a tool can tell a coffer
 * repository without any key) followed by the sealed JSON config.
 */
import type { ChunkerParams } from '../chunker/fastcdc.js';
import { decodeJsonFile, encodeJsonFile } from './file.js';

export const CONFIG_MAGIC = Buffer.from('COFFER\x00\x01', 'latin1');
export const FORMAT_VERSION = 1;

export interface RepoConfig {
  version: number;
  /** Random 32-byte repository id, hex. Names the local cache directory. */
  id: string;
  chunker: ChunkerParams;
  /** zstd level for blobs; 0 disables compression. */
  compressionLevel: number;
  /** Target pack size in bytes. */
  packSize: number;
}

export function hasConfigMagic(b: Uint8Array): boolean {
  return b.length >= CONFIG_MAGIC.length && CONFIG_MAGIC.equals(b.subarray(0, CONFIG_MAGIC.length));
}

export function encodeConfig(metaKey: Uint8Array, c: RepoConfig): Buffer {
  return Buffer.concat([CONFIG_MAGIC, encodeJsonFile(metaKey, 'config', c)]);
}

export function decodeConfig(metaKey: Uint8Array, stored: Buffer): RepoConfig {
  const c = decodeJsonFile(metaKey, 'config', stored.subarray(CONFIG_MAGIC.length)) as RepoConfig;
  const ok =
    c &&
    c.version === FORMAT_VERSION &&
    typeof c.id === 'string' &&
    /^[0-9a-f]{64}$/.test(c.id) &&
    c.chunker &&
    [c.chunker.minSize, c.chunker.avgSize, c.chunker.maxSize].every((n) => Number.isSafeInteger(n) && n > 0) &&
    Number.isSafeInteger(c.compressionLevel) &&
    Number.isSafeInteger(c.packSize) &&
    c.packSize > 0;
  if (!ok) throw new RangeError('config has unsupported contents');
  return c;
}
