/**
 * The HTTP transports the REST backend speaks through: fetch (undici, built
 * into Node; keep-alive and parallel connections) for `rest:` URLs, and a
 * HTTP/2 client over a child process's stdin/stdout for
 * `rclone serve restic --stdio` (like restic).
 * Transports throw StorageError `transient` when the connection fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type * as http2 from 'node:http2';

// Only rclone: needs HTTP/2; not loaded at start-up (see docs/PERFORMANCE.md, "Start-up").
let h2: typeof http2 | undefined;
const loadHttp2 = (): typeof http2 => (h2 ??= createRequire(import.meta.url)('node:http2') as typeof http2);
import { Duplex } from 'node:stream';
import { errnoCode } from '../errors.js';
import { StorageError } from './backend.js';

export interface HttpRequest {
  method: 'GET' | 'HEAD' | 'POST' | 'DELETE';
  /** Path relative to the repository root, no leading slash ("" for the root); may carry a query. */
  path: string;
  headers?: Record<string, string>;
  /**
   * The request body: one buffer, or parts sent one after another as they
   * are (a pack's buffers), never joined into one copy.
   */
  body?: Uint8Array | readonly Uint8Array[];
}

/** Bytes in a request body. */
export function bodyLength(body: Uint8Array | readonly Uint8Array[]): number {
  return body instanceof Uint8Array ? body.length : body.reduce((n, b) => n + b.length, 0);
}

/** A fetch body for `body`: the buffer itself, or a stream handing over each part by reference. */
function fetchBody(body: Uint8Array | readonly Uint8Array[]): { body: BodyInit; streamed: boolean } {
  if (body instanceof Uint8Array) return { body: new Uint8Array(body.buffer as ArrayBuffer, body.byteOffset, body.length), streamed: false };
  if (body.length === 1) return fetchBody(body[0]);
  let i = 0;
  const stream = new ReadableStream<Uint8Array>({
    pull(c) {
      if (i < body.length) c.enqueue(body[i++]);
      else c.close();
    },
  });
  return { body: stream, streamed: true };
}

export interface HttpResponse {
  status: number;
  /** Header lookup, case-insensitive. */
  header(name: string): string | undefined;
  body: Buffer;
}

export interface HttpTransport {
  request(req: HttpRequest): Promise<HttpResponse>;
  close?(): Promise<void>;
}

/** Network error codes that mean "the server or network may be back soon". */
const PERMANENT_NET = new Set(['ENOTFOUND', 'ERR_INVALID_URL', 'ERR_TLS_CERT_ALTNAME_INVALID', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'CERT_HAS_EXPIRED', 'SELF_SIGNED_CERT_IN_CHAIN']);

export class FetchTransport implements HttpTransport {
  private readonly base: URL;
  private readonly auth?: string;

  /** `url` may carry user:password (sent as HTTP basic auth, never shown). */
  constructor(url: string, credentials?: { username: string; password: string }) {
    const u = new URL(url);
    let creds = credentials;
    if (u.username || u.password) creds ??= { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
    u.username = '';
    u.password = '';
    if (!u.pathname.endsWith('/')) u.pathname += '/';
    this.base = u;
    if (creds) this.auth = 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
  }

  async request(req: HttpRequest): Promise<HttpResponse> {
    const url = new URL(req.path, this.base);
    const headers: Record<string, string> = { ...req.headers };
    if (this.auth) headers.authorization = this.auth;
    let res: Response;
    let body: Buffer;
    try {
      const b = req.body && fetchBody(req.body);
      // A streamed body carries its length, so the server sees a plain (not chunked) upload.
      if (b?.streamed) headers['content-length'] = String(bodyLength(req.body!));
      res = await fetch(url, { method: req.method, headers, body: b?.body, ...(b?.streamed ? { duplex: 'half' } : {}) } as RequestInit);
      body = req.method === 'HEAD' ? Buffer.alloc(0) : Buffer.from(await res.arrayBuffer());
    } catch (e) {
      const code = errnoCode((e as { cause?: unknown }).cause) ?? errnoCode(e);
      const kind = code && PERMANENT_NET.has(code) ? 'io' : 'transient';
      throw new StorageError(kind, `cannot reach ${this.base.origin}: ${code ?? (e as Error).message}`, undefined, { cause: e });
    }
    return { status: res.status, header: (n) => res.headers.get(n) ?? undefined, body };
  }
}

export interface StdioOptions {
  program: string;
  args: string[];
  /** Shown in messages, e.g. "rclone". */
  name: string;
}

interface ChildState {
  /** It answered at least one request: later failures are transient. */
  answered: boolean;
  stderr: string;
  spawnError?: string;
}

/**
 * HTTP/2 (prior knowledge, no TLS) over a child's stdin/stdout: what
 * `rclone serve restic --stdio` speaks, as restic uses it. Requests are
 * multiplexed on the one connection. If the child dies, requests in flight
 * fail as transient and the next request starts a new child; a child that
 * dies before answering anything is a permanent failure, reported with the
 * end of its stderr (a bad remote name, rclone not installed, …).
 */
export class StdioTransport implements HttpTransport {
  private proc?: ChildProcess;
  private session?: http2.ClientHttp2Session;
  /** What is known about the current child (each child has its own). */
  private child?: ChildState;
  private closed = false;

