/**
 * Restore's writes, run in the workers right after they open a group of
 * blobs: positional writes into files the main thread has opened (and
 * sized); and, the small-file fast path, a file whose whole content is one
 * blob, in a directory this restore created (or where nothing was found), is
 * created, written and given its metadata here, so the per-file system calls (open, write, chown, chmod,
 * utimensat, close) run on the workers' threads in parallel instead of one
 * after another on the main thread. Anything unexpected (the name exists, a
 * call fails) undoes the file and reports an error code: the main thread then
 * restores that file the ordinary way, from the same plaintext.
 */
import { constants as fsc, openSync, writeSync, ftruncateSync, fchownSync, fchmodSync, closeSync, rmSync } from 'node:fs';
import { constants as osc } from 'node:os';
import { platform } from '../platform/native.js';
import { usableBinding } from '../platform/addon.js';

/** One file to create from one blob's plaintext (its whole content). */
export interface FileTarget {
  /**
   * Raw path bytes as a latin1 string (one char per byte, so names that are
   * not UTF-8 survive; a Buffer would be cloned with the whole 8 KiB pool
   * slab it lives in).
   */
  path: string;
  mode: number;
  /** The mode to create it with; `chmod`: set `mode` afterwards (the umask may have taken bits away, or it is to be chowned). */
  createMode: number;
  chmod: boolean;
  /** Set ownership (restoring as root, when the new file's owner or group is not already right). */
  chown: boolean;
  uid: number;
  gid: number;
  mtimeNs: bigint;
}

/** A positional write into a file the main thread holds open (`fd`), at `pos`; an all-zero blob is skipped (the file is already sized, so it stays a hole). */
export interface PositionalTarget {
  fd: number;
  pos: number;
}

export type WriteTarget = FileTarget | PositionalTarget;

const CREATE = fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW;

const ZEROS = Buffer.alloc(64 * 1024);

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i += ZEROS.length) {
    const n = Math.min(ZEROS.length, b.length - i);
    if (!b.subarray(i, i + n).equals(ZEROS.subarray(0, n))) return false;
  }
  return true;
}

/** The addon's one-call version of writeOne (undefined: an older addon, or none). */
const restoreFile = usableBinding()?.restoreFile;

let errnoNames: Map<number, string> | undefined;
function errnoName(n: number): string {
  errnoNames ??= new Map(Object.entries(osc.errno).map(([k, v]) => [v, k]));
  return errnoNames.get(n) ?? `errno ${n}`;
}

/** Creates one file holding `plain` (all-zero content becomes a hole) with its metadata; throws on any failure, leaving nothing behind. */
async function writeOne(t: FileTarget, plain: Buffer, zero: boolean): Promise<void> {
  if (restoreFile) {
    // Open, write, fchown, fchmod, futimens and close in one call (and no second path walk).
    const err = restoreFile(t.path, plain, zero, t.createMode, t.chmod ? t.mode : -1, t.chown ? t.uid : -1, t.gid, t.mtimeNs);
    if (err !== 0) throw Object.assign(new Error(`cannot create file: ${errnoName(err)}`), { code: errnoName(err) });
    return;
  }
  const p = Buffer.from(t.path, 'latin1');
  const fd = openSync(p, CREATE, t.createMode);
  let made = false;
  try {
    if (zero) ftruncateSync(fd, plain.length);
    else for (let done = 0; done < plain.length; ) done += writeSync(fd, plain, done, plain.length - done, done);
    // The order of Restorer.applyMeta: owner (which clears setuid bits), then mode, then times.
    if (t.chown) fchownSync(fd, t.uid, t.gid);
    if (t.chmod) fchmodSync(fd, t.mode);
    made = true;
  } finally {
    closeSync(fd);
    if (!made) rmSync(p, { force: true });
  }
  try {
    await platform.setTimes(p, t.mtimeNs, t.mtimeNs, false);
  } catch (e) {
    rmSync(p, { force: true });
    throw e;
  }
}

/**
 * For each opened item (plaintexts back to back in `out`, `errors[k]` null
 * when item k authenticated) writes its target files. Returns, per item, an
 * error code per target (null: written) or null for an item without targets.
 */
export async function writeTargets(rawLengths: number[], errors: (string | null)[], out: Buffer, targets: (WriteTarget[] | null)[]): Promise<((string | null)[] | null)[]> {
  const result: ((string | null)[] | null)[] = [];
  let pos = 0;
  for (let k = 0; k < rawLengths.length; k++) {
    const ts = targets[k];
    const raw = rawLengths[k];
    if (!ts || errors[k] !== null) result.push(null);
    else {
      const plain = out.subarray(pos, pos + raw);
      const zero = isZero(plain);
      const codes: (string | null)[] = [];
      for (const t of ts) {
        try {
          if ('fd' in t) {
            if (!zero) for (let done = 0; done < plain.length; ) done += writeSync(t.fd, plain, done, plain.length - done, t.pos + done);
          } else await writeOne(t, plain, zero);
          codes.push(null);
        } catch (e) {
          codes.push((e as NodeJS.ErrnoException).code ?? (e as Error).message);
        }
      }
      result.push(codes);
    }
    pos += raw;
  }
  return result;
}
