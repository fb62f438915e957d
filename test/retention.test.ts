/** The retention policy module over hand-made time series (UTC calendar). */
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { applyPolicy, applyPolicyGrouped, isEmptyPolicy, parseDuration, parseGroupBy, type RetentionPolicy } from '../dist/src/lifecycle/retention.js';
import { policyFrom, type ForgetOptions } from '../dist/src/cli/cmd-forget.js';
import { ROOT } from './helpers.js';
import { compareTimes, isoWithOffset, recordedOffsetMinutes } from '../dist/src/util/time.js';

let n = 0;
function snap(time: string, extra: { hostname?: string; paths?: string[]; tags?: string[] } = {}) {
  n++;
  return { id: n.toString(16).padStart(64, '0'), time, hostname: extra.hostname ?? 'h', paths: extra.paths ?? ['/p'], tags: extra.tags ?? [] };
}

/** One snapshot per day at 12:00 for `days` days ending on 2026-03-31, plus an extra one at 20:00 on some days. */
function daily(days: number) {
  const out = [];
  const end = Date.UTC(2026, 2, 31, 12);
  for (let i = 0; i < days; i++) {
    out.push(snap(new Date(end - i * 86400_000).toISOString()));
    if (i % 3 === 0) out.push(snap(new Date(end - i * 86400_000 + 8 * 3600_000).toISOString()));
  }
  return out;
}

const kept = (d: { snapshot: { time: string }; keep: boolean }[]) => d.filter((x) => x.keep).map((x) => x.snapshot.time.slice(0, 16));

