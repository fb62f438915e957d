/*
 * coffer_native — a tiny N-API addon for the file-system calls Node.js lacks:
 *
 *   setTimes(path, atimeNs, mtimeNs, followSymlinks)  utimensat(2), ns precision
 *   listXattrs(path) -> Buffer[]                      llistxattr(2)
 *   getXattr(path, name) -> Buffer                    lgetxattr(2)
 *   setXattr(path, name, value)                       lsetxattr(2)
 *   mkfifo(path, mode)                                mkfifo(3) + chmod(2)
 *   mknod(path, mode, rdev)                           mknod(2) + chmod(2)
 *   scanDir(dir) -> [names, stats, count]             readdir + fstatat + llistxattr size (backup walk)
 *   scanDirAsync(dir) -> Promise<same>                scanDir on a libuv thread (the walk's lookahead)
 *   readSmall(path, buf, offset, want) -> number      open + fstat + pread + close (small files)
 *   gcmSeal(key, nonce, aad, a, b, out, offset) -> number  coffer's seal (FORMAT.md §1) after the nonce
 *   gcmOpen(key, nonce, aad, ct, tag, out, offset) -> bool  its open, into a caller's buffer
 *
 * The two AES-GCM calls use the OpenSSL that Node itself carries (its headers
 * ship with Node's; its symbols are Node's own, referenced weakly so that a
 * Node without them still loads the addon, just without these two). They exist
 * because node:crypto's Cipheriv costs ~10 µs of object set-up per message and
 * a fresh output buffer per update; coffer seals one message per blob.
 * Plain C against node_api.h only (no node-addon-api, no libuv). All calls but
 * scanDirAsync are synchronous: they are short metadata syscalls. The
 * TypeScript wrapper in src/platform/native.ts turns them into promises.
 *
 * Conventions:
 *   - every path / xattr name arrives as a Buffer of raw bytes (file names may
 *     be invalid UTF-8); we copy it and NUL-terminate it ourselves. Embedded NUL
 *     bytes are rejected with a TypeError (code ERR_INVALID_ARG_VALUE).
 *   - times and rdev arrive as BigInt.
 *   - failures throw Node-style errors: an Error with `code` ('ENOENT', ...),
 *     `errno` (negative, like Node's fs errors), `syscall` and `path`.
 *
 * Linux is the primary target; macOS is supported (different xattr
 * signatures). On other platforms the xattr calls fail with ENOTSUP.
 */

/* BigInt support needs Node-API >= 6; binding.gyp pins 8 (Node >= 12.22). */
#ifndef NAPI_VERSION
#define NAPI_VERSION 8
#endif

/* Expose mknod/utimensat/strerror_r even under a strict -std=c11. */
#if defined(__linux__) && !defined(_DEFAULT_SOURCE)
#define _DEFAULT_SOURCE 1
#endif

#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__)
#include <sys/xattr.h>
#define COFFER_HAVE_XATTR 1
#elif defined(__APPLE__)
#include <sys/xattr.h>
#define COFFER_HAVE_XATTR 1
#else
#define COFFER_HAVE_XATTR 0
#endif

/* Bumped when the JS-visible interface changes; checked by the loader. */
#define COFFER_NATIVE_ABI 1

/* Upper bound for xattr list / value buffers (Linux caps values at 64 KiB;
 * macOS resource forks can be larger). Guards against runaway ERANGE loops. */
#define XATTR_MAX_BYTES (64u * 1024u * 1024u)
#define XATTR_MAX_RETRIES 8

/* ------------------------------------------------------------------------ */
/* errors                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct {
  int num;
  const char *name;
} errno_name;

/* Order matters where two names share a number (e.g. ENOTSUP/EOPNOTSUPP and
 * EAGAIN/EWOULDBLOCK on Linux): the first match wins, matching libuv/Node. */
static const errno_name k_errno_names[] = {
  {EPERM, "EPERM"},
  {ENOENT, "ENOENT"},
  {EIO, "EIO"},
  {ENXIO, "ENXIO"},
  {E2BIG, "E2BIG"},
  {EBADF, "EBADF"},
  {EAGAIN, "EAGAIN"},
  {ENOMEM, "ENOMEM"},
  {EACCES, "EACCES"},
  {EFAULT, "EFAULT"},
  {EBUSY, "EBUSY"},
  {EEXIST, "EEXIST"},
  {EXDEV, "EXDEV"},
  {ENODEV, "ENODEV"},
  {ENOTDIR, "ENOTDIR"},
  {EISDIR, "EISDIR"},
  {EINVAL, "EINVAL"},
  {ENFILE, "ENFILE"},
  {EMFILE, "EMFILE"},
  {ETXTBSY, "ETXTBSY"},
  {EFBIG, "EFBIG"},
  {ENOSPC, "ENOSPC"},
  {EROFS, "EROFS"},
  {EMLINK, "EMLINK"},
  {ERANGE, "ERANGE"},
  {ENAMETOOLONG, "ENAMETOOLONG"},
  {ENOSYS, "ENOSYS"},
  {ENOTEMPTY, "ENOTEMPTY"},
  {ELOOP, "ELOOP"},
  {ENOTSUP, "ENOTSUP"},
#if defined(EOPNOTSUPP)
  {EOPNOTSUPP, "EOPNOTSUPP"},
#endif
#if defined(ENODATA)
  {ENODATA, "ENODATA"},
#endif
#if defined(ENOATTR)
  {ENOATTR, "ENOATTR"},
#endif
#if defined(EDQUOT)
  {EDQUOT, "EDQUOT"},
#endif
#if defined(ESTALE)
  {ESTALE, "ESTALE"},
#endif
  {EINTR, "EINTR"},
};

static const char *errno_to_code(int err) {
  size_t i;
  for (i = 0; i < sizeof(k_errno_names) / sizeof(k_errno_names[0]); i++) {
    if (k_errno_names[i].num == err) return k_errno_names[i].name;
  }
  return "UNKNOWN";
}

/* strerror_r comes in a GNU flavour (returns char*) and an XSI flavour
 * (returns int); _Generic picks the right handling at compile time. */
static const char *pick_gnu(char *ret, char *buf) { (void)buf; return ret; }
static const char *pick_xsi(int ret, char *buf) { return ret == 0 ? buf : "unknown error"; }
#define COFFER_STRERROR(err, buf, len)                                   \
  _Generic(strerror_r((err), (buf), (len)),                              \
           char *: pick_gnu,                                             \
           int: pick_xsi)(strerror_r((err), (buf), (len)), (buf))

static void lowercase_first(char *s) {
  if (s[0] >= 'A' && s[0] <= 'Z' && !(s[1] >= 'A' && s[1] <= 'Z')) s[0] = (char)(s[0] - 'A' + 'a');
}

