/**
 * Combines several result files of bench/run.ts (the same steps, run one
 * after another on a noisy machine) into medians:
 *
 *   node dist/bench/summarize.js bench/results/full-1.json bench/results/full-2.json ...
 *
 * For every step: the median wall seconds of each tool, the median of the
 * per-run ratios coffer ÷ peer with their range, the median CPU seconds and
 * peak RSS, and the median "other load". Prints Markdown; nothing is written.
 */
import { readFileSync } from 'node:fs';
import { fail, fmtNum, markdownTable } from './lib.js';

interface M {
  wall: number;
  cpu: number;
  rss_mib: number;
  exit_code: number;
  other_load?: number;
  verified?: boolean;
}
interface Step {
  name: string;
  title: string;
  results: Record<string, M | { skipped: string }>;
  ratio: Record<string, number>;
}
interface Run {
  format: string;
  date: string;
  quick: boolean;
  steps: Step[];
  machine: { loadavg?: number[] };
}

const files = process.argv.slice(2);
if (!files.length) fail('usage: node dist/bench/summarize.js RESULT.json ...', 2);
const runs: Run[] = files.map((f) => {
  const r = JSON.parse(readFileSync(f, 'utf8')) as Run;
  if (r.format !== 'coffer-bench-v1') fail(`${f}: not a bench/run.ts result (format ${r.format})`);
  return r;
});

// A quick run's check reads a smaller repository than a full run's: never mix them.
if (new Set(runs.map((r) => r.quick)).size > 1) fail('these files mix --quick and full runs, whose check steps differ: summarize them separately', 2);

const median = (xs: number[]): number => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ok = (m: M | { skipped: string } | undefined): m is M => !!m && 'wall' in m && m.exit_code === 0 && m.verified !== false;

const tools = ['coffer', 'restic', 'borg'].filter((t) => runs.some((r) => r.steps.some((s) => ok(s.results[t]))));
const peers = tools.filter((t) => t !== 'coffer');
const stepNames: { name: string; title: string }[] = [];
for (const r of runs) for (const s of r.steps) if (!stepNames.some((x) => x.name === s.name)) stepNames.push({ name: s.name, title: s.title });

const rows = stepNames.map(({ name, title }) => {
  const per = runs.map((r) => r.steps.find((s) => s.name === name)).filter((s): s is Step => !!s);
  const walls = tools.map((t) => median(per.map((s) => s.results[t]).filter(ok).map((m) => m.wall)));
  const ratios = peers.map((p) => {
    const rs = per.map((s) => s.ratio?.[p]).filter((x): x is number => typeof x === 'number');
    return rs.length ? `${fmtNum(median(rs))} (${fmtNum(Math.min(...rs))}–${fmtNum(Math.max(...rs))})` : '–';
  });
  const cpu = tools.map((t) => fmtNum(median(per.map((s) => s.results[t]).filter(ok).map((m) => m.cpu))));
  const rss = tools.map((t) => fmtNum(median(per.map((s) => s.results[t]).filter(ok).map((m) => m.rss_mib)), 0));
  const load = median(per.flatMap((s) => tools.map((t) => s.results[t]).filter(ok).map((m) => m.other_load ?? NaN)));
  return [title, `${per.length}`, ...walls.map((w) => fmtNum(w)), ...ratios, ...cpu, ...rss, fmtNum(load)];
});

process.stdout.write(
  `Medians over ${runs.length} runs: ${runs.map((r) => `${r.date}${r.quick ? ' (quick)' : ''}`).join(', ')}.\n\n` +
    markdownTable(
      ['step', 'runs', ...tools.map((t) => `${t} s`), ...peers.map((p) => `coffer÷${p} (min–max)`), ...tools.map((t) => `${t} CPU s`), ...tools.map((t) => `${t} RSS MiB`), 'other load'],
      rows,
    ) +
    '\n',
);
