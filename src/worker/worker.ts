/** Piscina worker entry: dispatches tasks to the HotPath and moves buffers back (no copies). */
import { Piscina } from 'piscina';
import { HotPath, type Region, type SealItem, type OpenItem, type WorkerContext } from './tasks.js';

const hot = new HotPath(Piscina.workerData as WorkerContext);

export type Task =
  | { kind: 'hash'; buf: ArrayBuffer; regions: Region[] }
  | { kind: 'seal'; buf: ArrayBuffer; out: ArrayBuffer; items: SealItem[] }
  | { kind: 'open'; buf: ArrayBuffer; out: ArrayBuffer; items: OpenItem[] };

/** Returns `value` to the main thread, transferring `buffers` instead of copying them. */
export function moveWith<T extends object>(value: T, buffers: ArrayBuffer[]): T {
  return Piscina.move({ [Piscina.transferableSymbol]: buffers, [Piscina.valueSymbol]: value } as never) as T;
}

export default function run(task: Task): unknown {
  const buf = new Uint8Array(task.buf);
  switch (task.kind) {
    case 'hash': {
      const results = hot.chunkAndHash(buf, task.regions);
      return moveWith({ buf: task.buf, results }, [task.buf, ...results.map((r) => r.ids.buffer as ArrayBuffer)]);
    }
    case 'seal': {
      const lengths = hot.seal(buf, task.items, Buffer.from(task.out));
      return moveWith({ buf: task.buf, out: task.out, lengths }, [task.buf, task.out]);
    }
    case 'open': {
      const errors = hot.open(buf, task.items, Buffer.from(task.out));
      return moveWith({ buf: task.buf, out: task.out, errors }, [task.buf, task.out]);
    }
  }
}
