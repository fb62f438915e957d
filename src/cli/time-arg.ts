/**
 * Date/time arguments (find --oldest/--newest), in restic's formats:
 * "2006-01-02", "2006-01-02 15:04", "2006-01-02 15:04:05", optionally
 * followed by a zone offset " -0700"; the same with "02.01.2006" for the
 * date; and ISO 8601 ("2006-01-02T15:04:05Z", "…+02:00"). Without a zone the
 * local time zone applies.
 */
import { CofferError } from '../errors.js';

const DATE = String.raw`(?:(\d{4})-(\d{2})-(\d{2})|(\d{2})\.(\d{2})\.(\d{4}))`;
const TIME = String.raw`(?:[ T](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?`;
const ZONE = String.raw`(?:\s*(Z|[+-]\d{2}:?\d{2}))?`;
const FORMAT = new RegExp(`^${DATE}${TIME}${ZONE}$`);

/** Parses a date/time argument into milliseconds since the epoch; `name` is the option, for the message. */
export function parseTimeArg(s: string, name: string): number {
  const m = FORMAT.exec(s.trim());
  const bad = () => new CofferError('INVALID_ARGUMENT', `${name}: "${s}" is not a date/time (examples: 2026-01-31, "2026-01-31 14:30", "2026-01-31 14:30:00 +0100", 31.01.2026)`);
  if (!m) throw bad();
  const year = Number(m[1] ?? m[6]);
  const month = Number(m[2] ?? m[5]);
  const day = Number(m[3] ?? m[4]);
  const hour = Number(m[7] ?? 0);
  const minute = Number(m[8] ?? 0);
  const second = Number(m[9] ?? 0);
  const ms = m[10] ? Number(m[10].slice(0, 3).padEnd(3, '0')) : 0;
  const zone = m[11];
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) throw bad();
  // The day must exist in that month (no February 30).
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCDate() !== day) throw bad();
  if (zone === undefined) return new Date(year, month - 1, day, hour, minute, second, ms).getTime();
  let offsetMin = 0;
  if (zone !== 'Z') {
    const z = /^([+-])(\d{2}):?(\d{2})$/.exec(zone)!;
    if (Number(z[3]) > 59) throw bad();
    offsetMin = (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3]));
  }
  return Date.UTC(year, month - 1, day, hour, minute, second, ms) - offsetMin * 60_000;
}
