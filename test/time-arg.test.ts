/** Date/time arguments (find --oldest/--newest): restic's formats, ISO 8601, local time without a zone. */
import { describe, expect, it } from 'vitest';
import { parseTimeArg } from '../dist/src/cli/time-arg.js';

describe('parseTimeArg', () => {
  it('reads the restic formats and ISO 8601, with a zone as given and without one in local time', () => {
    const utc = Date.UTC(2026, 0, 31, 14, 30, 5);
    expect(parseTimeArg('2026-01-31 14:30:05 +0000', 'x')).toBe(utc);
    expect(parseTimeArg('2026-01-31 15:30:05 +0100', 'x')).toBe(utc);
    expect(parseTimeArg('2026-01-31 09:30:05 -0500', 'x')).toBe(utc);
    expect(parseTimeArg('31.01.2026 14:30:05 +0000', 'x')).toBe(utc);
    expect(parseTimeArg('2026-01-31T14:30:05Z', 'x')).toBe(utc);
    expect(parseTimeArg('2026-01-31T16:30:05+02:00', 'x')).toBe(utc);
    expect(parseTimeArg('2026-01-31T14:30:05.250Z', 'x')).toBe(utc + 250);
    expect(parseTimeArg('2026-01-31', 'x')).toBe(new Date(2026, 0, 31).getTime());
    expect(parseTimeArg('2026-01-31 14:30', 'x')).toBe(new Date(2026, 0, 31, 14, 30).getTime());
    expect(parseTimeArg('31.01.2026 14:30:05', 'x')).toBe(new Date(2026, 0, 31, 14, 30, 5).getTime());
    expect(parseTimeArg('2024-02-29', 'x')).toBe(new Date(2024, 1, 29).getTime());
  });

  it('refuses what is not a date/time, naming the option (exit 2)', () => {
    for (const bad of ['', 'yesterday', '2026-1-31', '2026-02-30', '2025-02-29', '2026-13-01', '2026-01-31 24:00', '2026-01-31 12:60', '31/01/2026', '2026-01-31 12:00 +01:75', '1706700000']) {
      expect(() => parseTimeArg(bad, '--oldest'), bad).toThrow(expect.objectContaining({ code: 'INVALID_ARGUMENT', message: expect.stringContaining('--oldest') }));
    }
  });
});
