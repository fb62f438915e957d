/** Start-up of the CLI: `--version` without the command grammar, and the COFFER_TIMINGS marks. */
import { afterAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { coffer, noSecretsEnv, ROOT, scratch } from './helpers.js';

const { dir, cleanup } = scratch('coffer-startup-');
afterAll(() => cleanup());
const PASSWORD = 'timing marks never carry a secret';

describe('start-up', () => {
  it('--version and -V print the version alone, as commander did; every other command line goes to commander', () => {
    const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = coffer([flag]);
      expect([r.code, r.stdout, r.stderr]).toEqual([0, `${version}\n`, '']);
    }
    const v = coffer(['--version', '--bogus']); // commander's own answer to this one
    expect([v.code, v.stdout]).toEqual([0, `${version}\n`]);
    const r = coffer(['snapshots', '--bogus']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--bogus'/);
  });

  it('COFFER_TIMINGS=1 prints named marks (no values) on stderr; without it nothing', () => {
    const repo = path.join(dir, 'repo');
    const env = noSecretsEnv(repo, { COFFER_PASSWORD: PASSWORD, COFFER_CACHE_DIR: path.join(dir, 'cache') });
    expect(coffer(['init'], env).code).toBe(0);
    const plain = coffer(['snapshots'], env);
    expect([plain.code, plain.stderr]).toEqual([0, '']);
    const timed = coffer(['snapshots'], { ...env, COFFER_TIMINGS: '1' });
    expect(timed.code).toBe(0);
    expect(timed.stdout).toBe(plain.stdout);
    const lines = timed.stderr.trimEnd().split('\n');
    for (const l of lines) expect(l).toMatch(/^coffer-timing +\d+\.\d ms +\d+\.\d ms-cpu {2}[a-z ]+$/);
    const names = lines.map((l) => l.replace(/^.*ms-cpu {2}/, ''));
    expect(names).toEqual(expect.arrayContaining(['cli loaded', 'commands loaded', 'open', 'kdf start', 'kdf end', 'keys derived', 'index synced', 'closed', 'done']));
    expect(names.indexOf('kdf start')).toBeLessThan(names.indexOf('preload start')); // preloads wait for the derivation to start
    expect(names.at(-1)).toBe('done');
    expect(timed.stderr).not.toContain(PASSWORD);
  });
});
