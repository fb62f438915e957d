import { recordedOffsetMinutes } from '../util/time.js';

/**
 * Retention policies for `forget`, as restic documents them (doc/060_forget.rst):
 * snapshots are grouped (by host and paths by default), and within each group,
 * newest first:
 *
 * - keep-last n: the n newest snapshots;
 * - keep-hourly/daily/weekly/monthly/yearly n: for the last n hours (days, ISO
 *   weeks, months, years) that have snapshots, the newest snapshot of each;
 *   if fewer than n such periods exist, the oldest snapshot is kept as well;
 *   -1 means no limit;
 * - keep-within d: every snapshot newer than (newest snapshot of the group − d),
 *   d like "1y2m3d4h";
 * - keep-within-hourly/daily/weekly/monthly/yearly d: among the snapshots newer
 *   than (newest − d), the newest of each hour (day, ISO week, month, year),
 *   with no count; the group's oldest snapshot too when it is in that range;
 * - keep-tag t: every snapshot carrying all tags of the comma-separated list t.
 *
 * A snapshot is kept if any rule keeps it; everything else in the group is
 * removed. Pure: no I/O, no clock. The reference for the within rules is the
 * group's newest snapshot; with `ApplyOptions.now`, as in restic, the newest
 * one not in the future (all count as within when every one is).
 * @example
 * ```ts
 * const p: RetentionPolicy = { last: 5, monthly: 12 };
 * ```
 */
export interface RetentionPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
  monthly?: number;
  yearly?: number;
  within?: Duration;
  /** restic's --keep-within-hourly: the newest snapshot of each hour within this duration of the newest snapshot. */
  withinHourly?: Duration;
  withinDaily?: Duration;
  withinWeekly?: Duration;
  withinMonthly?: Duration;
  withinYearly?: Duration;
  /** Each entry is a list of tags that must all be present. */
  tags?: string[][];
}

export interface Duration {
  years: number;
  months: number;
  days: number;
  hours: number;
}

export interface RetentionSnapshot {
  id: string;
  time: string;
  hostname: string;
  paths: string[];
  tags: string[];
}

/**
 * A field snapshots are grouped by for retention.
 * @example
 * ```ts
 * const by: GroupField[] = ['host', 'paths'];
 * ```
 */
export type GroupField = 'host' | 'paths' | 'tags';

export interface Decision<S extends RetentionSnapshot> {
  snapshot: S;
  keep: boolean;
  /** Why it is kept (empty when removed). */
  reasons: string[];
}

export interface GroupResult<S extends RetentionSnapshot> {
  /** The values the group shares (only the grouped-by fields). */
  key: { hostname?: string; paths?: string[]; tags?: string[] };
  /** Newest first. */
  decisions: Decision<S>[];
}

type Period = 'hourly' | 'daily' | 'weekly' | 'monthly' | 'yearly';
const PERIODS: Period[] = ['hourly', 'daily', 'weekly', 'monthly', 'yearly'];
const WITHIN_KEY = {
  hourly: 'withinHourly',
  daily: 'withinDaily',
  weekly: 'withinWeekly',
  monthly: 'withinMonthly',
  yearly: 'withinYearly',
} as const satisfies Record<Period, keyof RetentionPolicy>;

export function isEmptyPolicy(p: RetentionPolicy): boolean {
  const noDuration = (d: Duration | undefined) => !d || durationIsZero(d);
  return (
    !p.last &&
    PERIODS.every((k) => !p[k] && noDuration(p[WITHIN_KEY[k]])) &&
    !p.tags?.length &&
    noDuration(p.within)
  );
}

function durationIsZero(d: Duration): boolean {
  return d.years === 0 && d.months === 0 && d.days === 0 && d.hours === 0;
}

/**
 * Parses restic durations: "1y2m3d4h", any subset in that order, e.g. "7d", "2y", "36h".
 * @example
 * ```ts
 * const d = parseDuration('1y6m');
 * ```
 */
export function parseDuration(s: string): Duration {
  const m = /^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)d)?(?:(\d+)h)?$/.exec(s.trim());
  if (!m || s.trim() === '') throw new RangeError(`"${s}" is not a duration (examples: 7d, 2y6m, 1y2m3d4h)`);
  return { years: Number(m[1] ?? 0), months: Number(m[2] ?? 0), days: Number(m[3] ?? 0), hours: Number(m[4] ?? 0) };
}