/* Throw an Error shaped like Node's fs errors:
 *   message  "ENOENT: no such file or directory, lgetxattr '/x'"
 *   code     "ENOENT"
 *   errno    -2
 *   syscall  "lgetxattr"
 *   path     "/x"   (raw bytes decoded as UTF-8, invalid sequences -> U+FFFD)
 */
static napi_value make_errno_error(napi_env env, int err, const char *syscall, const char *path);

static void throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  napi_value error = make_errno_error(env, err, syscall, path);
  bool pending = false;
  if (error != NULL) {
    napi_throw(env, error);
    return;
  }
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_error(env, errno_to_code(err), "system error");
}

/* The error throw_errno throws, returned instead (NULL if it cannot be made). */
static napi_value make_errno_error(napi_env env, int err, const char *syscall, const char *path) {
  char descbuf[256];
  char desc[256];
  const char *code = errno_to_code(err);
  const char *d;
  napi_value js_msg, js_code, js_errno, js_syscall, js_path, error;
  char *msg;
  size_t msglen;

  descbuf[0] = '\0';
  d = COFFER_STRERROR(err, descbuf, sizeof descbuf);
  snprintf(desc, sizeof desc, "%s", d ? d : "unknown error");
  lowercase_first(desc);

  msglen = strlen(code) + strlen(desc) + strlen(syscall) + (path ? strlen(path) : 0) + 16;
  msg = (char *)malloc(msglen);
  if (msg == NULL) return NULL;
  if (path)
    snprintf(msg, msglen, "%s: %s, %s '%s'", code, desc, syscall, path);
  else
    snprintf(msg, msglen, "%s: %s, %s", code, desc, syscall);

  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &js_msg) != napi_ok ||
      napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &js_code) != napi_ok ||
      napi_create_error(env, js_code, js_msg, &error) != napi_ok) {
    free(msg);
    return NULL;
  }
  free(msg);

  if (napi_create_int32(env, -err, &js_errno) == napi_ok)
    napi_set_named_property(env, error, "errno", js_errno);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &js_syscall) == napi_ok)
    napi_set_named_property(env, error, "syscall", js_syscall);
  if (path && napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &js_path) == napi_ok)
    napi_set_named_property(env, error, "path", js_path);
  return error;
}

static void throw_type_error(napi_env env, const char *code, const char *msg) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_type_error(env, code, msg);
}

static void throw_range_error(napi_env env, const char *code, const char *msg) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_range_error(env, code, msg);
}

/* ------------------------------------------------------------------------ */
/* argument helpers                                                          */
/* ------------------------------------------------------------------------ */

/* Copy a Buffer argument into a freshly malloc'd NUL-terminated string.
 * Returns NULL (with a pending exception) on failure. */
static char *arg_cstring(napi_env env, napi_value v, const char *what) {
  bool is_buf = false;
  void *data = NULL;
  size_t len = 0;
  char *out;
  char msg[128];

  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a Buffer", what);
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "could not read Buffer");
    return NULL;
  }
  if (len > 0 && memchr(data, 0, len) != NULL) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must not contain null bytes", what);
    throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  out = (char *)malloc(len + 1);
  if (out == NULL) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  if (len > 0) memcpy(out, data, len);
  out[len] = '\0';
  return out;
}

static bool arg_buffer(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  bool is_buf = false;
  char msg[128];
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, v, data, len) != napi_ok) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a Buffer", what);
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

static bool arg_bigint_i64(napi_env env, napi_value v, const char *what, int64_t *out) {
  bool lossless = false;
  char msg[128];
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_bigint) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a bigint", what);
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_bigint_int64(env, v, out, &lossless) != napi_ok || !lossless) {
    snprintf(msg, sizeof msg, "The \"%s\" argument is out of range", what);
    throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  return true;
}

static bool arg_bigint_u64(napi_env env, napi_value v, const char *what, uint64_t *out) {
  bool lossless = false;
  char msg[128];
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_bigint) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a bigint", what);
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  if (napi_get_value_bigint_uint64(env, v, out, &lossless) != napi_ok || !lossless) {
    snprintf(msg, sizeof msg, "The \"%s\" argument is out of range", what);
    throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  return true;
}

static bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  char msg[128];
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
      napi_get_value_uint32(env, v, out) != napi_ok) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a number", what);
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  char msg[96];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "could not read arguments");
    return false;
  }
  if (argc < want) {
    snprintf(msg, sizeof msg, "expected %u arguments, got %u", (unsigned)want, (unsigned)argc);
    throw_type_error(env, "ERR_MISSING_ARGS", msg);
    return false;
  }
  return true;
}

static napi_value js_undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

static void ns_to_timespec(int64_t ns, struct timespec *ts) {
  int64_t sec = ns / 1000000000;
  int64_t rem = ns % 1000000000;
  if (rem < 0) { /* floor division for pre-1970 times */
    rem += 1000000000;
    sec -= 1;
  }
  ts->tv_sec = (time_t)sec;
  ts->tv_nsec = (long)rem;
}

/* ------------------------------------------------------------------------ */
/* setTimes(path: Buffer, atimeNs: bigint, mtimeNs: bigint, follow: boolean) */
/* ------------------------------------------------------------------------ */

static napi_value SetTimes(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char *path;
  int64_t atime_ns, mtime_ns;
  bool follow = true;
  struct timespec ts[2];
  int rc;

  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_bigint_i64(env, argv[1], "atimeNs", &atime_ns)) return NULL;
  if (!arg_bigint_i64(env, argv[2], "mtimeNs", &mtime_ns)) return NULL;
  if (napi_get_value_bool(env, argv[3], &follow) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"followSymlinks\" argument must be a boolean");
    return NULL;
  }
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;

  ns_to_timespec(atime_ns, &ts[0]);
  ns_to_timespec(mtime_ns, &ts[1]);
  do {
    rc = utimensat(AT_FDCWD, path, ts, follow ? 0 : AT_SYMLINK_NOFOLLOW);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) throw_errno(env, errno, "utimensat", path);
  free(path);
  return rc == 0 ? js_undefined(env) : NULL;
}

/* ------------------------------------------------------------------------ */
/* xattrs                                                                    */
/* ------------------------------------------------------------------------ */

#if COFFER_HAVE_XATTR
static ssize_t sys_llistxattr(const char *path, char *buf, size_t size) {
#if defined(__APPLE__)
  return listxattr(path, buf, size, XATTR_NOFOLLOW);
#else
  return llistxattr(path, buf, size);
#endif
}

static ssize_t sys_lgetxattr(const char *path, const char *name, void *buf, size_t size) {
#if defined(__APPLE__)
  return getxattr(path, name, buf, size, 0, XATTR_NOFOLLOW);
#else
  return lgetxattr(path, name, buf, size);
#endif
}

static int sys_lsetxattr(const char *path, const char *name, const void *value, size_t size) {
#if defined(__APPLE__)
  return setxattr(path, name, value, size, 0, XATTR_NOFOLLOW);
#else
  return lsetxattr(path, name, value, size, 0);
#endif
}
#endif /* COFFER_HAVE_XATTR */

