/**
 * The SQLite store (better-sqlite3), in WAL mode with synchronous=FULL: every commit is on
 * disk before the call returns, so an acceptance sent after `commitEnrollment` survives a
 * crash or power loss.
 *
 * Single-use guarantees are enforced inside one IMMEDIATE transaction with conditional
 * updates, not by reading and then writing, so they also hold across processes sharing the
 * database file.
 */
import Database from 'better-sqlite3';
import { closeSync, existsSync, openSync } from 'node:fs';
import { EnrollError } from '../errors.js';
import type {
  ApproveInput,
  BundleRecord,
  CommitEnrollmentInput,
  EnrolleeRecord,
  EnrolleeState,
  EnrollerRecord,
  KemPrekeyRecord,
  OutletRecord,
  PendingResult,
  ReplicaRecord,
  DeviceOutletHolder,
  ServiceStore,
  SignedPrekeyRecord,
} from './types.js';
import { checkAttributes, type Attributes } from '../protocol/codec/attributes.js';
import { checkScopes, type EnrollerScopes } from '../policy/scopes.js';

/**
 * 2: EKA v2 (`kem_prekeys`, `bundles.eka`).
 * 3: attributes and scopes (`enrollees.attributes`, `enrollers.scopes`, docs/policies.md).
 * 4: service outlets (`outlets`, docs/portals.md).
 * 5: replicas and the device outlets each holds (`replicas`, `device_outlets`, docs/architecture.md).
 * 6: fewer pages per enrollment's commit (issue 23 item 3, docs/performance.md §Analysis).
 * A store of a lower version is migrated on its first writable open by running the steps of
 * MIGRATIONS in order, each in a transaction of its own.
 */
export const SCHEMA_VERSION = 6;

/** PQSPK_A of each SPK made since EKA v2 (docs/protocol.md §3.3). */
const KEM_PREKEYS = `
CREATE TABLE IF NOT EXISTS kem_prekeys (
  spk_id      INTEGER PRIMARY KEY REFERENCES signed_prekeys(id),
  public_key  BLOB NOT NULL CHECK (length(public_key) = 1184),
  hash        BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
  seed_sealed BLOB NOT NULL
);`;

/** Schema 1 → 2: bundles learn their EKA version (all existing ones are v1), SPKs their KEM prekey. */
const MIGRATE_1_TO_2 = `
ALTER TABLE bundles ADD COLUMN eka INTEGER NOT NULL DEFAULT 1 CHECK (eka IN (1, 2));
${KEM_PREKEYS}
UPDATE meta SET value = '2' WHERE key = 'schema_version';
`;

/**
 * Schema 2 → 3: an enrollee's attributes and an enroller's scopes, each as canonical JSON
 * (keys sorted; NULL for none), checked again on every read (toEnrollee, toEnroller).
 */
const MIGRATE_2_TO_3 = `
ALTER TABLE enrollees ADD COLUMN attributes TEXT;
ALTER TABLE enrollers ADD COLUMN scopes TEXT;
UPDATE meta SET value = '3' WHERE key = 'schema_version';
`;

/** Service outlets (docs/portals.md), read by the running service at every stream open. */
const OUTLETS = `
CREATE TABLE IF NOT EXISTS outlets (
  name       TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
  host       TEXT NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
  port       INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
  allow      TEXT CHECK (allow IS NULL OR length(allow) <= 4096),
  created_at INTEGER NOT NULL
) WITHOUT ROWID;`;

/** Schema 3 → 4: the service outlets table. */
const MIGRATE_3_TO_4 = `
${OUTLETS}
UPDATE meta SET value = '4' WHERE key = 'schema_version';
`;

/**
 * Replicas and the device outlets each holds (docs/architecture.md "Device outlets across
 * replicas"). A SQLite store has one `service start`, so one replica row; the tables are the
 * same as PostgreSQL's so that both stores pass one contract. A device_outlets row is removed
 * when its session ends, or with its replica (removeReplica, pruneReplicas); a row whose
 * replica's last_seen is stale is ignored by findDeviceOutlets.
 */
const REPLICAS = `
CREATE TABLE IF NOT EXISTS replicas (
  id         TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
  address    TEXT CHECK (address IS NULL OR length(address) BETWEEN 1 AND 300),
  started_at INTEGER NOT NULL,
  last_seen  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_outlets (
  replica_id  TEXT NOT NULL,
  session     INTEGER NOT NULL,
  enrollee_id BLOB NOT NULL CHECK (length(enrollee_id) = 32),
  name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64),
  since       INTEGER NOT NULL,
  PRIMARY KEY (replica_id, session, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS device_outlets_enrollee ON device_outlets(enrollee_id);`;

/** Schema 4 → 5: replicas and their device outlets. */
const MIGRATE_4_TO_5 = `
${REPLICAS}
UPDATE meta SET value = '5' WHERE key = 'schema_version';
`;

/**
 * The indexes of schema 6. Each enrollment's commit (docs/protocol.md §5.5) changes one
 * enrollee from pending to enrolled (state, ik_b set, eik_b NULL) and one bundle from
 * approved to consumed, under random keys, so every index entry it moves is a page of its
 * own in the WAL. Step 4's indexes moved five: enrollees_state (out of 'pending', into
 * 'enrolled'), enrollees_ik_b (out of the NULLs, into its IK_B) and bundles_enroller (out of
 * 'approved', into 'consumed'). These keep only the entries a query reads:
 * - enrollees_open: the enrollees not enrolled (pending, revoked), for counts() and
 *   listEnrollees('pending' | 'revoked'); an enrollment removes its entry and adds none.
 *   The enrolled count is the table's count less these (counts()).
 * - enrollees_ik_b: unique over the IK_Bs that are set (the NULLs of pending rows were
 *   never looked up: `ik_b = ?` implies `ik_b IS NOT NULL`, so SQLite still uses it).
 * - bundles_live: the bundles an enroller can still use or lose (issued, approved), which is
 *   what revokeEnroller updates; a consumed or revoked bundle leaves it.
 */
