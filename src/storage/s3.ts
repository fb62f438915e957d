/**
 * A repository in an S3-compatible bucket, through the official AWS SDK v3.
 * Keys mirror the local layout under an optional prefix: `config`,
 * `keys/<name>`, `data/<2 hex>/<name>`, `index/<name>`, `snapshots/<name>`,
 * `locks/<name>`, so a bucket and a directory can be synced with any tool.
 *
 * Credentials, profiles and region come from the SDK's standard chain
 * (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
 * AWS_REGION, ~/.aws/…). The SDK's own retries are off: the retry layer
 * retries transient failures for every backend alike. The SDK is loaded on
 * first use, so other backends do not pay for it.
 *
 * Writes never overwrite: a HEAD first, then a PUT with `If-None-Match: *`
 * (honoured by AWS, MinIO, R2 and others; a server that ignores it leaves
 * only the HEAD check, and names are content hashes anyway).
 */
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { errnoCode } from '../errors.js';
import { type Backend, type FileType, type Handle, type ObjectInfo, type ReadRange, StorageError, describe } from './backend.js';

export interface S3Options {
  /** https://host[:port] for S3-compatible servers; undefined for AWS. */
  endpoint?: string;
  bucket: string;
  /** Key prefix without leading or trailing slash ("" for the bucket root). */
  prefix: string;
  region?: string;
  /** Path-style requests (https://host/bucket/key) instead of virtual-hosted (https://bucket.host/key). */
  pathStyle: boolean;
  connections?: number;
}

const NAME = /^[0-9a-f]{64}$/;
const TRANSIENT_NAMES = new Set(['SlowDown', 'RequestTimeout', 'RequestTimeTooSkewed', 'InternalError', 'ServiceUnavailable', 'Throttling', 'ThrottlingException', 'TimeoutError', 'RequestTimeoutException']);
const TRANSIENT_NET = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ENETDOWN', 'UND_ERR_SOCKET']);

type Sdk = typeof import('@aws-sdk/client-s3');

export class S3Backend implements Backend {
  readonly location: string;
  readonly connections: number;
  private client?: Promise<{ sdk: Sdk; client: S3Client }>;
  /** Cleared when the server answers If-None-Match with 501 Not Implemented. */
  private conditionalPuts = true;

  constructor(readonly opts: S3Options) {
    this.location = `s3:${opts.endpoint ? `${opts.endpoint.replace(/\/$/, '')}/` : ''}${opts.bucket}${opts.prefix ? `/${opts.prefix}` : ''}`;
    this.connections = opts.connections ?? 5;
  }

  private sdk(): Promise<{ sdk: Sdk; client: S3Client }> {
    // The SDK warns on stderr that its 2027 releases will need Node 22; the
    // version coffer pins runs on Node 20, and the library must not print.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
    this.client ??= import('@aws-sdk/client-s3').then(async (sdk) => {
      const make = (region: string | undefined) =>
        new sdk.S3Client({
          endpoint: this.opts.endpoint,
          region,
          forcePathStyle: this.opts.pathStyle,
          followRegionRedirects: !this.opts.endpoint,
          maxAttempts: 1,
          // Silent, as the SDK's default logger is; with that default, a failed
          // upload of a stream body (below) would be announced on the console.
          logger: { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined },
          // Give up on a connection attempt after 30 s and on a stalled socket after 5 min (then retried).
          requestHandler: { connectionTimeout: 30_000, socketTimeout: 300_000 },
          // Plain Content-MD5/length uploads work with every S3-compatible server;
          // the newer streaming checksums do not.
          requestChecksumCalculation: 'WHEN_REQUIRED',
          responseChecksumValidation: 'WHEN_REQUIRED',
        });
      // Region: COFFER_S3_REGION, else the SDK's chain (AWS_REGION, the profile), else us-east-1.
      let client = make(this.opts.region);
      if (!this.opts.region) {
        try {
          await client.config.region();
        } catch {
          client.destroy();
          client = make('us-east-1');
        }
      }
      return { sdk, client };
    });
    return this.client;
  }

  private key(h: Handle): string {
    let rel: string;
    if (h.type === 'config') rel = 'config';
    else if (!NAME.test(h.name)) throw new RangeError(`bad object name ${h.name}`);
    else rel = h.type === 'data' ? `data/${h.name.slice(0, 2)}/${h.name}` : `${h.type}/${h.name}`;
    return this.opts.prefix ? `${this.opts.prefix}/${rel}` : rel;
  }

  async create(): Promise<void> {
    // Object stores have no folders: creating the layout is a no-op, but the
    // bucket must exist and the place must be empty.
    const { sdk, client } = await this.sdk();
    try {
      await client.send(new sdk.HeadBucketCommand({ Bucket: this.opts.bucket }));
    } catch (e) {
      if (status(e) === 404) {
        try {
          await client.send(new sdk.CreateBucketCommand({ Bucket: this.opts.bucket }));
        } catch (e2) {
          throw s3Error(e2, undefined, `creating bucket ${this.opts.bucket} for`, this.location);
        }
      } else throw s3Error(e, undefined, 'opening', this.location);
    }
    if (await this.stat({ type: 'config', name: 'config' })) throw new StorageError('exists', `${this.location} already holds a repository`);
  }