  constructor(private readonly opts: StdioOptions) {}

  private failure(c: ChildState, why: string, cause?: unknown): StorageError {
    const tail = c.stderr
      .trim()
      .split('\n')
      .filter((l) => !/Config file .* not found/.test(l))
      .slice(-2)
      .map((l) => l.replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, ''))
      .join(' | ');
    return new StorageError(c.answered ? 'transient' : 'io', `${this.opts.name} ${why}${tail ? `: ${tail}` : ''}`, undefined, { cause });
  }

  private start(): http2.ClientHttp2Session {
    const child: ChildState = { answered: false, stderr: '' };
    const p = spawn(this.opts.program, this.opts.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    p.stderr!.on('data', (b: Buffer) => {
      child.stderr = (child.stderr + b.toString('utf8')).slice(-4096);
    });
    p.stdin!.on('error', () => undefined); // reported through the session
    const pipe = Duplex.from({ readable: p.stdout!, writable: p.stdin! });
    pipe.on('error', () => undefined);
    const session = loadHttp2().connect('http://localhost', { createConnection: () => pipe });
    session.on('error', () => undefined); // reported through the streams
    const drop = () => {
      if (this.session === session) {
        this.session = undefined;
        this.proc = undefined;
      }
      // Destroying the pipe ends the session; destroying the session while
      // the pipe is dead trips an assertion in Node 20's JSStreamSocket.
      if (!pipe.destroyed) pipe.destroy();
      // On close(), rclone ends by itself once its stdin is closed.
      if (!this.closed && p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    };
    p.on('error', (e) => {
      child.spawnError = errnoCode(e) === 'ENOENT' ? `is not installed (cannot run "${this.opts.program}"; install it or set COFFER_RCLONE_PROGRAM)` : `failed to start (${e.message})`;
      drop();
    });
    p.on('exit', drop);
    session.on('close', drop);
    this.proc = p;
    this.session = session;
    this.child = child;
    return session;
  }

  request(req: HttpRequest): Promise<HttpResponse> {
    if (this.closed) return Promise.reject(new StorageError('io', `${this.opts.name} connection is closed`));
    const session = this.session ?? this.start();
    const proc = this.proc!;
    const child = this.child!;
    return new Promise<HttpResponse>((resolve, reject) => {
      const headers: http2.OutgoingHttpHeaders = { ':method': req.method, ':path': `/${req.path}`, ...req.headers };
      if (req.body) headers['content-length'] = String(bodyLength(req.body));
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(headers, { endStream: !req.body });
      } catch (e) {
        reject(this.failure(child, 'connection failed', e));
        return;
      }
      let status = 0;
      let resHeaders: http2.IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        status = Number(h[':status']);
        resHeaders = h;
        child.answered = true;
      });
      stream.on('data', (b: Buffer) => chunks.push(b));
      stream.on('end', () => {
        if (!status) return;
        const get = (n: string) => {
          const v = resHeaders[n.toLowerCase()];
          return Array.isArray(v) ? v.join(', ') : v;
        };
        resolve({ status, header: get, body: Buffer.concat(chunks) });
      });
      stream.on('close', () => {
        if (status && stream.rstCode === loadHttp2().constants.NGHTTP2_NO_ERROR) return;
        // Give 'exit' and stderr a moment to arrive, for a useful message.
        setTimeout(() => {
          const why = child.spawnError ?? (proc.exitCode !== null || proc.signalCode !== null ? `exited (${proc.signalCode ?? `code ${proc.exitCode}`})` : 'connection failed');
          reject(this.failure(child, why));
        }, 50);
      });
      stream.on('error', () => undefined); // handled on 'close'
      if (req.body instanceof Uint8Array) stream.end(req.body);
      else if (req.body) {
        // Each part is queued by reference; the stream keeps them until sent.
        for (const part of req.body) stream.write(part);
        stream.end();
      }
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const p = this.proc;
    const session = this.session;
    this.session = undefined;
    this.proc = undefined;
    if (session && !session.closed && !session.destroyed) await new Promise<void>((r) => session.close(() => r()));
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => p.kill('SIGKILL'), 5000);
      p.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      p.stdin!.end();
    });
  }
}
