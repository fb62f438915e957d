/**
 * Key references: which keys seal a pack, as recorded per pack in index files
 * (version 2, FORMAT.md §10) and resolved by `Repository.keysForRef`.
 *
 *   empty          epoch 0, the repository's own keys
 *   u8 e           epoch e, the repository's own keys
 *   ephPub[32]     epoch 0, sealed to the owner by a write-only key
 *   u8 e ‖ ephPub  epoch e, sealed to the owner by a write-only key
 */
export interface KeyRef {
  epoch: number;
  /** Set for packs written with a write-only key: that session's ephemeral public key. */
  ephPub?: Buffer;
}

export function encodeKeyRef(r: KeyRef): Buffer | undefined {
  if (!Number.isInteger(r.epoch) || r.epoch < 0 || r.epoch > 255) throw new RangeError('key epoch must be 0–255');
  const e = r.epoch ? [Buffer.from([r.epoch])] : [];
  if (r.ephPub) return Buffer.concat([...e, r.ephPub]);
  return e.length ? e[0] : undefined;
}

export function decodeKeyRef(b: Buffer | undefined): KeyRef {
  if (!b || b.length === 0) return { epoch: 0 };
  if (b.length === 1) return { epoch: b[0] };
  if (b.length === 32) return { epoch: 0, ephPub: b };
  if (b.length === 33) return { epoch: b[0], ephPub: b.subarray(1) };
  throw new RangeError('bad key reference');
}

/** Lengths a key reference may have in an index file. */
export const KEY_REF_LENGTHS = [0, 1, 32, 33];
