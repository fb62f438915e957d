/**
 * The file piscina loads in each worker thread. Piscina loads it with
 * require() first; on Node 20.19+ require() of an ES module can abort the
 * whole process ("FATAL ERROR: v8::Module::IsGraphAsync must be used on an
 * instantiated module", seen in CI), so this entry is CommonJS and loads the
 * real worker (worker.ts, an ES module) with import().
 */
type Handler = (task: unknown) => unknown;
// Loaded when the thread starts, not at its first task: a pool started while
// the key is derived (see context.ts) has its code ready when the keys are.
const handler: Promise<Handler> = import('./worker.js').then((m) => m.default as Handler);
handler.catch(() => undefined); // reported by the first task

function run(task: unknown): Promise<unknown> {
  return handler.then((h) => h(task));
}

export = run;
