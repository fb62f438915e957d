/**
 * The coffer command line. The only module that prints, reads the terminal
 * or decides the exit code.
 */
import { CofferError, EXIT_CODES } from '../errors.js';
import { VERSION } from '../version.js';
import { StorageError } from '../storage/backend.js';
import { mark, takeMarks } from '../util/timing.js';

function report(e: unknown, debug: boolean): number {
  if (e instanceof CofferError) {
    process.stderr.write(`coffer: ${e.message}\n`);
    if (debug && e.cause) process.stderr.write(`${String((e.cause as Error).stack ?? e.cause)}\n`);
    return e.exitCode;
  }
  process.stderr.write(`coffer: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
  if (debug) process.stderr.write(`${(e as Error).stack}\n`);
  return EXIT_CODES.INTERNAL;
}

/** Runs the CLI; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  mark('cli loaded');
  // `--version` alone needs none of the grammar (commander and every
  // command's registration): print what commander would.
  if (argv.length === 3 && (argv[2] === '--version' || argv[2] === '-V')) {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  const debug = process.env.COFFER_DEBUG === '1' || argv.includes('--debug');
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let pending: Promise<number> | undefined;
  let grammar: typeof import('./program.js') | undefined;
  try {
    grammar = await import('./program.js');
    const p = grammar.oneLineUsageErrors(
      grammar.program((job) => {
        pending = job;
      }, abort.signal),
    );
    if (argv.length <= 2) {
      p.outputHelp();
      return 2;
    }
    await p.parseAsync(argv);
    if (!pending) return 0;
    return await pending;
  } catch (e) {
    if (grammar && e instanceof grammar.CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      return 2;
    }
    // A storage failure an engine did not wrap (repository.js loads only then: see "Start-up").
    if (e instanceof StorageError) e = (await import('../repo/repository.js')).storageFailure(e);
    return report(e, debug);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    printMarks();
  }
}

/** COFFER_TIMINGS=1: where the time went (see util/timing.ts), one mark a line on stderr. */
function printMarks(): void {
  mark('done');
  const marks = takeMarks();
  for (const m of marks) process.stderr.write(`coffer-timing ${m.ms.toFixed(1).padStart(8)} ms ${m.cpuMs.toFixed(1).padStart(8)} ms-cpu  ${m.name}\n`);
}
