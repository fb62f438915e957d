/** `coffer forget` and `coffer prune`. */
import path from 'node:path';
import { CofferError } from '../errors.js';
import { withLock, type HeldLock } from '../repo/lock.js';
import type { Repository } from '../repo/repository.js';
import type { Snapshot } from '../format/snapshot.js';
import { listSnapshotsTolerant, resolveSnapshotNames } from '../lifecycle/snapshot-list.js';
import { storageFailure } from '../repo/repository.js';
import { StorageError } from '../storage/backend.js';
import {
  applyPolicyGrouped,
  isEmptyPolicy,
  parseDuration,
  parseGroupBy,
  formatDuration,
  type Duration,
  type RetentionPolicy,
  type GroupResult,
} from '../lifecycle/retention.js';
import { executePrune, parseMaxUnused, planIsEmpty, planPrune, type PrunePhase, type PrunePlan } from '../lifecycle/prune.js';
import { bytes, localTime, table } from './format.js';
import { openRepo, Output, parseSize, type GlobalOptions } from './context.js';

export interface ForgetOptions {
  keepLast?: string;
  keepHourly?: string;
  keepDaily?: string;
  keepWeekly?: string;
  keepMonthly?: string;
  keepYearly?: string;
  keepWithin?: string;
  keepWithinHourly?: string;
  keepWithinDaily?: string;
  keepWithinWeekly?: string;
  keepWithinMonthly?: string;
  keepWithinYearly?: string;
  keepTag?: string[];
  groupBy?: string;
  host?: string[];
  tag?: string[];
  path?: string[];
  dryRun?: boolean;
  prune?: boolean;
  maxUnused?: string;
}

function count(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (v === 'unlimited') return -1;
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < -1) throw new CofferError('INVALID_ARGUMENT', `--${name} takes a number (or "unlimited"), not "${v}"`);
  return Number(v);
}

function duration(name: string, v: string | undefined): Duration | undefined {
  if (v === undefined) return undefined;
  try {
    return parseDuration(v);
  } catch (e) {
    throw new CofferError('INVALID_ARGUMENT', `--${name}: ${(e as Error).message}`);
  }
}

export function policyFrom(o: ForgetOptions): RetentionPolicy {
  return {
    last: count('keep-last', o.keepLast),
    hourly: count('keep-hourly', o.keepHourly),
    daily: count('keep-daily', o.keepDaily),
    weekly: count('keep-weekly', o.keepWeekly),
    monthly: count('keep-monthly', o.keepMonthly),
    yearly: count('keep-yearly', o.keepYearly),
    within: duration('keep-within', o.keepWithin),
    withinHourly: duration('keep-within-hourly', o.keepWithinHourly),
    withinDaily: duration('keep-within-daily', o.keepWithinDaily),
    withinWeekly: duration('keep-within-weekly', o.keepWithinWeekly),
    withinMonthly: duration('keep-within-monthly', o.keepWithinMonthly),
    withinYearly: duration('keep-within-yearly', o.keepWithinYearly),
    tags: (o.keepTag ?? []).map((t) => t.split(',').map((x) => x.trim()).filter(Boolean)).filter((t) => t.length),
  };
}

function describeKey(k: GroupResult<Snapshot>['key']): string {
  const parts: string[] = [];
  if (k.hostname !== undefined) parts.push(`host ${k.hostname}`);
  if (k.paths) parts.push(`paths [${k.paths.join(', ')}]`);
  if (k.tags) parts.push(`tags [${k.tags.join(', ')}]`);
  return parts.length ? parts.join(', ') : 'all snapshots';
}

async function removeSnapshots(repo: Repository, ids: string[]): Promise<void> {
  for (const id of ids) {
    try {
      await repo.backend.remove({ type: 'snapshots', name: id });
    } catch (e) {
      if (!(e instanceof StorageError && e.kind === 'notFound')) throw storageFailure(e);
    }
  }
}

