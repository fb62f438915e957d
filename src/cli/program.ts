/**
 * The command-line grammar (commander): every command, its options and help
 * text, and the one-line usage errors. main.ts loads it for every command
 * but `--version` (docs/PERFORMANCE.md, session 6 "start-up").
 */
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.js';
import { withEnv, type GlobalOptions } from './options.js';
import { registerKeyCommands } from './register-key.js';
import { addSelectOptions, PATTERN_HELP } from './backup-select.js';
import { registerExploreCommands } from './register-explore.js';
import { registerCopy } from './register-copy.js';
import { registerLifecycle } from './cmd-lifecycle.js';
import { mark } from '../util/timing.js';

export { CommanderError };

/** The commands' code loads only when one of them runs (docs/PERFORMANCE.md, "Start-up"). */
const commands = () => import('./commands.js').then((m) => (mark('commands loaded'), m));

const collect = (v: string, prev: string[] = []) => [...prev, v];

function globals(cmd: Command): Command {
  return cmd
    .option('-r, --repo <location>', 'repository location (env: COFFER_REPOSITORY)')
    .option('--password-file <file>', 'read the password from a file (env: COFFER_PASSWORD_FILE)')
    .option('--password-command <command>', 'run a shell command that prints the password (env: COFFER_PASSWORD_COMMAND)')
    .option('--recovery-key <code>', 'open with a recovery key instead of a password (env: COFFER_RECOVERY_KEY)')
    .option('--cache-dir <dir>', 'local cache directory (env: COFFER_CACHE_DIR; default $XDG_CACHE_HOME/coffer)')
    .option('--no-cache', 'keep the index in memory only (env: COFFER_NO_CACHE=1)')
    .option('--threads <n>', 'worker threads (env: COFFER_THREADS; default: cores, at most 8)')
    .option('--json', 'machine-readable output on stdout (env: COFFER_JSON=1)')
    .option('-q, --quiet', 'print only errors and warnings (env: COFFER_QUIET=1)')
    .option('-v, --verbose', 'print more detail (env: COFFER_VERBOSE=1)');
}

