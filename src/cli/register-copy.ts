/** Registers `coffer copy`; its code (cmd-copy.ts) loads only when it runs (docs/PERFORMANCE.md, "Start-up"). */
import type { Command } from 'commander';
import type { GlobalOptions } from './options.js';

export function registerCopy(program: Command, globals: (c: Command) => Command, g: (c: Command) => GlobalOptions, run: (p: Promise<number>) => void, signal: AbortSignal): void {
  globals(
    program
      .command('copy')
      .description('copy snapshots from another repository (other keys, other chunker) into this one')
      .argument('[snapshots...]', 'snapshot ids, prefixes or "latest" in the source (default: all)')
      .option('--from-repo <location>', 'source repository (env: COFFER_FROM_REPOSITORY)')
      .option('--from-password-file <file>', "source repository's password file (env: COFFER_FROM_PASSWORD_FILE)")
      .option('--from-password-command <command>', "command printing the source's password (env: COFFER_FROM_PASSWORD_COMMAND)")
      .addHelpText(
        'after',
        '\nSnapshots already in the destination (copied before) are skipped; an interrupted copy resumes.\n\nExamples:\n  coffer copy -r s3:my-bucket/coffer --from-repo /mnt/backup/repo --from-password-file ~/.coffer-pw\n  coffer copy -r rest:http://nas:8000/laptop --from-repo /mnt/backup/repo latest',
      ),
  ).action((refs, o, cmd) => run(import('./cmd-copy.js').then((m) => m.cmdCopy(g(cmd), refs, o, signal))));
}
