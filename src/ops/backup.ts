/**
 * Backups of a SQLite store (docs/operations.md "Backup and restore").
 *
 * `backupStore` copies a store while `service start` writes to it: better-sqlite3's online
 * backup API (sqlite3_backup_*) copies every page in ONE step, under one read transaction,
 * so the copy is the store as of one commit (WAL mode: the writer goes on meanwhile; a
 * step-by-step copy would restart whenever the service commits between steps). The copy is
 * written to a temporary file of mode 0600 beside the target, checked (quick_check), made a
 * self-contained file (journal_mode=DELETE), flushed (fsync), and only then renamed over
 * the target: the target is never half-written, whatever happens; a crash leaves at most
 * the temporary file, named `<target>.tmp-<pid>-<random>`, which the next backup to the
 * same target removes (once its process is gone).
 *
 * `restoreStore` puts a backup in place of a home's store: it refuses while a service runs
 * on the home (running.ts), checks that the file is an ockam-enroll store of a schema this
 * build reads, that it belongs to this home's identity (its signed prekeys verify under
 * IK_A) and that its audit chain verifies, and keeps the store it replaces aside.
 *
 * Enrollments made after a backup are not in it: their devices are unknown to a restored
 * store and must enroll again. The restore is recorded in the restored store's audit log
 * (`store-restored`, with the backup's time and audit head) and `service status` shows it.
 */
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { EnrollError } from '../errors.js';
import { toHex } from '../crypto/bytes.js';
import { xeddsaVerify } from '../crypto/xeddsa.js';
import { AuditStore } from '../store/audit.js';
import { verifyChain } from '../audit/chain.js';
import { runningPid } from './running.js';

/** The meta key a backup copy carries: when it was taken (ISO 8601). Data, not schema. */
export const BACKUP_TAKEN_AT = 'backup_taken_at';

type Row = Record<string, unknown>;

export interface BackupResult {
  to: string;
  bytes: number;
  taken_at: string;
  schema_version: number;
  enrollees: number;
  audit_head: { seq: number; hash: string } | null;
}

function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function auditHead(db: Database.Database): { seq: number; hash: string } | null {
  const has = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'`).get() !== undefined;
  if (!has) return null;
  const r = db.prepare(`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`).get() as Row | undefined;
  return r ? { seq: Number(r.seq), hash: toHex(new Uint8Array(r.hash as Buffer)) } : null;
}

/** A temporary file of mode 0600 beside `target`, created empty (never an existing file). */
function tempBeside(target: string): string {
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  closeSync(openSync(tmp, 'wx', 0o600));
  return tmp;
}

/**
 * Temporary files of earlier backups to `target` whose process is gone (killed half-way):
 * removed before a new one starts. A live process's file is left alone.
 */
function removeStaleTemps(target: string): void {
  const prefix = `${basename(target)}.tmp-`;
  let names: string[];
  try {
    names = readdirSync(dirname(target));
  } catch {
    return;
  }
  for (const name of names) {
    const m = name.startsWith(prefix) ? /^(\d{1,10})-[0-9a-f]{8}(-wal|-shm|-journal)?$/.exec(name.slice(prefix.length)) : null;
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = pid === process.pid;
    if (!alive) {
      try {
        process.kill(pid, 0);
        alive = true;
      } catch (err) {
        alive = (err as NodeJS.ErrnoException).code === 'EPERM';
      }
    }
    if (!alive) rmSync(join(dirname(target), name), { force: true });
  }
}

function removeQuietly(path: string): void {
  for (const p of [path, `${path}-wal`, `${path}-shm`, `${path}-journal`]) rmSync(p, { force: true });
}

/** One-step online copy of the store at `from` into the (empty) file `into`. */
async function copyStore(from: string, into: string): Promise<void> {
  const src = new Database(from, { readonly: true, fileMustExist: true });
  try {
    src.pragma('busy_timeout = 5000');
    // The whole database in one sqlite3_backup_step: one read transaction, one commit's state.
    await src.backup(into, { progress: () => 0x7fffffff });
  } finally {
    src.close();
  }
}

