/**
 * Registers ls, find, diff, stats, dump, tag and cat; their code
 * (cmd-explore.ts) loads only when one of them runs (docs/PERFORMANCE.md,
 * "Start-up").
 */
import type { Command } from 'commander';
import { withEnv, type GlobalOptions } from './options.js';

const impl = () => import('./cmd-explore.js');

type Run = (p: Promise<number>) => void;
type Globals = (c: Command) => Command;
const collect = (v: string, prev: string[] = []) => [...prev, v];
const g = (cmd: Command) => withEnv(cmd.optsWithGlobals() as GlobalOptions);

const FILTER_HELP = (c: Command) =>
  c
    .option('--host <name>', 'only snapshots of this host (repeatable)', collect)
    .option('--tag <tags>', 'only snapshots with these tags (repeatable)', collect)
    .option('--path <path>', 'only snapshots that include this path (repeatable)', collect);

/**
 * Read-only commands stop at once on Ctrl-C (exit 130): they have nothing to
 * finish or undo, and the cache they may have written to is crash-safe.
 */
function stopOnInterrupt(signal: AbortSignal | undefined): void {
  signal?.addEventListener('abort', () => {
    process.stderr.write('coffer: interrupted\n');
    process.exit(130);
  });
}

/** Registers ls, find, diff, stats, dump, tag and cat. */
export function registerExploreCommands(p: Command, globals: Globals, run: Run, signal?: AbortSignal): void {
  const ro = (job: () => Promise<number>) => {
    stopOnInterrupt(signal);
    run(job());
  };
  globals(
    FILTER_HELP(
      p
        .command('ls')
        .description('list files in a snapshot')
        .argument('<snapshot>', 'snapshot id, unique prefix, or "latest"')
        .argument('[path]', 'directory or file in the snapshot (default: everything)')
        .option('-l, --long', 'long format: mode, owner, size, time')
        .option('-R, --recursive', 'with a path: list everything below it, not just its entries'),
    ).addHelpText('after', '\nWith --json: one JSON object per line, the snapshot first, then the nodes.\n\nExamples:\n  coffer ls latest\n  coffer ls -l 1a2b3c4d /home/me/docs\n  coffer ls latest /etc --recursive --json'),
  ).action((ref, dir, o, cmd) => ro(() => impl().then((m) => m.cmdLs(g(cmd), ref, dir, o))));

  globals(
    FILTER_HELP(
      p
        .command('find')
        .description('find files by name or path in all snapshots')
        .argument('<pattern...>', 'glob matched against the name, or against the path if it contains "/"')
        .option('-s, --snapshot <id>', 'search only this snapshot (repeatable)', collect)
        .option('-i, --ignore-case', 'ignore case')
        .option('-l, --long', 'long format')
        .option('-O, --oldest <time>', 'only entries modified at or after this date/time (e.g. 2026-01-31 or "2026-01-31 14:30")')
        .option('-N, --newest <time>', 'only entries modified at or before this date/time'),
    ).addHelpText(
      'after',
      "\nTimes are local unless they end with a zone (\"2026-01-31 14:30 +0100\", 2026-01-31T13:30:00Z); a date alone means its midnight.\n\nExamples:\n  coffer find '*.pdf'\n  coffer find -i 'report*' --snapshot latest\n  coffer find 'docs/**/*.md' --json\n  coffer find '*' --oldest 2026-01-01 --newest '2026-01-31 23:59:59'",
    ),
  ).action((pats, o, cmd) => ro(() => impl().then((m) => m.cmdFind(g(cmd), pats, o))));

  globals(
    p
      .command('diff')
      .description('show what changed between two snapshots')
      .argument('<snapshot1>', 'older snapshot (SNAPSHOT:/dir compares only that directory)')
      .argument('<snapshot2>', 'newer snapshot (SNAPSHOT:/dir)')
      .option('--no-metadata', 'do not list metadata-only changes (U)')
      .addHelpText(
        'after',
        '\n+ added, - removed, M content modified, U metadata only (mode, owner, mtime, xattrs), T type changed.\nDirectories end with "/". With --json: one {"message_type":"change"} line per change, then statistics.\n\nExamples:\n  coffer diff 1a2b3c4d latest\n  coffer diff 1a2b3c4d:/home/me/docs latest:/home/me/docs\n  coffer diff 1a2b 5e6f --json | jq -r \'select(.modifier=="M") | .path\'',
      ),
  ).action((a, b, o, cmd) => ro(() => impl().then((m) => m.cmdDiff(g(cmd), a, b, o))));

  globals(
    FILTER_HELP(
      p
        .command('stats')
        .description('sizes: what a restore writes, what the data costs in the repository')
        .argument('[snapshots...]', 'snapshots to count (default: all)')
        .option('--mode <mode>', 'restore-size (default): files and bytes a restore writes; raw-data: distinct blobs, stored size, dedup and compression ratios'),
    ).addHelpText('after', '\nExamples:\n  coffer stats\n  coffer stats latest --mode raw-data\n  coffer stats --mode raw-data --json'),
  ).action((refs, o, cmd) => ro(() => impl().then((m) => m.cmdStats(g(cmd), refs, o))));

  globals(
    FILTER_HELP(
      p
        .command('dump')
        .description('write a file from a snapshot to stdout (a directory as a tar stream)')
        .argument('<snapshot>', 'snapshot id, unique prefix, or "latest"')
        .argument('<path>', 'file or directory in the snapshot'),
    ).addHelpText('after', '\nExamples:\n  coffer dump latest /etc/hosts\n  coffer dump 1a2b3c4d /home/me/docs > docs.tar\n  coffer dump latest / | tar -x -C /tmp/r'),
  ).action((ref, file, o, cmd) => ro(() => impl().then((m) => m.cmdDump(g(cmd), ref, file, o))));

  globals(
    FILTER_HELP(
      p
        .command('tag')
        .description('add, remove or set tags of snapshots')
        .argument('[snapshots...]', 'snapshots to change (default: all that match the filters)')
        .option('--add <tags>', 'add tags (comma-separated; repeatable)', collect)
        .option('--remove <tags>', 'remove tags (comma-separated; repeatable)', collect)
        .option('--set <tags>', 'replace all tags (comma-separated; repeatable; "" clears)', collect),
    ).addHelpText(
      'after',
      '\nEach changed snapshot is written anew (its id changes; "original" keeps the first id) and the old file is removed.\n\nExamples:\n  coffer tag latest --add keep\n  coffer tag --tag daily --remove daily --add weekly\n  coffer tag 1a2b3c4d --set ""',
    ),
  ).action((refs, o, cmd) => run(impl().then((m) => m.cmdTag(g(cmd), refs, o))));

  globals(
    p
      .command('cat')
      .description('print a repository object as JSON (for debugging)')
      .argument('<type>', 'config, index, snapshot, tree or key')
      .argument('[id]', 'object id (a unique prefix for index, snapshot, key)')
      .addHelpText('after', '\nKey files are shown without their wrapped secret.\n\nExamples:\n  coffer cat config\n  coffer cat snapshot latest\n  coffer cat tree $(coffer cat snapshot latest | jq -r .tree)'),
  ).action((what, id, _o, cmd) => ro(() => impl().then((m) => m.cmdCat(g(cmd), what, id))));
}