export async function cmdForget(g: GlobalOptions, ids: string[], o: ForgetOptions, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  const policy = policyFrom(o);
  let groupBy;
  try {
    groupBy = parseGroupBy(o.groupBy ?? 'host,paths');
  } catch (e) {
    throw new CofferError('INVALID_ARGUMENT', (e as Error).message);
  }
  const maxUnused = o.maxUnused !== undefined ? parseMaxUnused(o.maxUnused, parseSize) : undefined;
  if (ids.length && !isEmptyPolicy(policy)) throw new CofferError('INVALID_ARGUMENT', 'give either snapshot ids or --keep-* options, not both');
  for (const id of ids) if (!/^[0-9a-f]{1,64}$/.test(id)) throw new CofferError('INVALID_ARGUMENT', `"${id}" is not a snapshot id`);
  const repo = await openRepo(g);
  try {
    return await withLock(repo, !o.dryRun, async (lock) => {
      // Refuse before removing any snapshot, not after (prune would refuse then).
      if (o.prune && !o.dryRun) repo.requireIntactIndex('forget --prune');
      let remove: { id: string }[] = [];
      if (ids.length) {
        // By file name, so that a snapshot whose file is damaged can still be removed.
        const names = await resolveSnapshotNames(repo, ids);
        const { snapshots } = await listSnapshotsTolerant(repo);
        const byId = new Map(snapshots.map((s) => [s.id as string, s]));
        remove = names.map((id) => ({ id }));
        if (out.json) out.emit({ message_type: 'forget', remove: names, dry_run: o.dryRun === true });
        else
          for (const id of names) {
            const s = byId.get(id);
            out.info(`${o.dryRun ? 'would remove' : 'removing'} snapshot ${id.slice(0, 8)} (${s ? `${localTime(s.time)}, ${s.hostname}, [${s.paths.join(', ')}]` : 'damaged file'})`);
          }
      } else {
        if (isEmptyPolicy(policy)) {
          if (out.json) out.emit({ message_type: 'forget', groups: [], dry_run: o.dryRun === true });
          else out.info('no policy was given (--keep-*), no snapshots will be removed');
          if (!o.prune) return 0;
        } else {
          const paths = (o.path ?? []).map((p) => path.resolve(p));
          const tags = (o.tag ?? []).flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
          const listing = await listSnapshotsTolerant(repo);
          for (const d of listing.damaged) out.warn(`snapshots/${d} is damaged and is left alone (remove it with "coffer forget ${d.slice(0, 12)}")`);
          const all = listing.snapshots.filter(
            (s) => (!o.host?.length || o.host.includes(s.hostname)) && tags.every((t) => s.tags.includes(t)) && paths.every((p) => s.paths.includes(p)),
          );
          const groups = applyPolicyGrouped(all, policy, groupBy, { now: new Date() });
          if (out.json) {
            out.emit({
              message_type: 'forget',
              dry_run: o.dryRun === true,
              groups: groups.map((gr) => ({
                key: gr.key,
                keep: gr.decisions.filter((d) => d.keep).map((d) => ({ id: d.snapshot.id, time: d.snapshot.time, reasons: d.reasons })),
                remove: gr.decisions.filter((d) => !d.keep).map((d) => ({ id: d.snapshot.id, time: d.snapshot.time })),
              })),
            });
          } else {
            for (const gr of groups) {
              out.info(`snapshots for ${describeKey(gr.key)}:`);
              const rows = gr.decisions.map((d) => [
                d.snapshot.id.slice(0, 8),
                localTime(d.snapshot.time),
                d.snapshot.hostname,
                d.snapshot.tags.join(','),
                d.keep ? 'keep' : o.dryRun ? 'would remove' : 'remove',
                d.reasons.join(', '),
              ]);
              out.info(table(['ID', 'Time', 'Host', 'Tags', 'Action', 'Reasons'], rows));
              out.info('');
            }
          }
          remove = groups.flatMap((gr) => gr.decisions.filter((d) => !d.keep).map((d) => d.snapshot));
          const kept = all.length - remove.length;
          out.info(`${kept} snapshot${kept === 1 ? '' : 's'} kept, ${remove.length} ${o.dryRun ? 'would be ' : ''}removed` + (policy.within ? ` (within ${formatDuration(policy.within)} of each group's newest)` : ''));
        }
      }
      if (o.dryRun) {
        if (o.prune) out.info('(dry run: "--prune" would then remove the data only these snapshots used)');
        return 0;
      }
      await removeSnapshots(repo, remove.map((s) => s.id));
      if (o.prune) return runPrune(repo, out, { maxUnused, dryRun: false }, lock, AbortSignal.any([signal, lock.signal]));
      return 0;
    });
  } finally {
    await repo.close();
  }
}