describe('retention policy', () => {
  it('keep-last keeps the n newest', () => {
    const s = daily(5);
    const d = applyPolicy(s, { last: 3 }, { utc: true });
    expect(kept(d)).toEqual(['2026-03-31T20:00', '2026-03-31T12:00', '2026-03-30T12:00']);
    expect(d.filter((x) => x.keep).every((x) => x.reasons.includes('last snapshot'))).toBe(true);
    expect(d.filter((x) => !x.keep).every((x) => x.reasons.length === 0)).toBe(true);
  });

  it('keep-daily keeps the newest snapshot of each of the last n days', () => {
    const d = applyPolicy(daily(10), { daily: 4 }, { utc: true });
    expect(kept(d)).toEqual(['2026-03-31T20:00', '2026-03-30T12:00', '2026-03-29T12:00', '2026-03-28T20:00']);
  });

  it('keeps the oldest snapshot too when a rule has periods left', () => {
    const d = applyPolicy(daily(2), { daily: 7 }, { utc: true });
    // days: 31 (20:00 and 12:00), 30 (12:00): the 30th is both a daily and the oldest
    expect(kept(d)).toEqual(['2026-03-31T20:00', '2026-03-30T12:00']);
    const same = [snap('2026-01-05T10:00:00Z'), snap('2026-01-05T09:00:00Z')];
    const d2 = applyPolicy(same, { daily: 3 }, { utc: true });
    expect(d2.map((x) => x.reasons)).toEqual([['daily snapshot'], ['oldest daily snapshot']]);
  });

  it('keep-weekly uses ISO weeks (Monday start, week of the Thursday)', () => {
    // 2026-01-04 is a Sunday (ISO week 2026-W01); 2026-01-05 is Monday of W02; 2025-12-29 Monday of W01.
    const s = [snap('2026-01-05T08:00:00Z'), snap('2026-01-04T08:00:00Z'), snap('2025-12-29T08:00:00Z'), snap('2025-12-28T08:00:00Z')];
    const d = applyPolicy(s, { weekly: 3 }, { utc: true });
    expect(kept(d)).toEqual(['2026-01-05T08:00', '2026-01-04T08:00', '2025-12-28T08:00']);
  });

  it('keep-monthly and keep-yearly', () => {
    const s = [snap('2026-03-02T00:00:00Z'), snap('2026-03-01T00:00:00Z'), snap('2026-02-15T00:00:00Z'), snap('2025-12-31T00:00:00Z'), snap('2024-06-01T00:00:00Z'), snap('2024-01-01T00:00:00Z')];
    expect(kept(applyPolicy(s, { monthly: 2 }, { utc: true }))).toEqual(['2026-03-02T00:00', '2026-02-15T00:00']);
    expect(kept(applyPolicy(s, { yearly: 10 }, { utc: true }))).toEqual(['2026-03-02T00:00', '2025-12-31T00:00', '2024-06-01T00:00', '2024-01-01T00:00']);
    const d = applyPolicy(s, { yearly: 10 }, { utc: true });
    expect(d.at(-1)!.reasons).toEqual(['oldest yearly snapshot']);
  });

  it('keep-hourly; "unlimited" (-1) keeps one per period without limit', () => {
    const s = [snap('2026-01-01T10:50:00Z'), snap('2026-01-01T10:10:00Z'), snap('2026-01-01T09:30:00Z'), snap('2026-01-01T07:00:00Z'), snap('2026-01-01T07:00:00Z')];
    expect(kept(applyPolicy(s, { hourly: 2 }, { utc: true }))).toEqual(['2026-01-01T10:50', '2026-01-01T09:30']);
    expect(applyPolicy(s, { hourly: -1 }, { utc: true }).filter((x) => x.keep)).toHaveLength(4);
  });

  it('keep-within is relative to the newest snapshot of the group, calendar-aware', () => {
    const s = [snap('2026-03-31T12:00:00Z'), snap('2026-03-01T12:00:01Z'), snap('2026-02-28T12:00:00Z'), snap('2025-03-31T12:00:00Z')];
    expect(kept(applyPolicy(s, { within: parseDuration('1m') }, { utc: true }))).toEqual(['2026-03-31T12:00']);
    // 1 month before March 31 is "February 31" = March 3 (like Go's AddDate).
    expect(kept(applyPolicy(s, { within: parseDuration('1m2d') }, { utc: true }))).toEqual(['2026-03-31T12:00', '2026-03-01T12:00']);
    expect(kept(applyPolicy(s, { within: parseDuration('1y') }, { utc: true }))).toEqual(['2026-03-31T12:00', '2026-03-01T12:00', '2026-02-28T12:00']);
    expect(applyPolicy(s, { within: parseDuration('1y') }, { utc: true })[0].reasons).toEqual(['within 1y']);
  });

  it('keep-tag keeps snapshots that carry all tags of a list', () => {
    const s = [snap('2026-01-03T00:00:00Z', { tags: ['a'] }), snap('2026-01-02T00:00:00Z', { tags: ['a', 'b'] }), snap('2026-01-01T00:00:00Z', { tags: ['b'] })];
    expect(kept(applyPolicy(s, { tags: [['a', 'b']] }, { utc: true }))).toEqual(['2026-01-02T00:00']);
    expect(kept(applyPolicy(s, { tags: [['a'], ['b']] }, { utc: true }))).toHaveLength(3);
  });

  it('combines rules: kept by any rule, reasons listed', () => {
    const d = applyPolicy(daily(30), { last: 2, daily: 3, weekly: 2, tags: [['x']] }, { utc: true });
    expect(d[0].reasons).toEqual(['last snapshot', 'daily snapshot', 'weekly snapshot']);
    // 2026-03-31 is a Tuesday: the previous ISO week ends on Sunday the 29th, whose snapshot is also a daily one.
    expect(kept(d)).toEqual(['2026-03-31T20:00', '2026-03-31T12:00', '2026-03-30T12:00', '2026-03-29T12:00']);
    expect(d.find((x) => x.snapshot.time.startsWith('2026-03-29'))!.reasons).toEqual(['daily snapshot', 'weekly snapshot']);
  });

  it('groups by host and paths by default, each group on its own', () => {
    const s = [
      snap('2026-01-03T00:00:00Z', { hostname: 'a' }),
      snap('2026-01-02T00:00:00Z', { hostname: 'a' }),
      snap('2026-01-03T00:00:00Z', { hostname: 'b' }),
      snap('2026-01-01T00:00:00Z', { hostname: 'b' }),
      snap('2026-01-01T00:00:00Z', { hostname: 'b', paths: ['/q'] }),
    ];
    const groups = applyPolicyGrouped(s, { last: 1 }, parseGroupBy('host,paths'), { utc: true });
    expect(groups).toHaveLength(3);
    expect(groups.map((g) => g.decisions.filter((d) => d.keep).length)).toEqual([1, 1, 1]);
    const one = applyPolicyGrouped(s, { last: 1 }, parseGroupBy(''), { utc: true });
    expect(one).toHaveLength(1);
    expect(() => parseGroupBy('host,color')).toThrow(/group-by/);
  });

  it('keep-within-daily (and -hourly, -weekly…): the newest of each period within the duration of the newest snapshot, no count', () => {
    const s = daily(10); // 31st 20:00 and 12:00, 30th, 29th, 28th 20:00 and 12:00, …
    const d = applyPolicy(s, { withinDaily: parseDuration('3d') }, { utc: true });
    // From March 28 20:00 (exclusive): the 31st (newest of the day), the 30th and the 29th.
    expect(kept(d)).toEqual(['2026-03-31T20:00', '2026-03-30T12:00', '2026-03-29T12:00']);
    expect(d[0].reasons).toEqual(['daily within 3d']);
    expect(kept(applyPolicy(s, { withinDaily: parseDuration('3d1h') }, { utc: true }))).toEqual(['2026-03-31T20:00', '2026-03-30T12:00', '2026-03-29T12:00', '2026-03-28T20:00']);
    const h = applyPolicy(s, { withinHourly: parseDuration('1d') }, { utc: true });
    expect(kept(h)).toEqual(['2026-03-31T20:00', '2026-03-31T12:00']);
    expect(h.map((x) => x.reasons.join())).toContain('hourly within 1d');
    // Weekly, monthly, yearly: one per period, however many snapshots.
    expect(kept(applyPolicy(daily(60), { withinMonthly: parseDuration('1y') }, { utc: true }))).toEqual(['2026-03-31T20:00', '2026-02-28T12:00', '2026-01-31T12:00']);
    // Yearly: the newest of 2026, and the oldest (in range, so kept as well).
    expect(applyPolicy(daily(60), { withinYearly: parseDuration('10y') }, { utc: true }).filter((x) => x.keep).map((x) => x.reasons)).toEqual([['yearly within 10y'], ['oldest yearly within 10y']]);
    expect(kept(applyPolicy(daily(20), { withinWeekly: parseDuration('10d') }, { utc: true }))).toEqual(['2026-03-31T20:00', '2026-03-29T12:00', '2026-03-22T20:00']);
  });

  it('keep-within-*: the oldest snapshot is kept too when it lies within the duration (restic ≥ 0.16)', () => {
    const s = [snap('2026-01-05T10:00:00Z'), snap('2026-01-05T09:00:00Z')];
    expect(applyPolicy(s, { withinDaily: parseDuration('2d') }, { utc: true }).map((x) => x.reasons)).toEqual([['daily within 2d'], ['oldest daily within 2d']]);
    // Outside the duration it goes.
    expect(kept(applyPolicy([snap('2026-01-05T10:00:00Z'), snap('2026-01-05T08:00:00Z')], { withinDaily: parseDuration('1h') }, { utc: true }))).toEqual(['2026-01-05T10:00']);
    expect(kept(applyPolicy([...s, snap('2025-01-05T09:00:00Z')], { withinDaily: parseDuration('2d') }, { utc: true }))).toEqual(['2026-01-05T10:00']);
  });

  it('with `now`, a snapshot in the future is not the reference of the within rules (restic)', () => {
    const s = [snap('2026-06-01T00:00:00Z'), snap('2026-01-05T10:00:00Z'), snap('2026-01-04T10:00:00Z'), snap('2026-01-01T10:00:00Z')];
    const now = new Date('2026-02-01T00:00:00Z');
    // The reference is January 5: within 2d keeps the 4th and 5th (and the future one, which is after it).
    expect(kept(applyPolicy(s, { within: parseDuration('2d') }, { utc: true, now }))).toEqual(['2026-06-01T00:00', '2026-01-05T10:00', '2026-01-04T10:00']);
    expect(kept(applyPolicy(s, { withinDaily: parseDuration('2d') }, { utc: true, now }))).toEqual(['2026-06-01T00:00', '2026-01-05T10:00', '2026-01-04T10:00']);
    // Without `now` the newest is the reference.
    expect(kept(applyPolicy(s, { within: parseDuration('2d') }, { utc: true }))).toEqual(['2026-06-01T00:00']);
    // Everything in the future: everything is within (the newest of 2026, and the oldest).
    expect(kept(applyPolicy(s, { withinYearly: parseDuration('1d') }, { utc: true, now: new Date('2020-01-01T00:00:00Z') }))).toEqual(['2026-06-01T00:00', '2026-01-01T10:00']);
  });

  it('agrees with restic forget on recorded vectors (keep-within-hourly/daily/weekly/monthly/yearly, alone and combined)', () => {
    const v = JSON.parse(readFileSync(path.join(ROOT, 'test', 'fixtures', 'restic-forget-within.json'), 'utf8')) as {
      restic: string;
      times: string[];
      policies: { args: string; keep: { time: string; reasons: string[] }[] }[];
    };
    expect(v.policies.length).toBeGreaterThanOrEqual(10);
    const snaps = v.times.map((t) => snap(t));
    const oldest = [...v.times].sort().at(0)!;
    const camel = (flag: string) => flag.replace(/^--/, '').replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
    for (const p of v.policies) {
      const o: Record<string, unknown> = {};
      const words = p.args.split(' ');
      for (let i = 0; i < words.length; i += 2) o[camel(words[i])] = words[i] === '--keep-tag' ? [words[i + 1]] : words[i + 1];
      const policy: RetentionPolicy = policyFrom(o as ForgetOptions);
      const got = applyPolicy(snaps, policy, { utc: true, now: new Date('2026-01-01T00:00:00Z') })
        .filter((d) => d.keep)
        .map((d) => ({ time: d.snapshot.time, reasons: d.reasons }));
      // restic 0.14 predates "keep the oldest snapshot too" for the within
      // rules (restic PR 4366, 0.16): coffer follows today's restic, so the
      // oldest snapshot, when a within rule's range holds it, is kept with
      // "oldest … within …" in addition to what 0.14 kept.
      const want = p.keep.map((k) => ({ time: k.time, reasons: [...k.reasons] }));
      const from = (d: string) => {
        const ref = new Date(Date.parse(v.times.at(-1)!));
        const x = parseDuration(d);
        ref.setUTCFullYear(ref.getUTCFullYear() - x.years, ref.getUTCMonth() - x.months, ref.getUTCDate() - x.days);
        return ref.getTime() - x.hours * 3600_000;
      };
      for (let i = 0; i < words.length; i += 2) {
        const m = /^--keep-within-(hourly|daily|weekly|monthly|yearly)$/.exec(words[i]);
        if (!m || !(Date.parse(oldest) > from(words[i + 1]))) continue;
        let w = want.find((k) => k.time === oldest);
        if (!w) want.push((w = { time: oldest, reasons: [] }));
        if (!w.reasons.includes(`${m[1]} within ${words[i + 1]}`)) w.reasons.push(`oldest ${m[1]} within ${words[i + 1]}`);
      }
      expect(got, `restic ${v.restic} forget ${p.args}`).toEqual(want);
    }
  });

  it('parses durations and detects an empty policy', () => {
    expect(parseDuration('1y2m3d4h')).toEqual({ years: 1, months: 2, days: 3, hours: 4 });
    expect(parseDuration('36h')).toEqual({ years: 0, months: 0, days: 0, hours: 36 });
    for (const bad of ['', '1x', 'd', '1d2y', '-1d']) expect(() => parseDuration(bad)).toThrow();
    expect(isEmptyPolicy({})).toBe(true);
    expect(isEmptyPolicy({ within: parseDuration('0d') })).toBe(true);
    expect(isEmptyPolicy({ last: 1 })).toBe(false);
    expect(isEmptyPolicy({ withinDaily: parseDuration('0d') })).toBe(true);
    expect(isEmptyPolicy({ withinWeekly: parseDuration('1d') })).toBe(false);
  });

  /** Runs `fn` with the process's time zone set to `tz` (Node reads TZ on change). */
  function inZone<T>(tz: string, fn: () => T): T {
    const saved = process.env.TZ;
    process.env.TZ = tz;
    try {
      return fn();
    } finally {
      if (saved === undefined) delete process.env.TZ;
      else process.env.TZ = saved;
    }
  }

  it('counts periods in the zone each snapshot recorded, whatever the zone of the machine', () => {
    // Local days in +10:00: Jan 2, Jan 1, Jan 1. In UTC all three fall on Jan 1.
    const s = [snap('2026-01-02T00:30:00.000+10:00'), snap('2026-01-01T23:30:00.000+10:00'), snap('2026-01-01T20:00:00.000+10:00')];
    for (const tz of ['UTC', 'America/New_York', 'Asia/Kolkata']) {
      expect(inZone(tz, () => kept(applyPolicy(s, { daily: 2 }))), tz).toEqual(['2026-01-02T00:30', '2026-01-01T23:30']);
    }
    // Counted in UTC instead, the two Jan-1 (UTC) snapshots after the newest share its day; the oldest is kept as such.
    expect(kept(applyPolicy(s, { daily: 2 }, { utc: true }))).toEqual(['2026-01-02T00:30', '2026-01-01T20:00']);
    // keep-within subtracts calendar units in the reference snapshot's zone: 1m before Mar 1 00:30 (+10:00) is Feb 1 00:30 (+10:00).
    const w = [snap('2026-03-01T00:30:00.000+10:00'), snap('2026-02-01T00:40:00.000+10:00'), snap('2026-02-01T00:20:00.000+10:00')];
    expect(inZone('America/New_York', () => kept(applyPolicy(w, { within: parseDuration('1m') })))).toEqual(['2026-03-01T00:30', '2026-02-01T00:40']);
  });

  it('writes snapshot times as local time with the zone offset, and orders them by instant', () => {
    const t = new Date('2026-01-01T00:00:00.000Z');
    expect(inZone('Asia/Kolkata', () => isoWithOffset(t))).toBe('2026-01-01T05:30:00.000+05:30');
    expect(inZone('America/New_York', () => isoWithOffset(t))).toBe('2025-12-31T19:00:00.000-05:00');
    expect(inZone('UTC', () => isoWithOffset(t))).toBe('2026-01-01T00:00:00.000Z');
    for (const tz of ['Asia/Kolkata', 'America/New_York', 'UTC']) expect(Date.parse(inZone(tz, () => isoWithOffset(t)))).toBe(t.getTime());
    expect(recordedOffsetMinutes('2026-01-01T05:30:00.000+05:30')).toBe(330);
    expect(recordedOffsetMinutes('2025-12-31T19:00:00-05:00')).toBe(-300);
    expect(recordedOffsetMinutes('2026-01-01T00:00:00Z')).toBe(0);
    // As text the +05:30 time sorts after the -05:00 one, as instants they are equal; 10:00+02:00 is before 09:00Z.
    expect(compareTimes('2026-01-01T05:30:00.000+05:30', '2025-12-31T19:00:00.000-05:00')).toBe(0);
    expect(compareTimes('2026-01-01T10:00:00+02:00', '2026-01-01T09:00:00Z')).toBeLessThan(0);
  });
});