/* listXattrs(path: Buffer) -> Buffer[] (names without the trailing NUL) */
static napi_value ListXattrs(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char *path;
  if (!get_args(env, info, 1, argv)) return NULL;
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
#if COFFER_HAVE_XATTR
  {
    char *buf = NULL;
    ssize_t n = 0;
    int tries;
    napi_value result = NULL;

    for (tries = 0; tries < XATTR_MAX_RETRIES; tries++) {
      ssize_t size = sys_llistxattr(path, NULL, 0);
      char *nb;
      if (size < 0) {
        if (errno == EINTR) continue;
        throw_errno(env, errno, "llistxattr", path);
        goto fail;
      }
      if (size == 0) { n = 0; break; }
      if ((size_t)size > XATTR_MAX_BYTES) { throw_errno(env, E2BIG, "llistxattr", path); goto fail; }
      nb = (char *)realloc(buf, (size_t)size);
      if (nb == NULL) { throw_errno(env, ENOMEM, "llistxattr", path); goto fail; }
      buf = nb;
      n = sys_llistxattr(path, buf, (size_t)size);
      if (n >= 0) break;
      if (errno == ERANGE || errno == EINTR) continue; /* list grew in between */
      throw_errno(env, errno, "llistxattr", path);
      goto fail;
    }
    if (tries == XATTR_MAX_RETRIES) { throw_errno(env, ERANGE, "llistxattr", path); goto fail; }

    if (napi_create_array(env, &result) != napi_ok) goto fail;
    {
      ssize_t off = 0;
      uint32_t idx = 0;
      while (off < n) {
        size_t len = strnlen(buf + off, (size_t)(n - off));
        if (len > 0) {
          napi_value name;
          if (napi_create_buffer_copy(env, len, buf + off, NULL, &name) != napi_ok ||
              napi_set_element(env, result, idx++, name) != napi_ok)
            goto fail;
        }
        off += (ssize_t)len + 1;
      }
    }
    free(buf);
    free(path);
    return result;
  fail:
    free(buf);
    free(path);
    return NULL;
  }
#else
  throw_errno(env, ENOTSUP, "llistxattr", path);
  free(path);
  return NULL;
#endif
}

/* getXattr(path: Buffer, name: Buffer) -> Buffer */
static napi_value GetXattr(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char *path, *name;
  if (!get_args(env, info, 2, argv)) return NULL;
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  if ((name = arg_cstring(env, argv[1], "name")) == NULL) { free(path); return NULL; }
#if COFFER_HAVE_XATTR
  {
    char *buf = NULL;
    ssize_t n = 0;
    int tries;
    napi_value result = NULL;

    for (tries = 0; tries < XATTR_MAX_RETRIES; tries++) {
      ssize_t size = sys_lgetxattr(path, name, NULL, 0);
      char *nb;
      if (size < 0) {
        if (errno == EINTR) continue;
        throw_errno(env, errno, "lgetxattr", path);
        goto fail;
      }
      if (size == 0) { n = 0; break; }
      if ((size_t)size > XATTR_MAX_BYTES) { throw_errno(env, E2BIG, "lgetxattr", path); goto fail; }
      nb = (char *)realloc(buf, (size_t)size);
      if (nb == NULL) { throw_errno(env, ENOMEM, "lgetxattr", path); goto fail; }
      buf = nb;
      n = sys_lgetxattr(path, name, buf, (size_t)size);
      if (n >= 0) break;
      if (errno == ERANGE || errno == EINTR) continue; /* value grew in between */
      throw_errno(env, errno, "lgetxattr", path);
      goto fail;
    }
    if (tries == XATTR_MAX_RETRIES) { throw_errno(env, ERANGE, "lgetxattr", path); goto fail; }

    if (napi_create_buffer_copy(env, (size_t)n, n > 0 ? buf : "", NULL, &result) != napi_ok) goto fail;
    free(buf);
    free(name);
    free(path);
    return result;
  fail:
    free(buf);
    free(name);
    free(path);
    return NULL;
  }
#else
  throw_errno(env, ENOTSUP, "lgetxattr", path);
  free(name);
  free(path);
  return NULL;
#endif
}

/* setXattr(path: Buffer, name: Buffer, value: Buffer) — create or replace */
static napi_value SetXattr(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char *path, *name;
  void *value = NULL;
  size_t value_len = 0;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_buffer(env, argv[2], "value", &value, &value_len)) return NULL;
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  if ((name = arg_cstring(env, argv[1], "name")) == NULL) { free(path); return NULL; }
#if COFFER_HAVE_XATTR
  {
    int rc;
    do {
      rc = sys_lsetxattr(path, name, value_len > 0 ? value : "", value_len);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) throw_errno(env, errno, "lsetxattr", path);
    free(name);
    free(path);
    return rc == 0 ? js_undefined(env) : NULL;
  }
#else
  (void)value;
  (void)value_len;
  throw_errno(env, ENOTSUP, "lsetxattr", path);
  free(name);
  free(path);
  return NULL;
#endif
}

/* ------------------------------------------------------------------------ */
/* special files                                                             */
/* ------------------------------------------------------------------------ */

/* After creating a node, apply the permission bits exactly (not filtered by
 * the umask), the way `mkfifo -m MODE` does. The path was just created by us,
 * so following it is fine. */
static bool apply_exact_mode(napi_env env, const char *path, mode_t perm) {
  int rc;
  do {
    rc = chmod(path, perm);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    throw_errno(env, errno, "chmod", path);
    return false;
  }
  return true;
}

/* mkfifo(path: Buffer, mode: number) */
static napi_value Mkfifo(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char *path;
  uint32_t mode;
  mode_t perm;
  int rc;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_u32(env, argv[1], "mode", &mode)) return NULL;
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  perm = (mode_t)(mode & 07777);
  do {
    rc = mkfifo(path, perm);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    throw_errno(env, errno, "mkfifo", path);
    free(path);
    return NULL;
  }
  if (!apply_exact_mode(env, path, perm)) { free(path); return NULL; }
  free(path);
  return js_undefined(env);
}

/* mknod(path: Buffer, mode: number, rdev: bigint) — mode includes the file
 * type bits (S_IFCHR / S_IFBLK / ...). */
static napi_value Mknod(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  char *path;
  uint32_t mode;
  uint64_t rdev;
  int rc;
  if (!get_args(env, info, 3, argv)) return NULL;
  if (!arg_u32(env, argv[1], "mode", &mode)) return NULL;
  if (!arg_bigint_u64(env, argv[2], "rdev", &rdev)) return NULL;
  if ((uint64_t)(dev_t)rdev != rdev) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "The \"rdev\" argument is out of range");
    return NULL;
  }
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  do {
    rc = mknod(path, (mode_t)mode, (dev_t)rdev);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    throw_errno(env, errno, "mknod", path);
    free(path);
    return NULL;
  }
  if (!apply_exact_mode(env, path, (mode_t)(mode & 07777))) { free(path); return NULL; }
  free(path);
  return js_undefined(env);
}


