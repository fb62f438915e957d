/**
 * The base of the layers stacked on a Backend (limit, retry, cache, and the
 * test-only fault injector; assembled in location.ts): a layer has the
 * location and connection count of the backend below it and passes every
 * call down. Each call goes through `run`, which a layer overrides to put
 * the same thing around every operation (a connection slot, retries); a
 * layer that treats some operations specially overrides those methods.
 */
import type { Backend, FileType, Handle, ObjectInfo, ReadRange } from './backend.js';

export abstract class BackendLayer implements Backend {
  readonly location: string;
  readonly connections?: number;

  constructor(readonly inner: Backend) {
    this.location = inner.location;
    this.connections = inner.connections;
  }

  /** Runs one operation on the backend below; the default runs it as it is. */
  protected run<T>(op: () => Promise<T>): Promise<T> {
    return op();
  }

  read(h: Handle, range?: ReadRange): Promise<Buffer> {
    return this.run(() => this.inner.read(h, range));
  }
  stat(h: Handle): Promise<ObjectInfo | undefined> {
    return this.run(() => this.inner.stat(h));
  }
  list(type: FileType): Promise<ObjectInfo[]> {
    return this.run(() => this.inner.list(type));
  }
  create(): Promise<void> {
    return this.run(() => this.inner.create());
  }
  write(h: Handle, data: Uint8Array | readonly Uint8Array[]): Promise<void> {
    return this.run(() => this.inner.write(h, data));
  }
  remove(h: Handle): Promise<void> {
    return this.run(() => this.inner.remove(h));
  }
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}
