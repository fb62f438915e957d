/** Writing index files: the one place that seals a pack list and stores it. */
import { encodeFile } from '../format/file.js';
import { encodeIndex, type IndexedPack } from '../format/index-file.js';
import { plainHash } from '../crypto/hash.js';
import { StorageError, type Backend } from '../storage/backend.js';

/**
 * Seals an index file listing `packs`, stores it under the hash of its
 * bytes, and returns that name. `exists` counts as done: a name is the hash
 * of the stored bytes, so an object already there holds the same file (a
 * write whose answer was lost).
 */
export async function writeIndexFile(backend: Backend, metaKey: Buffer, packs: IndexedPack[]): Promise<string> {
  const stored = encodeFile(metaKey, 'index', encodeIndex(packs));
  const name = plainHash(stored).toString('hex');
  try {
    await backend.write({ type: 'index', name }, stored);
  } catch (e) {
    if (!(e instanceof StorageError && e.kind === 'exists')) throw e;
  }
  return name;
}
