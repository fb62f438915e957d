/**
 * Turns a repository location string into a backend, and assembles the
 * layers every remote backend gets, in one place:
 *
 *     cache (metadata, on local disk) → retry (transient errors only) → concurrency limit → backend
 *
 * Local directories get no layers: their errors are never transient and a
 * cache would copy one local disk to another.
 *
 * Locations: PATH or local:PATH; rest:http(s)://[user:pass@]host[:port]/path;
 * rclone:REMOTE:PATH; s3:https://host[:port]/bucket[/prefix]; s3:bucket[/prefix] (AWS).
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { CofferError } from '../errors.js';
import type { Backend } from './backend.js';
import { LocalBackend } from './local.js';
import { RestBackend } from './rest.js';
import { FetchTransport, StdioTransport } from './http.js';
import { S3Backend } from './s3.js';
import { RetryBackend, type RetryOptions } from './retry.js';
import { LimitBackend } from './limit.js';
import { CacheBackend } from './cache.js';

/**
 * How {@link openBackend} layers a remote location: metadata cache directory, connections, retries.
 * @example
 * ```ts
 * const backend = openBackend('s3:https://minio.lan:9000/backups/laptop', { cacheDir: defaultCacheDir(), connections: 8 });
 * ```
 */
export interface BackendOptions {
  /** Cache root (as for the index cache); remote metadata goes to <cacheDir>/remote/<hash of location>. */
  cacheDir?: string;
  /** No metadata cache. */
  noCache?: boolean;
  /** Concurrent requests to a remote backend (default 5). */
  connections?: number;
  retry?: RetryOptions;
  /** Extra settings, as from environment variables (see README "Remote repositories"). */
  env?: Record<string, string | undefined>;
}

function usage(msg: string): CofferError {
  return new CofferError('INVALID_ARGUMENT', msg);
}

function truthy(v: string | undefined, name: string): boolean | undefined {
  if (v === undefined || v === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(v)) return true;
  if (/^(0|false|no|off)$/i.test(v)) return false;
  throw usage(`${name} must be true or false, not "${v}"`);
}

/** The bare backend for a location, without layers. */
export function parseLocation(location: string, opts: BackendOptions = {}): Backend {
  if (!location) throw usage('no repository given: use -r/--repo or COFFER_REPOSITORY');
  const env = opts.env ?? process.env;
  const m = /^([a-z0-9]+):(.*)$/s.exec(location);
  if (!m || m[1].length === 1) return new LocalBackend(location); // also C:\… style paths
  const [, scheme, rest] = m;
  switch (scheme) {
    case 'local':
      return new LocalBackend(rest);
    case 'rest': {
      let url: URL;
      try {
        url = new URL(rest);
      } catch {
        throw usage(`"${rest}" is not a URL (expected rest:http://host:port/path)`);
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usage(`rest: needs an http:// or https:// URL, not "${url.protocol}"`);
      const user = env.COFFER_REST_USERNAME;
      const creds = user !== undefined ? { username: user, password: env.COFFER_REST_PASSWORD ?? '' } : undefined;
      const shown = new URL(url);
      shown.username = '';
      shown.password = '';
      return new RestBackend(new FetchTransport(url.href, creds), `rest:${shown.href}`, opts.connections);
    }
    case 'rclone': {
      if (!rest) throw usage('rclone: needs a remote, e.g. rclone:myremote:backups/coffer');
      const program = env.COFFER_RCLONE_PROGRAM || 'rclone';
      const args = (env.COFFER_RCLONE_ARGS || 'serve restic --stdio --b2-hard-delete').split(/\s+/).filter(Boolean);
      return new RestBackend(new StdioTransport({ program, args: [...args, rest], name: 'rclone' }), location, opts.connections);
    }
    case 's3': {
      const pathStyle = truthy(env.COFFER_S3_PATH_STYLE, 'COFFER_S3_PATH_STYLE');
      const region = env.COFFER_S3_REGION || undefined;
      if (/^https?:\/\//.test(rest)) {
        const u = new URL(rest);
        const [bucket, ...prefix] = u.pathname.split('/').filter(Boolean);
        if (!bucket) throw usage(`${location}: no bucket (expected s3:https://host[:port]/bucket[/prefix])`);
        return new S3Backend({ endpoint: `${u.protocol}//${u.host}`, bucket, prefix: prefix.join('/'), region, pathStyle: pathStyle ?? true, connections: opts.connections });
      }
      const [bucket, ...prefix] = rest.split('/').filter(Boolean);
      if (!bucket) throw usage(`${location}: no bucket (expected s3:bucket[/prefix] or s3:https://host/bucket[/prefix])`);
      return new S3Backend({ bucket, prefix: prefix.join('/'), region, pathStyle: pathStyle ?? false, connections: opts.connections });
    }
    default:
      throw usage(`unsupported repository type "${scheme}:" (supported: a local path, local:, rest:, rclone:, s3:)`);
  }
}

/**
 * Opens the storage at a location (a directory, `local:PATH`, `rest:URL`,
 * `rclone:REMOTE:PATH`, `s3:…`) with the standard layers (see the module comment).
 * @example
 * ```ts
 * const backend = openBackend('rest:http://localhost:8000/repo', { cacheDir: defaultCacheDir() });
 * ```
 */
export function openBackend(location: string, opts: BackendOptions = {}): Backend {
  const bare = parseLocation(location, opts);
  if (bare instanceof LocalBackend) return bare;
  let b: Backend = new LimitBackend(bare, bare.connections ?? 5);
  b = new RetryBackend(b, opts.retry);
  if (!opts.noCache && opts.cacheDir) {
    const key = createHash('sha256').update(location).digest('hex').slice(0, 32);
    b = new CacheBackend(b, path.join(opts.cacheDir, 'remote', key));
  }
  return b;
}
