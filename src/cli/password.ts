/**
 * Where the password comes from, in order: --password-file, --password-command,
 * COFFER_PASSWORD_FILE, COFFER_PASSWORD_COMMAND, COFFER_PASSWORD, then an
 * interactive prompt (no echo) when stdin is a terminal.
 */
import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { CofferError, errnoCode } from '../errors.js';

export interface PasswordSources {
  passwordFile?: string;
  passwordCommand?: string;
}

function stripNewline(b: Buffer): Buffer {
  let end = b.length;
  if (end > 0 && b[end - 1] === 0x0a) end--;
  if (end > 0 && b[end - 1] === 0x0d) end--;
  return b.subarray(0, end);
}

function fromFile(file: string): Buffer {
  try {
    return stripNewline(readFileSync(file));
  } catch (e) {
    throw new CofferError('NO_PASSWORD', `cannot read password file ${file}: ${errnoCode(e) ?? String(e)}`);
  }
}

function fromCommand(cmd: string): Buffer {
  const r = spawnSync('/bin/sh', ['-c', cmd], { stdio: ['inherit', 'pipe', 'inherit'], maxBuffer: 1 << 20 });
  if (r.error || r.status !== 0) throw new CofferError('NO_PASSWORD', `password command failed (exit status ${r.status ?? 'unknown'})`);
  return stripNewline(r.stdout);
}

/** Reads a line from the terminal without echoing it. */
export async function promptHidden(prompt: string): Promise<Buffer> {
  const stdin = process.stdin;
  if (!stdin.isTTY) throw new CofferError('NO_PASSWORD', 'no password given (set COFFER_PASSWORD, --password-file or --password-command)');
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.resume();
  const chars: number[] = [];
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const onData = (data: Buffer) => {
        for (const c of data) {
          if (c === 0x0d || c === 0x0a) {
            stdin.off('data', onData);
            resolve(Buffer.from(chars));
            return;
          }
          if (c === 0x03 || c === 0x04) {
            stdin.off('data', onData);
            reject(new CofferError('INTERRUPTED', 'password entry cancelled'));
            return;
          }
          if (c === 0x7f || c === 0x08) chars.pop();
          else chars.push(c);
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    chars.fill(0);
    stdin.setRawMode(false);
    stdin.pause();
    process.stderr.write('\n');
  }
}

export async function readPassword(src: PasswordSources, opts: { confirm?: boolean; prompt?: string } = {}): Promise<Buffer> {
  if (src.passwordFile) return fromFile(src.passwordFile);
  if (src.passwordCommand) return fromCommand(src.passwordCommand);
  const env = process.env;
  if (env.COFFER_PASSWORD_FILE) return fromFile(env.COFFER_PASSWORD_FILE);
  if (env.COFFER_PASSWORD_COMMAND) return fromCommand(env.COFFER_PASSWORD_COMMAND);
  if (env.COFFER_PASSWORD !== undefined) return Buffer.from(env.COFFER_PASSWORD);
  const pw = await promptHidden(opts.prompt ?? 'enter password for repository: ');
  if (opts.confirm) {
    const again = await promptHidden('enter password again: ');
    const same = again.equals(pw);
    again.fill(0);
    if (!same) throw new CofferError('NO_PASSWORD', 'passwords do not match');
  }
  return pw;
}

/**
 * The new passphrase for "key add" / "key passwd": --new-password-file, then
 * COFFER_NEW_PASSWORD, then a prompt asked twice (no echo).
 */
export async function readNewPassword(file: string | undefined): Promise<Buffer> {
  let pw: Buffer;
  if (file) pw = fromFile(file);
  else if (process.env.COFFER_NEW_PASSWORD !== undefined) pw = Buffer.from(process.env.COFFER_NEW_PASSWORD);
  else {
    if (!process.stdin.isTTY) throw new CofferError('NO_PASSWORD', 'no new password given (use --new-password-file or COFFER_NEW_PASSWORD)');
    pw = await promptHidden('enter new password: ');
    const again = await promptHidden('enter new password again: ');
    const same = again.equals(pw);
    again.fill(0);
    if (!same) {
      pw.fill(0);
      throw new CofferError('NO_PASSWORD', 'passwords do not match');
    }
  }
  if (pw.length === 0) throw new CofferError('NO_PASSWORD', 'an empty password is not allowed');
  return pw;
}