export function formatDuration(d: Duration): string {
  const parts = [d.years && `${d.years}y`, d.months && `${d.months}m`, d.days && `${d.days}d`, d.hours && `${d.hours}h`].filter(Boolean);
  return parts.length ? parts.join('') : '0h';
}

/**
 * A moment as the wall clock showed it where the snapshot was taken: `wall`
 * is that clock reading expressed as a UTC date (so the UTC getters return
 * its fields), `offset` the zone's offset in minutes.
 */
interface Zoned {
  ms: number;
  wall: Date;
  offset: number;
}

function zoned(ms: number, offset: number): Zoned {
  return { ms, wall: new Date(ms + offset * 60_000), offset };
}

/** The snapshot's time in its recorded zone (as restic counts periods), or in UTC when `utc` is set. */
function zonedTime(time: string, utc: boolean): Zoned {
  return zoned(Date.parse(time), utc ? 0 : recordedOffsetMinutes(time));
}

/** t minus a duration, calendar-wise in t's zone (like Go's AddDate then Add); in ms. */
function minus(t: Zoned, d: Duration): number {
  const r = new Date(t.wall.getTime());
  r.setUTCFullYear(r.getUTCFullYear() - d.years, r.getUTCMonth() - d.months, r.getUTCDate() - d.days);
  return r.getTime() - t.offset * 60_000 - d.hours * 3600_000;
}

/** ISO 8601 week-numbering year and week, as year * 100 + week. */
function isoWeek(t: Zoned): number {
  const d = new Date(Date.UTC(t.wall.getUTCFullYear(), t.wall.getUTCMonth(), t.wall.getUTCDate()));
  const dow = d.getUTCDay() || 7; // Monday 1 … Sunday 7
  d.setUTCDate(d.getUTCDate() + 4 - dow); // the Thursday of this week decides the year
  const y = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(y, 0, 1)) / 86400_000 + 1) / 7);
  return y * 100 + week;
}

/** The number that names the period (hour, day, ISO week, month, year) `t` falls in. */
function periodOf(period: Period, t: Zoned): number {
  const w = t.wall;
  const year = w.getUTCFullYear();
  const month = w.getUTCMonth() + 1;
  const day = w.getUTCDate();
  switch (period) {
    case 'hourly':
      return year * 1_000_000 + month * 10_000 + day * 100 + w.getUTCHours();
    case 'daily':
      return year * 10_000 + month * 100 + day;
    case 'weekly':
      return isoWeek(t);
    case 'monthly':
      return year * 100 + month;
    case 'yearly':
      return year;
  }
}

/** A counted rule (keep-last, keep-daily…): `count` periods left, -1 for no limit. */
interface Bucket {
  count: number;
  reason: string;
  value(t: Zoned, nr: number): number;
  last: number;
}

/** A within rule (keep-within-daily…): snapshots newer than `from` (ms), one per period. */
interface WithinBucket {
  from: number;
  reason: string;
  period: Period;
  last: number;
}

export interface ApplyOptions {
  /**
   * Count hours, days, weeks… in UTC. Without it, each snapshot's periods are
   * those of the zone its time was recorded in (as restic does).
   */
  utc?: boolean;
  /**
   * The current time: snapshots after it do not serve as the reference of
   * the within rules (restic's findLatestTimestamp). Without it, the newest
   * snapshot is the reference.
   */
  now?: Date;
}

/** The reference snapshot time of the within rules, or undefined when there is none (everything is within). */
function reference(list: RetentionSnapshot[], now: Date | undefined): string | undefined {
  if (!now) return list[0]?.time;
  let latest: string | undefined;
  for (const s of list) {
    const t = Date.parse(s.time);
    if ((latest === undefined || t > Date.parse(latest)) && t < now.getTime()) latest = s.time;
  }
  return latest;
}

/**
 * Applies the policy to one group; returns decisions newest first.
 * @example
 * ```ts
 * const decisions = applyPolicy(snapshots, { daily: 7, weekly: 4 }); // keep/remove, with reasons
 * ```
 */
