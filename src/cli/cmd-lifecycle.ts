/** Registers the repository lifecycle commands: unlock, forget, prune, repair. */
import type { Command } from 'commander';
import type { GlobalOptions } from './context.js';
import { cmdUnlock } from './cmd-lock.js';

type Run = (p: Promise<number>) => void;

export function registerLifecycle(p: Command, globals: (c: Command) => Command, run: Run, signal: AbortSignal): void {
  const g = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;
  void signal;

  globals(
    p
      .command('unlock')
      .description('remove stale locks (left by crashed processes)')
      .option('--remove-all', 'remove all locks, even live ones (only when you are sure nothing else uses the repository)')
      .addHelpText('after', '\nA lock is stale when its process is gone (same host) or it was not refreshed for 30 minutes.\n\nExamples:\n  coffer unlock\n  coffer unlock --remove-all'),
  ).action((o, cmd) => run(cmdUnlock(g(cmd), o)));
}
