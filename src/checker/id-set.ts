/**
 * A set of 32-byte blob ids in two flat arrays (the ids back to back, and an
 * open-addressing table of positions), for check's snapshot walk: a lookup
 * is a few array reads and one native compare, where an index-cache query
 * costs a B-tree search through SQLite (~1–5 µs, hundreds of thousands per
 * check). Ids are keyed BLAKE3 outputs, so their first bytes are uniform and
 * serve as the hash.
 */
export class IdSet {
  private readonly ids: Buffer;
  /** Position + 1 of an id in `ids` per slot; 0: empty. */
  private readonly table: Uint32Array;
  private readonly mask: number;

  /** `chunks`: ids back to back (32 bytes each); duplicates are fine. */
  constructor(chunks: Buffer[]) {
    this.ids = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
    if (this.ids.length % 32 !== 0) throw new RangeError('ids must be 32 bytes each');
    const n = this.ids.length / 32;
    let size = 16;
    while (size < n * 2) size *= 2;
    this.table = new Uint32Array(size);
    this.mask = size - 1;
    for (let k = 0; k < n; k++) {
      let slot = this.ids.readUInt32LE(k * 32) & this.mask;
      while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
      this.table[slot] = k + 1;
    }
  }

  get size(): number {
    return this.ids.length / 32;
  }

  /** Whether the 32 bytes of `id` at `offset` are in the set. */
  has(id: Uint8Array, offset = 0): boolean {
    if (id.length < offset + 32) return false;
    let slot = (id[offset] | (id[offset + 1] << 8) | (id[offset + 2] << 16) | (id[offset + 3] << 24)) & this.mask;
    for (;;) {
      const k = this.table[slot];
      if (k === 0) return false;
      if (this.ids.compare(id, offset, offset + 32, (k - 1) * 32, k * 32) === 0) return true;
      slot = (slot + 1) & this.mask;
    }
  }
}