export function applyPolicy<S extends RetentionSnapshot>(snapshots: S[], policy: RetentionPolicy, opts: ApplyOptions = {}): Decision<S>[] {
  const utc = opts.utc ?? false;
  const list = [...snapshots].sort((a, b) => Date.parse(b.time) - Date.parse(a.time) || b.id.localeCompare(a.id));
  const buckets: Bucket[] = [];
  const add = (count: number | undefined, reason: string, value: Bucket['value']) => {
    if (count) buckets.push({ count, reason, value, last: Number.NaN });
  };
  add(policy.last, 'last snapshot', (_t, nr) => nr);
  for (const p of PERIODS) add(policy[p], `${p} snapshot`, (t) => periodOf(p, t));

  const ref = reference(list, opts.now);
  const since = (d: Duration) => (ref === undefined ? -Infinity : minus(zonedTime(ref, utc), d));
  const withinFrom = policy.within && !durationIsZero(policy.within) ? since(policy.within) : undefined;
  const withinBuckets: WithinBucket[] = [];
  for (const p of PERIODS) {
    const d = policy[WITHIN_KEY[p]];
    if (d && !durationIsZero(d)) withinBuckets.push({ from: since(d), reason: `${p} within ${formatDuration(d)}`, period: p, last: Number.NaN });
  }

  return list.map((s, nr) => {
    const t = zonedTime(s.time, utc);
    const oldest = nr === list.length - 1;
    const reasons: string[] = [];
    for (const tags of policy.tags ?? []) {
      if (tags.length && tags.every((tag) => s.tags.includes(tag))) reasons.push(`has tags [${tags.join(', ')}]`);
    }
    if (withinFrom !== undefined && t.ms > withinFrom) reasons.push(`within ${formatDuration(policy.within!)}`);
    for (const b of buckets) {
      if (b.count === 0) continue;
      const v = b.value(t, nr);
      if (v !== b.last || oldest) {
        // The oldest snapshot is kept as well when a rule has periods left:
        // that keeps the longest history the counts allow.
        reasons.push(v === b.last ? `oldest ${b.reason}` : b.reason);
        b.last = v;
        if (b.count > 0) b.count--;
      }
    }
    // Within rules: no count; the oldest snapshot too, when it is in range.
    for (const b of withinBuckets) {
      if (!(t.ms > b.from)) continue;
      const v = periodOf(b.period, t);
      if (v !== b.last || oldest) {
        reasons.push(v === b.last ? `oldest ${b.reason}` : b.reason);
        b.last = v;
      }
    }
    return { snapshot: s, keep: reasons.length > 0, reasons };
  });
}

function groupKey(s: RetentionSnapshot, by: GroupField[]): GroupResult<RetentionSnapshot>['key'] {
  const k: GroupResult<RetentionSnapshot>['key'] = {};
  if (by.includes('host')) k.hostname = s.hostname;
  if (by.includes('paths')) k.paths = [...s.paths].sort();
  if (by.includes('tags')) k.tags = [...s.tags].sort();
  return k;
}

/**
 * Groups the snapshots and applies the policy to each group.
 * @example
 * ```ts
 * const groups = applyPolicyGrouped(await repo.listSnapshots(), { last: 3 }, ['host', 'paths']);
 * ```
 */
export function applyPolicyGrouped<S extends RetentionSnapshot>(
  snapshots: S[],
  policy: RetentionPolicy,
  groupBy: GroupField[],
  opts: ApplyOptions = {},
): GroupResult<S>[] {
  const groups = new Map<string, { key: GroupResult<S>['key']; members: S[] }>();
  for (const s of snapshots) {
    const key = groupKey(s, groupBy);
    const k = JSON.stringify(key);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key, members: [] }));
    g.members.push(s);
  }
  return [...groups.values()].map((g) => ({ key: g.key, decisions: applyPolicy(g.members, policy, opts) }));
}

/** Parses "--group-by host,paths,tags" (also "" for one group). */
export function parseGroupBy(s: string): GroupField[] {
  const fields = s.split(',').map((f) => f.trim()).filter(Boolean);
  for (const f of fields) if (f !== 'host' && f !== 'paths' && f !== 'tags') throw new RangeError(`--group-by takes host, paths and tags, not "${f}"`);
  return fields as GroupField[];
}
