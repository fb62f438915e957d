/**
 * Whole-process benchmark: coffer vs restic vs borg on the standard corpora
 * (../shared/corpus/make-corpus.sh). Every command runs under GNU time; for
 * each step and tool we record wall seconds, CPU seconds (user + sys), peak
 * RSS (ru_maxrss: coffer's worker threads are in its one process), the bytes
 * the step added to the repository and the CPU other processes used
 * meanwhile (/proc/stat), and per step coffer's wall time ÷ each peer's.
 * Prints Markdown tables (and the issue's targets, met or missed) and writes
 * them as JSON (+ .md). bench/summarize.ts takes the medians of several runs.
 *
 *   node dist/bench/run.js [--quick] [--tools coffer,restic,borg] [--corpus DIR]
 *                          [--json FILE] [--steps a,b,...] [--keep]
 *
 * Steps (in this order; dependencies are added automatically):
 *   init         create the repository (coffer with its real Argon2id KDF)
 *   src          first backup of WORK/src, a `cp -a` copy of the src corpus
 *   rebackup     backup of the unchanged WORK/src (parent snapshot / files cache)
 *   mixed2       `make-corpus.sh edit WORK/src` (= the mixed2 corpus), backup of WORK/src
 *   big          backup of WORK/big (a copy of big/big.bin, 1 GiB random)
 *   big2         WORK/big/big.bin overwritten with big2/big.bin, backup of WORK/big
 *                (same repository, same path: growth = what big2 adds to a repository holding big)
 *   small        backup of the small corpus (100,000 files)
 *   restore-src  full restore of the `src` snapshot, verified with diff -r against the src corpus
 *   restore-big  full restore of the `big` snapshot, verified against big/big.bin
 *   check        full check reading all data (coffer check --read-data,
 *                restic check --read-data, borg check --verify-data)
 *
 * --quick runs init, src, open, rebackup, mixed2, restore-src and check (src corpus only).
 * `open` (list the snapshots) is each tool's fixed cost of opening the
 * repository — key derivation, start-up, cache — shown apart and left out
 * of the totals.
 *
 * Settings: restic repository version 2 with --compression auto; borg
 * repokey-blake2 with --compression lz4; coffer defaults (zstd 3). Each tool
 * keeps its cache in the scratch directory (~/.cache/coffer-bench/run-*),
 * which is removed at the end (unless --keep); restored trees are kept until
 * then (deleting many files just before a restore slows file creation on ext4
 * for ~5 minutes — do not start a run right after deleting a large tree). The page cache is warmed
 * before every step for every tool, `sync` runs between commands, and the
 * tool order rotates from step to step so that drift affects all alike.
 */
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  capture,
  dirBytes,
  dirManifest,
  fail,
  fmtMiB,
  fmtNum,
  machineBusySeconds,
  machineInfo,
  markdownTable,
  parseArgs,
  requireGnuTime,
  runTimed,
  sh,
  shq,
  warm,
  which,
  type TimedResult,
} from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/**
 * ../shared/corpus/make-corpus.sh next to the project (in a git worktree
 * further up: the nearest ancestor's shared/ wins); COFFER_MAKE_CORPUS overrides.
 */
const MAKE_CORPUS = ((): string => {
  if (process.env.COFFER_MAKE_CORPUS) return path.resolve(process.env.COFFER_MAKE_CORPUS);
  const rel = path.join('shared', 'corpus', 'make-corpus.sh');
  for (let dir = path.dirname(ROOT); ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, rel))) return path.join(dir, rel);
    if (path.dirname(dir) === dir) return path.resolve(ROOT, '..', rel);
  }
})();
const BUILD_HINT = `build the corpora with: bash ${path.relative(process.cwd(), MAKE_CORPUS) || MAKE_CORPUS} all`;

const USAGE = `usage: node dist/bench/run.js [--quick] [--tools coffer,restic,borg] [--corpus DIR]
                             [--json FILE] [--steps STEP,...] [--keep]
steps: init, src, open, rebackup, mixed2, big, big2, small, restore-src, restore-big, check
--quick      init, src, open, rebackup, mixed2, restore-src, check (about 2-3 minutes)
--corpus     corpus root (default $OUT or ~/.cache/coffer-corpus)
--json       results file (default bench/results/latest.json; with --quick bench/results/latest-quick.json);
             the tables are also written next to it as .md
--keep       keep the scratch directory (repositories, logs) for inspection
`;

type ToolName = 'coffer' | 'restic' | 'borg';
const ALL_TOOLS: ToolName[] = ['coffer', 'restic', 'borg'];

