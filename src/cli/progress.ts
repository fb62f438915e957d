/**
 * One status line on a terminal (stderr), redrawn at most a few times a
 * second: elapsed, percent, files, bytes, rate, ETA, current file.
 * Silent when stderr is not a terminal or with --quiet.
 */
import { bytes, duration } from './format.js';

export interface ProgressState {
  filesDone: number;
  bytesDone: number;
  totalFiles?: number;
  totalBytes?: number;
  currentFile?: string;
  errors: number;
}

export class ProgressLine {
  private readonly start = Date.now();
  private last = 0;
  private shown = false;
  readonly enabled: boolean;

  constructor(enabled: boolean) {
    this.enabled = enabled && process.stderr.isTTY === true;
  }

  update(s: ProgressState, force = false): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < 200) return;
    this.last = now;
    const elapsed = now - this.start;
    const rate = elapsed > 0 ? (s.bytesDone / elapsed) * 1000 : 0;
    const parts = [`[${duration(elapsed)}]`];
    if (s.totalBytes) {
      const frac = Math.min(1, s.bytesDone / s.totalBytes);
      parts.push(`${(frac * 100).toFixed(1)}%`);
      parts.push(`${s.filesDone}/${s.totalFiles} files`, `${bytes(s.bytesDone)}/${bytes(s.totalBytes)}`);
      if (rate > 0 && frac < 1) parts.push(`ETA ${duration(((s.totalBytes - s.bytesDone) / rate) * 1000)}`);
    } else {
      parts.push(`${s.filesDone} files`, bytes(s.bytesDone));
    }
    parts.push(`${bytes(rate)}/s`);
    if (s.errors) parts.push(`${s.errors} errors`);
    let line = parts.join('  ');
    const cols = process.stderr.columns ?? 80;
    if (s.currentFile) {
      const room = cols - line.length - 3;
      if (room > 10) line += `  ${s.currentFile.length > room ? '…' + s.currentFile.slice(-(room - 1)) : s.currentFile}`;
    }
    process.stderr.write(`\r\x1b[2K${line.slice(0, cols - 1)}`);
    this.shown = true;
  }

  /** Clears the line so normal output can follow. */
  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
    this.shown = false;
  }
}
