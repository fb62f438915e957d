#!/usr/bin/env node
// Builds the optional native addon (native/coffer_native.c) with node-gyp.
//
// Runs at `npm install` time. It must NEVER fail the install: on any problem
// it prints a single warning line and exits 0, and coffer falls back to its
// pure-JS implementation (src/platform/native.ts). It never downloads
// anything: node-gyp is only run with a local --nodedir holding the Node
// headers; when none can be found the build is skipped.
//
// Environment:
//   COFFER_SKIP_NATIVE_BUILD=1     skip the build entirely
//   COFFER_NATIVE_BUILD_VERBOSE=1  stream node-gyp's output
//   npm_config_nodedir             Node headers directory (set by npm from
//                                  `nodedir` in .npmrc)
//   npm_config_node_gyp            node-gyp to use (set by npm in scripts)

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const TAG = 'coffer';
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const nativeDir = path.join(root, 'native');
const output = path.join(nativeDir, 'build', 'Release', 'coffer_native.node');
const verbose = process.env.COFFER_NATIVE_BUILD_VERBOSE === '1';
const BUILD_TIMEOUT_MS = 10 * 60 * 1000;

let finished = false;
function warn(reason) {
  if (finished) return;
  finished = true;
  const oneLine = String(reason).replace(/\s+/g, ' ').trim().slice(0, 300);
  console.warn(`${TAG}: warning: native addon not built (${oneLine}); using the pure-JS fallback (reduced metadata fidelity).`);
  process.exit(0);
}

// Anything unexpected still ends in exit code 0.
process.on('uncaughtException', (err) => warn(err && err.message ? err.message : err));
process.on('unhandledRejection', (err) => warn(err && err.message ? err.message : err));

/** node-gyp entry point: local dependency, npm's bundled copy, or null. */
function findNodeGyp() {
  const candidates = [];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    /* not a dependency */
  }
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  if (process.env.npm_execpath) {
    // .../npm/bin/npm-cli.js -> .../npm/node_modules/node-gyp/bin/node-gyp.js
    candidates.push(path.join(path.dirname(process.env.npm_execpath), '..', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  }
  // Run directly (`node scripts/build-native.mjs`): npm installed next to node.
  const binDir = path.dirname(process.execPath);
  candidates.push(path.join(binDir, '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(path.join(binDir, 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js')); // Windows layout
  return candidates.find((c) => c && /\.[cm]?js$/.test(c) && existsSync(c)) ?? null;
}

function hasHeaders(dir) {
  return (
    typeof dir === 'string' &&
    dir !== '' &&
    existsSync(path.join(dir, 'include', 'node', 'node_api.h')) &&
    existsSync(path.join(dir, 'include', 'node', 'common.gypi'))
  );
}

function npmConfigNodedir() {
  try {
    const npmCli = process.env.npm_execpath;
    const r =
      npmCli && /\.[cm]?js$/.test(npmCli)
        ? spawnSync(process.execPath, [npmCli, 'config', 'get', 'nodedir'], { encoding: 'utf8', timeout: 30_000 })
        : spawnSync(process.platform === 'win32' ? 'npm.cmd' : 'npm', ['config', 'get', 'nodedir'], {
            encoding: 'utf8',
            timeout: 30_000,
            shell: process.platform === 'win32',
          });
    const v = (r.stdout ?? '').trim();
    return r.status === 0 && v !== '' && v !== 'undefined' && v !== 'null' ? v : null;
  } catch {
    return null;
  }
}

/** A directory with include/node/{node_api.h,common.gypi}, or null. */
function findNodedir() {
  const fromEnv = process.env.npm_config_nodedir;
  if (fromEnv) return hasHeaders(fromEnv) ? fromEnv : null; // configured: trust only that one
  const fromNpm = npmConfigNodedir();
  if (fromNpm) return hasHeaders(fromNpm) ? fromNpm : null;
  // Headers installed alongside the node binary (e.g. /usr/bin/node + /usr/include/node).
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return hasHeaders(prefix) ? prefix : null;
}

/** The most telling line of node-gyp / make / compiler output. */
function summarizeFailure(text) {
  const lines = String(text ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const patterns = [
    { re: /:\s*(fatal )?error:\s/i }, // compiler diagnostic
    { re: /^(make|\/bin\/sh|sh)(\[\d+\])?: .*(No such file|not found|Permission denied)/i }, // missing tools
    { re: /^[A-Za-z]*Error: /, last: true }, // python traceback tail
    { re: /^gyp ERR! stack Error: / }, // node-gyp's own error
  ];
  for (const { re, last } of patterns) {
    const hits = lines.filter((l) => re.test(l));
    const hit = last ? hits.at(-1) : hits[0];
    if (hit) return hit.replace(/^gyp ERR! stack /, '');
  }
  const boring = /^gyp (info|ERR! (cwd|node -v|node-gyp -v|System|command|stack|not ok))/;
  return lines.filter((l) => !boring.test(l)).pop() ?? 'unknown error';
}

function main() {
  if (process.env.COFFER_SKIP_NATIVE_BUILD === '1') {
    finished = true;
    console.log(`${TAG}: native addon build skipped (COFFER_SKIP_NATIVE_BUILD=1).`);
    return;
  }
  if (!existsSync(path.join(nativeDir, 'binding.gyp'))) return warn('native/binding.gyp is missing');

  const nodeGyp = findNodeGyp();
  if (!nodeGyp) return warn('node-gyp not found');

  const nodedir = findNodedir();
  if (!nodedir) return warn('no local Node.js headers (set `nodedir` in .npmrc); refusing to download them');

  const env = { ...process.env, npm_config_nodedir: nodedir };
  const args = [nodeGyp, 'rebuild', '--release', `--nodedir=${nodedir}`];
  const r = spawnSync(process.execPath, args, {
    cwd: nativeDir,
    env,
    encoding: 'utf8',
    stdio: verbose ? 'inherit' : 'pipe',
    timeout: BUILD_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
    windowsHide: true,
  });
  if (r.error) return warn(`node-gyp could not run: ${r.error.message}`);
  if (r.status !== 0) {
    const detail = verbose ? `exit code ${r.status ?? r.signal}` : summarizeFailure(`${r.stdout ?? ''}\n${r.stderr ?? ''}`);
    return warn(`node-gyp failed: ${detail}`);
  }
  if (!existsSync(output)) return warn(`build produced no ${path.relative(root, output)}`);
  finished = true;
  console.log(`${TAG}: built native addon ${path.relative(root, output)}`);
}

try {
  main();
} catch (err) {
  warn(err && err.message ? err.message : err);
}
