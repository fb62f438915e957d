/** `--json` status lines for long-running commands (backup, restore), as restic prints them. */
import type { Output } from './context.js';
import type { ProgressState } from './progress.js';

export interface JsonStatus {
  /** Progress callback: emits `{"message_type":"status",...}` at most once per interval (the first at once). */
  (p: ProgressState): void;
  /** Emits the last state if it was held back, so the final numbers always appear before the summary. */
  flush(): void;
}

export function jsonStatus(out: Output, intervalMs = 1000): JsonStatus {
  const start = Date.now();
  let last = -Infinity;
  let held: ProgressState | undefined;
  const emit = (p: ProgressState, now: number) => {
    last = now;
    held = undefined;
    out.emit({
      message_type: 'status',
      seconds_elapsed: Math.round((now - start) / 1000),
      percent_done: p.totalBytes ? Math.min(1, p.bytesDone / p.totalBytes) : 0,
      ...(p.totalFiles !== undefined ? { total_files: p.totalFiles } : {}),
      files_done: p.filesDone,
      ...(p.totalBytes !== undefined ? { total_bytes: p.totalBytes } : {}),
      bytes_done: p.bytesDone,
      error_count: p.errors,
      ...(p.currentFile ? { current_files: [p.currentFile] } : {}),
    });
  };
  const f = ((p: ProgressState) => {
    const now = Date.now();
    if (now - last < intervalMs) held = { ...p };
    else emit(p, now);
  }) as JsonStatus;
  f.flush = () => {
    if (held) emit(held, Date.now());
  };
  return f;
}