function printPlan(out: Output, plan: PrunePlan, dryRun: boolean): void {
  const sum = (l: { length: number }[]) => l.reduce((a, p) => a + p.length, 0);
  if (out.json) {
    out.emit({
      message_type: 'prune_plan',
      dry_run: dryRun,
      snapshots: plan.snapshots,
      used_blobs: plan.usedBlobs,
      keep: { packs: plan.keep.length, bytes: sum(plan.keep) },
      repack: { packs: plan.repack.length, bytes: sum(plan.repack), rewrite_bytes: plan.stats.repackBytes, ids: plan.repack.map((p) => p.id) },
      remove: { packs: plan.remove.length, bytes: sum(plan.remove), ids: plan.remove.map((p) => p.id) },
      unindexed: { packs: plan.unindexed.length, bytes: plan.unindexed.reduce((a, o) => a + o.size, 0), ids: plan.unindexed.map((o) => o.name) },
      absent: plan.absent,
      total_bytes: plan.stats.totalBytes,
      used_bytes: plan.stats.usedBytes,
      unused_bytes: plan.stats.unusedBytes,
      unused_after: plan.stats.unusedAfter,
      freed_bytes: plan.stats.freedBytes,
    });
    return;
  }
  out.info(`${plan.snapshots} snapshots use ${plan.usedBlobs} blobs (${bytes(plan.stats.usedBytes)}); repository holds ${bytes(plan.stats.totalBytes)} in packs`);
  out.info(`packs to keep:     ${plan.keep.length} (${bytes(sum(plan.keep))})`);
  out.info(`packs to repack:   ${plan.repack.length} (${bytes(sum(plan.repack))}, ${bytes(plan.stats.repackBytes)} of used blobs rewritten)`);
  out.info(`packs to delete:   ${plan.remove.length} unused (${bytes(sum(plan.remove))}) + ${plan.unindexed.length} unindexed (${bytes(plan.unindexed.reduce((a, o) => a + o.size, 0))})`);
  if (plan.absent.length) out.info(`missing packs dropped from the index: ${plan.absent.length} (no snapshot uses their blobs)`);
  out.info(`unused data left afterwards: ${bytes(plan.stats.unusedAfter)}`);
  out.info(`${dryRun ? 'would free' : 'frees'} about ${bytes(Math.max(0, plan.stats.freedBytes))}`);
}

async function runPrune(
  repo: Repository,
  out: Output,
  o: { maxUnused?: ReturnType<typeof parseMaxUnused>; dryRun: boolean },
  lock: HeldLock | undefined,
  signal: AbortSignal,
): Promise<number> {
  const stall = process.env.COFFER_TEST_PRUNE_STALL;
  try {
    const plan = await planPrune(repo, { maxUnused: o.maxUnused, signal });
    printPlan(out, plan, o.dryRun);
    if (o.dryRun) return 0;
    if (planIsEmpty(plan)) {
      out.info('nothing to prune');
      return 0;
    }
    await executePrune(repo, plan, {
      signal,
      onPhase: async (phase: PrunePhase) => {
        lock?.throwIfLost();
        out.verbose(`prune: ${phase}`);
        // Test hook: stop at a chosen step so that a test can kill the process there.
        if (stall === phase) {
          process.stderr.write(`prune: stalled at ${phase}\n`);
          await new Promise((r) => setTimeout(r, 60_000));
        }
      },
    });
    out.info('prune done');
    return 0;
  } finally {
    repo.cache.endUsedSet();
  }
}

export async function cmdPrune(g: GlobalOptions, o: { maxUnused?: string; dryRun?: boolean }, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  const maxUnused = o.maxUnused !== undefined ? parseMaxUnused(o.maxUnused, parseSize) : undefined;
  const repo = await openRepo(g);
  try {
    return await withLock(repo, !o.dryRun, (lock) => runPrune(repo, out, { maxUnused, dryRun: o.dryRun === true }, lock, AbortSignal.any([signal, lock.signal])));
  } finally {
    await repo.close();
  }
}
