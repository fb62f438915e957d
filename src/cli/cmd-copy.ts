/** `coffer copy --from-repo SRC [SNAPSHOT...]`: copies snapshots from another repository into this one. */
import { CofferError } from '../errors.js';
import { Repository } from '../repo/repository.js';
import { copySnapshots } from '../copier/copier.js';
import { withLock } from '../repo/lock.js';
import { openBackend } from '../storage/location.js';
import { defaultCacheDir } from '../repo/repository.js';
import { readPassword } from './password.js';
import { bytes, duration, localTime } from './format.js';
import { openRepo, Output, type GlobalOptions } from './context.js';

interface CopyFlags {
  fromRepo?: string;
  fromPasswordFile?: string;
  fromPasswordCommand?: string;
}

/** The source's password: its own options or COFFER_FROM_* variables, never the destination's. */
async function sourcePassword(o: CopyFlags): Promise<Buffer> {
  const env = process.env;
  const file = o.fromPasswordFile ?? env.COFFER_FROM_PASSWORD_FILE;
  const command = o.fromPasswordCommand ?? env.COFFER_FROM_PASSWORD_COMMAND;
  if (file) return readPassword({ passwordFile: file });
  if (command) return readPassword({ passwordCommand: command });
  if (env.COFFER_FROM_PASSWORD !== undefined) return Buffer.from(env.COFFER_FROM_PASSWORD);
  throw new CofferError('NO_PASSWORD', 'no password for the source repository: use --from-password-file, --from-password-command or COFFER_FROM_PASSWORD');
}

export async function cmdCopy(g: GlobalOptions, refs: string[], o: CopyFlags, signal: AbortSignal): Promise<number> {
  const out = new Output(g);
  const from = o.fromRepo ?? process.env.COFFER_FROM_REPOSITORY;
  if (!from) throw new CofferError('INVALID_ARGUMENT', 'no source repository: use --from-repo or COFFER_FROM_REPOSITORY');
  const cacheDir = g.cacheDir ?? process.env.COFFER_CACHE_DIR;
  const noCache = g.cache === false || process.env.COFFER_NO_CACHE === '1';
  const srcBackend = openBackend(from, { cacheDir: cacheDir ?? defaultCacheDir(), noCache });
  let src: Repository;
  try {
    const pw = await sourcePassword(o);
    try {
      src = await Repository.open(srcBackend, pw, { cacheDir, noCache, onWarning: (w) => out.warn(`source repository: ${w.message}`) }).catch((e) => {
        // Two repositories are in play: say which one refused the password.
        if (e instanceof CofferError && e.code === 'WRONG_PASSWORD') throw new CofferError(e.code, `source repository ${from}: ${e.message}`, e.data);
        throw e;
      });
    } finally {
      pw.fill(0);
    }
  } catch (e) {
    await srcBackend.close?.().catch(() => undefined);
    throw e;
  }
  try {
    const dst = await openRepo(g);
    try {
      const t0 = Date.now();
      // Shared locks on both sides: a prune must not run under a copy.
      const r = await withLock(src, false, (srcLock) => withLock(dst, false, (dstLock) => copySnapshots(src, dst, {
        snapshots: refs,
        signal: AbortSignal.any([signal, srcLock.signal, dstLock.signal]),
        onSnapshot: (e) => {
          const what = `snapshot ${e.source.id.slice(0, 8)} of [${e.source.paths.join(', ')}] at ${localTime(e.source.time)}`;
          if (e.skipped) out.info(`${what}: already in the destination as ${e.copy!.slice(0, 8)}`);
          else out.info(`${what}: copied as ${e.copy!.slice(0, 8)}`);
        },
      })), { onReadOnly: () => out.warn('the source repository is read-only: copying from it without a lock') });
      if (out.json) {
        out.emit({ message_type: 'summary', copied: r.copied, skipped: r.skipped, bytes_read: r.bytesRead, data_added: r.dataAdded });
      } else {
        out.info(`copied ${r.copied.length} snapshots, skipped ${r.skipped.length}; read ${bytes(r.bytesRead)}, added ${bytes(r.dataAdded)} in ${duration(Date.now() - t0)}`);
      }
      return 0;
    } finally {
      await dst.close();
    }
  } finally {
    await src.close();
  }
}
