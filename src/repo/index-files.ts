/** Writing index files: the one place that seals a pack list and stores it, and the batcher that splits many packs into files. */
import { encodeFile } from '../format/file.js';
import { encodeIndex, type IndexedPack } from '../format/index-file.js';
import { plainHash } from '../crypto/hash.js';
import { StorageError, type Backend } from '../storage/backend.js';
import { storageFailure } from './repository.js';

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

/** Blobs per index file written by an IndexBatcher (about 2.5 MB of index file). */
export const BLOBS_PER_INDEX_FILE = 50_000;

/**
 * Lists packs that are already stored in index files of about `maxBlobs`
 * blobs each, for the commands that re-index many packs at once (prune's
 * kept packs, "repair index"). A file is written once the packs added since
 * the last one hold `maxBlobs` blobs, and by flush(). Storage failures come
 * out as CofferErrors (see storageFailure).
 */
export class IndexBatcher {
  private batch: IndexedPack[] = [];
  private blobs = 0;
  /** Names of the index files written so far, in order. */
  readonly written: string[] = [];

  constructor(
    private readonly backend: Backend,
    private readonly metaKey: Buffer,
    private readonly maxBlobs = BLOBS_PER_INDEX_FILE,
  ) {}

  async add(pack: IndexedPack): Promise<void> {
    this.batch.push(pack);
    this.blobs += pack.blobs.length;
    if (this.blobs >= this.maxBlobs) await this.flush();
  }

  /** Writes the packs added since the last index file, if any. */
  async flush(): Promise<void> {
    if (!this.batch.length) return;
    try {
      this.written.push(await writeIndexFile(this.backend, this.metaKey, this.batch));
    } catch (e) {
      throw storageFailure(e);
    }
    this.batch = [];
    this.blobs = 0;
  }
}