export async function backupStore(storePath: string, target: string, now: Date = new Date()): Promise<BackupResult> {
  const to = resolve(target);
  if (!existsSync(storePath)) throw new EnrollError('ERR_STORE', `the store ${storePath} is missing`, { hint: 'check --home' });
  if (!existsSync(dirname(to))) throw new EnrollError('ERR_USAGE', `the directory ${dirname(to)} does not exist`, { hint: 'create it first, or choose another --to' });
  if ([storePath, `${storePath}-wal`, `${storePath}-shm`].map((p) => resolve(p)).includes(to)) {
    throw new EnrollError('ERR_USAGE', '--to names the store itself', { hint: 'write the backup to another file, preferably on another disk' });
  }
  removeStaleTemps(to);
  let tmp: string | undefined;
  try {
    tmp = tempBeside(to);
    await copyStore(storePath, tmp);
    const copy = new Database(tmp, { fileMustExist: true });
    let schema: number;
    let enrollees: number;
    let head: { seq: number; hash: string } | null;
    try {
      const check = copy.pragma('quick_check', { simple: true });
      if (check !== 'ok') throw new EnrollError('ERR_STORE', `the copy does not pass SQLite's quick_check: ${String(check)}`);
      // A single file, without -wal and -shm: what an operator copies elsewhere is complete.
      copy.pragma('journal_mode = DELETE');
      copy.prepare(`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(BACKUP_TAKEN_AT, now.toISOString());
      schema = Number((copy.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as Row | undefined)?.value);
      enrollees = Number((copy.prepare(`SELECT count(*) AS n FROM enrollees`).get() as Row).n);
      head = auditHead(copy);
    } finally {
      copy.close();
    }
    fsyncPath(tmp);
    renameSync(tmp, to);
    tmp = undefined;
    fsyncPath(dirname(to));
    return { to, bytes: statSync(to).size, taken_at: now.toISOString(), schema_version: schema, enrollees, audit_head: head };
  } catch (err) {
    if (err instanceof EnrollError) throw err;
    throw new EnrollError('ERR_STORE', `cannot back up ${storePath} to ${to}: ${(err as Error).message}`, { cause: err, hint: 'check the target directory is writable and has room' });
  } finally {
    if (tmp !== undefined) removeQuietly(tmp);
  }
}

export interface RestoreOptions {
  /** `<home>/service`. */
  dir: string;
  /** The store file in it. */
  storePath: string;
  from: string;
  /** IK_A's public key (the home's identity), to check the backup is this service's. */
  ikA: Uint8Array;
  /** The schema version this build writes; older ones are migrated on the first open. */
  schemaSupported: number;
  force: boolean;
  now?: Date;
}

export interface RestoreResult {
  restored: string;
  from: string;
  aside: string | null;
  backup_taken_at: string | null;
  schema_version: number;
  enrollees: number;
  audit: { entries: number; head: { seq: number; hash: string } | null };
}

/** What a backup file holds, checked before anything in the home changes. */
function inspectBackup(from: string, ikA: Uint8Array, schemaSupported: number): { schema: number; takenAt: string | null; enrollees: number; head: { seq: number; hash: string } | null } {
  let db: Database.Database;
  try {
    db = new Database(from, { readonly: true, fileMustExist: true });
  } catch (cause) {
    throw new EnrollError('ERR_STORE', `cannot open ${from}: ${(cause as Error).message}`, { cause });
  }
  try {
    let check: unknown;
    try {
      check = db.pragma('quick_check', { simple: true });
    } catch (cause) {
      throw new EnrollError('ERR_STORE', `${from} is not a SQLite database: ${(cause as Error).message}`, { cause, hint: 'pass a file written by `ockam-enroll service backup`' });
    }
    if (check !== 'ok') throw new EnrollError('ERR_STORE', `${from} is damaged (SQLite quick_check: ${String(check)})`, { hint: 'use another backup' });
    const tables = new Set((db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table'`).all() as Row[]).map((r) => String(r.name)));
    for (const t of ['meta', 'enrollees', 'bundles', 'signed_prekeys']) {
      if (!tables.has(t)) throw new EnrollError('ERR_STORE', `${from} is not an ockam-enroll store (no ${t} table)`, { hint: 'pass a file written by `ockam-enroll service backup`' });
    }
    const meta = new Map((db.prepare(`SELECT key, value FROM meta`).all() as Row[]).map((r) => [String(r.key), String(r.value)]));
    const schema = Number(meta.get('schema_version'));
    if (!Number.isSafeInteger(schema) || schema < 1 || schema > schemaSupported) {
      throw new EnrollError('ERR_STORE', `${from} has schema version ${meta.get('schema_version') ?? '(none)'}; this ockam-enroll reads 1 to ${schemaSupported}`, {
        hint: schema > schemaSupported ? 'restore it with the ockam-enroll version that wrote it, or a newer one' : 'pass a file written by `ockam-enroll service backup`',
      });
    }
    // Its signed prekeys must be signed by this home's IK_A (SPK_sig, X3DH §3.2): a store of
    // another service would seal its keys under another store key and serve nobody here.
    const spks = db.prepare(`SELECT id, public_key, signature FROM signed_prekeys`).all() as Row[];
    if (spks.length === 0) throw new EnrollError('ERR_STORE', `${from} holds no signed prekey: it is not a store \`service init\` made`);
    for (const s of spks) {
      if (!xeddsaVerify(ikA, new Uint8Array(s.public_key as Buffer), new Uint8Array(s.signature as Buffer))) {
        throw new EnrollError('ERR_STORE', `${from} belongs to another service: its signed prekey ${String(s.id)} is not signed by this home's service key`, {
          hint: 'restore into the home (the ik_a.key) of the service that was backed up',
        });
      }
    }
    let head: { seq: number; hash: string } | null = null;
    if (tables.has('audit')) {
      const audit = AuditStore.open(from, { readonly: true });
      try {
        const report = verifyChain(audit.rows());
        if (report.problems.length > 0) {
          const p = report.problems[0]!;
          throw new EnrollError('ERR_AUDIT_BROKEN', `the audit log in ${from} does not verify: seq ${p.seq}: ${p.problem}`, { hint: 'this backup was changed after it was taken; use another one' });
        }
        head = report.head ?? null;
      } finally {
        audit.close();
      }
    }
    const enrollees = Number((db.prepare(`SELECT count(*) AS n FROM enrollees`).get() as Row).n);
    return { schema, takenAt: meta.get(BACKUP_TAKEN_AT) ?? null, enrollees, head };
  } finally {
    db.close();
  }
}

