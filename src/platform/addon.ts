/**
 * Loads the optional native addon (native/coffer_native.c, built at install
 * time by scripts/build-native.mjs) once per thread, or reports why not.
 * COFFER_NO_NATIVE=1 disables it. The file-system wrappers live in
 * native.ts, the AES-GCM ones in crypto/aead.ts; both fall back to
 * node:fs / node:crypto when the addon or one of its functions is missing.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The raw addon interface (paths and names as Buffers, all calls synchronous). */
export interface NativeBinding {
  readonly abi: number;
  readonly hasXattr: boolean;
  setTimes(path: Buffer, atimeNs: bigint, mtimeNs: bigint, followSymlinks: boolean): void;
  listXattrs(path: Buffer): Buffer[];
  getXattr(path: Buffer, name: Buffer): Buffer;
  setXattr(path: Buffer, name: Buffer, value: Buffer): void;
  mkfifo(path: Buffer, mode: number): void;
  mknod(path: Buffer, mode: number, rdev: bigint): void;
  /** Present in addons built from this version on (feature-detected, see scanDir below). */
  scanDir?(dir: Buffer): [Buffer, ArrayBuffer, number];
  /** scanDir on one of libuv's threads (the walk's lookahead). */
  scanDirAsync?(dir: Buffer): Promise<[Buffer, ArrayBuffer, number]>;
  readSmall?(path: Buffer, buf: Buffer, offset: number, want: number): number;
  /** FastCDC's inner loop, bit for bit the JavaScript scanGear (src/chunker/fastcdc.ts); `gear` is the 256-entry table as 1024 bytes. */
  gearScan?: NativeGearScan;
  /** coffer's seal after the nonce (FORMAT.md §1): subkey MAC(key, nonce[0..12)), AES-256-GCM of a‖b into out[offset..] plus the tag; returns the bytes written. Present when Node's OpenSSL was found at build and load time. */
  gcmSeal?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, a: Uint8Array, b: Uint8Array | null, out: Uint8Array, offset: number): number;
  /** Opens ct (tag apart) into out[offset..]; false (output wiped) when it does not authenticate. */
  gcmOpen?(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array, out: Uint8Array, offset: number): boolean;
  /**
   * Restore's small-file fast path (worker/write-files.ts): creates `path` (latin1 bytes; O_EXCL, O_NOFOLLOW) with
   * `data` (or, `hole`, only its size), then fchown (uid >= 0), fchmod (chmodMode >= 0), futimens, close. Returns 0
   * or the errno of the first failure (nothing is left at `path` then).
   */
  restoreFile?(path: string, data: Uint8Array, hole: boolean, createMode: number, chmodMode: number, uid: number, gid: number, mtimeNs: bigint): number;
  /** Bytes from the start of `buf`'s data to the next multiple of `align` (a power of two) in memory; 0 when aligned. */
  alignGap?(buf: Uint8Array, align: number): number;
  /** madvise(MADV_HUGEPAGE) on the 2 MiB-aligned interior of `buf` (Linux); whether the advice was taken. */
  adviseHugePages?(buf: Uint8Array): boolean;
}

export type NativeGearScan = (data: Uint8Array, gear: Uint8Array, i: number, mid: number, stop: number, maskS: number, maskL: number) => number;

/** Must match COFFER_NATIVE_ABI in native/coffer_native.c. */
const NATIVE_ABI = 1;
const ADDON_RELATIVE_PATH = path.join('native', 'build', 'Release', 'coffer_native.node');

// ---------------------------------------------------------------------------
// loading
// ---------------------------------------------------------------------------

export interface NativeAddonStatus {
  /** The addon is loaded and usable. */
  loaded: boolean;
  /** Where the addon was looked for (null if the package root was not found). */
  path: string | null;
  /** Why it is not loaded (null when loaded, or when disabled by COFFER_NO_NATIVE=1). */
  error: Error | null;
  /** COFFER_NO_NATIVE=1 is set. */
  disabled: boolean;
}

export function nativeDisabled(): boolean {
  const v = process.env.COFFER_NO_NATIVE;
  return v !== undefined && v !== '' && v !== '0';
}

/** Walk up from this module to the directory holding coffer's package.json. */
export function findPackageRoot(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: unknown };
      if (pkg.name === 'coffer') return dir;
    } catch {
      // no (readable) package.json here: keep walking
    }
    const parent = path.dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

let loadResult: { binding: NativeBinding | null; path: string | null; error: Error | null } | undefined;

export function loadBinding(): NativeBinding | null {
  if (loadResult === undefined) loadResult = tryLoad();
  return loadResult.binding;
}

/** The addon for use: null when it is missing or COFFER_NO_NATIVE=1 turns it off (callers fall back to JS). */
export function usableBinding(): NativeBinding | null {
  return nativeDisabled() ? null : loadBinding();
}

function tryLoad(): { binding: NativeBinding | null; path: string | null; error: Error | null } {
  const root = findPackageRoot();
  if (root === null) return { binding: null, path: null, error: new Error('coffer package root not found') };
  const addonPath = path.join(root, ADDON_RELATIVE_PATH);
  try {
    const req = createRequire(import.meta.url);
    const binding = req(addonPath) as Partial<NativeBinding>;
    if (binding.abi !== NATIVE_ABI) {
      return {
        binding: null,
        path: addonPath,
        error: new Error(`native addon ABI ${String(binding.abi)} does not match expected ${NATIVE_ABI}; rebuild it`),
      };
    }
    return { binding: binding as NativeBinding, path: addonPath, error: null };
  } catch (err) {
    return { binding: null, path: addonPath, error: err instanceof Error ? err : new Error(String(err)) };
  }
}

/** Diagnostics: whether the native addon is in use, and why not. */
export function nativeAddonStatus(): NativeAddonStatus {
  if (nativeDisabled()) {
    const root = findPackageRoot();
    return { loaded: false, path: root === null ? null : path.join(root, ADDON_RELATIVE_PATH), error: null, disabled: true };
  }
  loadBinding();
  const r = loadResult!;
  return { loaded: r.binding !== null, path: r.path, error: r.error, disabled: false };
}

/** The addon's AES-256-GCM pair, or null (addon missing, disabled, or built without OpenSSL headers). */
export function nativeGcm(): Required<Pick<NativeBinding, 'gcmSeal' | 'gcmOpen'>> | null {
  const b = usableBinding();
  return b && typeof b.gcmSeal === 'function' && typeof b.gcmOpen === 'function' ? (b as Required<Pick<NativeBinding, 'gcmSeal' | 'gcmOpen'>>) : null;
}
