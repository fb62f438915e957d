/**
 * Key management through the real CLI on a real repository: key list / add /
 * passwd / remove, recovery keys opening every command, and the refusals.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRecoveryCode } from '../dist/src/crypto/recovery.js';
import { coffer, expectOk, noSecretsEnv, scratch, type RunResult } from './helpers.js';

let dir: string;
let cleanup: () => void;
let repo: string;
let src: string;

/** Environment with no password source but the ones given. */
const env = (extra: Record<string, string | undefined>) => noSecretsEnv(repo, { COFFER_CACHE_DIR: path.join(dir, 'cache'), ...extra });
const pw = (p: string) => env({ COFFER_PASSWORD: p });

interface KeyRow {
  id: string;
  short_id: string;
  label: string;
  created: string;
  kind: string;
  current: boolean;
}
function list(e: Record<string, string | undefined>): KeyRow[] {
  const r = coffer(['key', 'list', '--json'], e);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as KeyRow[];
}
const ok = expectOk;
function fails(r: RunResult, code: number, msg: RegExp): void {
  expect(r.code, r.stderr).toBe(code);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^coffer: /);
  expect(lines[0]).toMatch(msg);
}
function addRecovery(e: Record<string, string | undefined>, label?: string): { id: string; code: string } {
  const r = ok(coffer(['key', 'add', '--recovery', '--json', ...(label ? ['--label', label] : [])], e));
  const j = JSON.parse(r.stdout) as { id: string; recovery_key: string; kind: string; warning: string };
  expect(j.kind).toBe('recovery');
  expect(j.warning).toMatch(/only/);
  return { id: j.id, code: j.recovery_key };
}
function keyFiles(): Buffer[] {
  return readdirSync(path.join(repo, 'keys'))
    .filter((n) => /^[0-9a-f]{64}$/.test(n))
    .map((n) => readFileSync(path.join(repo, 'keys', n)));
}

beforeAll(() => {
  ({ dir, cleanup } = scratch('coffer-keys-'));
  repo = path.join(dir, 'repo');
  src = path.join(dir, 'src');
  mkdirSync(src);
  writeFileSync(path.join(src, 'a.txt'), 'alpha\n'.repeat(100));
  writeFileSync(path.join(src, 'b.bin'), randomBytes(50_000));
  ok(coffer(['init'], pw('first password')));
  ok(coffer(['backup', '-q', src], pw('first password')));
});
afterAll(() => cleanup?.());