/* ------------------------------------------------------------------------ */
/* scanDir(dir: Buffer) -> [names: Buffer, stats: ArrayBuffer, count]        */
/* ------------------------------------------------------------------------ */
/*
 * One call per directory for the backup walk: readdir, then fstatat
 * (AT_SYMLINK_NOFOLLOW) and an llistxattr size probe for each entry, so the
 * walk makes no per-entry call into C++ and allocates no Stats object.
 *   names   every entry name (not "." or "..") followed by a NUL, in readdir order
 *   stats   count * SCAN_NUM doubles, then count * SCAN_BIG int64s:
 *           doubles: errno of fstatat (0 = ok), mode, uid, gid, nlink, size,
 *                    xattr list size (0 when none, unsupported or unreadable), 0
 *           int64s:  mtime ns, ctime ns, ino, dev, rdev
 * Throws (syscall "scandir") when the directory cannot be opened or read.
 */
#include <dirent.h>

#define SCAN_NUM 8
#define SCAN_BIG 5

typedef struct {
  char *names;
  size_t names_len, names_cap;
  double *num;
  int64_t *big;
  size_t count, cap;
} scan_acc;

static void scan_free(scan_acc *a) {
  free(a->names);
  free(a->num);
  free(a->big);
}

static bool scan_push(scan_acc *a, const char *name, size_t len) {
  if (a->names_len + len + 1 > a->names_cap) {
    size_t cap = a->names_cap ? a->names_cap * 2 : 4096;
    char *nb;
    while (cap < a->names_len + len + 1) cap *= 2;
    nb = (char *)realloc(a->names, cap);
    if (nb == NULL) return false;
    a->names = nb;
    a->names_cap = cap;
  }
  if (a->count == a->cap) {
    size_t cap = a->cap ? a->cap * 2 : 64;
    double *nn = (double *)realloc(a->num, cap * SCAN_NUM * sizeof(double));
    int64_t *bb;
    if (nn == NULL) return false;
    a->num = nn;
    bb = (int64_t *)realloc(a->big, cap * SCAN_BIG * sizeof(int64_t));
    if (bb == NULL) return false;
    a->big = bb;
    a->cap = cap;
  }
  memcpy(a->names + a->names_len, name, len);
  a->names[a->names_len + len] = '\0';
  a->names_len += len + 1;
  a->count++;
  return true;
}

/* Lists `dir` into `a` (see above). Returns 0, or the errno that stopped it
 * (the directory could not be opened or read, or memory ran out); `a` is
 * then freed. Touches no JavaScript: also runs on libuv's threads (scanDirAsync). */
static int scan_fill(const char *dir, scan_acc *a) {
  size_t dirlen = strlen(dir);
  int dfd;
  DIR *d;
  struct dirent *de;
  char *full = NULL;
  size_t full_cap = 0;

  memset(a, 0, sizeof *a);
  do dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); while (dfd < 0 && errno == EINTR);
  if (dfd < 0) return errno;
  d = fdopendir(dfd);
  if (d == NULL) {
    int err = errno;
    close(dfd);
    return err;
  }
  for (;;) {
    size_t len;
    struct stat st;
    double *num;
    int64_t *big;
    errno = 0;
    de = readdir(d);
    if (de == NULL) {
      if (errno != 0) {
        int err = errno;
        closedir(d);
        scan_free(a);
        free(full);
        return err;
      }
      break;
    }
    if (de->d_name[0] == '.' && (de->d_name[1] == '\0' || (de->d_name[1] == '.' && de->d_name[2] == '\0'))) continue;
    len = strlen(de->d_name);
    if (!scan_push(a, de->d_name, len)) goto nomem;
    num = a->num + (a->count - 1) * SCAN_NUM;
    big = a->big + (a->count - 1) * SCAN_BIG;
    memset(num, 0, SCAN_NUM * sizeof(double));
    memset(big, 0, SCAN_BIG * sizeof(int64_t));
    if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      num[0] = errno ? errno : EIO;
      continue;
    }
    num[1] = (double)st.st_mode;
    num[2] = (double)st.st_uid;
    num[3] = (double)st.st_gid;
    num[4] = (double)st.st_nlink;
    num[5] = (double)st.st_size;
#if defined(__APPLE__)
    big[0] = (int64_t)st.st_mtimespec.tv_sec * 1000000000 + st.st_mtimespec.tv_nsec;
    big[1] = (int64_t)st.st_ctimespec.tv_sec * 1000000000 + st.st_ctimespec.tv_nsec;
#else
    big[0] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    big[1] = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
#endif
    big[2] = (int64_t)st.st_ino;
    big[3] = (int64_t)st.st_dev;
    big[4] = (int64_t)st.st_rdev;
#if COFFER_HAVE_XATTR
    {
      ssize_t xs;
      if (dirlen + len + 2 > full_cap) {
        size_t cap = (dirlen + len + 2) * 2;
        char *nf = (char *)realloc(full, cap);
        if (nf == NULL) goto nomem;
        full = nf;
        full_cap = cap;
      }
      memcpy(full, dir, dirlen);
      if (dirlen > 0 && dir[dirlen - 1] == '/') {
        memcpy(full + dirlen, de->d_name, len + 1);
      } else {
        full[dirlen] = '/';
        memcpy(full + dirlen + 1, de->d_name, len + 1);
      }
      do xs = sys_llistxattr(full, NULL, 0); while (xs < 0 && errno == EINTR);
      num[6] = xs > 0 ? (double)xs : 0;
    }
#endif
  }
  closedir(d);
  free(full);
  return 0;

nomem:
  closedir(d);
  scan_free(a);
  free(full);
  return ENOMEM;
}

/* The JavaScript result [names, stats, count] of a filled `a` (NULL on failure, an exception may be pending). */
static napi_value scan_result(napi_env env, const scan_acc *a) {
  napi_value result, js_names, js_stats, js_count;
  void *ab_data = NULL;
  size_t nbytes = a->count * SCAN_NUM * sizeof(double), bbytes = a->count * SCAN_BIG * sizeof(int64_t);

  if (napi_create_buffer_copy(env, a->names_len, a->names_len ? a->names : "", NULL, &js_names) != napi_ok) return NULL;
  if (napi_create_arraybuffer(env, nbytes + bbytes, &ab_data, &js_stats) != napi_ok) return NULL;
  if (nbytes) memcpy(ab_data, a->num, nbytes);
  if (bbytes) memcpy((char *)ab_data + nbytes, a->big, bbytes);
  if (napi_create_uint32(env, (uint32_t)a->count, &js_count) != napi_ok) return NULL;
  if (napi_create_array_with_length(env, 3, &result) != napi_ok ||
      napi_set_element(env, result, 0, js_names) != napi_ok ||
      napi_set_element(env, result, 1, js_stats) != napi_ok ||
      napi_set_element(env, result, 2, js_count) != napi_ok)
    return NULL;
  return result;
}

