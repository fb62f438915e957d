/**
 * The backup command's selection options: exclude rules, file lists and
 * stdin. Turns command-line values into the archiver's `filter`, the list
 * of paths, or a stdin source.
 */
import { readFileSync, readdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { createRequire } from 'node:module';
import type Picomatch from 'picomatch';

// Loaded on first use, not at start-up (see docs/PERFORMANCE.md, "Start-up").
let pm: typeof Picomatch | undefined;
const picomatch = (): typeof Picomatch => (pm ??= createRequire(import.meta.url)('picomatch') as typeof Picomatch);
import { CofferError, errnoCode } from '../errors.js';
import { createFilter, parsePatternFile, type EntryFilter } from '../archiver/select.js';
import { parseSize } from './options.js';

export interface SelectFlags {
  exclude?: string[];
  iexclude?: string[];
  excludeFile?: string[];
  iexcludeFile?: string[];
  excludeIfPresent?: string[];
  excludeCaches?: boolean;
  excludeLargerThan?: string;
  oneFileSystem?: boolean;
  filesFrom?: string[];
  filesFromVerbatim?: string[];
  filesFromRaw?: string[];
  stdin?: boolean;
  stdinFilename?: string;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** Adds the selection options to the backup command. */
export function addSelectOptions(cmd: Command): Command {
  return cmd
    .option('-e, --exclude <pattern>', 'exclude files matching the pattern (repeatable; see "Patterns" below)', collect)
    .option('--iexclude <pattern>', 'like --exclude, ignoring case', collect)
    .option('--exclude-file <file>', 'read exclude patterns from a file (repeatable)', collect)
    .option('--iexclude-file <file>', 'read case-insensitive exclude patterns from a file (repeatable)', collect)
    .option('--exclude-if-present <name[:header]>', 'skip the contents of directories holding a file of this name (that starts with header); the file itself is kept (repeatable)', collect)
    .option('--exclude-caches', 'skip the contents of directories holding a CACHEDIR.TAG file with the standard signature (the tag is kept)')
    .option('--exclude-larger-than <size>', 'skip files larger than size (e.g. 100M, 2G)')
    .option('-x, --one-file-system', 'do not cross file-system boundaries (mount points are kept as empty directories)')
    .option('--files-from <file>', 'read paths to back up from a file, one per line; white space trimmed, "#" comments, globs expanded ("-": stdin) (repeatable)', collect)
    .option('--files-from-verbatim <file>', 'read paths from a file, one per line, taken literally (repeatable)', collect)
    .option('--files-from-raw <file>', 'read NUL-separated paths from a file, taken literally (e.g. from find -print0) (repeatable)', collect)
    .option('--stdin', 'back up standard input as a single file')
    .option('--stdin-filename <name>', 'file name for --stdin (default "stdin")');
}

export const PATTERN_HELP = `
Patterns (as in restic): matched against the absolute path. "*" and "?" do
not match "/", "**" matches any number of directories, "[a-z]" a character
class. A pattern starting with "/" is anchored at the root; any other pattern
matches at any depth ("*.tmp", "node_modules", "foo/bar"). A matching
directory is skipped with everything below it. "!pattern" re-includes what
an earlier pattern excluded. Pattern files: one pattern a line, "#" comments,
$VAR expanded.`;

function readList(file: string): Buffer {
  try {
    return file === '-' ? readFileSync(0) : readFileSync(file);
  } catch (e) {
    throw new CofferError('INVALID_ARGUMENT', `cannot read ${file}: ${errnoCode(e) ?? (e as Error).message}`);
  }
}

/** Expands a shell-style glob (as restic does for --files-from lines); a path without magic is returned as is. */
export function expandGlob(pattern: string): string[] {
  if (!picomatch().scan(pattern).isGlob) return [pattern];
  const abs = pattern.startsWith('/');
  const parts = pattern.split('/').filter(Boolean);
  let bases = [abs ? '/' : '.'];
  for (const part of parts) {
    const next: string[] = [];
    const isGlob = picomatch().scan(part).isGlob;
    const re = isGlob ? picomatch().makeRe(part, { nobrace: true, noextglob: true, nonegate: true }) : undefined;
    for (const b of bases) {
      if (!re) {
        next.push(path.join(b, part));
        continue;
      }
      let names: string[];
      try {
        names = readdirSync(b);
      } catch {
        continue;
      }
      for (const n of names.sort()) if (re.test(n)) next.push(path.join(b, n));
    }
    bases = next;
  }
  return abs ? bases : bases.map((b) => (b.startsWith('./') ? b.slice(2) : b));
}

/** The paths named by --files-from* options. */
export function pathsFromFiles(f: SelectFlags): string[] {
  const out: string[] = [];
  for (const file of f.filesFrom ?? []) {
    for (const line of readList(file).toString('utf8').split('\n')) {
      const l = line.trim();
      if (l === '' || l.startsWith('#')) continue;
      const hits = expandGlob(l);
      if (hits.length === 0) throw new CofferError('INVALID_ARGUMENT', `${file}: pattern "${l}" matches no files`);
      out.push(...hits);
    }
  }
  for (const file of f.filesFromVerbatim ?? []) {
    for (const line of readList(file).toString('utf8').split('\n')) if (line !== '') out.push(line);
  }
  for (const file of f.filesFromRaw ?? []) {
    for (const p of readList(file).toString('utf8').split('\0')) if (p !== '') out.push(p);
  }
  return out;
}

function patternsFrom(files: string[] | undefined): string[] {
  return (files ?? []).flatMap((f) => parsePatternFile(readList(f).toString('utf8')));
}

export interface Selection {
  paths: string[];
  filter?: EntryFilter;
  stdin?: { name: string; fd: number };
}

/** Validates the flags and builds what the archiver needs. */
export function buildSelection(args: string[], f: SelectFlags): Selection {
  if (f.stdin) {
    if (args.length || f.filesFrom || f.filesFromVerbatim || f.filesFromRaw) {
      throw new CofferError('INVALID_ARGUMENT', '--stdin cannot be combined with paths or --files-from');
    }
    let fd: number;
    try {
      // A fresh descriptor: blocking, even if fd 0 was made non-blocking.
      fd = openSync('/dev/stdin', 'r');
    } catch {
      fd = 0;
    }
    return { paths: [], stdin: { name: f.stdinFilename ?? 'stdin', fd } };
  }
  if (f.stdinFilename) throw new CofferError('INVALID_ARGUMENT', '--stdin-filename needs --stdin');
  // An empty argument (often an unset shell variable) would otherwise mean the current directory.
  if (args.some((a) => a === '')) throw new CofferError('INVALID_ARGUMENT', 'an empty path was given (an unset variable?); name what to back up');
  const paths = [...args, ...pathsFromFiles(f)];
  if (paths.length === 0) throw new CofferError('INVALID_ARGUMENT', 'nothing to back up: give at least one path (or --files-from, or --stdin)');
  const filter = createFilter({
    exclude: [...(f.exclude ?? []), ...patternsFrom(f.excludeFile)],
    iexclude: [...(f.iexclude ?? []), ...patternsFrom(f.iexcludeFile)],
    excludeIfPresent: f.excludeIfPresent,
    excludeCaches: f.excludeCaches,
    excludeLargerThan: f.excludeLargerThan === undefined ? undefined : parseSize(f.excludeLargerThan),
    oneFileSystem: f.oneFileSystem,
  });
  return { paths, filter };
}
