/**
 * Remote-repository benchmark: backup and restore of one corpus through REST
 * (`rclone serve restic`) and S3 (s3rver from npm), coffer and restic against
 * the same server in the same run, plus coffer on a local directory for
 * reference. Wall seconds, CPU seconds and peak RSS under GNU time.
 *
 *   node dist/bench/remote.js [--corpus DIR] [--json FILE]
 *
 * Default corpus: a copy of this project's node_modules (many small files)
 * plus 64 MiB of random data. Each server keeps its data under a scratch
 * directory that is removed at the end. s3rver is a Node.js mock that stores
 * every object as three files; its figures measure s3rver as much as the
 * client (see docs/PERFORMANCE.md).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { dirManifest, fmtNum, markdownTable, parseArgs, requireGnuTime, runTimed, sh, warm, which, type TimedResult } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const COFFER = path.join(ROOT, 'bin', 'coffer.js');

function start(cmd: string, args: string[], ready: RegExp): Promise<{ proc: ChildProcess; m: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const on = (b: Buffer) => {
      out += b.toString();
      const m = ready.exec(out);
      if (m) resolve({ proc, m });
    };
    proc.stdout!.on('data', on);
    proc.stderr!.on('data', on);
    proc.on('exit', (c) => reject(new Error(`${cmd} exited ${c}: ${out}`)));
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2), [], ['--corpus', '--json'], 'node dist/bench/remote.js [--corpus DIR] [--json FILE]');
  requireGnuTime();
  const work = mkdtempSync(path.join(os.tmpdir(), 'coffer-bench-remote-'));
  const results: { tool: string; target: string; step: string; r: TimedResult }[] = [];
  const procs: ChildProcess[] = [];
  const failures: string[] = [];
  try {
    let corpus = args.values.get('--corpus');
    if (!corpus) {
      corpus = path.join(work, 'corpus');
      cpSync(path.join(ROOT, 'node_modules'), path.join(corpus, 'node_modules'), { recursive: true });
      mkdirSync(path.join(corpus, 'random'));
      for (let i = 0; i < 8; i++) writeFileSync(path.join(corpus, 'random', `r${i}.bin`), randomBytes(8 << 20));
    }
    const m = dirManifest(corpus);
    const restDir = path.join(work, 'rest');
    const s3Dir = path.join(work, 's3');
    mkdirSync(restDir);
    mkdirSync(s3Dir);
    const rest = await start('rclone', ['serve', 'restic', '--addr', '127.0.0.1:0', '--config', '/dev/null', restDir], /Serving restic REST API on (http:\/\/[^/]+\/)/);
    const s3 = await start(process.execPath, ['--openssl-legacy-provider', path.join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js'), '-d', s3Dir, '-a', '127.0.0.1', '-p', '0', '-s', '--configure-bucket', 'bench', '--no-vhost-buckets'], /listening on 127\.0\.0\.1:(\d+)/);
    procs.push(rest.proc, s3.proc);
    const restUrl = rest.m[1];
    const s3Url = `http://127.0.0.1:${s3.m[1]}`;
    const base = { ...process.env, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_DEFAULT_REGION: 'us-east-1', RESTIC_PASSWORD: 'bench', COFFER_PASSWORD: 'bench', RESTIC_CACHE_DIR: path.join(work, 'restic-cache'), COFFER_CACHE_DIR: path.join(work, 'coffer-cache') };
    const targets: { tool: string; target: string; repo: string }[] = [
      { tool: 'coffer', target: 'local', repo: path.join(work, 'local-repo') },
      { tool: 'coffer', target: 'rest', repo: `rest:${restUrl}coffer` },
      { tool: 'restic', target: 'rest', repo: `rest:${restUrl}restic` },
      { tool: 'coffer', target: 's3', repo: `s3:${s3Url}/bench/coffer` },
      { tool: 'restic', target: 's3', repo: `s3:${s3Url}/bench/restic` },
    ].filter((t) => t.tool !== 'restic' || which('restic'));
    const timeFile = path.join(work, 'time');
    const log = path.join(work, 'log');
    for (const t of targets) {
      const run = (a: string[]) =>
        t.tool === 'coffer' ? runTimed(process.execPath, [COFFER, ...a, '-r', t.repo, '-q'], { env: base, timeFile, logFile: log }) : runTimed('restic', [...a, '-r', t.repo, '-q'], { env: base, timeFile, logFile: log });
      const init = await run(t.tool === 'coffer' ? ['init'] : ['init', '--repository-version', '2']);
      if (init.code !== 0) {
        failures.push(`${t.tool} on ${t.target}: init failed: ${init.stderr.trim().split('\n').at(-1)}`);
        continue;
      }
      for (const step of ['backup', 'rebackup', 'restore'] as const) {
        warm([corpus]);
        sh('sync');
        const target = path.join(work, `restore-${t.tool}-${t.target}`);
        const a = step === 'restore' ? (t.tool === 'coffer' ? ['restore', 'latest', '--target', target] : ['restore', 'latest', '--target', target]) : t.tool === 'restic' ? ['backup', '--compression', 'auto', corpus] : ['backup', corpus];
        const r = await run(a);
        if (r.code !== 0) {
          failures.push(`${t.tool} on ${t.target}: ${step} failed: ${r.stderr.trim().split('\n').at(-1)}`);
          break;
        }
        if (step === 'restore') sh(`diff -r ${JSON.stringify(corpus)} ${JSON.stringify(path.join(target, corpus))} > /dev/null`);
        results.push({ tool: t.tool, target: t.target, step, r });
        process.stderr.write(`${t.tool} ${t.target} ${step}: ${r.wall} s\n`);
      }
    }
    const rows = results.map((x) => [x.target, x.tool, x.step, fmtNum(x.r.wall), fmtNum(x.r.user + x.r.sys), fmtNum(x.r.rssMiB, 0)]);
    process.stdout.write(`corpus: ${m.files} files, ${(m.bytes / 2 ** 20).toFixed(0)} MiB\n\n`);
    process.stdout.write(markdownTable(['target', 'tool', 'step', 'wall s', 'CPU s', 'peak RSS MiB'], rows) + '\n');
    for (const f of failures) process.stdout.write(`\n- ${f}`);
    process.stdout.write('\n');
    const jsonFile = args.values.get('--json');
    if (jsonFile) writeFileSync(jsonFile, JSON.stringify({ files: m.files, bytes: m.bytes, results: results.map((x) => ({ ...x, r: { ...x.r, stdout: undefined, stderr: undefined } })) }, null, 2));
  } finally {
    for (const p of procs) p.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((e) => {
  process.stderr.write(`bench: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