const INDEXES_6 = `
CREATE INDEX IF NOT EXISTS enrollees_open ON enrollees(state) WHERE state <> 'enrolled';
CREATE UNIQUE INDEX IF NOT EXISTS enrollees_ik_b ON enrollees(ik_b) WHERE ik_b IS NOT NULL;
CREATE INDEX IF NOT EXISTS bundles_live ON bundles(enroller, state) WHERE state IN ('issued','approved');`;

/**
 * Schema 5 → 6: step 4's three indexes
 * replaced by INDEXES_6, in the migration's one transaction (SqliteStore.open), so an
 * interrupted migration leaves the store at 5, whole. Building them reads the enrollees and
 * bundles tables once each (docs/operations.md "Upgrading": ≈ N s per million enrollees).
 */
const MIGRATE_5_TO_6 = `
DROP INDEX IF EXISTS enrollees_state;
DROP INDEX IF EXISTS enrollees_ik_b;
DROP INDEX IF EXISTS bundles_enroller;
${INDEXES_6}
UPDATE meta SET value = '6' WHERE key = 'schema_version';
`;

/** The migration from version `from` to `from + 1` (or further), by `from`. */
const MIGRATIONS: Record<number, string> = { 1: MIGRATE_1_TO_2, 2: MIGRATE_2_TO_3, 3: MIGRATE_3_TO_4, 4: MIGRATE_4_TO_5, 5: MIGRATE_5_TO_6 };

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrollers (
  public_key BLOB PRIMARY KEY CHECK (length(public_key) = 32),
  name       TEXT,
  added_at   INTEGER NOT NULL,
  revoked_at INTEGER,
  scopes     TEXT
);
CREATE TABLE IF NOT EXISTS signed_prekeys (
  id             INTEGER PRIMARY KEY,
  public_key     BLOB NOT NULL CHECK (length(public_key) = 32),
  private_sealed BLOB NOT NULL,
  signature      BLOB NOT NULL CHECK (length(signature) = 64),
  created_at     INTEGER NOT NULL,
  retired_at     INTEGER
);
CREATE TABLE IF NOT EXISTS bundles (
  id                 BLOB PRIMARY KEY CHECK (length(id) = 16),
  spk_id             INTEGER NOT NULL REFERENCES signed_prekeys(id),
  opk_public         BLOB NOT NULL CHECK (length(opk_public) = 32),
  opk_private_sealed BLOB,
  addr               TEXT NOT NULL,
  enroller           BLOB NOT NULL,
  created_at         INTEGER NOT NULL,
  expires_at         INTEGER NOT NULL,
  state              TEXT NOT NULL CHECK (state IN ('issued','approved','consumed','revoked')),
  eka                INTEGER NOT NULL DEFAULT 1 CHECK (eka IN (1, 2))
) WITHOUT ROWID;
${KEM_PREKEYS}
CREATE TABLE IF NOT EXISTS enrollees (
  id              BLOB PRIMARY KEY,
  method          TEXT NOT NULL CHECK (method IN ('x3dh','token')),
  state           TEXT NOT NULL CHECK (state IN ('pending','enrolled','revoked')),
  eik_b           BLOB,
  ik_b            BLOB,
  pet_name        TEXT,
  enroller        BLOB,
  bundle_id       BLOB UNIQUE,
  approved_at     INTEGER,
  expires_at      INTEGER,
  enrolled_at     INTEGER,
  revoked_at      INTEGER,
  failed_attempts INTEGER NOT NULL DEFAULT 0,
  attributes      TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accepted_ek (
  ek_b        BLOB PRIMARY KEY,
  accepted_at INTEGER NOT NULL
) WITHOUT ROWID;
${OUTLETS}
${REPLICAS}
-- One identity key, one enrollee: an IK_B names exactly one device (enrollees_ik_b).
${INDEXES_6}
`;

type Row = Record<string, unknown>;

function bytes(v: unknown): Uint8Array {
  return new Uint8Array(v as Buffer);
}
function bytesOrNull(v: unknown): Uint8Array | null {
  return v == null ? null : bytes(v);
}
function buf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}

/** A stored JSON column, parsed and checked (a row edited by hand is refused, not trusted). */
function json<T>(v: unknown, check: (x: unknown) => T, what: string): T | undefined {
  if (v == null) return undefined;
  try {
    return check(JSON.parse(String(v)));
  } catch (cause) {
    throw new EnrollError('ERR_STORE', `the store holds malformed ${what}: ${(cause as Error).message}`, { cause });
  }
}

/** Attributes as stored: canonical JSON, NULL for none. */
export function attributesColumn(a: Attributes | undefined): string | null {
  if (a === undefined || Object.keys(a).length === 0) return null;
  return JSON.stringify(checkAttributes(a));
}

/** Scopes as stored: canonical JSON, NULL for none. */
export function scopesColumn(s: EnrollerScopes | undefined): string | null {
  if (s === undefined || Object.keys(s).length === 0) return null;
  return JSON.stringify(checkScopes(s));
}

export function toEnroller(r: Row): EnrollerRecord {
  const scopes = json(r.scopes, (x) => checkScopes(x, 'ERR_STORE'), 'enroller scopes');
  return {
    publicKey: bytes(r.public_key),
    name: (r.name as string | null) ?? null,
    addedAt: Number(r.added_at),
    revokedAt: r.revoked_at == null ? null : Number(r.revoked_at),
    ...(scopes ? { scopes } : {}),
  };
}

export function toKem(r: Row, prefix = 'k_'): KemPrekeyRecord | null {
  if (r[`${prefix}public_key`] == null) return null;
  return {
    publicKey: bytes(r[`${prefix}public_key`]),
    hash: bytes(r[`${prefix}hash`]),
    seedSealed: bytes(r[`${prefix}seed_sealed`]),
  };
}

export function toSpk(r: Row): SignedPrekeyRecord {
  return {
    id: Number(r.id),
    publicKey: bytes(r.public_key),
    privateSealed: bytes(r.private_sealed),
    signature: bytes(r.signature),
    createdAt: Number(r.created_at),
    retiredAt: r.retired_at == null ? null : Number(r.retired_at),
    kem: toKem(r),
  };
}

export function toBundle(r: Row, prefix = ''): BundleRecord {
  return {
    id: bytes(r[`${prefix}id`]),
    spkId: Number(r[`${prefix}spk_id`]),
    opkPublic: bytes(r[`${prefix}opk_public`]),
    opkPrivateSealed: bytesOrNull(r[`${prefix}opk_private_sealed`]),
    addr: String(r[`${prefix}addr`]),
    enroller: bytes(r[`${prefix}enroller`]),
    createdAt: Number(r[`${prefix}created_at`]),
    expiresAt: Number(r[`${prefix}expires_at`]),
    state: r[`${prefix}state`] as BundleRecord['state'],
    eka: Number(r[`${prefix}eka`] ?? 1) === 2 ? 2 : 1,
  };
}

export function toEnrollee(r: Row): EnrolleeRecord {
  const n = (v: unknown) => (v == null ? null : Number(v));
  return {
    id: bytes(r.id),
    method: r.method as EnrolleeRecord['method'],
    state: r.state as EnrolleeState,
    eikB: bytesOrNull(r.eik_b),
    ikB: bytesOrNull(r.ik_b),
    petName: (r.pet_name as string | null) ?? null,
    enroller: bytesOrNull(r.enroller),
    bundleId: bytesOrNull(r.bundle_id),
    approvedAt: n(r.approved_at),
    expiresAt: n(r.expires_at),
    enrolledAt: n(r.enrolled_at),
    revokedAt: n(r.revoked_at),
    failedAttempts: Number(r.failed_attempts ?? 0),
    attributes: json(r.attributes, (x) => checkAttributes(x, 'ERR_STORE'), 'enrollee attributes') ?? EMPTY_ATTRIBUTES,
  };
}

const EMPTY_ATTRIBUTES: Attributes = Object.freeze({});

/** An enrollee (e), its bundle (b_…) and that bundle's SPK (s_…): the row check 3 reads. */
export const PENDING_COLUMNS = `e.*, b.id AS b_id, b.spk_id AS b_spk_id, b.opk_public AS b_opk_public,
  b.opk_private_sealed AS b_opk_private_sealed, b.addr AS b_addr, b.enroller AS b_enroller,
  b.created_at AS b_created_at, b.expires_at AS b_expires_at, b.state AS b_state, b.eka AS b_eka,
  s.id AS s_id, s.public_key AS s_public_key, s.private_sealed AS s_private_sealed,
  s.signature AS s_signature, s.created_at AS s_created_at, s.retired_at AS s_retired_at,
  k.public_key AS k_public_key, k.hash AS k_hash, k.seed_sealed AS k_seed_sealed`;
export const PENDING_JOINS = `LEFT JOIN bundles b ON b.id = e.bundle_id LEFT JOIN signed_prekeys s ON s.id = b.spk_id
  LEFT JOIN kem_prekeys k ON k.spk_id = s.id`;
/** An SPK row with its KEM prekey's columns (k_…). */
export const SPK_SELECT = `SELECT s.*, k.public_key AS k_public_key, k.hash AS k_hash, k.seed_sealed AS k_seed_sealed
  FROM signed_prekeys s LEFT JOIN kem_prekeys k ON k.spk_id = s.id`;

/** Check 3 of docs/protocol.md §5.4 from the row of the lookup join (undefined: no such enrollee). */
export function pendingFromRow(r: Row | undefined, now: number): PendingResult {
  if (!r) return { status: 'unknown' };
  const enrollee = toEnrollee(r);
  if (enrollee.state === 'revoked') return { status: 'revoked' };
  if (enrollee.state === 'enrolled') return { status: 'enrolled' };
  if (enrollee.method !== 'x3dh' || enrollee.eikB === null || r.b_id == null || r.s_id == null) {
    return { status: 'unknown' };
  }
  if (enrollee.expiresAt === null || enrollee.expiresAt <= now) return { status: 'expired' };
  const bundle = toBundle(r, 'b_');
  if (bundle.state !== 'approved' || bundle.opkPrivateSealed === null) return { status: 'opk-used' };
  // The enrollee refuses an expired bundle (verifyBundle); the service does too, so an
  // approval that outlives its bundle cannot revive it.
  if (bundle.expiresAt <= now) return { status: 'expired' };
  const spk: SignedPrekeyRecord = {
    id: Number(r.s_id),
    publicKey: bytes(r.s_public_key),
    privateSealed: bytes(r.s_private_sealed),
    signature: bytes(r.s_signature),
    createdAt: Number(r.s_created_at),
    retiredAt: r.s_retired_at == null ? null : Number(r.s_retired_at),
    kem: toKem(r),
  };
  return { status: 'ok', pending: { enrollee, bundle, spk } };
}

export interface SqliteStoreOptions {
  /** Open read-only (for listing commands while the service runs). */
  readonly?: boolean;
  /**
   * Run `PRAGMA quick_check` on open (default true). It reads the whole file (seconds for a
   * store of millions of records), so a second connection of a process that has just
   * checked the same file (the service's commit thread) skips it.
   */
  integrityCheck?: boolean;
  /** SQLite's page cache for this connection, in KiB (default SQLite's 2000 KiB). */
  cacheKiB?: number;
  /**
   * After a commit, this connection checkpoints the WAL once it holds this many pages
   * (default SQLite's 1000). The service's commit thread sets it higher so that another
   * connection (the audit thread's, at the default) does the checkpoints beside it.
   */
  walAutocheckpointPages?: number;
}

/** Waits between attempts of a batch that met SQLITE_BUSY (commitEnrollments). */
const BUSY_RETRY_MS = [1, 2, 5, 10, 25, 50, 100, 250, 750];
/**
 * No attempt of a batch starts this long after its first one began (busy_timeout waits
 * included): its enrollees wait 15 s for their answer (docs/protocol.md §7.7), and an
 * answer that comes too late is no use to them.
 */
const BUSY_RETRY_DEADLINE_MS = 6_000;

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_RECOVERY, …). */
export function isBusy(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

export class SqliteStore implements ServiceStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #stmt: ReturnType<SqliteStore['prepare']>;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
    this.#stmt = this.prepare();
  }

  /** Opens (creating if needed) the store at `path`. */
  static open(path: string, opts: SqliteStoreOptions = {}): SqliteStore {
    if (opts.cacheKiB !== undefined && !(Number.isSafeInteger(opts.cacheKiB) && opts.cacheKiB >= 64)) {
      throw new EnrollError('ERR_INVALID_ARG', `"cacheKiB" must be an integer >= 64, got ${String(opts.cacheKiB)}`);
    }
    const ckpt = opts.walAutocheckpointPages;
    if (ckpt !== undefined && !(Number.isSafeInteger(ckpt) && ckpt >= 1)) {
      throw new EnrollError('ERR_INVALID_ARG', `"walAutocheckpointPages" must be an integer >= 1, got ${String(ckpt)}`);
    }
    let db: Database.Database | undefined;
    try {
      // Created 0600 before SQLite opens it (SQLite gives its -wal and -shm files the same
      // mode): the store holds sealed prekeys and every enrollee's identity.
      if (!opts.readonly && !existsSync(path)) closeSync(openSync(path, 'a', 0o600));
      db = new Database(path, { readonly: opts.readonly ?? false, fileMustExist: opts.readonly ?? false });
      // WAL: readers (CLI listing commands) never block the running service. synchronous=FULL:
      // in WAL mode, NORMAL may lose the last commits on power loss; an acceptance that was
      // sent must never be lost, so every commit syncs the WAL.
      // The busy timeout first: switching to WAL takes a lock another connection may hold.
      db.pragma('busy_timeout = 5000');
      if (!opts.readonly) db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('foreign_keys = ON');
      if (opts.cacheKiB !== undefined) db.pragma(`cache_size = ${-opts.cacheKiB}`);
      if (ckpt !== undefined) db.pragma(`wal_autocheckpoint = ${ckpt}`);
      // The version is checked before any DDL runs, and for read-only opens too: a store of
      // another version is refused as it is, never half-migrated by CREATE TABLE IF NOT EXISTS.
      const hasMeta = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'`).get() !== undefined;
      const v = hasMeta ? (db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as Row | undefined) : undefined;
      const older = v !== undefined && Number.isInteger(Number(v.value)) && Number(v.value) >= 1 && Number(v.value) < SCHEMA_VERSION;
      const migrate = older && !opts.readonly;
      if (v !== undefined && Number(v.value) !== SCHEMA_VERSION && !migrate) {
        throw new EnrollError('ERR_STORE', `store ${path} has schema version ${String(v.value)}, this ockam-enroll understands ${SCHEMA_VERSION}`, {
          hint: older ? 'run `ockam-enroll service start` (or any service command that writes) once: it upgrades the store' : undefined,
        });
      }
      if (migrate) {
        for (let from = Number(v.value); from < SCHEMA_VERSION; from++) {
          db.transaction(() => {
            // Read again under the write lock: another process opening the same store may have
            // migrated it between the read above and this transaction (ALTER TABLE twice fails).
            const now = db!.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).get() as Row | undefined;
            if (Number(now?.value) === from) db!.exec(MIGRATIONS[from]!);
          }).immediate();
        }
      }
      if (!opts.readonly) {
        db.exec(SCHEMA);
        if (v === undefined) {
          db.prepare(`INSERT INTO meta (key, value) VALUES ('schema_version', ?)`).run(String(SCHEMA_VERSION));
        }
      } else if (v === undefined) {
        throw new EnrollError('ERR_STORE', `store ${path} has no schema version: it is not an ockam-enroll store`);
      }
      if (opts.integrityCheck ?? true) {
        const check = db.pragma('quick_check', { simple: true });
        if (check !== 'ok') throw new EnrollError('ERR_STORE', `store ${path} failed its integrity check: ${String(check)}`);
      }
    } catch (cause) {
      // A refused store must not keep its file open (and locked) for the rest of the process.
      if (db?.open) db.close();
      if (cause instanceof EnrollError) throw cause;
      throw new EnrollError('ERR_STORE', `cannot open the store ${path}: ${(cause as Error).message}`, {
        cause,
        hint: 'run `ockam-enroll service init` first, and check the file is readable',
      });
    }
    return new SqliteStore(path, db);
  }

  private prepare() {
    const db = this.#db;
    return {
      allowEnroller: db.prepare(
        `INSERT INTO enrollers (public_key, name, added_at, revoked_at, scopes) VALUES (?, ?, ?, NULL, ?)
         ON CONFLICT(public_key) DO UPDATE SET name = excluded.name, revoked_at = NULL, added_at = excluded.added_at, scopes = excluded.scopes
         RETURNING *`,
      ),
      setAttributes: db.prepare(`UPDATE enrollees SET attributes = ? WHERE id = ? AND state != 'revoked' RETURNING *`),
      listEnrollers: db.prepare(`SELECT * FROM enrollers ORDER BY added_at, public_key`),
      getEnroller: db.prepare(`SELECT * FROM enrollers WHERE public_key = ?`),
      revokeEnroller: db.prepare(`UPDATE enrollers SET revoked_at = ? WHERE public_key = ? AND revoked_at IS NULL`),
      revokeEnrollerBundles: db.prepare(
        `UPDATE bundles SET state = 'revoked', opk_private_sealed = NULL WHERE enroller = ? AND state IN ('issued','approved')`,
      ),
      dropEnrollerPending: db.prepare(`DELETE FROM enrollees WHERE enroller = ? AND state = 'pending'`),
      addSpk: db.prepare(
        `INSERT INTO signed_prekeys (public_key, private_sealed, signature, created_at) VALUES (?, ?, ?, ?) RETURNING id`,
      ).pluck(),
      addKem: db.prepare(`INSERT INTO kem_prekeys (spk_id, public_key, hash, seed_sealed) VALUES (?, ?, ?, ?)`),
      getSpk: db.prepare(`${SPK_SELECT} WHERE s.id = ?`),
      currentSpk: db.prepare(`${SPK_SELECT} WHERE s.retired_at IS NULL ORDER BY s.id DESC LIMIT 1`),
      getKem: db.prepare(`SELECT public_key AS k_public_key, hash AS k_hash, seed_sealed AS k_seed_sealed FROM kem_prekeys WHERE hash = ?`),
      insertBundle: db.prepare(
        `INSERT INTO bundles (id, spk_id, opk_public, opk_private_sealed, addr, enroller, created_at, expires_at, state, eka)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      getBundle: db.prepare(`SELECT * FROM bundles WHERE id = ?`),
      getEnrollee: db.prepare(`SELECT * FROM enrollees WHERE id = ?`),
      findEnrolleeHex: db.prepare(`SELECT * FROM enrollees WHERE hex(id) LIKE ? LIMIT 2`),
      getByIk: db.prepare(`SELECT * FROM enrollees WHERE ik_b = ?`),
      deletePending: db.prepare(`DELETE FROM enrollees WHERE id = ? AND state = 'pending'`),
      releaseBundle: db.prepare(`UPDATE bundles SET state = 'issued' WHERE id = ? AND state = 'approved'`),
      bindBundle: db.prepare(
        `UPDATE bundles SET state = 'approved' WHERE id = ? AND state = 'issued' AND enroller = ? AND expires_at > ?`,
      ),
      insertPending: db.prepare(
        `INSERT INTO enrollees (id, method, state, eik_b, pet_name, enroller, bundle_id, approved_at, expires_at, attributes)
         VALUES (?, 'x3dh', 'pending', ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      ),
      isEk: db.prepare(`SELECT 1 FROM accepted_ek WHERE ek_b = ?`).pluck(),
      // Checks 2 and 3 in one statement, so one read transaction: in WAL mode each read
      // transaction after another connection's commit starts with an empty page cache.
      check: db.prepare(
        `SELECT (SELECT 1 FROM accepted_ek WHERE ek_b = ?) AS ek_seen, ${PENDING_COLUMNS}
         FROM (SELECT ? AS qid) q LEFT JOIN enrollees e ON e.id = q.qid ${PENDING_JOINS}`,
      ),
      lookup: db.prepare(
        `SELECT ${PENDING_COLUMNS} FROM enrollees e ${PENDING_JOINS} WHERE e.id = ?`,
      ),
      insertEk: db.prepare(`INSERT INTO accepted_ek (ek_b, accepted_at) VALUES (?, ?) ON CONFLICT DO NOTHING`),
      consumeOpk: db.prepare(
        `UPDATE bundles SET state = 'consumed', opk_private_sealed = NULL WHERE id = ? AND state = 'approved'`,
      ),
      // bundle_id = ?: the OPK consumed in the same transaction must be the one this
      // enrollee's approval names, not one a re-approval has since handed to another enrollee.
      enroll: db.prepare(
        `UPDATE enrollees SET state = 'enrolled', ik_b = ?, eik_b = NULL, enrolled_at = ?, failed_attempts = 0
         WHERE id = ? AND state = 'pending' AND expires_at > ? AND bundle_id = ? RETURNING *`,
      ),
      recordFailure: db.prepare(
        `UPDATE enrollees SET failed_attempts = failed_attempts + 1 WHERE id = ? RETURNING failed_attempts`,
      ).pluck(),
      listAll: db.prepare(`SELECT * FROM enrollees ORDER BY coalesce(enrolled_at, approved_at), id`),
      listState: db.prepare(`SELECT * FROM enrollees WHERE state = ? ORDER BY coalesce(enrolled_at, approved_at), id`),
      // `state <> 'enrolled'` as enrollees_open's WHERE says it, so SQLite may use that index.
      listOpen: db.prepare(`SELECT * FROM enrollees WHERE state = ? AND state <> 'enrolled' ORDER BY coalesce(enrolled_at, approved_at), id`),
      revokeEnrollee: db.prepare(
        `UPDATE enrollees SET state = 'revoked', revoked_at = ? WHERE id = ? AND state != 'revoked'`,
      ),
      revokeEnrolleeBundle: db.prepare(
        `UPDATE bundles SET state = 'revoked', opk_private_sealed = NULL WHERE id = ? AND state = 'approved'`,
      ),
      // One statement, so one snapshot. The pending and revoked counts come from enrollees_open;
      // the table's count from its smallest full index (bundle_id's); enrolled is the rest.
      counts: db.prepare(
        `SELECT (SELECT count(*) FROM enrollees) AS total,
                (SELECT count(*) FROM enrollees WHERE state = 'pending' AND state <> 'enrolled') AS pending,
                (SELECT count(*) FROM enrollees WHERE state = 'revoked' AND state <> 'enrolled') AS revoked`,
      ),
    };
  }

  async allowEnroller(publicKey: Uint8Array, name: string | null, now: number, scopes?: EnrollerScopes): Promise<EnrollerRecord> {
    return toEnroller(this.#stmt.allowEnroller.get(buf(publicKey), name, now, scopesColumn(scopes)) as Row);
  }

  async setAttributes(id: Uint8Array, set: Attributes, unset: readonly string[]): Promise<{ before: EnrolleeRecord; after: EnrolleeRecord } | undefined> {
    const s = this.#stmt;
    return this.#db.transaction(() => {
      const row = s.getEnrollee.get(buf(id)) as Row | undefined;
      if (!row) return undefined;
      const before = toEnrollee(row);
      const after = s.setAttributes.get(attributesColumn(mergeAttributes(before, set, unset)), buf(id)) as Row | undefined;
      if (!after) throw new EnrollError('ERR_ENROLLEE_REVOKED', 'this enrollee is revoked: its attributes can no longer change');
      return { before, after: toEnrollee(after) };
    }).immediate();
  }

  async replicaHeartbeat(r: ReplicaRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO replicas (id, address, started_at, last_seen) VALUES (?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET address = excluded.address, started_at = excluded.started_at, last_seen = excluded.last_seen`,
      )
      .run(r.id, r.address, r.startedAt, r.lastSeen);
  }

  async listReplicas(): Promise<ReplicaRecord[]> {
    return (this.#db.prepare(`SELECT * FROM replicas ORDER BY last_seen DESC, id`).all() as Row[]).map(toReplica);
  }

  async removeReplica(id: string): Promise<void> {
    this.#db.transaction(() => {
      this.#db.prepare(`DELETE FROM device_outlets WHERE replica_id = ?`).run(id);
      this.#db.prepare(`DELETE FROM replicas WHERE id = ?`).run(id);
    }).immediate();
  }

  async pruneReplicas(seenBefore: number): Promise<number> {
    return this.#db.transaction(() => {
      this.#db.prepare(`DELETE FROM device_outlets WHERE replica_id IN (SELECT id FROM replicas WHERE last_seen < ?)`).run(seenBefore);
      return this.#db.prepare(`DELETE FROM replicas WHERE last_seen < ?`).run(seenBefore).changes;
    }).immediate();
  }

  async putDeviceOutlets(rec: { replicaId: string; session: number; enrolleeId: Uint8Array; names: readonly string[]; since: number }): Promise<void> {
    this.#db.transaction(() => {
      this.#db.prepare(`DELETE FROM device_outlets WHERE replica_id = ? AND session = ?`).run(rec.replicaId, rec.session);
      const ins = this.#db.prepare(`INSERT INTO device_outlets (replica_id, session, enrollee_id, name, since) VALUES (?, ?, ?, ?, ?)`);
      for (const n of rec.names) ins.run(rec.replicaId, rec.session, buf(rec.enrolleeId), n, rec.since);
    }).immediate();
  }

  async removeDeviceOutlets(replicaId: string, session: number): Promise<void> {
    this.#db.prepare(`DELETE FROM device_outlets WHERE replica_id = ? AND session = ?`).run(replicaId, session);
  }

  async findDeviceOutlets(enrolleeId: Uint8Array, seenSince: number): Promise<DeviceOutletHolder[]> {
    return (
      this.#db
        .prepare(
          `SELECT d.replica_id, r.address, d.session, d.name, d.since, r.last_seen
             FROM device_outlets d JOIN replicas r ON r.id = d.replica_id
            WHERE d.enrollee_id = ? AND r.last_seen >= ?
            ORDER BY d.since DESC, d.session DESC, d.name`,
        )
        .all(buf(enrolleeId), seenSince) as Row[]
    ).map(toDeviceOutletHolder);
  }

  async putOutlet(rec: OutletRecord): Promise<void> {
    this.#db
      .prepare(
        `INSERT INTO outlets (name, host, port, allow, created_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(name) DO UPDATE SET host = excluded.host, port = excluded.port, allow = excluded.allow, created_at = excluded.created_at`,
      )
      .run(rec.name, rec.host, rec.port, rec.allow, rec.createdAt);
  }

  async getOutlet(name: string): Promise<OutletRecord | undefined> {
    const r = this.#db.prepare(`SELECT * FROM outlets WHERE name = ?`).get(name) as Row | undefined;
    return r && toOutlet(r);
  }

  async listOutlets(): Promise<OutletRecord[]> {
    return (this.#db.prepare(`SELECT * FROM outlets ORDER BY name`).all() as Row[]).map(toOutlet);
  }

  async removeOutlet(name: string): Promise<boolean> {
    return this.#db.prepare(`DELETE FROM outlets WHERE name = ?`).run(name).changes > 0;
  }

  async listEnrollers(): Promise<EnrollerRecord[]> {
    return (this.#stmt.listEnrollers.all() as Row[]).map(toEnroller);
  }

  async getEnroller(publicKey: Uint8Array): Promise<EnrollerRecord | undefined> {
    const r = this.#stmt.getEnroller.get(buf(publicKey)) as Row | undefined;
    return r && toEnroller(r);
  }

  async revokeEnroller(publicKey: Uint8Array, now: number): Promise<boolean> {
    const s = this.#stmt;
    return this.#db.transaction(() => {
      const changed = s.revokeEnroller.run(now, buf(publicKey)).changes === 1;
      if (changed) {
        // Bundles it fetched become unusable and its pending approvals are dropped at once.
        s.revokeEnrollerBundles.run(buf(publicKey));
        s.dropEnrollerPending.run(buf(publicKey));
      }
      return changed;
    }).immediate();
  }

  async addSignedPrekey(rec: Omit<SignedPrekeyRecord, 'id' | 'retiredAt'>): Promise<SignedPrekeyRecord> {
    const s = this.#stmt;
    // The SPK and its KEM prekey in one transaction: a current SPK never lacks the KEM
    // prekey it was made with.
    return this.#db.transaction(() => {
      const id = s.addSpk.get(buf(rec.publicKey), buf(rec.privateSealed), buf(rec.signature), rec.createdAt) as number;
      if (rec.kem) s.addKem.run(id, buf(rec.kem.publicKey), buf(rec.kem.hash), buf(rec.kem.seedSealed));
      return toSpk(s.getSpk.get(id) as Row);
    }).immediate();
  }

  async currentSignedPrekey(): Promise<SignedPrekeyRecord | undefined> {
    const r = this.#stmt.currentSpk.get() as Row | undefined;
    return r && toSpk(r);
  }

  async getKemPrekey(hash: Uint8Array): Promise<KemPrekeyRecord | undefined> {
    const r = this.#stmt.getKem.get(buf(hash)) as Row | undefined;
    return (r && toKem(r)) ?? undefined;
  }

  async insertBundles(rows: BundleRecord[]): Promise<void> {
    const s = this.#stmt;
    this.#db.transaction(() => {
      for (const b of rows) {
        s.insertBundle.run(
          buf(b.id),
          b.spkId,
          buf(b.opkPublic),
          b.opkPrivateSealed && buf(b.opkPrivateSealed),
          b.addr,
          buf(b.enroller),
          b.createdAt,
          b.expiresAt,
          b.state,
          b.eka ?? 1,
        );
      }
    }).immediate();
  }

  async getBundle(id: Uint8Array): Promise<BundleRecord | undefined> {
    const r = this.#stmt.getBundle.get(buf(id)) as Row | undefined;
    return r && toBundle(r);
  }

  async approve(input: ApproveInput): Promise<EnrolleeRecord> {
    const s = this.#stmt;
    return this.#db.transaction(() => {
      const existing = s.getEnrollee.get(buf(input.enrolleeId)) as Row | undefined;
      if (existing) {
        const e = toEnrollee(existing);
        if (e.state === 'enrolled') {
          throw new EnrollError('ERR_REJECTED', 'this enrollee is already enrolled', {
            hint: 'revoke it first with `ockam-enroll service enrollee revoke` to enroll it again',
          });
        }
        if (e.state === 'revoked') {
          throw new EnrollError('ERR_ENROLLEE_REVOKED', 'this enrollee was revoked and cannot be approved again');
        }
        // A pending entry (e.g. expired, or re-approved with another bundle) is replaced;
        // its bundle goes back to the enroller's stock only if it was never used.
        if (e.bundleId) s.releaseBundle.run(buf(e.bundleId));
        s.deletePending.run(buf(input.enrolleeId));
      }
      const bundle = s.getBundle.get(buf(input.bundleId)) as Row | undefined;
      if (!bundle) {
        throw new EnrollError('ERR_BUNDLE_UNKNOWN', 'the service has no bundle with this id', {
          hint: 'fetch bundles with `ockam-enroll enroller bundle fetch`',
        });
      }
      const b = toBundle(bundle);
      if (!Buffer.from(b.enroller).equals(buf(input.enroller))) {
        throw new EnrollError('ERR_BUNDLE_UNKNOWN', 'this bundle was not issued to this enroller');
      }
      if (b.state !== 'issued') {
        throw new EnrollError('ERR_BUNDLE_USED', `this bundle is already ${b.state}: a bundle serves one enrollee only`, {
          hint: 'use another bundle (`ockam-enroll enroller bundle list`)',
        });
      }
      if (b.expiresAt <= input.now) {
        throw new EnrollError('ERR_BUNDLE_EXPIRED', 'this bundle has expired', {
          hint: 'fetch fresh bundles with `ockam-enroll enroller bundle fetch`',
        });
      }
      if (s.bindBundle.run(buf(input.bundleId), buf(input.enroller), input.now).changes !== 1) {
        throw new EnrollError('ERR_BUNDLE_USED', 'this bundle was just used for another enrollee');
      }
      const row = s.insertPending.get(
        buf(input.enrolleeId),
        buf(input.eikB),
        input.petName,
        buf(input.enroller),
        buf(input.bundleId),
        input.now,
        input.expiresAt,
        attributesColumn(input.attributes),
      ) as Row;
      return toEnrollee(row);
    }).immediate();
  }

  async isEkAccepted(ekB: Uint8Array): Promise<boolean> {
    return this.#stmt.isEk.get(buf(ekB)) !== undefined;
  }

  async lookupPending(enrolleeId: Uint8Array, now: number): Promise<PendingResult> {
    return pendingFromRow(this.#stmt.lookup.get(buf(enrolleeId)) as Row | undefined, now);
  }

  async checkMessage(ekB: Uint8Array, enrolleeId: Uint8Array, now: number): Promise<{ status: 'replay' } | PendingResult> {
    const r = this.#stmt.check.get(buf(ekB), buf(enrolleeId)) as Row;
    if (r.ek_seen != null) return { status: 'replay' };
    return pendingFromRow(r.id == null ? undefined : r, now);
  }

  async commitEnrollment(input: CommitEnrollmentInput): Promise<EnrolleeRecord> {
    return this.#db.transaction(() => this.#commitOne(input)).immediate();
  }

  /**
   * Group commit: every input as `commitEnrollment` would commit it, all in one IMMEDIATE
   * transaction, so a batch of concurrent enrollments costs one WAL sync. Each input runs in
   * its own savepoint: one that fails is rolled back alone and comes back as its EnrollError,
   * the others still commit. Any other error aborts the whole batch. Returns after COMMIT,
   * which with synchronous=FULL means the batch is on disk.
   */
  async commitEnrollments(inputs: CommitEnrollmentInput[]): Promise<(EnrolleeRecord | EnrollError)[]> {
    // SQLITE_BUSY: the write lock was held past busy_timeout, or SQLite answered at once
    // (it does when waiting could deadlock). The batch rolled back whole, so it is safe to
    // run again: after a short wait, while the deadline allows.
    const start = Date.now();
    for (let attempt = 0; ; attempt++) {
      try {
        return this.#commitBatch(inputs);
      } catch (err) {
        const wait = BUSY_RETRY_MS[attempt];
        if (!isBusy(err) || wait === undefined || Date.now() + wait - start >= BUSY_RETRY_DEADLINE_MS) throw err;
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  #commitBatch(inputs: CommitEnrollmentInput[]): (EnrolleeRecord | EnrollError)[] {
    // First the whole batch without savepoints (a savepoint copies every page it first
    // touches to a sub-journal): if an input fails, that transaction rolls back, nothing
    // committed or synced, and the batch runs again below with a savepoint per input.
    try {
      return this.#db.transaction(() => inputs.map((input) => this.#commitOne(input))).immediate();
    } catch (err) {
      if (!(err instanceof EnrollError)) throw err;
    }
    const one = this.#db.transaction((input: CommitEnrollmentInput) => this.#commitOne(input));
    return this.#db.transaction(() =>
      inputs.map((input) => {
        try {
          return one(input);
        } catch (err) {
          if (err instanceof EnrollError) return err;
          throw err;
        }
      }),
    ).immediate();
  }

  /** The body of commitEnrollment; the caller holds the transaction. */
  #commitOne(input: CommitEnrollmentInput): EnrolleeRecord {
    const s = this.#stmt;
    if (s.insertEk.run(buf(input.ekB), input.now).changes !== 1) {
      throw new EnrollError('ERR_REPLAY', 'EK_B was already accepted');
    }
    if (s.consumeOpk.run(buf(input.bundleId)).changes !== 1) {
      throw new EnrollError('ERR_OPK_USED', 'the OPK of this bundle was already consumed');
    }
    let row: Row | undefined;
    try {
      row = s.enroll.get(buf(input.ikB), input.now, buf(input.enrolleeId), input.now, buf(input.bundleId)) as Row | undefined;
    } catch (cause) {
      if ((cause as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
        throw new EnrollError('ERR_REJECTED', 'this identity key (IK_B) is already enrolled for another enrollee', { cause });
      }
      throw cause;
    }
    if (!row) throw new EnrollError('ERR_ENROLLEE_UNKNOWN', 'the enrollee is no longer pending with this bundle');
    return toEnrollee(row);
  }

  async recordFailure(enrolleeId: Uint8Array): Promise<number> {
    const n = this.#stmt.recordFailure.get(buf(enrolleeId));
    return n === undefined ? 0 : Number(n);
  }

  async listEnrollees(state?: EnrolleeState): Promise<EnrolleeRecord[]> {
    const s = this.#stmt;
    const rows = (state === undefined ? s.listAll.all() : state === 'enrolled' ? s.listState.all(state) : s.listOpen.all(state)) as Row[];
    return rows.map(toEnrollee);
  }

  async findEnrollee(idOrPrefix: string): Promise<EnrolleeRecord | undefined> {
    const hex = idOrPrefix.trim().toUpperCase();
    if (!/^[0-9A-F]{8,64}$/.test(hex)) {
      throw new EnrollError('ERR_USAGE', `"${idOrPrefix}" is not an enrollee id (8 to 64 hex characters)`);
    }
    if (hex.length === 64) {
      const r = this.#stmt.getEnrollee.get(Buffer.from(hex, 'hex')) as Row | undefined;
      return r && toEnrollee(r);
    }
    // A prefix scans the table: fine for an operator's command, never on the hot path.
    const rows = this.#stmt.findEnrolleeHex.all(`${hex}%`) as Row[];
    if (rows.length > 1) {
      throw new EnrollError('ERR_USAGE', `the id prefix ${idOrPrefix} matches more than one enrollee`, {
        hint: 'give more characters of the id',
      });
    }
    return rows[0] && toEnrollee(rows[0]);
  }

  async getEnrolleeByIdentityKey(ikB: Uint8Array): Promise<EnrolleeRecord | undefined> {
    const r = this.#stmt.getByIk.get(buf(ikB)) as Row | undefined;
    return r && toEnrollee(r);
  }

  async revokeEnrollee(id: Uint8Array, now: number): Promise<boolean> {
    const s = this.#stmt;
    return this.#db.transaction(() => {
      const e = s.getEnrollee.get(buf(id)) as Row | undefined;
      const changed = s.revokeEnrollee.run(now, buf(id)).changes === 1;
      // A revoked pending enrollee's bundle can no longer be used by anyone.
      if (changed && e && e.bundle_id != null) s.revokeEnrolleeBundle.run(e.bundle_id);
      return changed;
    }).immediate();
  }

  async counts(): Promise<Record<EnrolleeState, number>> {
    const r = this.#stmt.counts.get() as Row;
    const pending = Number(r.pending);
    const revoked = Number(r.revoked);
    return { pending, enrolled: Number(r.total) - pending - revoked, revoked };
  }

  async close(): Promise<void> {
    if (this.#db.open) this.#db.close();
  }
}

/**
 * `before`'s attributes with `set` applied and `unset` removed, checked (at most
 * ATTR_MAX_COUNT in all). Unsetting a key the enrollee does not have is refused: a typo must
 * not pass for a change.
 */
export function mergeAttributes(before: EnrolleeRecord, set: Attributes, unset: readonly string[]): Attributes {
  const next: Record<string, string> = { ...(before.attributes ?? {}) };
  for (const k of unset) {
    if (!Object.hasOwn(next, k)) throw new EnrollError('ERR_USAGE', `the enrollee has no attribute "${k.slice(0, 40)}"`);
    delete next[k];
  }
  Object.assign(next, checkAttributes(set, 'ERR_USAGE'));
  return checkAttributes(next, 'ERR_USAGE');
}

export function toReplica(r: Row): ReplicaRecord {
  return { id: String(r.id), address: r.address == null ? null : String(r.address), startedAt: Number(r.started_at), lastSeen: Number(r.last_seen) };
}

export function toDeviceOutletHolder(r: Row): DeviceOutletHolder {
  return {
    replicaId: String(r.replica_id),
    address: r.address == null ? null : String(r.address),
    session: Number(r.session),
    name: String(r.name),
    since: Number(r.since),
    lastSeen: Number(r.last_seen),
  };
}

export function toOutlet(r: Row): OutletRecord {
  return { name: String(r.name), host: String(r.host), port: Number(r.port), allow: r.allow == null ? null : String(r.allow), createdAt: Number(r.created_at) };
}