static napi_value ScanDir(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  char *dir;
  scan_acc a;
  int err;

  if (!get_args(env, info, 1, argv)) return NULL;
  if ((dir = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  err = scan_fill(dir, &a);
  if (err != 0) {
    throw_errno(env, err, "scandir", dir);
    free(dir);
    return NULL;
  }
  result = scan_result(env, &a);
  scan_free(&a);
  free(dir);
  return result;
}

/* ---- branch files3: scanDirAsync ---------------------------------------- */
/*
 * scanDirAsync(dir: Buffer) -> Promise<[names, stats, count]>: scanDir on one
 * of libuv's threads, so the backup walk can list the directories it will
 * enter next while it works on the current one (archiver/prefetch.ts,
 * Lookahead). Rejects with the same error scanDir throws.
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *dir;
  scan_acc a;
  int err;
} scan_job;

static void scan_job_execute(napi_env env, void *data) {
  scan_job *job = (scan_job *)data;
  (void)env;
  job->err = scan_fill(job->dir, &job->a);
}

static void scan_job_complete(napi_env env, napi_status status, void *data) {
  scan_job *job = (scan_job *)data;
  napi_value value = NULL;
  int err = status == napi_cancelled ? ECANCELED : job->err;

  if (err == 0) value = scan_result(env, &job->a);
  if (value != NULL) {
    napi_resolve_deferred(env, job->deferred, value);
  } else {
    bool pending = false;
    napi_value error = NULL;
    napi_is_exception_pending(env, &pending);
    if (pending) napi_get_and_clear_last_exception(env, &error);
    else error = make_errno_error(env, err != 0 ? err : ENOMEM, "scandir", job->dir);
    if (error == NULL) napi_get_undefined(env, &error);
    napi_reject_deferred(env, job->deferred, error);
  }
  if (err == 0) scan_free(&job->a);
  napi_delete_async_work(env, job->work);
  free(job->dir);
  free(job);
}

static napi_value ScanDirAsync(napi_env env, napi_callback_info info) {
  napi_value argv[1], promise, name;
  scan_job *job;

  if (!get_args(env, info, 1, argv)) return NULL;
  job = (scan_job *)calloc(1, sizeof *job);
  if (job == NULL) {
    throw_errno(env, ENOMEM, "scandir", NULL);
    return NULL;
  }
  if ((job->dir = arg_cstring(env, argv[0], "path")) == NULL) {
    free(job);
    return NULL;
  }
  if (napi_create_string_utf8(env, "coffer.scanDir", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_async_work(env, NULL, name, scan_job_execute, scan_job_complete, job, &job->work) != napi_ok) {
    free(job->dir);
    free(job);
    throw_type_error(env, "ERR_INTERNAL", "could not start scanDirAsync");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    /* The promise stays pending and unreferenced: nothing waits on it. */
    napi_delete_async_work(env, job->work);
    free(job->dir);
    free(job);
    throw_type_error(env, "ERR_INTERNAL", "could not queue scanDirAsync");
    return NULL;
  }
  return promise;
}
/* ---- end of branch files3 ----------------------------------------------- */

/* ------------------------------------------------------------------------ */
/* readSmall(path: Buffer, buf: Buffer, offset, want) -> number              */
/* ------------------------------------------------------------------------ */
/*
 * Reads a (presumably) small regular file whole into buf[offset, offset+want)
 * in one call: open (O_NOFOLLOW | O_NONBLOCK, so a FIFO swapped in cannot
 * hang us), fstat, read until end of file or `want` bytes, close.
 *   >= 0        bytes read (fewer than `want`: the whole file); closed
 *   -1          not a regular file (any more); closed
 *   <= -2       the file has at least `want` bytes: still open, fd = -result - 2
 * Throws (syscall "open", "fstat" or "read") otherwise; the file is closed then.
 */
