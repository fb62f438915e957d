/**
 * Start-up timing marks, for measuring where a command's fixed cost goes.
 * Recorded only when COFFER_TIMINGS=1 (nothing is kept otherwise); the CLI
 * prints them to stderr when it exits. Names only: never a value.
 */
const enabled = process.env.COFFER_TIMINGS === '1';
const marks: { name: string; ms: number; cpuMs: number }[] = [];

/** Notes that `name` was reached: milliseconds since the process started, and the process's CPU time so far. */
export function mark(name: string): void {
  if (!enabled) return;
  const c = process.cpuUsage();
  marks.push({ name, ms: performance.now(), cpuMs: (c.user + c.system) / 1000 });
}

/** The marks recorded so far (and forgets them). */
export function takeMarks(): { name: string; ms: number; cpuMs: number }[] {
  return marks.splice(0);
}