type StepName = 'init' | 'src' | 'open' | 'rebackup' | 'mixed2' | 'big' | 'big2' | 'small' | 'restore-src' | 'restore-big' | 'check';
interface StepDef {
  name: StepName;
  title: string;
  deps: StepName[];
  corpora: string[];
  /** Shown, but not part of the issue's step list: left out of the totals. */
  informational?: boolean;
}
const STEPS: StepDef[] = [
  { name: 'init', title: 'init', deps: [], corpora: [] },
  { name: 'src', title: 'backup src (first)', deps: ['init'], corpora: ['src'] },
  { name: 'open', title: 'open + list snapshots (fixed cost)', deps: ['src'], corpora: [], informational: true },
  { name: 'rebackup', title: 're-backup src (unchanged)', deps: ['src'], corpora: ['src'] },
  { name: 'mixed2', title: 'backup mixed2 (edited src)', deps: ['src'], corpora: ['src', 'mixed2'] },
  { name: 'big', title: 'backup big (1 GiB)', deps: ['init'], corpora: ['big'] },
  { name: 'big2', title: 'backup big2 (after big)', deps: ['big'], corpora: ['big', 'big2'] },
  { name: 'small', title: 'backup small (100k files)', deps: ['init'], corpora: ['small'] },
  { name: 'restore-src', title: 'restore src', deps: ['src'], corpora: ['src'] },
  { name: 'restore-big', title: 'restore big', deps: ['big'], corpora: ['big'] },
  { name: 'check', title: 'check, reading all data', deps: ['init'], corpora: [] },
];
const QUICK: StepName[] = ['init', 'src', 'open', 'rebackup', 'mixed2', 'restore-src', 'check'];
const BACKUP_STEPS: StepName[] = ['src', 'rebackup', 'mixed2', 'big', 'big2', 'small'];

// ---------------------------------------------------------------- options

const args = parseArgs(process.argv.slice(2), ['--quick', '--keep'], ['--tools', '--corpus', '--json', '--steps'], USAGE);
const quick = args.flags.has('--quick');
const keep = args.flags.has('--keep');
const corpusRoot = path.resolve(args.values.get('--corpus') ?? process.env.OUT ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'coffer-corpus'));
const jsonFile = path.resolve(args.values.get('--json') ?? path.join(ROOT, 'bench', 'results', quick ? 'latest-quick.json' : 'latest.json'));

const requestedTools = (args.values.get('--tools') ?? ALL_TOOLS.join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);
for (const t of requestedTools) if (!ALL_TOOLS.includes(t as ToolName)) fail(`unknown tool "${t}" (known: ${ALL_TOOLS.join(', ')})`, 2);

let wanted: StepName[] = args.values.has('--steps')
  ? (args.values.get('--steps')!.split(',').map((s) => s.trim()).filter(Boolean) as StepName[])
  : quick
    ? QUICK
    : STEPS.map((s) => s.name);
for (const s of wanted) if (!STEPS.some((d) => d.name === s)) fail(`unknown step "${s}"\n${USAGE}`, 2);
{
  // Add dependencies (transitively), keep the canonical order.
  const set = new Set<StepName>(wanted);
  let grew = true;
  while (grew) {
    grew = false;
    for (const s of [...set])
      for (const d of STEPS.find((x) => x.name === s)!.deps)
        if (!set.has(d)) {
          set.add(d);
          grew = true;
          if (d !== 'init') log(`note: step "${s}" needs "${d}": running it too`);
        }
  }
  wanted = STEPS.map((s) => s.name).filter((s) => set.has(s));
}

// Corpora: skip steps whose corpus is missing (and the steps that depend on them).
const missing = new Set<string>();
for (const s of STEPS.filter((d) => wanted.includes(d.name)))
  for (const c of s.corpora) if (!existsSync(path.join(corpusRoot, c))) missing.add(c);
if (missing.size) {
  log(`corpus missing under ${corpusRoot}: ${[...missing].join(', ')} — ${BUILD_HINT}`);
  const skipped = new Set<StepName>();
  for (const s of STEPS) {
    if (!wanted.includes(s.name)) continue;
    if (s.corpora.some((c) => missing.has(c)) || s.deps.some((d) => skipped.has(d))) skipped.add(s.name);
  }
  for (const s of skipped) log(`skipping step ${s}`);
  wanted = wanted.filter((s) => !skipped.has(s));
  if (!wanted.some((s) => s !== 'init' && s !== 'check')) fail(`nothing to run without the corpora: ${BUILD_HINT}`);
}
if (wanted.includes('mixed2') && !existsSync(MAKE_CORPUS)) {
  log(`${MAKE_CORPUS} not found: skipping step mixed2`);
  wanted = wanted.filter((s) => s !== 'mixed2');
}

requireGnuTime();

function log(msg: string): void {
  process.stderr.write(`${msg}\n`);
}

// ---------------------------------------------------------------- scratch

