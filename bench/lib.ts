/**
 * Helpers shared by the benchmarks (bench/run.ts, bench/micro.ts): argument
 * parsing, timed child processes via GNU time, directory sizes, page-cache
 * warming, Markdown tables and number formatting.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, lstatSync, readdirSync, statSync, openSync, readSync, closeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const KiB = 1024;
export const MiB = 1024 * KiB;

// ---------------------------------------------------------------- arguments

export interface ParsedArgs {
  flags: Set<string>;
  values: Map<string, string>;
}

/**
 * Minimal `--flag` / `--key value` / `--key=value` parser. `valued` lists the
 * options that take a value; anything unknown is an error (exit 2).
 */
export function parseArgs(argv: string[], booleans: string[], valued: string[], usage: string): ParsedArgs {
  const flags = new Set<string>();
  const values = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') {
      process.stdout.write(usage);
      process.exit(0);
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (booleans.includes(name) && eq < 0) flags.add(name);
    else if (valued.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) fail(`${name} needs a value\n${usage}`, 2);
      values.set(name, v);
    } else fail(`unknown argument: ${a}\n${usage}`, 2);
  }
  return { flags, values };
}

export function fail(message: string, code = 1): never {
  process.stderr.write(`error: ${message}\n`);
  process.exit(code);
}

// ---------------------------------------------------------------- processes

/** Absolute path of `cmd` on PATH, or undefined. */
export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const p = path.join(dir, cmd);
    try {
      const s = statSync(p);
      if (s.isFile() && (s.mode & 0o111) !== 0) return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** Runs a command synchronously, returns trimmed stdout ('' on failure). */
export function capture(cmd: string, args: string[], env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 * MiB });
  return r.status === 0 ? r.stdout.trim() : '';
}

export interface TimedResult {
  /** exit code of the measured command (or -1 when killed by a signal) */
  code: number;
  wall: number;
  user: number;
  sys: number;
  /** peak resident set size in MiB (GNU time %M is in KiB) */
  rssMiB: number;
  stdout: string;
  /** the last 8 KiB of stderr */
  stderr: string;
}

export const GNU_TIME = '/usr/bin/time';

export function requireGnuTime(): void {
  const r = spawnSync(GNU_TIME, ['-f', '%e', 'true'], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    fail(`${GNU_TIME} (GNU time) is needed to measure CPU time and peak RSS: install it with \`apt-get install time\``);
}

/**
 * Runs `cmd args` under `/usr/bin/time -f '%e %U %S %M'` and returns wall
 * seconds, user/sys CPU seconds and peak RSS. stdout is kept (up to 64 MiB),
 * stderr's tail too. If `logFile` is given, stdout and stderr are also
 * appended there.
 */
export function runTimed(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeFile: string; logFile?: string },
): Promise<TimedResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(GNU_TIME, ['-f', '%e %U %S %M', '-o', opts.timeFile, cmd, ...args], {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : undefined;
    log?.write(`\n$ ${[cmd, ...args].join(' ')}\n`);
    const out: Buffer[] = [];
    let outLen = 0;
    let err = Buffer.alloc(0);
    child.stdout.on('data', (b: Buffer) => {
      log?.write(b);
      if (outLen < 64 * MiB) {
        out.push(b);
        outLen += b.length;
      }
    });
    child.stderr.on('data', (b: Buffer) => {
      log?.write(b);
      err = Buffer.concat([err, b]);
      if (err.length > 8 * KiB) err = err.subarray(err.length - 8 * KiB);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      log?.end();
      let wall = NaN,
        user = NaN,
        sys = NaN,
        rss = NaN;
      try {
        const fd = openSync(opts.timeFile, 'r');
        const buf = Buffer.alloc(4096);
        const n = readSync(fd, buf, 0, buf.length, 0);
        closeSync(fd);
        // With a non-zero exit GNU time first writes "Command exited with non-zero status N".
        const lines = buf.toString('utf8', 0, n).trim().split('\n');
        const last = lines[lines.length - 1].trim().split(/\s+/).map(Number);
        if (last.length === 4 && last.every((x) => Number.isFinite(x))) [wall, user, sys, rss] = last;
      } catch {
        /* leave NaN */
      }
      resolve({
        code: code ?? -1,
        wall,
        user,
        sys,
        rssMiB: rss / 1024,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: err.toString('utf8'),
      });
    });
  });
}

