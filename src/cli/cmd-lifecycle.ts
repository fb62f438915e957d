/** Registers the repository lifecycle commands: unlock, forget, prune, repair. */
import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';
// The command modules load only when their command runs (see docs/PERFORMANCE.md, "Start-up").

type Run = (p: Promise<number>) => void;

export function registerLifecycle(p: Command, globals: (c: Command) => Command, run: Run, signal: AbortSignal): void {
  const g = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;

  globals(
    p
      .command('unlock')
      .description('remove stale locks (left by crashed processes)')
      .option('--remove-all', 'remove all locks, even live ones (only when you are sure nothing else uses the repository)')
      .addHelpText('after', '\nA lock is stale when its process is gone (same host) or it was not refreshed for 30 minutes.\n\nExamples:\n  coffer unlock\n  coffer unlock --remove-all'),
  ).action((o, cmd) => run(import('./cmd-lock.js').then((m) => m.cmdUnlock(g(cmd), o))));

  const collect = (v: string, prev: string[] = []) => [...prev, v];

  globals(
    p
      .command('forget')
      .description('remove snapshots, by id or by a retention policy (then "prune" or --prune frees the data)')
      .argument('[snapshots...]', 'snapshot ids (or unique prefixes) to remove')
      .option('--keep-last <n>', 'keep the n newest snapshots')
      .option('--keep-hourly <n>', 'keep the newest snapshot of each of the last n hours that have one')
      .option('--keep-daily <n>', 'keep the newest snapshot of each of the last n days that have one')
      .option('--keep-weekly <n>', 'keep the newest snapshot of each of the last n ISO weeks that have one')
      .option('--keep-monthly <n>', 'keep the newest snapshot of each of the last n months that have one')
      .option('--keep-yearly <n>', 'keep the newest snapshot of each of the last n years that have one')
      .option('--keep-within <duration>', 'keep snapshots newer than the group\'s newest minus duration (e.g. 1y2m3d4h)')
      .option('--keep-within-hourly <duration>', 'keep the newest snapshot of each hour within duration of the group\'s newest')
      .option('--keep-within-daily <duration>', 'keep the newest snapshot of each day within duration of the group\'s newest')
      .option('--keep-within-weekly <duration>', 'keep the newest snapshot of each ISO week within duration of the group\'s newest')
      .option('--keep-within-monthly <duration>', 'keep the newest snapshot of each month within duration of the group\'s newest')
      .option('--keep-within-yearly <duration>', 'keep the newest snapshot of each year within duration of the group\'s newest')
      .option('--keep-tag <tags>', 'keep snapshots that have all these tags (comma-separated; repeatable)', collect)
      .option('--group-by <fields>', 'group snapshots by host, paths and/or tags', 'host,paths')
      .option('--host <name>', 'only consider snapshots of this host (repeatable)', collect)
      .option('--tag <tags>', 'only consider snapshots with these tags (repeatable)', collect)
      .option('--path <path>', 'only consider snapshots that include this path (repeatable)', collect)
      .option('-n, --dry-run', 'show what would be kept and removed, and why; change nothing')
      .option('--prune', 'then remove the data no snapshot uses any more')
      .option('--max-unused <limit>', 'with --prune: unused data to tolerate (see prune)')
      .addHelpText(
        'after',
        '\nn may be "unlimited". Policies are applied per group; a snapshot kept by any rule stays.\n\nExamples:\n  coffer forget --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run\n  coffer forget --keep-within-daily 7d --keep-within-weekly 1m --keep-within-monthly 1y --keep-within-yearly 75y\n  coffer forget --keep-last 10 --prune\n  coffer forget 1a2b3c4d',
      ),
  ).action((ids, o, cmd) => run(import('./cmd-forget.js').then((m) => m.cmdForget(g(cmd), ids, o, signal))));

  globals(
    p
      .command('prune')
      .description('remove data that no snapshot uses; repack partly used packs')
      .option('--max-unused <limit>', 'unused data to tolerate before repacking: a share of the used data ("5%"), a size ("100M") or "unlimited"', '5%')
      .option('-n, --dry-run', 'print the plan (packs to keep, repack, delete; bytes freed) and change nothing')
      .addHelpText('after', '\nTakes an exclusive lock. Safe to interrupt at any moment: run it again to finish.\n\nExamples:\n  coffer prune --dry-run\n  coffer prune --max-unused 0%'),
  ).action((o, cmd) => run(import('./cmd-forget.js').then((m) => m.cmdPrune(g(cmd), o, signal))));

  const repair = p
    .command('repair')
    .description('repair a damaged repository')
    .addHelpText('after', '\nSubcommands: index, snapshots.\n\nExamples:\n  coffer repair index\n  coffer repair snapshots --dry-run');
  globals(
    repair
      .command('index')
      .description('rebuild the index from the pack headers (when index files are damaged or missing)')
      .addHelpText('after', '\nTakes an exclusive lock. New index files are written before the old ones are removed.\n\nExample:\n  coffer repair index'),
  ).action((_o, cmd) => run(import('./cmd-repair.js').then((m) => m.cmdRepairIndex(g(cmd), signal))));

  globals(
    repair
      .command('snapshots')
      .description('rewrite snapshots that reference missing or damaged data, keeping everything still intact')
      .argument('[snapshots...]', 'snapshot ids (default: all)')
      .option('--forget', 'remove the original of every repaired snapshot')
      .option('-n, --dry-run', 'only report what is damaged')
      .addHelpText(
        'after',
        '\nUnreadable directories become empty; files lose their missing parts (and shrink). New snapshots are tagged "repaired".\nRun "coffer repair index" first if index files are damaged.\n\nExamples:\n  coffer repair snapshots --dry-run\n  coffer repair snapshots --forget',
      ),
  ).action((ids, o, cmd) => run(import('./cmd-repair.js').then((m) => m.cmdRepairSnapshots(g(cmd), ids, o, signal))));
}