const scratchParent = path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'coffer-bench');
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const scratch = path.join(scratchParent, `run-${stamp}-${process.pid}`);
const WORK = path.join(scratch, 'work');
const workSrc = path.join(WORK, 'src');
const workBig = path.join(WORK, 'big');
const logFile = path.join(scratch, 'commands.log');
mkdirSync(WORK, { recursive: true });
mkdirSync(path.join(scratch, 'time'), { recursive: true });
if (existsSync(corpusRoot) && statSync(corpusRoot).dev !== statSync(scratch).dev)
  log(`warning: the corpus (${corpusRoot}) and the scratch directory (${scratch}) are on different devices`);
{
  const freeGiB = Number(capture('df', ['-B1', '--output=avail', scratch]).split('\n')[1] ?? NaN) / 2 ** 30;
  const need = quick ? 3 : 20;
  if (Number.isFinite(freeGiB) && freeGiB < need) log(`warning: only ${freeGiB.toFixed(1)} GiB free under ${scratch}; the run needs about ${need} GiB`);
}

let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  if (keep) log(`scratch kept: ${scratch}`);
  else rmSync(scratch, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
process.on('SIGTERM', () => {
  cleanup();
  process.exit(143);
});

// ---------------------------------------------------------------- tools

interface Cmd {
  cmd: string;
  args: string[];
  cwd?: string;
}
interface Tool {
  name: ToolName;
  version: string;
  repo: string;
  env: NodeJS.ProcessEnv;
  /** snapshot id (or archive name) per backup step */
  snapshots: Map<StepName, string>;
  init(): Cmd;
  backup(step: StepName, p: string): Cmd;
  snapshotFrom(step: StepName, r: TimedResult): string | undefined;
  restore(step: StepName, snap: string, target: string): Cmd;
  /** undefined: not implemented */
  check(): Cmd | undefined;
  /** List the snapshots: opening the repository and little else. */
  list(): Cmd;
}

/** The inherited environment without any variable of the three tools. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(COFFER_|RESTIC_|BORG_)/.test(k)) env[k] = v;
  if (process.env.COFFER_THREADS) env.COFFER_THREADS = process.env.COFFER_THREADS;
  return env;
}

const PASSWORD = 'benchmark password: correct horse battery staple';

function lastJson(stdout: string, type: string): Record<string, unknown> | undefined {
  const lines = stdout.trim().split('\n').reverse();
  for (const l of lines) {
    try {
      const o = JSON.parse(l) as Record<string, unknown>;
      if (o && o.message_type === type) return o;
    } catch {
      /* not JSON */
    }
  }
  return undefined;
}

