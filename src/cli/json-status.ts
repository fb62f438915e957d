/** `--json` status lines for long-running commands (backup, restore), as restic prints them. */
import type { Output } from './context.js';
import type { ProgressState } from './progress.js';

/** Returns a progress callback that emits `{"message_type":"status",...}` lines at most once a second (and always the first). */
export function jsonStatus(out: Output, intervalMs = 1000): (p: ProgressState) => void {
  const start = Date.now();
  let last = -Infinity;
  return (p) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
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
}
