#!/usr/bin/env -S node --max-semi-space-size=2
// Entry point of the `coffer` command: runs the compiled CLI and exits with its code.
// The shebang asks for 2 MB semi-spaces: coffer's garbage is short-lived and
// its big buffers live outside the JS heap, so a small young generation cuts
// peak RSS by 10-15 % at no measured speed cost (docs/PERFORMANCE.md).
// (v8.setFlagsFromString at this point is too late to take effect.)

// A closed pipe on stdout (`coffer ls … | head`) ends the command quietly,
// as for other Unix tools.
process.stdout.on('error', (e) => {
  if (e && e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

// Top-level await: if the CLI ever left a promise unsettled, Node exits with
// code 13 instead of a silent 0.
const { main } = await import('../dist/src/cli/main.js');
try {
  process.exitCode = await main(process.argv);
} catch (e) {
  process.stderr.write(`coffer: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
}
