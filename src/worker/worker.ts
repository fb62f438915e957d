/** Piscina worker entry: dispatches tasks to the HotPath and moves buffers back (no copies). */
import { readSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Piscina } from 'piscina';
import { HotPath, type Region, type SealItem, type OpenItem, type PackCheck } from './tasks.js';
import { readSharedContext } from './context.js';
import { writeTargets, type WriteTarget } from './write-files.js';

/**
 * V8's gc(), taken from a fresh context while --expose-gc is briefly on (the
 * flag is process-wide and a worker's execArgv cannot carry V8 flags); used
 * for young-generation collections while verifying packs (see HotPath).
 * Undefined if this V8 does not allow it: then nothing is collected early.
 */
function youngCollector(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as ((o?: { type: string }) => void) | undefined;
    setFlagsFromString('--no-expose-gc');
    return typeof gc === 'function' ? () => gc({ type: 'minor' }) : undefined;
  } catch {
    return undefined;
  }
}

const collect = youngCollector();
let hotPath: HotPath | undefined;

/**
 * The HotPath, made at the first task: the thread may have started before
 * the keys existed (see context.ts); the pool writes them before sending any
 * task, so a task without them is a bug, and fails.
 */
function hot(): HotPath {
  if (hotPath) return hotPath;
  const ctx = readSharedContext(Piscina.workerData as SharedArrayBuffer);
  if (!ctx) throw new Error('worker context missing (no keys were given to the pool)');
  return (hotPath = new HotPath(ctx, collect));
}

export type Task =
  | { kind: 'hash'; buf: ArrayBuffer; regions: Region[] }
  | { kind: 'hashSeal'; buf: ArrayBuffer; out: ArrayBuffer; regions: Region[] }
  | { kind: 'readHash'; buf: ArrayBuffer; fd: number; pos: number; filled: number }
  | { kind: 'seal'; buf: ArrayBuffer; out: ArrayBuffer; items: SealItem[]; probe?: boolean }
  | { kind: 'open'; buf: ArrayBuffer; out: ArrayBuffer; items: OpenItem[]; key?: Uint8Array }
  | { kind: 'openWrite'; buf: ArrayBuffer; out: ArrayBuffer; items: OpenItem[]; targets: (WriteTarget[] | null)[]; key?: Uint8Array }
  | { kind: 'checkPack'; buf: ArrayBuffer; length: number; check: PackCheck };

/** Returns `value` to the main thread, transferring `buffers` instead of copying them. */
export function moveWith<T extends object>(value: T, buffers: ArrayBuffer[]): T {
  return Piscina.move({ [Piscina.transferableSymbol]: buffers, [Piscina.valueSymbol]: value } as never) as T;
}

export default function run(task: Task): unknown {
  if (task.kind === 'openWrite') return openWrite(task);
  const buf = new Uint8Array(task.buf);
  switch (task.kind) {
    case 'hash': {
      const results = hot().chunkAndHash(buf, task.regions);
      return moveWith({ buf: task.buf, results }, [task.buf, ...results.map((r) => r.ids.buffer as ArrayBuffer)]);
    }
    case 'hashSeal': {
      const { results, sealed } = hot().hashSeal(buf, task.regions, Buffer.from(task.out));
      return moveWith({ buf: task.buf, out: task.out, results, sealed }, [task.buf, task.out, ...results.map((r) => r.ids.buffer as ArrayBuffer)]);
    }
    case 'readHash': {
      // Reading here keeps large files' bytes off the main thread, which
      // walks the tree and reads small files meanwhile.
      let filled = task.filled;
      let pos = task.pos;
      let eof = false;
      try {
        while (filled < buf.length && !eof) {
          // A negative position reads sequentially (a pipe such as standard input).
          const n = readSync(task.fd, buf, filled, buf.length - filled, task.pos < 0 ? null : pos);
          if (n === 0) eof = true;
          filled += n;
          pos += n;
        }
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        return moveWith({ buf: task.buf, error: code ?? (e as Error).message, bytesRead: 0, eof: false, results: [] }, [task.buf]);
      }
      const results = hot().chunkAndHash(buf, [{ start: 0, end: filled, eof }]);
      return moveWith({ buf: task.buf, bytesRead: pos - task.pos, eof, results }, [task.buf, ...results.map((r) => r.ids.buffer as ArrayBuffer)]);
    }
    case 'seal': {
      const lengths = hot().seal(buf, task.items, Buffer.from(task.out), task.probe === true);
      return moveWith({ buf: task.buf, out: task.out, lengths }, [task.buf, task.out]);
    }
    case 'open': {
      const errors = hot().open(buf, task.items, Buffer.from(task.out), task.key);
      return moveWith({ buf: task.buf, out: task.out, errors }, [task.buf, task.out]);
    }
    case 'checkPack':
      return hot().checkPack(buf.subarray(0, task.length), task.check).then((r) => moveWith({ buf: task.buf, ...r }, r.trees ? [task.buf, r.trees] : [task.buf]));
  }
}

async function openWrite(task: Extract<Task, { kind: 'openWrite' }>): Promise<unknown> {
  const out = Buffer.from(task.out);
  const buf = new Uint8Array(task.buf);
  const errors: (string | null)[] = [];
  const written: ((string | null)[] | null)[] = [];
  // Item by item: each plaintext is written while it is still in the CPU's
  // cache (restoring `big`, 1 MiB blobs, the copy into the page cache is the
  // largest cost), not after the whole group (4 MiB) has been opened.
  let pos = 0;
  for (let k = 0; k < task.items.length; k++) {
    const raw = task.items[k].rawLength;
    const plain = out.subarray(pos, Math.min(out.length, pos + raw));
    const [err] = hot().open(buf, [task.items[k]], plain, task.key);
    errors.push(err);
    const [w] = await writeTargets([raw], [err], plain, [task.targets[k]]);
    written.push(w);
    pos += raw;
  }
  return moveWith({ buf: task.buf, out: task.out, errors, written }, [task.buf, task.out]);
}