export function program(run: (p: Promise<number>) => void, signal: AbortSignal): Command {
  const p = new Command('coffer')
    .description('End-to-end encrypted, deduplicating backups. Only your password or a recovery key opens a repository.')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (str, write) => write(`coffer: ${str.replace(/^error: /, '')}`) })
    .exitOverride();
  globals(p);

  const g = (cmd: Command) => withEnv(cmd.optsWithGlobals() as GlobalOptions);

  globals(
    p
      .command('init')
      .description('create a new encrypted repository')
      .option('--chunk-min <size>', 'minimum chunk size (default 512K)')
      .option('--chunk-avg <size>', 'average chunk size (default 1M)')
      .option('--chunk-max <size>', 'maximum chunk size (default 8M)')
      .option('--compression <level>', 'zstd level for data, 0 disables (default 3)')
      .addHelpText('after', '\nExamples:\n  coffer init -r /mnt/backup/repo\n  COFFER_PASSWORD_FILE=~/.coffer-pw coffer init -r /srv/repo'),
  ).action((o, cmd) => run(commands().then((m) => m.cmdInit(g(cmd), o))));

  globals(
    addSelectOptions(p
      .command('backup'))
      .description('back up files and directories into a new snapshot')
      .argument('[paths...]', 'files and directories to back up')
      .option('--tag <tags>', 'add tags (comma-separated; repeatable)', collect)
      .option('--host <name>', 'hostname recorded in the snapshot (default: this host)')
      .option('--parent <snapshot>', 'compare with this snapshot instead of the latest one with the same host and paths')
      .option('-f, --force', 'read every file, ignoring the parent snapshot')
      .addHelpText('after', `${PATTERN_HELP}\n\nExamples:\n  coffer backup -r /mnt/backup/repo ~/Documents ~/Pictures\n  coffer backup --tag daily /etc\n  coffer backup ~ --exclude '*.tmp' --exclude node_modules --exclude-caches -x\n  find ~/photos -newer stamp -print0 | coffer backup --files-from-raw -\n  pg_dump db | coffer backup --stdin --stdin-filename db.sql`),
  ).action((paths, o, cmd) => run(commands().then((m) => m.cmdBackup(g(cmd), paths, o, signal))));

  globals(
    p
      .command('snapshots')
      .description('list snapshots')
      .option('--host <name>', 'only snapshots of this host (repeatable)', collect)
      .option('--tag <tags>', 'only snapshots with these tags (repeatable)', collect)
      .option('--path <path>', 'only snapshots that include this path (repeatable)', collect)
      .addHelpText('after', '\nExamples:\n  coffer snapshots -r /mnt/backup/repo\n  coffer snapshots --json | jq \'.[].short_id\''),
  ).action((o, cmd) => run(commands().then((m) => m.cmdSnapshots(g(cmd), o))));

  globals(
    p
      .command('restore')
      .description('restore a snapshot (or part of it) into a directory')
      .argument('<snapshot>', 'snapshot id, unique id prefix, or "latest"')
      .option('-t, --target <dir>', 'directory to restore into')
      .option('-i, --include <pattern>', 'restore only what matches (a path such as /home/me/docs, or a pattern) and the directories leading to it (repeatable)', collect)
      .option('-e, --exclude <pattern>', 'do not restore what matches (repeatable)', collect)
      .option('--overwrite <when>', 'existing files: always (default; writes only the chunks that differ), if-changed (also trusts matching size and mtime), never')
      .option('--delete', 'delete files in the target that are not in the snapshot (inside restored directories)')
      .option('--dry-run', 'only show what would be done (with -v, each file)')
      .option('--verify', 'read restored files back and check them against the snapshot')
      .option('--host <name>', 'with "latest": only snapshots of this host', collect)
      .option('--path <path>', 'with "latest": only snapshots that include this path', collect)
      .addHelpText(
        'after',
        `\nBacking up /a/b and restoring into T recreates T/a/b. Patterns work as for backup --exclude.\n\nExamples:\n  coffer restore latest --target /tmp/restore\n  coffer restore 1a2b3c4d --target /tmp/r --include /home/me/docs\n  coffer restore latest --target / --include '*.conf' --exclude '/etc/ssl'\n  coffer restore latest --target ~/mirror --delete --dry-run -v`,
      ),
  ).action((ref, o, cmd) => run(commands().then((m) => m.cmdRestore(g(cmd), ref, o, signal))));

  globals(
    p
      .command('check')
      .description('verify the repository: structure always, all data with --read-data')
      .option('--read-data', 'read, decrypt and verify every blob')
      .option('--read-data-subset <n/t|x%>', 'read and verify only subset n of t of the packs, or a random x% of them')
      .addHelpText('after', '\nExit code 13 when a problem is found.\n\nExamples:\n  coffer check\n  coffer check --read-data'),
  ).action((o, cmd) => run(commands().then((m) => m.cmdCheck(g(cmd), o, signal))));

  registerKeyCommands(p, globals, run, signal);
  registerExploreCommands(p, globals, run, signal);
  registerCopy(p, globals, g, run, signal);
  registerLifecycle(p, globals, run, signal);

  p.addOption(new Option('--debug').hideHelp());
  return p;
}

/**
 * Usage errors: one line, with commander's suggestion folded in and a
 * pointer to the command's help — for every command, nested ones included
 * ("coffer key add"). A command that only groups others ("key", "repair")
 * given no subcommand, or an unknown one, is a usage error too.
 */
export function oneLineUsageErrors(p: Command, prefix = 'coffer'): Command {
  for (const c of p.commands) oneLineUsageErrors(c, `${prefix} ${c.name()}`);
  p.configureOutput({ outputError: (str, write) => write(`coffer: ${usageLine(str)} (see "${prefix} --help")\n`) });
  if (prefix !== 'coffer' && p.commands.length) {
    const names = p.commands.map((c) => c.name());
    p.helpCommand(true)
      .allowExcessArguments()
      .action((_o, cmd: Command) => {
        const sub = cmd.args[0];
        const near = sub === undefined ? undefined : names.find((n) => editDistance(n, sub) <= Math.min(2, n.length >> 1));
        const msg =
          sub === undefined ? `missing command: use one of ${names.join(', ')}` : `unknown command '${sub}'${near ? `; did you mean ${near}?` : `: use one of ${names.join(', ')}`}`;
        cmd.error(msg, {
          exitCode: 2,
          code: 'commander.unknownCommand',
        });
      });
  }
  return p;
}

/** Levenshtein distance (for "did you mean" on subcommands; the names are short). */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** Commander's error text as one line: "error: unknown option '--x'\n(Did you mean --y?)" → "unknown option '--x'; did you mean --y?". */
export function usageLine(str: string): string {
  return str
    .replace(/^error: /, '')
    .replace(/\s*\(Did you mean (.*)\?\)/, '; did you mean $1?')
    .replace(/\s+/g, ' ')
    .trim();
}

