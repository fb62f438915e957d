/**
 * Snapshot times as restic writes them: the local wall-clock time with its
 * zone offset ("2026-12-07T23:10:05.123+01:00"), so that retention can count
 * days, weeks and months in the zone the snapshot was taken in, whatever the
 * zone of the machine that runs `forget`.
 */

const pad = (n: number, w = 2) => String(Math.abs(n)).padStart(w, '0');

/**
 * `d` as local time with the zone offset; "Z" when the offset is zero.
 * @example
 * ```ts
 * isoWithOffset(new Date()); // "2026-12-07T23:10:05.123+01:00"
 * ```
 */
export function isoWithOffset(d: Date): string {
  const off = -d.getTimezoneOffset();
  const wall = new Date(d.getTime() + off * 60_000);
  const base = wall.toISOString().slice(0, -1); // "YYYY-MM-DDTHH:MM:SS.mmm"
  if (off === 0) return `${base}Z`;
  return `${base}${off > 0 ? '+' : '-'}${pad(Math.trunc(off / 60))}:${pad(off % 60)}`;
}

/**
 * The zone offset (minutes east of UTC) a time string records: 0 for "Z",
 * ±hh:mm as written; a string without one is local time, so the machine's
 * offset at that instant.
 */
export function recordedOffsetMinutes(iso: string): number {
  const m = /(?:Z|([+-])(\d{2}):?(\d{2}))$/i.exec(iso.trim());
  if (m && m[1]) return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  if (m) return 0;
  return -new Date(Date.parse(iso)).getTimezoneOffset();
}

/** Orders time strings by the instant they name (strings with different offsets do not sort as text). */
export function compareTimes(a: string, b: string): number {
  return Date.parse(a) - Date.parse(b);
}