/** `store.db.before-restore-20261207T112233Z` (and a suffix if that exists already). */
function asideName(storePath: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let name = `${storePath}.before-restore-${stamp}`;
  for (let i = 2; existsSync(name); i++) name = `${storePath}.before-restore-${stamp}-${i}`;
  return name;
}

export async function restoreStore(opts: RestoreOptions): Promise<RestoreResult> {
  const now = opts.now ?? new Date();
  const from = resolve(opts.from);
  if (!existsSync(from)) throw new EnrollError('ERR_USAGE', `${from} does not exist`, { hint: 'pass the file `service backup --to` wrote' });
  if (resolve(opts.storePath) === from) throw new EnrollError('ERR_USAGE', '--from names the home\'s own store');
  const pid = runningPid(opts.dir);
  if (pid !== undefined) {
    throw new EnrollError('ERR_STORE', `a service (pid ${pid}) is running on this home: a store cannot be replaced under it`, {
      hint: `stop it first (kill -TERM ${pid}), then restore; a backup needs no stop: \`service backup\``,
    });
  }
  const exists = existsSync(opts.storePath);
  if (exists && !opts.force) {
    throw new EnrollError('ERR_KEY_EXISTS', `${opts.storePath} exists: restoring replaces it`, {
      hint: 'add --force to restore anyway (the current store is kept aside as store.db.before-restore-…); enrollments made since the backup are then lost and those devices must enroll again',
    });
  }
  const info = inspectBackup(from, opts.ikA, opts.schemaSupported);
  let tmp: string | undefined;
  let aside: string | null = null;
  try {
    tmp = tempBeside(opts.storePath);
    await copyStore(from, tmp);
    // The restore is a decision about this store: it opens its audit log's next entry.
    const audit = AuditStore.open(tmp);
    let head: { seq: number; hash: string } | undefined;
    try {
      const h = audit.append([
        {
          time: now.toISOString(),
          event: 'store-restored',
          fields: { from: basename(from), backup_taken_at: info.takenAt, backup_head_seq: info.head?.seq ?? 0, backup_head_hash: info.head?.hash ?? null, enrollees: info.enrollees },
        },
      ])!;
      head = { seq: h.seq, hash: toHex(h.hash) };
    } finally {
      audit.close();
    }
    const copy = new Database(tmp, { fileMustExist: true });
    try {
      copy.pragma('journal_mode = DELETE'); // the service makes it WAL again on its first open
    } finally {
      copy.close();
    }
    fsyncPath(tmp);
    if (exists) {
      // Fold the old store's WAL into it, so the file kept aside is complete on its own.
      const old = new Database(opts.storePath, { fileMustExist: true });
      try {
        old.pragma('wal_checkpoint(TRUNCATE)');
      } finally {
        old.close();
      }
      aside = asideName(opts.storePath, now);
      renameSync(opts.storePath, aside);
      for (const ext of ['-wal', '-shm']) if (existsSync(opts.storePath + ext)) renameSync(opts.storePath + ext, aside + ext);
    }
    renameSync(tmp, opts.storePath);
    tmp = undefined;
    fsyncPath(opts.dir);
    return {
      restored: opts.storePath,
      from,
      aside,
      backup_taken_at: info.takenAt,
      schema_version: info.schema,
      enrollees: info.enrollees,
      audit: { entries: head.seq, head },
    };
  } catch (err) {
    if (err instanceof EnrollError) throw err;
    throw new EnrollError('ERR_STORE', `cannot restore ${from} into ${opts.storePath}: ${(err as Error).message}`, { cause: err });
  } finally {
    if (tmp !== undefined) removeQuietly(tmp);
  }
}
