/**
 * The storage interface: a handful of methods over named, immutable objects.
 * Everything else (layout knowledge, caching, retries) is layered around it.
 * Implementations know nothing about keys or formats.
 */

/**
 * The folders of a repository: one per kind of object.
 * @example
 * ```ts
 * const t: FileType = 'snapshots';
 * ```
 */
export type FileType = 'config' | 'keys' | 'data' | 'index' | 'snapshots' | 'locks';
export const FILE_TYPES: readonly FileType[] = ['config', 'keys', 'data', 'index', 'snapshots', 'locks'];

/**
 * Names one object in the storage: its type (folder) and name.
 * @example
 * ```ts
 * const h: Handle = { type: 'config', name: 'config' }; await backend.stat(h);
 * ```
 */
export interface Handle {
  type: FileType;
  /** Object name: 64 hex characters, or "config" for the config file. */
  name: string;
}

/**
 * Name and size of a stored object, as `list` and `stat` return them.
 * @example
 * ```ts
 * const infos: ObjectInfo[] = await backend.list('index');
 * ```
 */
export interface ObjectInfo {
  name: string;
  size: number;
}

export interface ReadRange {
  offset: number;
  length: number;
  /**
   * The caller will read this range again (a tree blob): a caching layer may
   * keep it. Backends ignore it.
   */
  metadata?: boolean;
}

/**
 * Read side: enough to restore or check.
 * @example
 * ```ts
 * async function count(b: ReadBackend) { return (await b.list('data')).length; }
 * ```
 */
export interface ReadBackend {
  readonly location: string;
  /**
   * How many requests the backend serves well at once (remote backends);
   * undefined for local disks. Engines may use it to size parallel writes.
   */
  readonly connections?: number;
  /** Whole object, or `range`; throws StorageError with `notFound` when it does not exist. */
  read(h: Handle, range?: ReadRange): Promise<Buffer>;
  stat(h: Handle): Promise<ObjectInfo | undefined>;
  list(type: FileType): Promise<ObjectInfo[]>;
  /**
   * Optional: reads `range` (or the whole object) into `into` from its
   * start, so engines can reuse a fixed set of buffers instead of a new one
   * per read; resolves to the bytes read (fewer than asked at the end of the
   * object). `into` must be large enough. Engines fall back to `read` when a
   * backend (or a layer around it) does not offer it.
   */
  readInto?(h: Handle, into: Uint8Array, range?: ReadRange): Promise<number>;
}

/**
 * Write side: objects are created once, atomically, and never overwritten.
 * @example
 * ```ts
 * const b: Backend = openBackend('/mnt/backup/repo'); console.log(await b.list('snapshots'));
 * ```
 */
export interface Backend extends ReadBackend {
  /** Creates the empty layout; fails if anything is already there. */
  create(): Promise<void>;
  /**
   * Stores the concatenation of `data` (one buffer or several, written as one
   * object). Atomic and durable once resolved. Writing an existing name throws
   * StorageError `exists`.
   */
  write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void>;
  remove(h: Handle): Promise<void>;
  /** Releases connections or helper processes; the backend is unusable afterwards. */
  close?(): Promise<void>;
}

/**
 * `transient` failures (a dropped connection, a timeout, HTTP 5xx/429, a
 * server that is restarting) may succeed when tried again; the retry layer
 * retries only those. Every other kind is permanent.
 * @example
 * ```ts
 * if (e instanceof StorageError && e.kind === 'notFound') console.error('missing object');
 * ```
 */
export type StorageErrorKind = 'notFound' | 'exists' | 'noSpace' | 'permission' | 'transient' | 'io';

/**
 * A storage failure, classified by `kind` (see {@link StorageErrorKind}); `handle` names the object.
 * @example
 * ```ts
 * try { await backend.read({ type: 'snapshots', name }); } catch (e) { if (e instanceof StorageError && e.kind === 'transient') retry(); }
 * ```
 */
export class StorageError extends Error {
  readonly kind: StorageErrorKind;
  readonly handle?: Handle;
  constructor(kind: StorageErrorKind, message: string, handle?: Handle, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageError';
    this.kind = kind;
    this.handle = handle;
  }
}

export function describe(h: Handle): string {
  return h.type === 'config' ? 'config' : `${h.type}/${h.name}`;
}

export function isTransient(e: unknown): boolean {
  return e instanceof StorageError && e.kind === 'transient';
}