describe('coffer key', () => {
  it('list shows the initial key as the one in use; human output marks it', () => {
    const keys = list(pw('first password'));
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kind: 'passphrase', label: 'initial key', current: true });
    expect(keys[0].id).toMatch(/^[0-9a-f]{64}$/);
    expect(Date.parse(keys[0].created)).toBeGreaterThan(Date.now() - 3600_000);
    const human = ok(coffer(['key', 'list'], pw('first password'))).stdout;
    expect(human).toContain(`*${keys[0].short_id}`);
    expect(human).toMatch(/1 key /);
  });

  it('add (env and --new-password-file) writes new slots that open the repository; labels are not plaintext', () => {
    ok(coffer(['key', 'add', '--label', 'desk-label-7f3a'], { ...pw('first password'), COFFER_NEW_PASSWORD: 'second password' }));
    const file = path.join(dir, 'third.pw');
    writeFileSync(file, 'third password\n');
    const r = ok(coffer(['key', 'add', '--json', '--new-password-file', file], pw('first password')));
    expect(JSON.parse(r.stdout)).toMatchObject({ message_type: 'key_added', kind: 'passphrase' });
    const keys = list(pw('second password'));
    expect(keys.map((k) => k.label).sort()).toEqual(['desk-label-7f3a', 'initial key', 'passphrase key']);
    expect(keys.find((k) => k.current)!.label).toBe('desk-label-7f3a');
    ok(coffer(['snapshots', '-q'], pw('third password')));
    // Nothing in any key file names the label, this host or this user in plaintext.
    // (Host and user names shorter than 6 characters could occur by chance in base64 text, so they are left out.)
    const needles = ['desk-label-7f3a', 'initial key', 'passphrase', os.hostname(), os.userInfo().username].filter((n) => n.length >= 6);
    for (const b of keyFiles()) for (const s of needles) expect(b.includes(s), s).toBe(false);
  });

  it('add without any new-password source (no terminal): exit 12, nothing written', () => {
    const before = keyFiles().length;
    fails(coffer(['key', 'add'], pw('first password')), 12, /no new password given/);
    fails(coffer(['key', 'add'], { ...pw('first password'), COFFER_NEW_PASSWORD: '' }), 12, /empty password/);
    expect(keyFiles()).toHaveLength(before);
  });

  it('init refuses --recovery-key (a repository starts with a password); key add warns about the test KDF', () => {
    const never = path.join(dir, 'never');
    fails(coffer(['init', '-r', never, '--recovery-key', '0000'], pw('x')), 2, /init takes a password/);
    expect(existsSync(never)).toBe(false);
    const r = ok(coffer(['key', 'add', '--label', 'weak in tests'], { ...pw('first password'), COFFER_NEW_PASSWORD: 'fourth password' }));
    expect(r.stderr).toMatch(/warning: COFFER_TEST_LOW_KDF=1/);
  });

  it('add with a wrong password: exit 12', () => {
    fails(coffer(['key', 'add'], { ...pw('not it'), COFFER_NEW_PASSWORD: 'x' }), 12, /wrong password/);
  });

  it('passwd replaces the key in use: the old password stops working, the label stays, other keys are untouched', () => {
    const before = list(pw('third password'));
    const old = before.find((k) => k.current)!;
    const r = ok(coffer(['key', 'passwd', '--json'], { ...pw('third password'), COFFER_NEW_PASSWORD: 'third password, changed' }));
    const j = JSON.parse(r.stdout) as { old_id: string; new_id: string };
    expect(j.old_id).toBe(old.id);
    fails(coffer(['snapshots'], pw('third password')), 12, /wrong password/);
    const after = list(pw('third password, changed'));
    expect(after).toHaveLength(before.length);
    expect(after.map((k) => k.id)).not.toContain(old.id);
    expect(after.find((k) => k.current)).toMatchObject({ id: j.new_id, label: old.label, kind: 'passphrase' });
    ok(coffer(['snapshots', '-q'], pw('first password')));
    ok(coffer(['snapshots', '-q'], pw('second password')));
  });

  it('remove refuses the key in use (exit 2) and unknown ids; removes another key by prefix', () => {
    const keys = list(pw('first password'));
    const current = keys.find((k) => k.current)!;
    fails(coffer(['key', 'remove', current.short_id], pw('first password')), 2, /key in use/);
    fails(coffer(['key', 'remove', 'ffffffffffff'.slice(0, 12)], pw('first password')), 2, /no key with id|ambiguous/);
    fails(coffer(['key', 'remove', 'not-hex'], pw('first password')), 2, /not a key id/);
    const second = keys.find((k) => k.label === 'desk-label-7f3a')!;
    ok(coffer(['key', 'remove', second.id.slice(0, 10)], pw('first password')));
    fails(coffer(['snapshots'], pw('second password')), 12, /wrong password/);
    expect(list(pw('first password'))).toHaveLength(keys.length - 1);
  });

  it('a key file planted from another repository is listed as unreadable, does not open anything, and can be removed', () => {
    const other = path.join(dir, 'other-repo');
    ok(coffer(['init', '-r', other], pw('planted password')));
    const planted = readdirSync(path.join(other, 'keys')).find((n) => /^[0-9a-f]{64}$/.test(n))!;
    writeFileSync(path.join(repo, 'keys', planted), readFileSync(path.join(other, 'keys', planted)));
    const keys = list(pw('first password'));
    expect(keys.find((k) => k.id === planted)).toMatchObject({ kind: 'unreadable', label: '', current: false });
    // Its own passphrase unwraps the other repository's master secret, which does not open this config.
    fails(coffer(['snapshots'], pw('planted password')), 13, /belongs to another repository/);
    // The right passphrase still opens, whichever order the slots are tried in.
    ok(coffer(['snapshots', '-q'], pw('first password')));
    ok(coffer(['key', 'remove', planted], pw('first password')));
    expect(list(pw('first password')).map((k) => k.id)).not.toContain(planted);
  });
});

describe('KDF strength outside tests', () => {
  it('a slot made with the test KDF warns when it opens; key passwd replaces it with a full-strength Argon2id slot', () => {
    const weakRepo = path.join(dir, 'weak-repo');
    const base = { ...env({}), COFFER_REPOSITORY: weakRepo, COFFER_CACHE_DIR: path.join(dir, 'weak-cache') };
    ok(coffer(['init'], { ...base, COFFER_PASSWORD: 'weak one' }));
    const real = { ...base, COFFER_TEST_LOW_KDF: '0' };
    const r = ok(coffer(['snapshots', '-q'], { ...real, COFFER_PASSWORD: 'weak one' }));
    expect(r.stderr).toMatch(/warning: the password in use has a weak key-derivation setting/);
    ok(coffer(['key', 'passwd'], { ...real, COFFER_PASSWORD: 'weak one', COFFER_NEW_PASSWORD: 'strong one' }));
    const files = readdirSync(path.join(weakRepo, 'keys')).filter((n) => /^[0-9a-f]{64}$/.test(n));
    expect(files).toHaveLength(1);
    const kdf = JSON.parse(readFileSync(path.join(weakRepo, 'keys', files[0]), 'utf8')).kdf;
    expect(kdf).toMatchObject({ algorithm: 'argon2id', memoryKiB: 131072, parallelism: 2 });
    expect(kdf.iterations).toBeGreaterThanOrEqual(2);
    expect(Buffer.from(kdf.salt, 'base64')).toHaveLength(16);
    const again = ok(coffer(['snapshots', '-q'], { ...real, COFFER_PASSWORD: 'strong one' }));
    expect(again.stderr).not.toMatch(/weak/);
  });
});