function makeCoffer(): Tool {
  const bin = path.join(ROOT, 'bin', 'coffer.js');
  const repo = path.join(scratch, 'repo-coffer');
  const cacheDir = path.join(scratch, 'cache-coffer');
  const env = { ...cleanEnv(), COFFER_REPOSITORY: repo, COFFER_PASSWORD: PASSWORD };
  const node = process.execPath;
  // Run it as an installed `coffer` runs: with the node flags its shebang line asks for.
  const shebang = readFileSync(bin, 'utf8').split('\n', 1)[0];
  const flags = shebang.replace(/^#!.*?\bnode\b/, '').trim().split(/\s+/).filter(Boolean);
  const start = [...flags, bin];
  const checkHelp = capture(node, [...start, 'check', '--help'], env);
  const hasReadData = checkHelp.includes('--read-data');
  return {
    name: 'coffer',
    version: capture(node, [...start, '--version'], env) || 'unknown',
    repo,
    env,
    snapshots: new Map(),
    init: () => ({ cmd: node, args: [...start, 'init', '-q', '--cache-dir', cacheDir] }),
    backup: (_s, p) => ({ cmd: node, args: [...start, 'backup', '-q', '--json', '--cache-dir', cacheDir, p] }),
    snapshotFrom: (_s, r) => lastJson(r.stdout, 'summary')?.snapshot_id as string | undefined,
    restore: (_s, snap, target) => ({ cmd: node, args: [...start, 'restore', '-q', '--cache-dir', cacheDir, snap, '--target', target] }),
    check: () => (hasReadData ? { cmd: node, args: [...start, 'check', '-q', '--read-data', '--cache-dir', cacheDir] } : undefined),
    list: () => ({ cmd: node, args: [...start, 'snapshots', '-q', '--cache-dir', cacheDir] }),
  };
}

function makeRestic(bin: string): Tool {
  const repo = path.join(scratch, 'repo-restic');
  const env = { ...cleanEnv(), RESTIC_REPOSITORY: repo, RESTIC_PASSWORD: PASSWORD, RESTIC_CACHE_DIR: path.join(scratch, 'cache-restic') };
  return {
    name: 'restic',
    version: capture(bin, ['version']) || 'unknown',
    repo,
    env,
    snapshots: new Map(),
    init: () => ({ cmd: bin, args: ['init', '-q', '--repository-version', '2'] }),
    backup: (_s, p) => ({ cmd: bin, args: ['backup', '-q', '--json', '--compression', 'auto', p] }),
    snapshotFrom: (_s, r) => lastJson(r.stdout, 'summary')?.snapshot_id as string | undefined,
    restore: (_s, snap, target) => ({ cmd: bin, args: ['restore', '-q', snap, '--target', target] }),
    check: () => ({ cmd: bin, args: ['check', '-q', '--read-data'] }),
    list: () => ({ cmd: bin, args: ['snapshots', '-q'] }),
  };
}

function makeBorg(bin: string): Tool {
  const repo = path.join(scratch, 'repo-borg');
  const env = {
    ...cleanEnv(),
    BORG_REPO: repo,
    BORG_PASSPHRASE: PASSWORD,
    BORG_BASE_DIR: path.join(scratch, 'borg-base'),
    BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes',
  };
  return {
    name: 'borg',
    version: capture(bin, ['--version']) || 'unknown',
    repo,
    env,
    snapshots: new Map(),
    init: () => ({ cmd: bin, args: ['init', '-e', 'repokey-blake2', repo] }),
    backup: (s, p) => ({ cmd: bin, args: ['create', '--compression', 'lz4', `${repo}::${s}`, p] }),
    snapshotFrom: (s) => s,
    // borg extract writes into the current directory (paths without the leading /).
    restore: (_s, snap, target) => ({ cmd: bin, args: ['extract', `${repo}::${snap}`], cwd: target }),
    check: () => ({ cmd: bin, args: ['check', '--verify-data', repo] }),
    list: () => ({ cmd: bin, args: ['list', repo] }),
  };
}

const tools: Tool[] = [];
const toolStatus: Record<string, { available: boolean; version?: string; path?: string; note?: string }> = {};
for (const name of ALL_TOOLS) {
  if (!requestedTools.includes(name)) {
    toolStatus[name] = { available: false, note: 'not requested (--tools)' };
    continue;
  }
  if (name === 'coffer') {
    if (!existsSync(path.join(ROOT, 'dist', 'src', 'cli', 'main.js'))) fail('coffer is not built: run `npx tsc -p tsconfig.json` first');
    tools.push(makeCoffer());
  } else {
    const bin = which(name);
    if (!bin) {
      toolStatus[name] = { available: false, note: 'not installed' };
      log(`${name}: not installed (apt-get install ${name === 'borg' ? 'borgbackup' : name}) — skipped`);
      continue;
    }
    tools.push(name === 'restic' ? makeRestic(bin) : makeBorg(bin));
  }
  const t = tools[tools.length - 1];
  toolStatus[name] = { available: true, version: t.version };
}
if (!tools.length) fail('no tool to benchmark');

// ---------------------------------------------------------------- measurement

interface Measurement {
  wall: number;
  user: number;
  sys: number;
  cpu: number;
  rss_mib: number;
  exit_code: number;
  repo_bytes_before: number;
  repo_bytes_after: number;
  repo_bytes_added: number;
  /** CPU used by other processes while the command ran, in cores (machine busy time minus the command's, ÷ wall) */
  other_load: number;
  command: string;
  verified?: boolean;
  snapshot?: string;
  summary?: Record<string, unknown>;
  error?: string;
  note?: string;
}
interface StepResult {
  name: StepName;
  title: string;
  order: ToolName[];
  results: Partial<Record<ToolName, Measurement | { skipped: string }>>;
  /** coffer wall time ÷ peer wall time */
  ratio: Partial<Record<ToolName, number>>;
}

const failures: string[] = [];
const stepResults: StepResult[] = [];

function loud(msg: string): void {
  failures.push(msg);
  log(`\n!!!!!!!! ${msg}\n`);
}

async function measure(tool: Tool, step: StepName, c: Cmd): Promise<Measurement> {
  const before = dirBytes(tool.repo);
  const timeFile = path.join(scratch, 'time', `${tool.name}-${step}.txt`);
  const busy0 = machineBusySeconds();
  const r = await runTimed(c.cmd, c.args, { env: tool.env, cwd: c.cwd, timeFile, logFile });
  const busy1 = machineBusySeconds();
  sh('sync');
  const after = dirBytes(tool.repo);
  const m: Measurement = {
    wall: r.wall,
    user: r.user,
    sys: r.sys,
    cpu: +(r.user + r.sys).toFixed(2),
    rss_mib: +r.rssMiB.toFixed(1),
    exit_code: r.code,
    repo_bytes_before: before,
    repo_bytes_after: after,
    repo_bytes_added: after - before,
    other_load: +Math.max(0, (busy1 - busy0 - r.user - r.sys) / r.wall).toFixed(2),
    command: [c.cmd === process.execPath ? 'node' : c.cmd, ...c.args].join(' '),
  };
  if (r.code !== 0) {
    m.error = r.stderr.trim().split('\n').slice(-5).join('\n');
    loud(`${tool.name} ${step} FAILED (exit ${r.code}): ${m.command}${c.cwd ? ` (in ${c.cwd})` : ''}\n${m.error}`);
  }
  if (BACKUP_STEPS.includes(step) && r.code === 0) {
    const snap = tool.snapshotFrom(step, r);
    if (snap) {
      tool.snapshots.set(step, snap);
      m.snapshot = snap;
    } else loud(`${tool.name} ${step}: could not find the snapshot id in the output of ${m.command}`);
    if (tool.name !== 'borg') {
      const s = lastJson(r.stdout, 'summary');
      if (s) m.summary = s;
    }
  }
  return m;
}

function verifyRestore(tool: Tool, reference: string, restoredRoot: string): { ok: boolean; detail: string } {
  if (!existsSync(restoredRoot)) return { ok: false, detail: `${restoredRoot} does not exist after the restore` };
  try {
    sh(`diff -r --no-dereference -q ${shq(reference)} ${shq(restoredRoot)}`);
    return { ok: true, detail: 'identical' };
  } catch (e) {
    const msg = (e as Error).message.split('\n').slice(0, 12).join('\n');
    return { ok: false, detail: `${tool.name}: restored tree differs from ${reference}:\n${msg}` };
  }
}

/** Prepare the inputs of a step (untimed). */
function prepare(step: StepName): void {
  switch (step) {
    case 'src':
      rmSync(workSrc, { recursive: true, force: true });
      sh(`cp -a ${shq(path.join(corpusRoot, 'src'))} ${shq(workSrc)}`);
      break;
    case 'mixed2': {
      sh(`bash ${shq(MAKE_CORPUS)} edit ${shq(workSrc)}`);
      // Sanity: the edited copy must equal the mixed2 corpus.
      const ref = path.join(corpusRoot, 'mixed2');
      if (existsSync(ref)) {
        try {
          sh(`diff -r -q ${shq(ref)} ${shq(workSrc)}`);
        } catch {
          log(`warning: ${workSrc} after the edit differs from ${ref} (corpus built with another SEED?)`);
        }
      }
      break;
    }
    case 'big':
      mkdirSync(workBig, { recursive: true });
      copyFileSync(path.join(corpusRoot, 'big', 'big.bin'), path.join(workBig, 'big.bin'));
      break;
    case 'big2':
      // Overwrite in place: same path, same inode, new content and mtime.
      sh(`cp ${shq(path.join(corpusRoot, 'big2', 'big.bin'))} ${shq(path.join(workBig, 'big.bin'))}`);
      break;
  }
  sh('sync');
}

function inputOf(step: StepName): string[] {
  switch (step) {
    case 'src':
    case 'rebackup':
    case 'mixed2':
      return [workSrc];
    case 'big':
    case 'big2':
      return [workBig];
    case 'small':
      return [path.join(corpusRoot, 'small')];
    default:
      return [];
  }
}

const backupPath: Partial<Record<StepName, string>> = {
  src: workSrc,
  rebackup: workSrc,
  mixed2: workSrc,
  big: workBig,
  big2: workBig,
  small: path.join(corpusRoot, 'small'),
};

async function runStep(def: StepDef, index: number): Promise<void> {
  const order = tools.map((_, i) => tools[(i + index) % tools.length]);
  const res: StepResult = { name: def.name, title: def.title, order: order.map((t) => t.name), results: {}, ratio: {} };
  stepResults.push(res);
  prepare(def.name);
  const t0 = Date.now();
  for (const tool of order) {
    // Warm the page cache with what this command reads: the input, or the repository.
    warm(def.name.startsWith('restore') || def.name === 'check' || def.name === 'open' ? [tool.repo] : inputOf(def.name));
    sh('sync');
    let c: Cmd | undefined;
    let restoreTarget: string | undefined;
    let restoreFrom: StepName | undefined;
    if (def.name === 'init') c = tool.init();
    else if (def.name === 'open') c = tool.list();
    else if (BACKUP_STEPS.includes(def.name)) c = tool.backup(def.name, backupPath[def.name]!);
    else if (def.name === 'restore-src' || def.name === 'restore-big') {
      restoreFrom = def.name === 'restore-src' ? 'src' : 'big';
      const snap = tool.snapshots.get(restoreFrom);
      if (!snap) {
        res.results[tool.name] = { skipped: `no ${restoreFrom} snapshot` };
        continue;
      }
      restoreTarget = path.join(scratch, 'restore', `${tool.name}-${restoreFrom}`);
      mkdirSync(restoreTarget, { recursive: true });
      c = tool.restore(def.name, snap, restoreTarget);
    } else if (def.name === 'check') {
      c = tool.check();
      if (!c) {
        res.results[tool.name] = { skipped: 'n/a (not implemented)' };
        log(`  ${tool.name} check --read-data: n/a (not implemented)`);
        continue;
      }
    }
    const m = await measure(tool, def.name, c!);
    if (restoreTarget && restoreFrom && m.exit_code === 0) {
      // Backing up /x/y and restoring into T recreates T/x/y for all three tools.
      const restoredRoot = path.join(restoreTarget, backupPath[restoreFrom]!);
      const reference = path.join(corpusRoot, restoreFrom);
      const v = verifyRestore(tool, reference, restoredRoot);
      m.verified = v.ok;
      if (!v.ok) {
        m.error = v.detail;
        loud(`RESTORE VERIFICATION FAILED: ${v.detail}`);
      }
    }
    // Restored trees stay until the end of the run: on ext4, creating files within
    // 5 minutes of deleting many others is several times slower (the inode
    // allocator skips recently deleted inodes, see recently_deleted() in
    // fs/ext4/ialloc.c), which would penalise whichever tool runs next.
    res.results[tool.name] = m;
    log(
      `  ${tool.name.padEnd(6)} ${def.name.padEnd(11)} ${fmtNum(m.wall).padStart(8)} s  cpu ${fmtNum(m.cpu).padStart(8)} s  ` +
        `rss ${fmtNum(m.rss_mib, 0).padStart(5)} MiB  +${fmtMiB(m.repo_bytes_added)} MiB` +
        (m.exit_code !== 0 ? `  FAILED (exit ${m.exit_code})` : '') +
        (m.verified === true ? '  verified' : m.verified === false ? '  VERIFY FAILED' : ''),
    );
  }
  const c = res.results.coffer as Measurement | undefined;
  for (const t of tools) {
    const p = res.results[t.name] as Measurement | undefined;
    if (t.name !== 'coffer' && c && 'wall' in c && p && 'wall' in p && c.exit_code === 0 && p.exit_code === 0)
      res.ratio[t.name] = +(c.wall / p.wall).toFixed(2);
  }
  log(`  (step ${def.name}: ${((Date.now() - t0) / 1000).toFixed(0)} s including preparation and verification)`);
}

// ---------------------------------------------------------------- main

const started = new Date();
const t0 = Date.now();
log(`coffer bench${quick ? ' (--quick)' : ''}: steps ${wanted.join(', ')}`);
log(`tools: ${tools.map((t) => `${t.name} (${t.version.split('\n')[0]})`).join(', ')}`);
const loadBefore = os.loadavg().map((x) => +x.toFixed(2));
log(`corpus ${corpusRoot}; scratch ${scratch}; load average ${loadBefore.join(' ')}`);

const usedCorpora = [...new Set(STEPS.filter((s) => wanted.includes(s.name)).flatMap((s) => s.corpora))];
const manifest: Record<string, { files: number; bytes: number }> = {};
for (const c of usedCorpora) manifest[c] = dirManifest(path.join(corpusRoot, c));
log(`warming the page cache: ${usedCorpora.join(', ')}`);
warm(usedCorpora.map((c) => path.join(corpusRoot, c)));

let exitCode = 0;
try {
  for (const [i, name] of wanted.entries()) {
    const def = STEPS.find((s) => s.name === name)!;
    log(`\n[${i + 1}/${wanted.length}] ${def.title}`);
    await runStep(def, i);
  }
} catch (e) {
  loud(`harness error: ${(e as Error).stack ?? e}`);
  exitCode = 1;
}
const loadAfter = os.loadavg();
const finalRepoBytes: Record<string, number> = {};
for (const t of tools) finalRepoBytes[t.name] = dirBytes(t.repo);

// ---------------------------------------------------------------- report

const names = tools.map((t) => t.name);
const peers = names.filter((n) => n !== 'coffer');
const hasCoffer = names.includes('coffer');
const get = (r: StepResult, n: ToolName): Measurement | undefined => {
  const m = r.results[n];
  return m && 'wall' in m ? m : undefined;
};
const cell = (r: StepResult, n: ToolName, f: (m: Measurement) => string): string => {
  const m = r.results[n];
  if (!m) return '–';
  if ('skipped' in m) return m.skipped;
  if (m.exit_code !== 0) return `FAILED (${m.exit_code})`;
  if (m.verified === false) return `${f(m)} VERIFY FAILED`;
  return f(m);
};

const timeHeaders = ['step', ...names.map((n) => `${n} s`), ...(hasCoffer ? peers.map((p) => `coffer÷${p}`) : []), ...names.map((n) => `${n} CPU s`)];
const timeRows = stepResults.map((r) => [
  r.title,
  ...names.map((n) => cell(r, n, (m) => fmtNum(m.wall))),
  ...(hasCoffer ? peers.map((p) => (r.ratio[p] !== undefined ? fmtNum(r.ratio[p]) : '–')) : []),
  ...names.map((n) => cell(r, n, (m) => fmtNum(m.cpu))),
]);
{
  // Total over the steps every tool completed.
  const complete = stepResults.filter((r) => !STEPS.find((d) => d.name === r.name)?.informational && names.every((n) => get(r, n)?.exit_code === 0));
  const sum = (n: ToolName, f: (m: Measurement) => number) => complete.reduce((a, r) => a + f(get(r, n)!), 0);
  if (complete.length > 1) {
    const walls = names.map((n) => sum(n, (m) => m.wall));
    timeRows.push([
      complete.length === stepResults.filter((r) => !STEPS.find((d) => d.name === r.name)?.informational).length ? '**total**' : `**total (${complete.length} steps)**`,
      ...walls.map((w) => fmtNum(w)),
      ...(hasCoffer ? peers.map((p) => fmtNum(walls[0] / walls[names.indexOf(p)])) : []),
      ...names.map((n) => fmtNum(sum(n, (m) => m.cpu))),
    ]);
  }
}
const rssRows = stepResults.map((r) => [r.title, ...names.map((n) => cell(r, n, (m) => fmtNum(m.rss_mib, 0)))]);
const loadRows = stepResults.map((r) => [r.title, ...names.map((n) => cell(r, n, (m) => fmtNum(m.other_load)))]);
const bytesRows = stepResults.map((r) => [r.title, ...names.map((n) => cell(r, n, (m) => fmtMiB(m.repo_bytes_added, 2)))]);
bytesRows.push(['**repository size at the end**', ...names.map((n) => fmtMiB(finalRepoBytes[n], 2))]);

// ---------------------------------------------------------------- targets (issue #3)

/** Time-ratio targets, coffer ÷ peer (lower is better). */
const RATIO_TARGETS: Partial<Record<StepName, Partial<Record<ToolName, number>>>> = {
  src: { restic: 0.5, borg: 0.5 },
  small: { restic: 0.5, borg: 0.5 },
  rebackup: { restic: 0.33, borg: 0.33 },
  mixed2: { restic: 0.5, borg: 0.5 },
  big: { restic: 0.6, borg: 0.7 },
  big2: { restic: 0.6, borg: 0.7 },
  'restore-src': { restic: 0.7, borg: 0.6 },
  'restore-big': { restic: 0.7, borg: 0.6 },
  check: { restic: 0.5, borg: 0.4 },
};
const RSS_LIMIT_MB = 300;
interface TargetResult {
  what: string;
  target: string;
  measured: string;
  met: boolean | null;
}
const targets: TargetResult[] = [];
if (hasCoffer) {
  for (const r of stepResults) {
    const t = RATIO_TARGETS[r.name];
    if (!t) continue;
    for (const p of peers) {
      const limit = t[p];
      if (limit === undefined) continue;
      const ratio = r.ratio[p];
      targets.push({
        what: `${r.title}: time coffer ÷ ${p}`,
        target: `≤ ${limit}`,
        measured: ratio === undefined ? 'not measured' : fmtNum(ratio),
        met: ratio === undefined ? null : ratio <= limit,
      });
    }
  }
  // Peak RSS (MB = 10^6 bytes, as in the issue).
  const rssMB = stepResults.map((r) => ({ r, m: get(r, 'coffer') })).filter((x) => x.m && x.m.exit_code === 0);
  if (rssMB.length) {
    const worst = rssMB.reduce((a, b) => (b.m!.rss_mib > a.m!.rss_mib ? b : a));
    const mb = (worst.m!.rss_mib * 2 ** 20) / 1e6;
    targets.push({ what: 'coffer peak RSS, worst step', target: `≤ ${RSS_LIMIT_MB} MB`, measured: `${mb.toFixed(0)} MB (${worst.r.name})`, met: mb <= RSS_LIMIT_MB });
  }
  if (names.includes('restic')) {
    const src = stepResults.find((r) => r.name === 'src');
    const c = src && get(src, 'coffer');
    const rs = src && get(src, 'restic');
    if (c && rs && c.exit_code === 0 && rs.exit_code === 0) {
      const q = c.repo_bytes_after / rs.repo_bytes_after;
      targets.push({ what: 'repository size after src, coffer ÷ restic', target: '≤ 1.05', measured: q.toFixed(3), met: q <= 1.05 });
    }
    const b2 = stepResults.find((r) => r.name === 'big2');
    const cb = b2 && get(b2, 'coffer');
    const rb = b2 && get(b2, 'restic');
    if (cb && rb && cb.exit_code === 0 && rb.exit_code === 0) {
      targets.push({
        what: 'repository growth for big2, coffer vs restic',
        target: '≤ restic',
        measured: `${fmtMiB(cb.repo_bytes_added, 2)} vs ${fmtMiB(rb.repo_bytes_added, 2)} MiB`,
        met: cb.repo_bytes_added <= rb.repo_bytes_added,
      });
    }
  }
}
const targetRows = targets.map((t) => [t.what, t.target, t.measured, t.met === null ? '–' : t.met ? 'met' : '**missed**']);

const out: string[] = [];
out.push(`## coffer bench${quick ? ' --quick' : ''} — ${started.toISOString()}`);
out.push('');
const mi: Record<string, unknown> = { ...machineInfo(), loadavg: loadBefore };
out.push(
  `Machine: ${mi.cpu}, ${mi.cores} cores, ${mi.memory_gib} GiB RAM, ${mi.kernel}, node ${mi.node}; ` +
    `load average before ${(mi.loadavg as number[]).join(' ')}, after ${loadAfter.map((x) => x.toFixed(2)).join(' ')}.`,
);
out.push(
  `Tools: ${ALL_TOOLS.map((n) => `${n} ${toolStatus[n]?.available ? toolStatus[n].version!.split('\n')[0] : `(${toolStatus[n]?.note})`}`).join('; ')}.`,
);
out.push(`Corpora (${corpusRoot}): ${Object.entries(manifest).map(([c, m]) => `${c} ${m.files} files / ${fmtMiB(m.bytes)} MiB`).join(', ')}.`);
out.push('');
out.push('### Wall time (s), coffer ÷ peer, CPU time (user+sys, s)');
out.push('');
out.push(markdownTable(timeHeaders, timeRows));
out.push('');
out.push('### Peak RSS (MiB)');
out.push('');
out.push(markdownTable(['step', ...names.map((n) => `${n} MiB`)], rssRows));
out.push('');
out.push(`### Other load: cores busy with other processes while each command ran (of ${mi.cores})`);
out.push('');
out.push(markdownTable(['step', ...names.map((n) => n)], loadRows));
out.push('');
out.push('### Repository growth (MiB, sum of file sizes)');
out.push('');
out.push(markdownTable(['step', ...names.map((n) => `${n} MiB`)], bytesRows));
out.push('');
if (targetRows.length) {
  out.push('### Targets of issue #3 (one run; the machine is shared, so single ratios are noisy)');
  out.push('');
  out.push(markdownTable(['target', 'limit', 'measured', ''], targetRows));
  out.push('');
}
if (failures.length) {
  out.push('### Failures');
  out.push('');
  for (const f of failures) out.push('- ' + f.replace(/\n/g, '\n  '));
  out.push('');
}
process.stdout.write(out.join('\n') + '\n');

const json = {
  format: 'coffer-bench-v1',
  date: started.toISOString(),
  duration_s: +((Date.now() - t0) / 1000).toFixed(1),
  quick,
  steps_run: wanted,
  machine: { ...mi, loadavg_after: loadAfter.map((x) => +x.toFixed(2)) },
  coffer_commit: capture('git', ['-C', ROOT, 'rev-parse', 'HEAD']) || undefined,
  coffer_worktree_dirty: capture('git', ['-C', ROOT, 'status', '--porcelain', '--', 'src']) !== '',
  tools: toolStatus,
  settings: {
    coffer: 'defaults (zstd 3, chunks 512K/1M/8M), real Argon2id KDF, --cache-dir in scratch',
    restic: 'init --repository-version 2; backup --compression auto; RESTIC_CACHE_DIR in scratch',
    borg: 'init -e repokey-blake2; create --compression lz4; BORG_BASE_DIR in scratch',
    page_cache: 'warm (inputs or repository read once before every command); sync between commands',
  },
  corpus: { root: corpusRoot, manifest },
  steps: stepResults,
  targets,
  repo_bytes_final: finalRepoBytes,
  failures,
};
mkdirSync(path.dirname(jsonFile), { recursive: true });
writeFileSync(jsonFile, JSON.stringify(json, null, 2) + '\n');
const mdFile = jsonFile.replace(/\.json$/, '') + '.md';
writeFileSync(mdFile, out.join('\n') + '\n');
log(`\nresults: ${jsonFile} (tables also in ${mdFile})`);
if (failures.length) {
  if (keep) log(`command log: ${logFile}`);
  else {
    const kept = path.join(os.tmpdir(), `coffer-bench-${stamp}.log`);
    try {
      copyFileSync(logFile, kept);
      log(`command log: ${kept}`);
    } catch {
      /* no log */
    }
  }
  exitCode = 1;
}
cleanup();
process.exitCode = exitCode;