  async read(h: Handle, range?: ReadRange): Promise<Buffer> {
    if (range?.length === 0) return Buffer.alloc(0);
    const Key = this.key(h);
    const { sdk, client } = await this.sdk();
    try {
      const res = await client.send(
        new sdk.GetObjectCommand({
          Bucket: this.opts.bucket,
          Key,
          Range: range ? `bytes=${range.offset}-${range.offset + range.length - 1}` : undefined,
        }),
      );
      const body = Buffer.from(await res.Body!.transformToByteArray());
      return range && res.ContentRange === undefined && body.length > range.length ? body.subarray(range.offset, range.offset + range.length) : body;
    } catch (e) {
      if (range && (status(e) === 416 || (e as { name?: string }).name === 'InvalidRange')) return Buffer.alloc(0);
      throw s3Error(e, h, 'reading', this.location);
    }
  }

  async stat(h: Handle): Promise<ObjectInfo | undefined> {
    const Key = this.key(h);
    const { sdk, client } = await this.sdk();
    try {
      const res = await client.send(new sdk.HeadObjectCommand({ Bucket: this.opts.bucket, Key }));
      return { name: h.name, size: res.ContentLength ?? 0 };
    } catch (e) {
      if (status(e) === 404) return undefined;
      throw s3Error(e, h, 'inspecting', this.location);
    }
  }

  async list(type: FileType): Promise<ObjectInfo[]> {
    if (type === 'config') {
      const st = await this.stat({ type, name: 'config' });
      return st ? [st] : [];
    }
    const { sdk, client } = await this.sdk();
    const prefix = `${this.opts.prefix ? `${this.opts.prefix}/` : ''}${type}/`;
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      let res;
      try {
        res = await client.send(new sdk.ListObjectsV2Command({ Bucket: this.opts.bucket, Prefix: prefix, ContinuationToken: token }));
      } catch (e) {
        throw s3Error(e, undefined, `listing ${type} in`, this.location);
      }
      for (const o of res.Contents ?? []) {
        const name = o.Key?.slice(o.Key.lastIndexOf('/') + 1);
        if (name && NAME.test(name) && o.Key === this.key({ type, name })) out.push({ name, size: o.Size ?? 0 });
      }
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    // Several parts (a pack's buffers) go out as a stream over them, with
    // the length given: no joined copy. A new stream for each attempt.
    const parts = data instanceof Uint8Array ? [data] : data;
    const length = parts.reduce((n, b) => n + b.length, 0);
    const body = () => (parts.length === 1 ? parts[0] : Readable.from(parts, { objectMode: false }));
    if (await this.stat(h)) throw new StorageError('exists', `${describe(h)} already exists`, h);
    const { sdk, client } = await this.sdk();
    const put = (conditional: boolean) =>
      client.send(
        new sdk.PutObjectCommand({ Bucket: this.opts.bucket, Key: this.key(h), Body: body(), ContentLength: length, IfNoneMatch: conditional ? '*' : undefined }),
      );
    try {
      try {
        await put(this.conditionalPuts);
      } catch (e) {
        // Servers without conditional writes: the HEAD above is the check.
        if (!this.conditionalPuts || !(status(e) === 501 || (e as { name?: string }).name === 'NotImplemented')) throw e;
        this.conditionalPuts = false;
        await put(false);
      }
    } catch (e) {
      if (status(e) === 412) throw new StorageError('exists', `${describe(h)} already exists`, h);
      throw s3Error(e, h, 'writing', this.location);
    }
  }

  async remove(h: Handle): Promise<void> {
    // S3 DELETE succeeds for missing keys; ask first so remove() reports notFound like every backend.
    if (!(await this.stat(h))) throw new StorageError('notFound', `${describe(h)} does not exist`, h);
    const { sdk, client } = await this.sdk();
    try {
      await client.send(new sdk.DeleteObjectCommand({ Bucket: this.opts.bucket, Key: this.key(h) }));
    } catch (e) {
      if (status(e) === 403) throw new StorageError('permission', `the server refused to delete ${describe(h)} (403 Forbidden): the credentials or bucket policy do not allow deleting`, h);
      throw s3Error(e, h, 'removing', this.location);
    }
  }

  async close(): Promise<void> {
    if (this.client) (await this.client).client.destroy();
  }
}

function status(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** Classifies an SDK failure: network errors, 5xx, 408, 429 and throttling are transient. */
export function s3Error(e: unknown, h: Handle | undefined, action: string, location: string): StorageError {
  if (e instanceof StorageError) return e;
  const what = h ? describe(h) : location;
  const s = status(e);
  const name = (e as { name?: string })?.name ?? '';
  const code = errnoCode(e) ?? errnoCode((e as { cause?: unknown })?.cause);
  const msg = `${name || 'error'}${s ? ` (HTTP ${s})` : ''}${code ? ` ${code}` : ''} while ${action} ${what}: ${(e as Error)?.message ?? String(e)}`;
  if (s === 404 || name === 'NoSuchKey' || name === 'NotFound') return new StorageError('notFound', `${what} does not exist`, h, { cause: e });
  if (name === 'NoSuchBucket') return new StorageError('io', `the bucket of ${location} does not exist`, h, { cause: e });
  if (s === 401 || s === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch')
    return new StorageError('permission', `access denied while ${action} ${what} (${name || s}); check the credentials`, h, { cause: e });
  if ((s !== undefined && (s >= 500 || s === 408 || s === 429)) || TRANSIENT_NAMES.has(name)) return new StorageError('transient', msg, h, { cause: e });
  if (name === 'CredentialsProviderError') return new StorageError('permission', `no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE`, h, { cause: e });
  if (s === undefined && ((code && TRANSIENT_NET.has(code)) || /socket hang up/i.test((e as Error)?.message ?? '')))
    return new StorageError('transient', `cannot reach the server of ${location}: ${code ?? 'connection closed'} (while ${action} ${what})`, h, { cause: e });
  return new StorageError('io', msg, h, { cause: e });
}