static napi_value ReadSmall(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  char *path;
  void *data;
  size_t len;
  uint32_t off, want;
  int fd;
  struct stat st;
  size_t n = 0;
  double res;

  if (!get_args(env, info, 4, argv)) return NULL;
  if (!arg_buffer(env, argv[1], "buffer", &data, &len)) return NULL;
  if (!arg_u32(env, argv[2], "offset", &off) || !arg_u32(env, argv[3], "want", &want)) return NULL;
  if ((size_t)off + want > len) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "offset + want is past the end of the buffer");
    return NULL;
  }
  if ((path = arg_cstring(env, argv[0], "path")) == NULL) return NULL;
  do fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC); while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    throw_errno(env, errno, "open", path);
    free(path);
    return NULL;
  }
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, err, "fstat", path);
    free(path);
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    free(path);
    napi_create_double(env, -1, &out);
    return out;
  }
  while (n < want) {
    ssize_t r = pread(fd, (char *)data + off + n, want - n, (off_t)n);
    if (r < 0) {
      int err;
      if (errno == EINTR) continue;
      err = errno;
      close(fd);
      throw_errno(env, err, "read", path);
      free(path);
      return NULL;
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  free(path);
  if (n == want) {
    res = -(double)fd - 2;
  } else {
    close(fd);
    res = (double)n;
  }
  napi_create_double(env, res, &out);
  return out;
}

/* ------------------------------------------------------------------------ */
/* AES-256-GCM through Node's own OpenSSL                                    */
/* ------------------------------------------------------------------------ */

#if defined(__has_include)
#if __has_include(<openssl/evp.h>)
#define COFFER_HAVE_OPENSSL 1
#endif
#endif

#ifdef COFFER_HAVE_OPENSSL
#include <openssl/crypto.h>
#include <openssl/evp.h>

#pragma weak EVP_CIPHER_CTX_new
#pragma weak EVP_CIPHER_CTX_free
#pragma weak EVP_CIPHER_CTX_ctrl
#pragma weak EVP_EncryptInit_ex
#pragma weak EVP_EncryptUpdate
#pragma weak EVP_EncryptFinal_ex
#pragma weak EVP_DecryptInit_ex
#pragma weak EVP_DecryptUpdate
#pragma weak EVP_DecryptFinal_ex
#pragma weak EVP_aes_256_gcm
#pragma weak OPENSSL_cleanse

#define GCM_KEY 32
#define GCM_NONCE 24 /* coffer's extended nonce: 12 bytes pick the subkey, 12 are GCM's IV */
#define GCM_IV 12
#define GCM_TAG 16

/*
 * The per-message subkey, BLAKE3-keyed(key, nonce[0..12)), computed here so
 * it never becomes a JS object. A message of at most 64 bytes is one BLAKE3
 * block: one compression with CHUNK_START | CHUNK_END | ROOT | KEYED_HASH
 * (BLAKE3 spec §2.2–2.5). Checked against @napi-rs/blake-hash by the tests
 * (every seal with a fixed nonce is compared with node:crypto's).
 */
static const uint32_t B3_IV[8] = {0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19};
static const uint8_t B3_PERM[16] = {2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8};

static inline uint32_t rotr32(uint32_t w, int c) { return (w >> c) | (w << (32 - c)); }
static inline uint32_t load32le(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static inline void b3_g(uint32_t *v, int a, int b, int c, int d, uint32_t x, uint32_t y) {
  v[a] += v[b] + x; v[d] = rotr32(v[d] ^ v[a], 16);
  v[c] += v[d];     v[b] = rotr32(v[b] ^ v[c], 12);
  v[a] += v[b] + y; v[d] = rotr32(v[d] ^ v[a], 8);
  v[c] += v[d];     v[b] = rotr32(v[b] ^ v[c], 7);
}

static void b3_keyed_short(const uint8_t key[32], const uint8_t *in, size_t len, uint8_t out[32]) {
  uint32_t v[16], m[16], t[16];
  uint8_t block[64] = {0};
  int r, i;
  memcpy(block, in, len); /* len <= 64, checked by the caller */
  for (i = 0; i < 16; i++) m[i] = load32le(block + 4 * i);
  for (i = 0; i < 8; i++) v[i] = load32le(key + 4 * i);
  v[8] = B3_IV[0]; v[9] = B3_IV[1]; v[10] = B3_IV[2]; v[11] = B3_IV[3];
  v[12] = 0; v[13] = 0; v[14] = (uint32_t)len; v[15] = 1 | 2 | 8 | 16;
  for (r = 0; r < 7; r++) {
    b3_g(v, 0, 4, 8, 12, m[0], m[1]);   b3_g(v, 1, 5, 9, 13, m[2], m[3]);
    b3_g(v, 2, 6, 10, 14, m[4], m[5]);  b3_g(v, 3, 7, 11, 15, m[6], m[7]);
    b3_g(v, 0, 5, 10, 15, m[8], m[9]);  b3_g(v, 1, 6, 11, 12, m[10], m[11]);
    b3_g(v, 2, 7, 8, 13, m[12], m[13]); b3_g(v, 3, 4, 9, 14, m[14], m[15]);
    if (r < 6) {
      for (i = 0; i < 16; i++) t[i] = m[B3_PERM[i]];
      memcpy(m, t, sizeof m);
    }
  }
  for (i = 0; i < 8; i++) {
    uint32_t w = v[i] ^ v[i + 8];
    out[4 * i] = (uint8_t)w; out[4 * i + 1] = (uint8_t)(w >> 8); out[4 * i + 2] = (uint8_t)(w >> 16); out[4 * i + 3] = (uint8_t)(w >> 24);
  }
  OPENSSL_cleanse(v, sizeof v); OPENSSL_cleanse(m, sizeof m); OPENSSL_cleanse(t, sizeof t); OPENSSL_cleanse(block, sizeof block);
}

/* True when every OpenSSL function used below resolved at load time. */
static bool gcm_available(void) {
  return EVP_CIPHER_CTX_new && EVP_CIPHER_CTX_free && EVP_CIPHER_CTX_ctrl && EVP_EncryptInit_ex &&
         EVP_EncryptUpdate && EVP_EncryptFinal_ex && EVP_DecryptInit_ex && EVP_DecryptUpdate &&
         EVP_DecryptFinal_ex && EVP_aes_256_gcm && OPENSSL_cleanse;
}

/* Any ArrayBufferView (napi_is_buffer accepts them all since Node 10). */
static bool arg_bytes(napi_env env, napi_value v, const char *what, size_t want, unsigned char **data, size_t *len) {
  void *p;
  char msg[128];
  if (!arg_buffer(env, v, what, &p, len)) return false;
  if (want && *len != want) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be %u bytes", what, (unsigned)want);
    throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *data = (unsigned char *)p;
  return true;
}

/* One context per message: EVP_CIPHER_CTX_free cleanses the key schedule, so
 * neither the subkey nor its schedule outlives the call. */
static EVP_CIPHER_CTX *gcm_begin(napi_env env, const unsigned char *key, const unsigned char *nonce, int enc) {
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  unsigned char subkey[32];
  int ok = ctx != NULL;
  b3_keyed_short(key, nonce, 12, subkey);
  if (ok) ok = enc ? EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, subkey, nonce + 12) == 1
                   : EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, subkey, nonce + 12) == 1;
  OPENSSL_cleanse(subkey, sizeof subkey);
  if (!ok) {
    if (ctx) EVP_CIPHER_CTX_free(ctx);
    napi_throw_error(env, "ERR_CRYPTO_OPERATION_FAILED", "AES-256-GCM set-up failed");
    return NULL;
  }
  return ctx;
}

/* OpenSSL takes int lengths: feed large inputs in pieces. */
#define GCM_STEP (1 << 30)

static bool gcm_update(EVP_CIPHER_CTX *ctx, int enc, unsigned char *out, const unsigned char *in, size_t len, size_t *written) {
  size_t done = 0;
  while (done < len) {
    int step = (int)(len - done > GCM_STEP ? GCM_STEP : len - done), n = 0;
    if ((enc ? EVP_EncryptUpdate(ctx, out ? out + done : NULL, &n, in + done, step)
             : EVP_DecryptUpdate(ctx, out ? out + done : NULL, &n, in + done, step)) != 1) return false;
    if (out && n != step) return false; /* GCM is a stream mode: all bytes come out at once */
    done += (size_t)step;
  }
  if (written) *written += len;
  return true;
}

/*
 * gcmSeal(key[32], nonce[24], aad, a, b|null, out, offset) -> bytes written
 * Encrypts a‖b with AAD under the subkey MAC(key, nonce[0..12)) and GCM IV
 * nonce[12..24) into out[offset..], followed by the 16-byte tag.
 */
