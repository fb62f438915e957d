/**
 * Which files a backup includes: exclude patterns, tag files, size limit,
 * file-system boundaries. The archiver asks one question per directory
 * entry through the small {@link EntryFilter} interface; all the rules live
 * here.
 *
 * Patterns follow restic's semantics (doc/040_backup.rst):
 *  - a pattern is matched against the absolute path, one path component per
 *    pattern component; `*` and `?` never match `/`, `**` matches any number
 *    of components (zero included), `[...]` is a character class;
 *  - a pattern that starts with `/` is anchored at the file-system root;
 *    any other pattern matches at any depth (`foo/bar` matches `/x/foo/bar`);
 *  - a pattern that matches a directory excludes everything below it;
 *    a trailing `/` is ignored;
 *  - `!pattern` re-includes what an earlier pattern excluded (the last
 *    matching pattern wins; an excluded directory is not entered, so
 *    re-include with `dir/*` + `!dir/keep`, not `dir` + `!dir/keep`);
 *  - in pattern files, empty lines and lines starting with `#` are skipped,
 *    surrounding white space is trimmed and `$VAR` / `${VAR}` are expanded.
 *
 * Patterns are compiled once (picomatch) into regular expressions; matching
 * costs one regular-expression test per entry when no `!` pattern is used.
 */
import { closeSync, lstatSync, openSync, readSync } from 'node:fs';
import { createRequire } from 'node:module';
import type Picomatch from 'picomatch';

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let pm: typeof Picomatch | undefined;
const picomatch = (): typeof Picomatch => (pm ??= createRequire(import.meta.url)('picomatch') as typeof Picomatch);
import { CofferError } from '../errors.js';

/**
 * The stat fields the filter looks at (a `BigIntStats` or `Stats`).
 * @example
 * ```ts
 * const f = createFilter({ excludeLargerThan: 10 })!; f('/x', fs.lstatSync('/x', { bigint: true }), 0n);
 * ```
 */
export interface EntryStat {
  dev: bigint | number;
  size: bigint | number;
  isDirectory(): boolean;
  isFile(): boolean;
}

/**
 * The archiver's view of selection. `keep` is called for every entry before it
 * is read; `targetDev` is the device of the backup target the entry is under.
 *  - `'keep'`: back it up;
 *  - `'skip'`: leave it out of the snapshot;
 *  - `'empty'`: (directories) store the directory itself but not its contents;
 *  - `{ keepOnly: names }`: (directories) store the directory with only these
 *    entries (a tagged directory keeps its tag file, as in restic).
 * @example
 * ```ts
 * const noHidden: EntryFilter = (p) => (String(p).split('/').pop()!.startsWith('.') ? 'skip' : 'keep');
 * ```
 */
export type EntryFilter = (path: Buffer | string, st: EntryStat, targetDev: bigint | number) => EntryVerdict;

/**
 * What an {@link EntryFilter} decides for one entry.
 * @example
 * ```ts
 * const onlyTags: EntryFilter = (p, st) => (st.isDirectory() && String(p).endsWith('/cache') ? { keepOnly: ['CACHEDIR.TAG'] } : 'keep');
 * ```
 */
export type EntryVerdict = 'keep' | 'skip' | 'empty' | { keepOnly: string[] };

/**
 * Rules for choosing what a backup includes (see `createFilter`).
 * @example
 * ```ts
 * const opts: SelectOptions = { iexclude: ['thumbs.db'], excludeLargerThan: 1 << 30 };
 * ```
 */
export interface SelectOptions {
  /** Exclude patterns (case-sensitive). */
  exclude?: string[];
  /** Exclude patterns matched without regard to case. */
  iexclude?: string[];
  /**
   * Skip the contents of a directory that contains a file of this name (the
   * directory and that file are kept); `NAME:HEADER` also requires the file
   * to start with HEADER.
   */
  excludeIfPresent?: string[];
  /** Skip the contents (but keep the tag file) of directories holding a CACHEDIR.TAG file with the standard signature. */
  excludeCaches?: boolean;
  /** Skip files larger than this many bytes. */
  excludeLargerThan?: number;
  /** Do not cross file-system boundaries: mount points are stored as empty directories. */
  oneFileSystem?: boolean;
}

/**
 * The signature a CACHEDIR.TAG file starts with (https://bford.info/cachedir/).
 * @example
 * ```ts
 * fs.writeFileSync('build/CACHEDIR.TAG', CACHEDIR_SIGNATURE + '\n');
 * ```
 */
export const CACHEDIR_SIGNATURE = 'Signature: 8a477f597d28d172789f06886806bc55';

interface Compiled {
  re: RegExp;
  negated: boolean;
}

function compileOne(raw: string, nocase: boolean): Compiled | undefined {
  let p = raw;
  let negated = false;
  if (p.startsWith('!')) {
    negated = true;
    p = p.slice(1);
  }
  // Clean like filepath.Clean: collapse slashes, drop "." components and a trailing slash.
  const anchored = p.startsWith('/');
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.length === 0) return undefined;
  const body = parts.join('/');
  const glob = anchored ? body : `**/${body}`;
  const opts = { dot: true, nocase, nobrace: true, noextglob: true, nonegate: true };
  // The pattern itself, or anything below what it matches.
  const a = picomatch().makeRe(glob, opts);
  const b = picomatch().makeRe(`${glob}/**`, opts);
  return { re: new RegExp(`(?:${a.source})|(?:${b.source})`, nocase ? 'i' : ''), negated };
}

