/**
 * Registers `coffer key …`; the commands' code (cmd-key.ts) loads only when
 * one of them runs (docs/PERFORMANCE.md, "Start-up").
 */
import type { Command } from 'commander';
import type { GlobalOptions } from './options.js';

const impl = () => import('./cmd-key.js');

/** Adds `coffer key …` to the program. `globals` adds the shared options to a command. */
export function registerKeyCommands(p: Command, globals: (c: Command) => Command, run: (job: Promise<number>) => void, signal: AbortSignal = new AbortController().signal): void {
  const g = (cmd: Command) => cmd.optsWithGlobals() as GlobalOptions;
  const key = p
    .command('key')
    .description('manage the passphrases, recovery keys and write-only keys that open the repository; rotate the master secret')
    .addHelpText(
      'after',
      '\nExamples:\n  coffer key list\n  coffer key add --label laptop\n  coffer key add --recovery\n  coffer key add --write-only --label web-server\n  coffer key passwd\n  coffer key remove 1a2b3c4d\n  coffer key rotate --yes --reencrypt',
    );
  const newPw = '--new-password-file <file>';
  const newPwHelp = 'read the new password from a file (env: COFFER_NEW_PASSWORD; default: prompt twice)';
  globals(key.command('list').description('list key slots: id, kind, creation time, label')).action((o, cmd) => run(impl().then((m) => m.cmdKeyList(g(cmd)))));
  globals(
    key
      .command('add')
      .description('add a passphrase (or, with --recovery, a generated recovery key; with --write-only, a backup-only key)')
      .option('--label <text>', 'label stored encrypted with the key')
      .option('--recovery', 'generate a recovery key instead, and print it once')
      .option('--write-only', 'add a write-only key: it can only back up (it cannot read, restore, list or delete anything)')
      .option(newPw, newPwHelp),
  ).action((o, cmd) => run(impl().then((m) => m.cmdKeyAdd(g(cmd), o))));
  globals(
    key
      .command('passwd')
      .description('change the password of the key in use (writes a new key file, then removes the old one)')
      .option(newPw, newPwHelp),
  ).action((o, cmd) => run(impl().then((m) => m.cmdKeyPasswd(g(cmd), o))));
  globals(
    key
      .command('remove')
      .description('remove a key slot (not the one in use, nor the last one)')
      .argument('<id>', 'key id or unique prefix (see "coffer key list")'),
  ).action((ref, o, cmd) => run(impl().then((m) => m.cmdKeyRemove(g(cmd), ref))));
  globals(
    key
      .command('rotate')
      .description('draw a new master secret for everything written from now on; keeps one key slot (a new password), removes the others')
      .option('--label <text>', 'label of the new key slot')
      .option('--yes', 'go on although other key slots will be removed')
      .option('--reencrypt', 'then re-encrypt existing data under the new secret (as "coffer key reencrypt")')
      .option(newPw, newPwHelp)
      .addHelpText('after', '\nExamples:\n  coffer key rotate --yes\n  coffer key rotate --yes --reencrypt --new-password-file new.txt'),
  ).action((o, cmd) => run(impl().then((m) => m.cmdKeyRotate(g(cmd), o, signal))));
  globals(
    key
      .command('reencrypt')
      .description('re-encrypt packs and snapshot files of older key epochs under the current keys (resumable; exclusive lock)')
      .addHelpText('after', '\nExamples:\n  coffer key reencrypt'),
  ).action((o, cmd) => run(impl().then((m) => m.cmdKeyReencrypt(g(cmd), signal))));
}
