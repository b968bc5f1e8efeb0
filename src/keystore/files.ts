/**
 * Low-level file handling for role homes: private directories, atomic writes and
 * permission-checked reads. Everything here is synchronous: the files are tiny and a
 * synchronous sequence is far easier to reason about when a crash can stop it anywhere.
 *
 * Threats and the answer to each:
 * - Another local user reads a key: directories are 0700 and private files 0600, set with an
 *   explicit chmod so a permissive umask cannot widen them and a restrictive one cannot
 *   narrow them; readers refuse files or directories that have any group/other bit, or
 *   that another user owns (as OpenSSH's StrictModes does), instead of silently fixing them.
 * - A crash or full disk mid-write leaves a truncated key: writes go to a temp file in the
 *   same directory, are fsynced, then linked or renamed into place, and the directory is
 *   fsynced. A crash leaves the old file or the new one, never a partial file; at worst a
 *   stale temp file, which readers never open (names they accept cannot start with '.')
 *   and {@link cleanStaleTemps} removes.
 * - Two `init`s race and one silently replaces the other's key: without `overwrite`, the
 *   final step is link(2), which fails with EEXIST atomically if the target exists.
 * - A symlink or FIFO planted where a key should be: readers open with O_NOFOLLOW and
 *   O_NONBLOCK and check the opened descriptor (fstat), so there is no check-then-open race.
 */