/**
 * A compiled list of patterns. `matches(path)` tells whether the absolute
 * path is excluded by the list.
 * @example
 * ```ts
 * const p = new PatternList([{ pattern: '*.log' }, { pattern: '/var/cache' }]);
 * p.matches('/srv/app/x.log'); // true
 * ```
 */
export class PatternList {
  private readonly rules: Compiled[] = [];
  /** Without negation, one combined expression per case mode. */
  private readonly fast: RegExp[] = [];
  readonly size: number;

  constructor(patterns: { pattern: string; nocase?: boolean }[]) {
    for (const { pattern, nocase } of patterns) {
      const c = compileOne(pattern.trim(), nocase === true);
      if (c) this.rules.push(c);
    }
    this.size = this.rules.length;
    if (!this.rules.some((r) => r.negated)) {
      for (const flags of ['', 'i']) {
        const rs = this.rules.filter((r) => r.re.flags === flags);
        if (rs.length) this.fast.push(new RegExp(rs.map((r) => r.re.source).join('|'), flags));
      }
    }
  }

  /** `absPath` is an absolute path ("/home/me/x"). */
  matches(absPath: string): boolean {
    if (this.rules.length === 0) return false;
    const rel = absPath.replace(/^\/+/, '');
    if (this.fast.length) return this.fast.some((re) => re.test(rel));
    let excluded = false;
    for (const r of this.rules) if (r.re.test(rel)) excluded = !r.negated;
    return excluded;
  }
}

/** Expands $VAR and ${VAR} from the environment (unset variables become empty, like restic); `$$` is a literal `$`. */
export function expandEnv(s: string, env: NodeJS.ProcessEnv = process.env): string {
  return s.replace(/\$(?:\$|\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (m, a, b) => (m === '$$' ? '$' : env[a ?? b] ?? ''));
}

/**
 * Parses the text of a pattern file: trims lines, skips empty ones and `#` comments, expands variables.
 * @example
 * ```ts
 * const exclude = parsePatternFile(fs.readFileSync('/etc/coffer/excludes', 'utf8'));
 * ```
 */
export function parsePatternFile(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => expandEnv(l));
}

function toStr(p: Buffer | string): string {
  return typeof p === 'string' ? p : p.toString('utf8');
}

function join(dir: Buffer | string, name: string): Buffer {
  const d = typeof dir === 'string' ? Buffer.from(dir) : dir;
  return Buffer.concat([d, Buffer.from(d[d.length - 1] === 0x2f ? name : `/${name}`)]);
}

/** True if `file` exists (not following a final symlink) and, when `header` is given, starts with it. */
function hasTagFile(file: Buffer, header: string | undefined): boolean {
  try {
    const st = lstatSync(file);
    if (header === undefined) return true;
    if (!st.isFile()) return false;
  } catch {
    return false;
  }
  const want = Buffer.from(header);
  const got = Buffer.alloc(want.length);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return false;
  }
  try {
    let n = 0;
    while (n < got.length) {
      const r = readSync(fd, got, n, got.length - n, n);
      if (r === 0) break;
      n += r;
    }
    return n === got.length && got.equals(want);
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Builds the filter for `opts`; undefined when nothing is excluded (the
 * archiver then skips the call entirely).
 * @example
 * ```ts
 * const filter = createFilter({ exclude: ['*.tmp', 'node_modules'], excludeCaches: true, oneFileSystem: true });
 * await backup(repo, { paths: ['/home/me'], filter });
 * ```
 */
export function createFilter(opts: SelectOptions): EntryFilter | undefined {
  const patterns = new PatternList([
    ...(opts.exclude ?? []).map((pattern) => ({ pattern })),
    ...(opts.iexclude ?? []).map((pattern) => ({ pattern, nocase: true })),
  ]);
  const tags: { name: string; header?: string }[] = [];
  for (const spec of opts.excludeIfPresent ?? []) {
    const i = spec.indexOf(':');
    const name = i < 0 ? spec : spec.slice(0, i);
    if (!name || name.includes('/')) throw new CofferError('INVALID_ARGUMENT', `--exclude-if-present needs a file name, not "${spec}"`);
    tags.push(i < 0 ? { name } : { name, header: spec.slice(i + 1) });
  }
  if (opts.excludeCaches) tags.push({ name: 'CACHEDIR.TAG', header: CACHEDIR_SIGNATURE });
  const limit = opts.excludeLargerThan;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new CofferError('INVALID_ARGUMENT', '--exclude-larger-than needs a size');
  const oneFs = opts.oneFileSystem === true;
  if (patterns.size === 0 && tags.length === 0 && limit === undefined && !oneFs) return undefined;

  return (p, st, targetDev) => {
    if (patterns.size && patterns.matches(toStr(p))) return 'skip';
    if (st.isFile()) {
      if (limit !== undefined && Number(st.size) > limit) return 'skip';
      return 'keep';
    }
    if (!st.isDirectory()) return 'keep';
    const found = tags.filter((t) => hasTagFile(join(p, t.name), t.header)).map((t) => t.name);
    if (found.length) return { keepOnly: found };
    if (oneFs && BigInt(st.dev) !== BigInt(targetDev)) return 'empty';
    return 'keep';
  };
}
