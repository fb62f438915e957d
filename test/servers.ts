/**
 * Real storage servers for tests, started as child processes on loopback
 * (so a test can SIGKILL them): `rclone serve restic` for the REST protocol
 * and s3rver (npm) for S3. Each resolves once the server prints its address.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './helpers.js';

export interface Server {
  url: string;
  port: number;
  proc: ChildProcess;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
}

/** Why rclone cannot be used here, or undefined when it can. */
export function rcloneMissing(): string | undefined {
  const r = spawnSync('rclone', ['version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return 'rclone is not installed (apt-get install rclone; .ci/run does it)';
  return undefined;
}

function waitFor(proc: ChildProcess, pattern: RegExp, what: string): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer) => {
      out += b.toString('utf8');
      const m = pattern.exec(out);
      if (m) {
        proc.stdout?.off('data', onData);
        proc.stderr?.off('data', onData);
        proc.stdout?.resume();
        proc.stderr?.resume();
        resolve(m);
      }
    };
    proc.stdout?.on('data', onData);
    proc.stderr?.on('data', onData);
    proc.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready:\n${out}`)));
    proc.once('error', reject);
  });
}

function killer(proc: ChildProcess): () => Promise<void> {
  return () =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
}

/** `rclone serve restic DIR` on 127.0.0.1 (port 0 = any free port). */
export async function startRcloneRestic(dir: string, opts: { port?: number; appendOnly?: boolean } = {}): Promise<Server> {
  const args = ['serve', 'restic', '--addr', `127.0.0.1:${opts.port ?? 0}`, '--config', '/dev/null', dir];
  if (opts.appendOnly) args.splice(2, 0, '--append-only');
  const proc = spawn('rclone', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const m = await waitFor(proc, /Serving restic REST API on (http:\/\/127\.0\.0\.1:(\d+)\/)/, 'rclone serve restic');
  return { url: m[1], port: Number(m[2]), proc, kill: killer(proc) };
}

export const S3_ACCESS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };

/** s3rver with one bucket, `bucket`, keeping its objects in DIR. */
export async function startS3rver(dir: string, opts: { port?: number } = {}): Promise<Server> {
  const bin = path.join(ROOT, 'node_modules', 's3rver', 'bin', 's3rver.js');
  // s3rver makes list continuation tokens with DES, which OpenSSL 3 keeps in its legacy provider.
  const proc = spawn(process.execPath, ['--openssl-legacy-provider', bin, '-d', dir, '-a', '127.0.0.1', '-p', String(opts.port ?? 0), '--configure-bucket', 'bucket', '--no-vhost-buckets'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const m = await waitFor(proc, /S3rver listening on 127\.0\.0\.1:(\d+)/, 's3rver');
  return { url: `http://127.0.0.1:${m[1]}`, port: Number(m[1]), proc, kill: killer(proc) };
}