static napi_value GcmSeal(napi_env env, napi_callback_info info) {
  napi_value argv[7], result;
  unsigned char *key, *nonce, *aad, *a, *b = NULL, *out;
  size_t klen, nlen, aadlen, alen, blen = 0, outlen, pos;
  uint32_t off;
  napi_valuetype bt;
  EVP_CIPHER_CTX *ctx;
  int n = 0;
  bool ok;

  if (!get_args(env, info, 7, argv)) return NULL;
  if (!arg_bytes(env, argv[0], "key", GCM_KEY, &key, &klen) || !arg_bytes(env, argv[1], "nonce", GCM_NONCE, &nonce, &nlen) ||
      !arg_bytes(env, argv[2], "aad", 0, &aad, &aadlen) || !arg_bytes(env, argv[3], "a", 0, &a, &alen))
    return NULL;
  if (napi_typeof(env, argv[4], &bt) != napi_ok) return NULL;
  if (bt != napi_null && bt != napi_undefined && !arg_bytes(env, argv[4], "b", 0, &b, &blen)) return NULL;
  if (!arg_bytes(env, argv[5], "out", 0, &out, &outlen) || !arg_u32(env, argv[6], "offset", &off)) return NULL;
  if ((size_t)off > outlen || outlen - off < alen + blen + GCM_TAG) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "out has no room for the sealed message");
    return NULL;
  }
  if ((ctx = gcm_begin(env, key, nonce, 1)) == NULL) return NULL;
  pos = off;
  ok = gcm_update(ctx, 1, NULL, aad, aadlen, NULL) && gcm_update(ctx, 1, out + pos, a, alen, &pos) &&
       (b == NULL || gcm_update(ctx, 1, out + pos, b, blen, &pos)) && EVP_EncryptFinal_ex(ctx, out + pos, &n) == 1 && n == 0 &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, GCM_TAG, out + pos) == 1;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) {
    OPENSSL_cleanse(out + off, outlen - off < alen + blen + GCM_TAG ? outlen - off : alen + blen + GCM_TAG);
    napi_throw_error(env, "ERR_CRYPTO_OPERATION_FAILED", "AES-256-GCM encryption failed");
    return NULL;
  }
  napi_create_double(env, (double)(pos + GCM_TAG - off), &result);
  return result;
}

/*
 * gcmOpen(key[32], nonce[24], aad, ct, tag[16], out, offset) -> boolean
 * Decrypts ct into out[offset..offset+ct.length) and checks the tag; on a bad
 * tag the output is wiped and false is returned.
 */
static napi_value GcmOpen(napi_env env, napi_callback_info info) {
  napi_value argv[7], result;
  unsigned char *key, *nonce, *aad, *ct, *tag, *out;
  size_t klen, nlen, aadlen, ctlen, taglen, outlen, pos;
  uint32_t off;
  EVP_CIPHER_CTX *ctx;
  int n = 0;
  bool ok;

  if (!get_args(env, info, 7, argv)) return NULL;
  if (!arg_bytes(env, argv[0], "key", GCM_KEY, &key, &klen) || !arg_bytes(env, argv[1], "nonce", GCM_NONCE, &nonce, &nlen) ||
      !arg_bytes(env, argv[2], "aad", 0, &aad, &aadlen) || !arg_bytes(env, argv[3], "ct", 0, &ct, &ctlen) ||
      !arg_bytes(env, argv[4], "tag", GCM_TAG, &tag, &taglen) || !arg_bytes(env, argv[5], "out", 0, &out, &outlen) ||
      !arg_u32(env, argv[6], "offset", &off))
    return NULL;
  if ((size_t)off > outlen || outlen - off < ctlen) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "out has no room for the plaintext");
    return NULL;
  }
  if ((ctx = gcm_begin(env, key, nonce, 0)) == NULL) return NULL;
  pos = off;
  ok = gcm_update(ctx, 0, NULL, aad, aadlen, NULL) && gcm_update(ctx, 0, out + pos, ct, ctlen, &pos) &&
       EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, GCM_TAG, tag) == 1 && EVP_DecryptFinal_ex(ctx, out + pos, &n) == 1 && n == 0;
  EVP_CIPHER_CTX_free(ctx);
  if (!ok) OPENSSL_cleanse(out + off, ctlen);
  napi_get_boolean(env, ok, &result);
  return result;
}
#endif /* COFFER_HAVE_OPENSSL */

/* ------------------------------------------------------------------------ */
/* gearScan: FastCDC's inner loop (src/chunker/fastcdc.ts, scanGear)         */
/* ------------------------------------------------------------------------ */

/*
 * gearScan(data, gear, i, mid, stop, maskS, maskL): rolls the gear hash from
 * data[i] (h = 0), with maskS while i < mid and maskL while i < stop; returns
 * the index just past the first byte whose hash has no bits of the mask set,
 * or stop. `gear`: 256 little-endian u32 entries (1024 bytes). Bit for bit the
 * JavaScript scanGear: h = (h >> 1) + gear[b] modulo 2^32.
 */
static napi_value GearScan(napi_env env, napi_callback_info info) {
  napi_value argv[7], result;
  void *data, *gearp;
  size_t len, glen;
  uint32_t i, mid, stop, mask_s, mask_l, h = 0, gear[256];
  if (!get_args(env, info, 7, argv)) return NULL;
  if (!arg_buffer(env, argv[0], "data", &data, &len) || !arg_buffer(env, argv[1], "gear", &gearp, &glen) ||
      !arg_u32(env, argv[2], "i", &i) || !arg_u32(env, argv[3], "mid", &mid) || !arg_u32(env, argv[4], "stop", &stop) ||
      !arg_u32(env, argv[5], "maskS", &mask_s) || !arg_u32(env, argv[6], "maskL", &mask_l))
    return NULL;
  if (glen != sizeof gear) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "gear must be 1024 bytes");
    return NULL;
  }
  if (stop > len || i > stop) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "gearScan range out of bounds");
    return NULL;
  }
  memcpy(gear, gearp, sizeof gear); /* host order: the machine is little-endian, as the JS Int32Array view */
  if (mid > stop) mid = stop;
  {
    const uint8_t *d = (const uint8_t *)data;
    uint32_t pos = stop;
    for (; i < mid; i++) {
      h = (h >> 1) + gear[d[i]];
      if ((h & mask_s) == 0) { pos = i + 1; goto done; }
    }
    for (; i < stop; i++) {
      h = (h >> 1) + gear[d[i]];
      if ((h & mask_l) == 0) { pos = i + 1; goto done; }
    }
  done:
    if (napi_create_uint32(env, pos, &result) != napi_ok) return NULL;
  }
  return result;
}

/* ------------------------------------------------------------------------ */
/* restore's small-file fast path (branch restore3)                          */
/* ------------------------------------------------------------------------ */

/* restoreFile(path: latin1 string, data: ArrayBufferView, hole: boolean,
 *             createMode: number, chmodMode: number (-1: none),
 *             uid: number (-1: no fchown), gid: number, mtimeNs: bigint)
 * Creates path (O_EXCL, no following a symlink), writes data (or, when hole,
 * only sizes it: all zero), fchown, fchmod, futimens (atime = mtime), close:
 * one call instead of five (and no second path walk for the times). Returns
 * 0, or the errno of the first failure, after which nothing is left at path.
 * Argument errors throw. */
