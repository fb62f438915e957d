/**
 * The coffer command line. The only module that prints, reads the terminal
 * or decides the exit code.
 */
import { Command, CommanderError, Option } from 'commander';
import { CofferError, EXIT_CODES } from '../errors.js';
import { VERSION } from '../version.js';
import type { GlobalOptions } from './context.js';
import { cmdBackup, cmdCheck, cmdInit, cmdRestore, cmdSnapshots } from './commands.js';
import { registerLifecycle } from './cmd-lifecycle.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

function globals(cmd: Command): Command {
  return cmd
    .option('-r, --repo <location>', 'repository location (env: COFFER_REPOSITORY)')
    .option('--password-file <file>', 'read the password from a file (env: COFFER_PASSWORD_FILE)')
    .option('--password-command <command>', 'run a shell command that prints the password (env: COFFER_PASSWORD_COMMAND)')
    .option('--cache-dir <dir>', 'local cache directory (env: COFFER_CACHE_DIR; default $XDG_CACHE_HOME/coffer)')
    .option('--no-cache', 'keep the index in memory only (env: COFFER_NO_CACHE=1)')
    .option('--json', 'machine-readable output on stdout')
    .option('-q, --quiet', 'print only errors and warnings')
    .option('-v, --verbose', 'print more detail');
}

function program(run: (p: Promise<number>) => void, signal: AbortSignal): Command {
  const p = new Command('coffer')
    .description('End-to-end encrypted, deduplicating backups. Only your password or a recovery key opens a repository.')
    .version(VERSION, '-V, --version')
    .showSuggestionAfterError(true)
    .configureOutput({ outputError: (str, write) => write(`coffer: ${str.replace(/^error: /, '')}`) })
    .exitOverride();
  globals(p);

  const g = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;

  globals(
    p
      .command('init')
      .description('create a new encrypted repository')
      .option('--chunk-min <size>', 'minimum chunk size (default 512K)')
      .option('--chunk-avg <size>', 'average chunk size (default 1M)')
      .option('--chunk-max <size>', 'maximum chunk size (default 8M)')
      .option('--compression <level>', 'zstd level for data, 0 disables (default 3)')
      .addHelpText('after', '\nExamples:\n  coffer init -r /mnt/backup/repo\n  COFFER_PASSWORD_FILE=~/.coffer-pw coffer init -r /srv/repo'),
  ).action((o, cmd) => run(cmdInit(g(cmd), o)));

  globals(
    p
      .command('backup')
      .description('back up files and directories into a new snapshot')
      .argument('[paths...]', 'files and directories to back up')
      .option('--tag <tags>', 'add tags (comma-separated; repeatable)', collect)
      .option('--host <name>', 'hostname recorded in the snapshot (default: this host)')
      .option('--parent <snapshot>', 'compare with this snapshot instead of the latest one with the same host and paths')
      .option('-f, --force', 'read every file, ignoring the parent snapshot')
      .addHelpText('after', '\nExamples:\n  coffer backup -r /mnt/backup/repo ~/Documents ~/Pictures\n  coffer backup --tag daily /etc'),
  ).action((paths, o, cmd) => run(cmdBackup(g(cmd), paths, o, signal)));

  globals(
    p
      .command('snapshots')
      .description('list snapshots')
      .option('--host <name>', 'only snapshots of this host (repeatable)', collect)
      .option('--tag <tags>', 'only snapshots with these tags (repeatable)', collect)
      .option('--path <path>', 'only snapshots that include this path (repeatable)', collect)
      .addHelpText('after', '\nExamples:\n  coffer snapshots -r /mnt/backup/repo\n  coffer snapshots --json | jq \'.[].short_id\''),
  ).action((o, cmd) => run(cmdSnapshots(g(cmd), o)));

  globals(
    p
      .command('restore')
      .description('restore a snapshot (or part of it) into a directory')
      .argument('<snapshot>', 'snapshot id, unique id prefix, or "latest"')
      .option('-t, --target <dir>', 'directory to restore into')
      .option('-i, --include <path>', 'restore only this path of the snapshot (repeatable)', collect)
      .option('--host <name>', 'with "latest": only snapshots of this host', collect)
      .option('--path <path>', 'with "latest": only snapshots that include this path', collect)
      .addHelpText('after', '\nBacking up /a/b and restoring into T recreates T/a/b.\n\nExamples:\n  coffer restore latest --target /tmp/restore\n  coffer restore 1a2b3c4d --target /tmp/r --include /home/me/docs'),
  ).action((ref, o, cmd) => run(cmdRestore(g(cmd), ref, o, signal)));

  globals(
    p
      .command('check')
      .description('verify the repository: structure always, all data with --read-data')
      .option('--read-data', 'read, decrypt and verify every blob')
      .option('--read-data-subset <n/t|x%>', 'read and verify only subset n of t of the packs, or a random x% of them')
      .addHelpText('after', '\nExit code 13 when a problem is found.\n\nExamples:\n  coffer check\n  coffer check --read-data'),
  ).action((o, cmd) => run(cmdCheck(g(cmd), o, signal)));

  registerLifecycle(p, globals, run, signal);

  p.addOption(new Option('--debug').hideHelp());
  return p;
}

function report(e: unknown, debug: boolean): number {
  if (e instanceof CofferError) {
    process.stderr.write(`coffer: ${e.message}\n`);
    if (debug && e.cause) process.stderr.write(`${String((e.cause as Error).stack ?? e.cause)}\n`);
    return e.exitCode;
  }
  process.stderr.write(`coffer: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  if (debug) process.stderr.write(`${(e as Error).stack}\n`);
  return EXIT_CODES.INTERNAL;
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  const debug = process.env.COFFER_DEBUG === '1' || argv.includes('--debug');
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let pending: Promise<number> | undefined;
  try {
    const p = program((job) => {
      pending = job;
    }, abort.signal);
    if (argv.length <= 2) {
      p.outputHelp();
      return 2;
    }
    await p.parseAsync(argv);
    if (!pending) return 0;
    return await pending;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    return report(e, debug);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
