/**
 * What `service status` reports (docs/operations.md "service status"): one read-only pass
 * over the store's tables, the same SQL on SQLite and PostgreSQL (the tables, columns and
 * states are the same: store/pg/store.ts mirrors store/sqlite.ts), plus the files of the
 * home that are not in the store (the CA certificate).
 *
 * Nothing here needs IK_A's private key or its passphrase, and nothing writes: status runs
 * beside a live service, and an operator can run it without the key's passphrase. No
 * secret is read: sealed columns are never selected, the store location is shown masked.
 */
import { STALE_S } from '../replicas/replica.js';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EnrollError } from '../errors.js';
import { toHex } from '../crypto/bytes.js';
import type { StoreLocation } from '../store/location.js';
import type { PgDatabase } from '../store/pg/database.js';

export type Row = Record<string, unknown>;

/** The SQL the report runs, on either store; `?` placeholders (rewritten for PostgreSQL). */
export interface StatusSource {
  readonly kind: 'sqlite' | 'postgres';
  all(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  hasTable(name: string): Promise<boolean>;
  close(): Promise<void>;
}

/** A SQLite store file, opened read-only (a running service keeps writing beside it, WAL). */
export function sqliteSource(path: string): StatusSource {
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
  } catch (cause) {
    throw new EnrollError('ERR_STORE', `cannot open the store ${path} to read it: ${(cause as Error).message}`, { cause });
  }
  return {
    kind: 'sqlite',
    all: async (sql, params = []) => db.prepare(sql).all(...params) as Row[],
    hasTable: async (name) => db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?`).get(name) !== undefined,
    close: async () => {
      if (db.open) db.close();
    },
  };
}

/** A PostgreSQL store, through its pool (`close` ends the pool unless `keepOpen`). */
export function pgSource(db: PgDatabase, opts: { keepOpen?: boolean } = {}): StatusSource {
  const numbered = (sql: string) => {
    let n = 0;
    return sql.replace(/\?/g, () => `$${++n}`);
  };
  return {
    kind: 'postgres',
    all: async (sql, params = []) => {
      try {
        return (await db.pool.query(numbered(sql), [...params])).rows as Row[];
      } catch (err) {
        throw db.wrap(err, 'cannot read the store');
      }
    },
    hasTable: async (name) => {
      const r = await db.pool.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [name]).catch((err) => {
        throw db.wrap(err, 'cannot read the store');
      });
      return r.rows[0]?.ok === true;
    },
    close: () => (opts.keepOpen ? Promise.resolve() : db.close()),
  };
}

/**
 * Bundles in stock (issued to an enroller, not approved, not expired) and approved ones not
 * yet used: the gauges of /metrics, read at each scrape (two indexed counts).
 */
export async function bundleStock(src: StatusSource, now: number): Promise<{ in_stock: number; approved: number }> {
  const rows = await src.all(`SELECT state, count(*) AS n FROM bundles WHERE state IN ('issued', 'approved') AND expires_at > ? GROUP BY state`, [now]);
  const by = new Map(rows.map((r) => [String(r.state), num(r.n)]));
  return { in_stock: by.get('issued') ?? 0, approved: by.get('approved') ?? 0 };
}

export interface StatusInput {
  source: StatusSource;
  location: StoreLocation;
  /** What to show as the store's location: the masked URL, or the SQLite file's path. */
  where: string;
  /** `<home>/service`. */
  dir: string;
  /** The enrollee lockout threshold (settings.maxFailedAttempts). */
  maxFailedAttempts: number;
  now: number;
  /** The schema version this build writes. */
  schemaSupported: number;
}

export interface BackupMark {
  time: string;
  seq: number;
  fields: Record<string, unknown>;
}

export interface ServiceStatus {
  store: { kind: string; location: string; schema_version: number | null; schema_supported: number };
  enrollees: { pending: number; pending_expired: number; enrolled: number; revoked: number; locked_out: number; x3dh: number; token: number };
  bundles: {
    /** Issued to an enroller, not yet approved for a device, not expired: each holds one unused OPK. */
    in_stock: number;
    /** Approved for a device that has not enrolled yet (its OPK still unused), not expired. */
    approved: number;
    /** One-time prekeys still usable: in stock + approved. */
    opks_left: number;
    per_enroller: { enroller: string; name: string | null; in_stock: number }[];
  };
  enrollers: { allowed: number; revoked: number };
  tokens: { outstanding: number; expired_unused: number };
  signed_prekey: { spk_id: number; created_at: string; age_days: number; eka_v2: boolean; next_rotation: string } | null;
  ca: { not_after: string; days_left: number } | null;
  audit: { entries: number; head: { seq: number; hash: string } | null };
  last_backup: { time: string; to: string | null; head_seq: number | null } | null;
  restored: { time: string; from: string | null; backup_taken_at: string | null; backup_head_seq: number | null; note: string } | null;
  replicas: { name: string; client: string | null; connections: number; since: string }[] | null;
  /**
   * PostgreSQL: the replicas seen recently, from their heartbeats (schema step 5, src/replicas):
   * id, replica-link address (null: no --peer-listen), start, last heartbeat; `connected` while
   * the heartbeat is fresh (within STALE_S), else seen `seen_ago_s` ago. Rows go after PRUNE_S.
   */
  replicas_seen: { id: string; address: string | null; started_at: string; last_seen: string; seen_ago_s: number; connected: boolean }[] | null;
}

const num = (v: unknown): number => (v == null ? 0 : Number(v));
const iso = (s: number): string => new Date(s * 1000).toISOString();

/** The newest audit entry of `event`, if any (the log is scanned from its end). */
async function lastEvent(src: StatusSource, event: string): Promise<BackupMark | undefined> {
  const rows = await src.all(`SELECT seq, time, fields FROM audit WHERE event = ? ORDER BY seq DESC LIMIT 1`, [event]);
  const r = rows[0];
  if (!r) return undefined;
  let fields: Record<string, unknown> = {};
  try {
    const f = JSON.parse(String(r.fields)) as unknown;
    if (f && typeof f === 'object') fields = f as Record<string, unknown>;
  } catch {
    // a malformed entry shows without its fields; `service audit verify` names it
  }
  return { time: String(r.time), seq: num(r.seq), fields };
}

const str = (v: unknown): string | null => (typeof v === 'string' && v !== '' ? v : null);
const int = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) ? v : null);

export async function readStatus(input: StatusInput): Promise<ServiceStatus> {
  const { source: src, now } = input;
  const meta = (await src.hasTable('meta')) ? await src.all(`SELECT value FROM meta WHERE key = 'schema_version'`) : [];
  if (!(await src.hasTable('enrollees'))) {
    throw new EnrollError('ERR_STORE', `${input.where} holds no ockam-enroll store`, { hint: 'run `ockam-enroll service init`, or pass the right --home or --store' });
  }

  const enrollees = { pending: 0, pending_expired: 0, enrolled: 0, revoked: 0, locked_out: 0, x3dh: 0, token: 0 };
  for (const r of await src.all(
    `SELECT state, method, count(*) AS n,
            sum(CASE WHEN state = 'pending' AND expires_at IS NOT NULL AND expires_at <= ? THEN 1 ELSE 0 END) AS expired,
            sum(CASE WHEN state = 'pending' AND failed_attempts >= ? THEN 1 ELSE 0 END) AS locked
       FROM enrollees GROUP BY state, method`,
    [now, input.maxFailedAttempts],
  )) {
    const n = num(r.n);
    if (r.state === 'pending' || r.state === 'enrolled' || r.state === 'revoked') enrollees[r.state] += n;
    if (r.method === 'x3dh' || r.method === 'token') enrollees[r.method] += n;
    enrollees.pending_expired += num(r.expired);
    enrollees.locked_out += num(r.locked);
  }

  const perEnroller = await src.all(
    `SELECT b.enroller AS enroller, e.name AS name, count(*) AS n
       FROM bundles b LEFT JOIN enrollers e ON e.public_key = b.enroller
      WHERE b.state = 'issued' AND b.expires_at > ?
      GROUP BY b.enroller, e.name ORDER BY count(*) DESC`,
    [now],
  );
  const approved = num((await src.all(`SELECT count(*) AS n FROM bundles WHERE state = 'approved' AND expires_at > ?`, [now]))[0]?.n);
  const inStock = perEnroller.reduce((a, r) => a + num(r.n), 0);

  const enrollerRows = await src.all(`SELECT sum(CASE WHEN revoked_at IS NULL THEN 1 ELSE 0 END) AS allowed, sum(CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END) AS revoked FROM enrollers`);

  // The tokens table appears with the first token (store/tokens.ts): none yet is none outstanding.
  let tokens: ServiceStatus['tokens'] = { outstanding: 0, expired_unused: 0 };
  if (await src.hasTable('tokens')) {
    const t = (await src.all(
      `SELECT sum(CASE WHEN expires_at > ? THEN 1 ELSE 0 END) AS outstanding, sum(CASE WHEN expires_at > ? THEN 0 ELSE 1 END) AS expired
         FROM tokens WHERE used_at IS NULL`,
      [now, now],
    ))[0];
    tokens = { outstanding: num(t?.outstanding), expired_unused: num(t?.expired) };
  }

  const spkRow = (await src.all(`SELECT id, created_at FROM signed_prekeys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1`))[0];
  let spk: ServiceStatus['signed_prekey'] = null;
  if (spkRow) {
    const created = num(spkRow.created_at);
    const kem = (await src.hasTable('kem_prekeys')) ? (await src.all(`SELECT 1 AS k FROM kem_prekeys WHERE spk_id = ?`, [num(spkRow.id)])).length > 0 : false;
    spk = {
      spk_id: num(spkRow.id),
      created_at: iso(created),
      age_days: Math.max(0, Math.floor((now - created) / 86400)),
      eka_v2: kem,
      // No schedule rotates SPK_A: it is current until `service prekey rotate` (docs/protocol.md §3.1 table).
      next_rotation: 'manual (service prekey rotate)',
    };
  }

  let ca: ServiceStatus['ca'] = null;
  const caPath = join(input.dir, 'ca.cert.pem');
  if (existsSync(caPath)) {
    try {
      const cert = new X509Certificate(readFileSync(caPath));
      const notAfter = Math.floor(Date.parse(cert.validTo) / 1000);
      ca = { not_after: iso(notAfter), days_left: Math.floor((notAfter - now) / 86400) };
    } catch {
      ca = null; // the service itself refuses a broken CA file at start, with its reason
    }
  }

  let audit: ServiceStatus['audit'] = { entries: 0, head: null };
  let lastBackup: ServiceStatus['last_backup'] = null;
  let restored: ServiceStatus['restored'] = null;
  if (await src.hasTable('audit')) {
    // seq runs 1, 2, … without gaps in a chain that verifies: the head's seq is the length.
    const head = (await src.all(`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`))[0];
    if (head) audit = { entries: num(head.seq), head: { seq: num(head.seq), hash: toHex(new Uint8Array(head.hash as Uint8Array)) } };
    const b = await lastEvent(src, 'store-backup');
    if (b) lastBackup = { time: b.time, to: str(b.fields.to), head_seq: int(b.fields.head_seq) };
    const r = await lastEvent(src, 'store-restored');
    if (r) {
      restored = {
        time: r.time,
        from: str(r.fields.from),
        backup_taken_at: str(r.fields.backup_taken_at),
        backup_head_seq: int(r.fields.backup_head_seq),
        note: 'devices that enrolled after the backup was taken are unknown to this store and must enroll again (their bundles are not in it)',
      };
    }
  }

  let replicas: ServiceStatus['replicas'] = null;
  if (src.kind === 'postgres') {
    // Every `service start` names its connections `ockam-enroll start <host> <pid>` (home.ts).
    replicas = (
      await src.all(
        `SELECT application_name AS name, host(client_addr) AS client, count(*) AS n, min(backend_start) AS since
           FROM pg_stat_activity
          WHERE datname = current_database() AND application_name LIKE 'ockam-enroll start %'
          GROUP BY application_name, host(client_addr) ORDER BY min(backend_start)`,
      )
    ).map((r) => ({ name: String(r.name), client: (r.client as string | null) ?? null, connections: num(r.n), since: new Date(r.since as Date).toISOString() }));
  }

  let replicasSeen: ServiceStatus['replicas_seen'] = null;
  if (src.kind === 'postgres' && (await src.hasTable('replicas'))) {
    replicasSeen = (await src.all(`SELECT id, address, started_at, last_seen FROM replicas ORDER BY last_seen DESC, id`)).map((r) => {
      const ago = Math.max(0, now - num(r.last_seen));
      return { id: String(r.id), address: (r.address as string | null) ?? null, started_at: iso(num(r.started_at)), last_seen: iso(num(r.last_seen)), seen_ago_s: ago, connected: ago <= STALE_S };
    });
  }

  return {
    store: { kind: src.kind, location: input.where, schema_version: meta[0] ? Number(meta[0].value) : null, schema_supported: input.schemaSupported },
    enrollees,
    bundles: {
      in_stock: inStock,
      approved,
      opks_left: inStock + approved,
      per_enroller: perEnroller.map((r) => ({ enroller: toHex(new Uint8Array(r.enroller as Uint8Array)), name: (r.name as string | null) ?? null, in_stock: num(r.n) })),
    },
    enrollers: { allowed: num(enrollerRows[0]?.allowed), revoked: num(enrollerRows[0]?.revoked) },
    tokens,
    signed_prekey: spk,
    ca,
    audit,
    last_backup: lastBackup,
    restored,
    replicas,
    replicas_seen: replicasSeen,
  };
}