/** Runs a shell command without timing it; throws with its stderr on failure. */
export function sh(script: string, opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): string {
  const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', env: opts.env ?? process.env, cwd: opts.cwd, maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`command failed (exit ${r.status}): ${script}\n${(r.stderr ?? '').trim()}`);
  return r.stdout;
}

// ---------------------------------------------------------------- files

/** Sum of the sizes of all regular files under `dir` (symlinks not followed); 0 if absent. */
export function dirBytes(dir: string): number {
  let total = 0;
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return 0;
  }
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    let ents;
    try {
      ents = readdirSync(d, { withFileTypes: true });
    } catch {
      continue; // vanished (e.g. a lock file's directory)
    }
    for (const e of ents) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) stack.push(p);
      else if (e.isFile()) {
        try {
          total += lstatSync(p).size;
        } catch {
          /* vanished */
        }
      }
    }
  }
  return total;
}

/** Number of regular files and their total size under `dir`. */
export function dirManifest(dir: string): { files: number; bytes: number } {
  const r = spawnSync('bash', ['-c', 'find "$1" -type f -printf "%s\\n" | awk \'{n++; s+=$1} END {printf "%d %d", n, s}\'', '_', dir], {
    encoding: 'utf8',
  });
  const [files, bytes] = (r.stdout || '0 0').split(' ').map(Number);
  return { files, bytes };
}

/** Reads every file under the given paths once, so that they sit in the page cache. */
export function warm(paths: string[]): void {
  const existing = paths.filter((p) => existsSync(p));
  if (!existing.length) return;
  // Not `tar cf /dev/null`: GNU tar notices /dev/null and skips reading file data.
  sh(`find ${existing.map(shq).join(' ')} -type f -print0 | xargs -0 -r cat > /dev/null`);
}

export function shq(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

// ---------------------------------------------------------------- machine

export function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    hostname: os.hostname(),
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memory_gib: +(os.totalmem() / 2 ** 30).toFixed(1),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadavg: os.loadavg().map((x) => +x.toFixed(2)),
  };
}

/** Busy CPU seconds of the whole machine so far (all processes, from /proc/stat), or NaN. */
export function machineBusySeconds(): number {
  try {
    const fd = openSync('/proc/stat', 'r');
    const buf = Buffer.alloc(1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    const f = buf.toString('utf8', 0, n).split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    const busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7];
    return busy / 100; // USER_HZ
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------- formatting

export function fmtNum(x: number | undefined | null, digits = 2): string {
  return x === undefined || x === null || !Number.isFinite(x) ? '–' : x.toFixed(digits);
}

export function fmtMiB(bytes: number | undefined | null, digits = 1): string {
  return bytes === undefined || bytes === null || !Number.isFinite(bytes) ? '–' : (bytes / MiB).toFixed(digits);
}

/** MB/s from bytes and milliseconds. */
export function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1e3);
}

/** A GitHub-flavoured Markdown table; columns after the first are right-aligned. */
export function markdownTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    '| ' + cells.map((c, i) => (i === 0 ? (c ?? '').padEnd(widths[i]) : (c ?? '').padStart(widths[i]))).join(' | ') + ' |';
  const sep = '|' + widths.map((w, i) => (i === 0 ? ':' + '-'.repeat(w + 1) : '-'.repeat(w + 1) + ':')).join('|') + '|';
  return [line(headers), sep, ...rows.map(line)].join('\n');
}