static napi_value RestoreFile(napi_env env, napi_callback_info info) {
  napi_value argv[8], result;
  char path[4096];
  size_t plen = 0;
  void *data = NULL;
  size_t len = 0;
  bool hole = false;
  uint32_t create_mode = 0;
  int32_t chmod_mode = -1;
  double uid = -1, gid = -1;
  int64_t mtime_ns = 0;
  struct timespec ts[2];
  int fd, err = 0;

  if (!get_args(env, info, 8, argv)) return NULL;
  if (napi_get_value_string_latin1(env, argv[0], path, sizeof path, &plen) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be a string");
    return NULL;
  }
  if (!arg_buffer(env, argv[1], "data", &data, &len)) return NULL;
  if (napi_get_value_bool(env, argv[2], &hole) != napi_ok ||
      napi_get_value_uint32(env, argv[3], &create_mode) != napi_ok ||
      napi_get_value_int32(env, argv[4], &chmod_mode) != napi_ok ||
      napi_get_value_double(env, argv[5], &uid) != napi_ok ||
      napi_get_value_double(env, argv[6], &gid) != napi_ok) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "restoreFile: bad argument");
    return NULL;
  }
  if (!arg_bigint_i64(env, argv[7], "mtimeNs", &mtime_ns)) return NULL;

  if (plen == 0 || plen >= sizeof path - 1) err = plen ? ENAMETOOLONG : ENOENT;
  else if (strlen(path) != plen) err = EINVAL; /* an embedded NUL */
  if (err == 0) {
    do {
      fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)(create_mode & 07777));
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) err = errno;
    else {
      if (hole) {
        if (ftruncate(fd, (off_t)len) != 0) err = errno;
      } else {
        size_t done = 0;
        while (done < len) {
          ssize_t n = pwrite(fd, (const char *)data + done, len - done, (off_t)done);
          if (n < 0) {
            if (errno == EINTR) continue;
            err = errno;
            break;
          }
          if (n == 0) {
            err = EIO;
            break;
          }
          done += (size_t)n;
        }
      }
      /* The order of Restorer.applyMeta: owner (which clears set-ID bits), mode, times. */
      if (err == 0 && uid >= 0 && fchown(fd, (uid_t)uid, (gid_t)gid) != 0) err = errno;
      if (err == 0 && chmod_mode >= 0 && fchmod(fd, (mode_t)chmod_mode) != 0) err = errno;
      if (err == 0) {
        ns_to_timespec(mtime_ns, &ts[0]);
        ns_to_timespec(mtime_ns, &ts[1]);
        if (futimens(fd, ts) != 0) err = errno;
      }
      if (close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
      if (err != 0) unlink(path);
    }
  }
  if (napi_create_int32(env, err, &result) != napi_ok) return NULL;
  return result;
}

/* ------------------------------------------------------------------------ */
/* branch big3: direct I/O for pack writes                                   */
/* ------------------------------------------------------------------------ */

/*
 * alignGap(buf, align): how many bytes from the start of buf's data to the
 * next multiple of `align` (a power of two) in memory; 0 when it is aligned.
 * JavaScript cannot see addresses, and O_DIRECT writes (storage/local.ts)
 * need an aligned buffer, so the packer allocates a little more and starts
 * its pack buffers at the aligned offset this reports.
 */
static napi_value AlignGap(napi_env env, napi_callback_info info) {
  napi_value argv[2], result;
  void *data;
  size_t len;
  uint32_t align;
  if (!get_args(env, info, 2, argv)) return NULL;
  if (!arg_buffer(env, argv[0], "buf", &data, &len) || !arg_u32(env, argv[1], "align", &align)) return NULL;
  if (align == 0 || (align & (align - 1)) != 0) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "align must be a power of two");
    return NULL;
  }
  {
    uint32_t gap = (uint32_t)((align - ((uintptr_t)data & (align - 1))) & (align - 1));
    if (napi_create_uint32(env, gap, &result) != napi_ok) return NULL;
  }
  return result;
}

#if defined(__linux__)
#include <sys/mman.h>
#endif

/*
 * adviseHugePages(buf): asks the kernel (madvise MADV_HUGEPAGE) to back the
 * 2 MiB-aligned interior of buf with transparent huge pages. For the large
 * pooled buffers of a backup (windows, seal outputs, packs: ~110 MiB), which
 * are touched once and reused: with 4 KiB pages their first touch cost ~28k
 * page faults, ~14 % of a 1 GiB backup's CPU in this VM. Best effort:
 * returns whether the advice was taken (false off Linux, where THP is off,
 * or when the buffer holds no whole huge page).
 */
static napi_value AdviseHugePages(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  void *data;
  size_t len;
  bool ok = false;
  if (!get_args(env, info, 1, argv)) return NULL;
  if (!arg_buffer(env, argv[0], "buf", &data, &len)) return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  {
    const uintptr_t huge = (uintptr_t)2 << 20;
    uintptr_t start = ((uintptr_t)data + huge - 1) & ~(huge - 1);
    uintptr_t end = ((uintptr_t)data + len) & ~(huge - 1);
    if (end > start) ok = madvise((void *)start, end - start, MADV_HUGEPAGE) == 0;
  }
#endif
  if (napi_get_boolean(env, ok, &result) != napi_ok) return NULL;
  return result;
}

/* ------------------------------------------------------------------------ */
/* module                                                                    */
/* ------------------------------------------------------------------------ */

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */) {
  napi_value abi, xattr;
  napi_property_descriptor props[] = {
    {"setTimes", NULL, SetTimes, NULL, NULL, NULL, napi_enumerable, NULL},
    {"listXattrs", NULL, ListXattrs, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getXattr", NULL, GetXattr, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setXattr", NULL, SetXattr, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mkfifo", NULL, Mkfifo, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mknod", NULL, Mknod, NULL, NULL, NULL, napi_enumerable, NULL},
    {"scanDir", NULL, ScanDir, NULL, NULL, NULL, napi_enumerable, NULL},
    {"scanDirAsync", NULL, ScanDirAsync, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readSmall", NULL, ReadSmall, NULL, NULL, NULL, napi_enumerable, NULL},
    {"gearScan", NULL, GearScan, NULL, NULL, NULL, napi_enumerable, NULL},
    {"restoreFile", NULL, RestoreFile, NULL, NULL, NULL, napi_enumerable, NULL},
    {"alignGap", NULL, AlignGap, NULL, NULL, NULL, napi_enumerable, NULL},
    {"adviseHugePages", NULL, AdviseHugePages, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok)
    return NULL;
#ifdef COFFER_HAVE_OPENSSL
  if (gcm_available()) {
    napi_property_descriptor gcm[] = {
      {"gcmSeal", NULL, GcmSeal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gcmOpen", NULL, GcmOpen, NULL, NULL, NULL, napi_enumerable, NULL},
    };
    if (napi_define_properties(env, exports, 2, gcm) != napi_ok) return NULL;
  }
#endif
  if (napi_create_uint32(env, COFFER_NATIVE_ABI, &abi) == napi_ok)
    napi_set_named_property(env, exports, "abi", abi);
  if (napi_get_boolean(env, COFFER_HAVE_XATTR ? true : false, &xattr) == napi_ok)
    napi_set_named_property(env, exports, "hasXattr", xattr);
  return exports;
}