describe('recovery keys', () => {
  let code: string;
  let recId: string;

  beforeAll(() => {
    ({ code, id: recId } = addRecovery(pw('first password'), 'paper in the safe'));
  });

  it('the code is 9 groups of 4 Crockford characters; human output prints it once with a warning', () => {
    expect(code).toMatch(/^([0-9A-HJKMNP-TV-Z]{4}-){8}[0-9A-HJKMNP-TV-Z]{4}$/);
    const r = ok(coffer(['key', 'add', '--recovery', '-q'], pw('first password')));
    const codes = r.stdout.match(/([0-9A-Z]{4}-){8}[0-9A-Z]{4}/g);
    expect(codes).toHaveLength(1);
    expect(r.stdout).toMatch(/shown only this once/);
    expect(list(pw('first password')).find((k) => k.label === 'paper in the safe')).toMatchObject({ id: recId, kind: 'recovery' });
    for (const b of keyFiles()) expect(b.includes(code.replace(/-/g, '')) || b.includes(code)).toBe(false);
  });

  it('opens every command: snapshots, backup, restore, check, key list (flag and environment; case and spacing ignored)', () => {
    const noPw = env({});
    ok(coffer(['snapshots', '-q', '--recovery-key', code], noPw));
    ok(coffer(['backup', '-q', src, '--recovery-key', code], noPw));
    const target = path.join(dir, 'restored-by-recovery');
    ok(coffer(['restore', 'latest', '--target', target], env({ COFFER_RECOVERY_KEY: code.toLowerCase().replace(/-/g, ' ') })));
    expect(readFileSync(path.join(target, src, 'b.bin')).equals(readFileSync(path.join(src, 'b.bin')))).toBe(true);
    ok(coffer(['check'], env({ COFFER_RECOVERY_KEY: code })));
    const keys = list(env({ COFFER_RECOVERY_KEY: code }));
    expect(keys.find((k) => k.current)).toMatchObject({ id: recId, kind: 'recovery' });
  });

  it('a typo is a checksum mismatch (exit 12), not a wrong key; a well-formed foreign code is a wrong key', () => {
    const groups = code.split('-');
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    const c = groups[4][2];
    groups[4] = groups[4].slice(0, 2) + alphabet[(alphabet.indexOf(c) + 1) % 32] + groups[4][3];
    fails(coffer(['snapshots', '--recovery-key', groups.join('-')], env({})), 12, /checksum mismatch/);
    fails(coffer(['snapshots', '--recovery-key', code.slice(0, -1)], env({})), 12, /35 characters; expected 36/);
    fails(coffer(['snapshots', '--recovery-key', 'U' + code.slice(1)], env({})), 12, /character 1 is not/);
    const foreign = encodeRecoveryCode(randomBytes(20));
    fails(coffer(['snapshots', '--recovery-key', foreign], env({})), 12, /wrong recovery key/);
  });

  it('forgotten password: open with the recovery key, add a new password; passwd on a recovery key is refused', () => {
    fails(coffer(['key', 'passwd'], env({ COFFER_RECOVERY_KEY: code, COFFER_NEW_PASSWORD: 'x' })), 2, /recovery key/);
    ok(coffer(['key', 'add', '--label', 'new laptop'], env({ COFFER_RECOVERY_KEY: code, COFFER_NEW_PASSWORD: 'brand new password' })));
    ok(coffer(['snapshots', '-q'], pw('brand new password')));
  });

  it('after removing every recovery slot, a valid code says the repository has none', () => {
    for (const k of list(pw('first password')).filter((x) => x.kind === 'recovery')) ok(coffer(['key', 'remove', k.id], pw('first password')));
    fails(coffer(['snapshots', '--recovery-key', code], env({})), 12, /has no recovery key/);
  });

  it('the key in use is refused even when it is the last key', () => {
    const keys = list(pw('first password'));
    for (const k of keys.filter((x) => !x.current)) ok(coffer(['key', 'remove', k.id], pw('first password')));
    const only = list(pw('first password'));
    expect(only).toHaveLength(1);
    fails(coffer(['key', 'remove', only[0].id], pw('first password')), 2, /key in use/);
    ok(coffer(['snapshots', '-q'], pw('first password')));
  });
});