import {
  chmodSync,
  closeSync,
  constants,
  fchmodSync,
  fstatSync,
  fsyncSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  realpathSync,
  statSync,
  unlinkSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { EnrollError } from '../errors.js';

/** Mode of every directory this module creates. */
export const PRIVATE_DIR_MODE = 0o700;
/** Default mode of files written by {@link writeFileAtomic}. */
export const PRIVATE_FILE_MODE = 0o600;
/** Files larger than this are refused by readers: every keystore file is a few KiB. */
export const MAX_FILE_BYTES = 1 << 20;

const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;
/** `.<base>.tmp-<16 hex>`: the name shape of {@link writeFileAtomic}'s temp files. */
const TEMP_RE = /^\..+\.tmp-[0-9a-f]{16}$/;

/** Quotes a path for a copy-pasteable `hint: run: …` line. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string'
    ? e.code
    : undefined;
}

const ERRNO_TEXT: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
  EIO: 'i/o error',
  EMFILE: 'too many open files',
};

/** Maps a Node fs error to ERR_KEYSTORE_IO with a hint; EnrollErrors pass through. */
function ioError(e: unknown, action: string, path: string): EnrollError {
  if (e instanceof EnrollError) return e;
  const code = errno(e);
  const why = (code && ERRNO_TEXT[code]) ?? code ?? 'unknown error';
  let hint: string | undefined;
  if (code === 'EACCES' || code === 'EPERM') hint = `check the owner and permissions of ${dirname(path)}`;
  else if (code === 'ENOSPC' || code === 'EDQUOT') hint = 'free some disk space and retry';
  else if (code === 'EROFS') hint = 'choose a home on a writable file system';
  return new EnrollError('ERR_KEYSTORE_IO', `cannot ${action} ${path}: ${why}`, { cause: e, hint });
}

function currentUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

/** OpenSSH's rule: a private file or directory must belong to the current user or root. */
function checkOwner(st: Stats, path: string, why?: string): void {
  const uid = currentUid();
  if (uid === undefined || st.uid === uid || st.uid === 0) return;
  throw new EnrollError(
    'ERR_KEY_PERMISSIONS',
    `${path} is owned by uid ${st.uid}, not by the current user (uid ${uid})${why ? `: ${why}` : ''}`,
    { hint: `run: chown ${uid} ${shellQuote(path)}` },
  );
}

function octal(mode: number): string {
  return '0' + (mode & 0o777).toString(8).padStart(3, '0');
}

/**
 * `mkdir -p path` where the last directory is 0700. A directory created here is chmod-ed
 * explicitly (the umask only ever removes bits, and a restrictive one such as 0277 would
 * leave it unwritable). An existing directory is checked, never silently fixed: group or
 * other bits → ERR_KEY_PERMISSIONS with a `chmod 700` hint. Symlinks to a directory are
 * followed, so a home may live on another disk; the target is what gets checked.
 */
export function ensurePrivateDir(path: string): void {
  const abs = resolve(path);
  let st = statIfExists(abs, 'inspect');
  if (st === undefined) {
    try {
      mkdirSync(dirname(abs), { recursive: true, mode: PRIVATE_DIR_MODE });
    } catch (e) {
      throw ioError(e, 'create directory', dirname(abs));
    }
    try {
      mkdirSync(abs, { mode: PRIVATE_DIR_MODE });
      chmodSync(abs, PRIVATE_DIR_MODE);
      return;
    } catch (e) {
      if (errno(e) !== 'EEXIST') throw ioError(e, 'create directory', abs);
      // Lost a race with another process creating it: check what it made.
      st = statIfExists(abs, 'inspect');
      if (st === undefined) throw ioError(e, 'create directory', abs);
    }
  }
  if (!st.isDirectory()) {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${abs} exists but is not a directory`, {
      hint: `move ${shellQuote(abs)} away or choose another home`,
    });
  }
  checkOwner(st, abs);
  if ((st.mode & 0o077) !== 0) {
    throw new EnrollError(
      'ERR_KEY_PERMISSIONS',
      `directory ${abs} is accessible by other users (mode ${octal(st.mode)})`,
      { hint: `run: chmod 700 ${shellQuote(abs)}` },
    );
  }
}

function statIfExists(path: string, action: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (e) {
    if (errno(e) === 'ENOENT') return undefined;
    throw ioError(e, action, path);
  }
}

export interface WriteFileAtomicOptions {
  /** Mode of the new file, applied with fchmod whatever the umask. Default 0o600. */
  mode?: number;
  /**
   * Replace an existing file (rename). Default false: an existing file is never replaced,
   * and the write fails with ERR_KEY_EXISTS.
   */
  overwrite?: boolean;
  /** Hint for ERR_KEY_EXISTS. Default "use --force to replace it". */
  existsHint?: string;
}

function writeAll(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += writeSync(fd, data, off, data.length - off);
}

/**
 * fsync(2) on the directory makes the new directory entry durable. File systems that cannot
 * fsync a directory say EINVAL (or EISDIR/EBADF/EPERM on some platforms); for those the
 * rename is as durable as it will get.
 */
function fsyncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, constants.O_RDONLY);
  } catch (e) {
    throw ioError(e, 'open directory', dir);
  }
  try {
    fsyncSync(fd);
  } catch (e) {
    const code = errno(e);
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EBADF' && code !== 'EPERM') {
      throw ioError(e, 'sync directory', dir);
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` to `path` so that a crash at any point leaves either the old file or the
 * complete new one:
 *
 * 1. open `.<base>.tmp-<random>` in the same directory with O_CREAT|O_EXCL|O_NOFOLLOW and
 *    `mode`, fchmod it to `mode` (the umask cannot change it), write, fsync, close;
 * 2. without `overwrite`: link(2) the temp file to `path`, which fails atomically with
 *    EEXIST if `path` exists (→ ERR_KEY_EXISTS), then unlink the temp name;
 *    with `overwrite`: rename(2) it over `path`, which replaces atomically;
 * 3. fsync the directory.
 *
 * The temp file is removed on any failure.
 */
export function writeFileAtomic(
  path: string,
  data: Uint8Array | string,
  options: WriteFileAtomicOptions = {},
): void {
  const mode = options.mode ?? PRIVATE_FILE_MODE;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new EnrollError('ERR_INVALID_ARG', `"mode" must be a permission mode 0..0o777, got ${mode}`);
  }
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  if (!(bytes instanceof Uint8Array)) {
    throw new EnrollError('ERR_INVALID_ARG', `"data" expected Uint8Array or string, got ${typeof data}`);
  }
  const abs = resolve(path);
  const dir = dirname(abs);
  const tmp = join(dir, `.${basename(abs)}.tmp-${randomBytes(8).toString('hex')}`);

  let fd: number | undefined;
  let tmpOnDisk = false;
  try {
    try {
      fd = openSync(tmp, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | O_NOFOLLOW, mode);
      tmpOnDisk = true;
      fchmodSync(fd, mode);
      writeAll(fd, bytes);
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
    } catch (e) {
      throw ioError(e, 'write', tmp);
    }
    if (options.overwrite) {
      try {
        renameSync(tmp, abs);
      } catch (e) {
        throw ioError(e, 'replace', abs);
      }
      tmpOnDisk = false;
    } else {
      try {
        linkSync(tmp, abs);
      } catch (e) {
        if (errno(e) === 'EEXIST') {
          throw new EnrollError('ERR_KEY_EXISTS', `${abs} already exists`, {
            hint: options.existsHint ?? 'use --force to replace it',
          });
        }
        throw ioError(e, 'create', abs);
      }
      // The new file is in place; a temp name left by a failed unlink is only litter.
      tmpOnDisk = false;
      try {
        unlinkSync(tmp);
      } catch {
        /* removed later by cleanStaleTemps */
      }
    }
    fsyncDir(dir);
  } finally {
    if (fd !== undefined) {
      try {
        closeSync(fd);
      } catch {
        /* already failing */
      }
    }
    if (tmpOnDisk) {
      try {
        unlinkSync(tmp);
      } catch {
        /* already failing; cleanStaleTemps removes it */
      }
    }
  }
}

export interface ReadFileOptions {
  /** Hint for ERR_KEY_MISSING, e.g. "run: ockam-enroll service init". */
  missingHint?: string;
  /** Follow a symlink at the last path component. Default false: a symlink is refused. */
  followSymlinks?: boolean;
  /** Refuse larger files with ERR_KEYSTORE_CORRUPT. Default {@link MAX_FILE_BYTES}. */
  maxBytes?: number;
}

/**
 * OpenSSH's StrictModes for a file that carries trust (a pinned key, address or CA; issue #18
 * finding 8): whoever can write the file, or rename entries in any directory above it, can
 * swap the pin. So every directory from the file's up to `/` must belong to the current user
 * or root and have no group or other write bit — unless it is sticky (`/tmp`, mode 1777),
 * where nobody but an entry's owner can rename or remove it. Symlinked directories are
 * checked where they lead (realpath). ERR_KEY_PERMISSIONS names the directory, with a hint.
 */
export function checkTrustedPath(path: string): void {
  let dir: string;
  try {
    dir = realpathSync(dirname(resolve(path)));
  } catch (e) {
    throw ioError(e, 'inspect', dirname(resolve(path)));
  }
  for (;;) {
    const st = statIfExists(dir, 'inspect');
    if (st === undefined) return;
    checkOwner(st, dir, `${shellQuote(path)} carries trust, and whoever owns a directory above it can replace it`);
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) {
      throw new EnrollError(
        'ERR_KEY_PERMISSIONS',
        `directory ${dir} is writable by other users (mode ${octal(st.mode)}), so they could replace ${path}, which carries trust`,
        { hint: `run: chmod go-w ${shellQuote(dir)}` },
      );
    }
    const up = dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

function readChecked(path: string, isPrivate: boolean | 'trust', options: ReadFileOptions): Uint8Array {
  const abs = resolve(path);
  const flags = constants.O_RDONLY | O_NONBLOCK | (options.followSymlinks ? 0 : O_NOFOLLOW);
  let fd: number;
  try {
    fd = openSync(abs, flags);
  } catch (e) {
    const code = errno(e);
    if (code === 'ENOENT') {
      throw new EnrollError('ERR_KEY_MISSING', `${abs} does not exist`, {
        cause: e,
        hint: options.missingHint ?? "run the role's init command first",
      });
    }
    // O_NOFOLLOW on a symlink: ELOOP on Linux, EMLINK on FreeBSD, EFTYPE on NetBSD.
    if (code === 'ELOOP' || code === 'EMLINK' || code === 'EFTYPE') {
      throw new EnrollError('ERR_KEY_PERMISSIONS', `${abs} is a symlink, which is refused`, {
        cause: e,
        hint: `replace the symlink ${shellQuote(abs)} with the file itself`,
      });
    }
    throw ioError(e, 'read', abs);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) {
      throw new EnrollError('ERR_KEY_PERMISSIONS', `${abs} is not a regular file`, {
        hint: `replace ${shellQuote(abs)} with a regular file`,
      });
    }
    if (isPrivate === 'trust') {
      // Public, but a pin: others may read it, nobody else may write it (checkTrustedPath).
      checkOwner(st, abs, 'it carries trust (a pinned key, address or CA)');
      if ((st.mode & 0o022) !== 0) {
        throw new EnrollError(
          'ERR_KEY_PERMISSIONS',
          `${abs} is writable by other users (mode ${octal(st.mode)}), and it carries trust (a pinned key, address or CA)`,
          { hint: `run: chmod go-w ${shellQuote(abs)}` },
        );
      }
    } else if (isPrivate) {
      checkOwner(st, abs);
      if ((st.mode & 0o077) !== 0) {
        throw new EnrollError(
          'ERR_KEY_PERMISSIONS',
          `${abs} is accessible by other users (mode ${octal(st.mode)})`,
          { hint: `run: chmod 600 ${shellQuote(abs)}` },
        );
      }
    }
    const max = options.maxBytes ?? MAX_FILE_BYTES;
    if (st.size > max) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${abs} is too large (${st.size} bytes, limit ${max})`);
    }
    let buf: Buffer;
    try {
      buf = readFileSync(fd);
    } catch (e) {
      throw ioError(e, 'read', abs);
    }
    if (buf.length > max) {
      throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${abs} is too large (over ${max} bytes)`);
    }
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads a file that holds secrets. Refuses, in this order: a missing file (ERR_KEY_MISSING),
 * a symlink or anything but a regular file, a file owned by another user, and a file with
 * any group/other permission bit (ERR_KEY_PERMISSIONS, hint `chmod 600 <path>`). The checks
 * run on the opened descriptor, so the file checked is the file read.
 */
export function readPrivateFile(path: string, options: ReadFileOptions = {}): Uint8Array {
  return readChecked(path, true, options);
}

/**
 * Reads a file that carries trust but no secret (known_services.json, service.json, the
 * pinned CA): refuses a symlink, a file owned by another user (but root), a group- or
 * other-writable file, and one below a directory that someone else could write
 * (checkTrustedPath). Others may read it.
 */
export function readTrustFile(path: string, options: ReadFileOptions = {}): Uint8Array {
  checkTrustedPath(path);
  return readChecked(path, 'trust', options);
}

/** Reads a non-secret file from a home: like {@link readPrivateFile} without owner or mode checks. */
export function readPublicFile(path: string, options: ReadFileOptions = {}): Uint8Array {
  return readChecked(path, false, options);
}

export interface CleanStaleTempsOptions {
  /**
   * Only remove temp files whose mtime is at least this old, so that a concurrent writer's
   * temp file is left alone. Default 0: remove them all.
   */
  olderThanMs?: number;
}

/**
 * Removes the temp files that {@link writeFileAtomic} leaves behind when a process dies
 * between creating and renaming them. Only regular files named `.<base>.tmp-<16 hex>` are
 * touched. Returns the names removed.
 */
export function cleanStaleTemps(dir: string, options: CleanStaleTempsOptions = {}): string[] {
  const abs = resolve(dir);
  const olderThan = options.olderThanMs ?? 0;
  const now = Date.now();
  let names: string[];
  try {
    names = readdirSync(abs);
  } catch (e) {
    throw ioError(e, 'list', abs);
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!TEMP_RE.test(name)) continue;
    const p = join(abs, name);
    let st: Stats;
    try {
      st = lstatSync(p);
    } catch {
      continue; // gone already
    }
    if (!st.isFile() || now - st.mtimeMs < olderThan) continue;
    try {
      unlinkSync(p);
      removed.push(name);
    } catch (e) {
      if (errno(e) !== 'ENOENT') throw ioError(e, 'remove', p);
    }
  }
  return removed;
}

/** Removes `path` if it exists; returns whether it did. The directory is fsynced. */
export function removeFile(path: string): boolean {
  const abs = resolve(path);
  try {
    unlinkSync(abs);
  } catch (e) {
    if (errno(e) === 'ENOENT') return false;
    throw ioError(e, 'remove', abs);
  }
  fsyncDir(dirname(abs));
  return true;
}

/** Whether anything (file, directory, symlink, even a dangling one) exists at `path`. */
export function pathExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch (e) {
    if (errno(e) === 'ENOENT') return false;
    throw ioError(e, 'inspect', resolve(path));
  }
}
