/**
 * The PostgreSQL store's connection pool, shared by its four parts (store.ts, tokens.ts,
 * lifecycle.ts, audit.ts: the same tables, columns and guarantees as their SQLite
 * counterparts in src/store/). Several `service start` replicas may share one database:
 * every single-use guarantee is a conditional UPDATE, a unique constraint or a row lock
 * inside one transaction, never a read in one process followed by a write.
 *
 * Durability: every session runs with synchronous_commit=on (set per connection, so a
 * database default of off does not weaken it), so a COMMIT has returned only once its WAL
 * is flushed on the primary; an acceptance is sent only after that.
 *
 * Faults: a connection error becomes ERR_STORE (the service answers UNAVAILABLE), and the
 * first one is reported once through `onHealth` ("unreachable"), the recovery once
 * ("reachable again"); the pool reconnects by itself on the next query.
 */
import pg from 'pg';
import { EnrollError } from '../../errors.js';
import { maskSecret, type StoreLocation } from '../location.js';
import { COMMIT_FUNCTION, INDEXES_6, SCHEMA as STORE_SCHEMA } from './store.js';
import { SCHEMA as TOKENS_SCHEMA } from './tokens.js';
import { SCHEMA as LIFECYCLE_SCHEMA } from './lifecycle.js';
import { SCHEMA as AUDIT_SCHEMA } from './audit.js';
import { SCHEMA as LIMITS_SCHEMA } from './limits.js';
import { REPLICAS_SCHEMA } from './store.js';

/** The schema version this code writes (meta.schema_version), as sqlite.ts SCHEMA_VERSION. */
export const PG_SCHEMA_VERSION = 6;
/**
 * The migration from schema version `from` (to the next one this code knows), by `from`, run
 * in order under the advisory lock. 1 → 3 (attributes and scopes, docs/policies.md; there
 * was no PostgreSQL version 2): the columns, then the commit function again, which now
 * returns the enrolled row's attributes.
 */
const PG_MIGRATIONS: Record<number, { to: number; ddl: () => string[] }> = {
  1: {
    to: 3,
    ddl: () => [
      `ALTER TABLE enrollees ADD COLUMN IF NOT EXISTS attributes text`,
      `ALTER TABLE enrollers ADD COLUMN IF NOT EXISTS scopes text`,
      COMMIT_FUNCTION,
    ],
  },
  // 3 → 4: service outlets (docs/portals.md), read by every replica at each stream open.
  3: {
    to: 4,
    ddl: () => [
      `CREATE TABLE IF NOT EXISTS outlets (
        name       text PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
        host       text NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
        port       integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
        allow      text CHECK (allow IS NULL OR length(allow) <= 4096),
        created_at bigint NOT NULL
      )`,
    ],
  },
  // 4 → 5: replicas (heartbeats) and the device outlets each holds (docs/architecture.md
  // "Device outlets across replicas"), read at each DEVICE/NAME open the replica cannot serve itself.
  4: { to: 5, ddl: () => [REPLICAS_SCHEMA] },
  // 5 → 6: fewer pages per enrollment's commit (issue 23 item 3; sqlite.ts MIGRATE_5_TO_6):
  // step 4's enrollees_state, enrollees_ik_b and bundles_enroller replaced by INDEXES_6.
  // Each CREATE INDEX reads its table once, holding a SHARE lock that blocks writes (not
  // reads) until the migration's transaction commits (docs/operations.md "Upgrading").
  5: {
    to: 6,
    ddl: () => [`DROP INDEX IF EXISTS enrollees_state`, `DROP INDEX IF EXISTS enrollees_ik_b`, `DROP INDEX IF EXISTS bundles_enroller`, ...INDEXES_6],
  },
};
/**
 * A migration is one transaction and may rebuild indexes over millions of rows: its
 * statements, and a replica waiting for the lock meanwhile, get this long instead of the
 * hot path's STATEMENT_TIMEOUT_MS / TX_DEADLINE_MS (≈ 14 s per million enrollees measured,
 * docs/operations.md "Upgrading").
 */
export const MIGRATE_DEADLINE_MS = 30 * 60_000;
/** How often a replica that finds the migration lock taken tries it again. */
const MIGRATE_LOCK_POLL_MS = 200;
/** pg_advisory_xact_lock key serialising migrations of replicas starting together ("ockamenr"). */
const MIGRATE_LOCK = 0x6f636b616d656e72n;
/** Connections per process: the commit path holds one, reads and the audit use the rest. */
const DEFAULT_POOL_SIZE = 12;
/** How long a query waits for a connection (or a connection attempt takes) before ERR_STORE. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * Deadlines against a database that stops answering without closing the connection (a
 * blackhole: a partitioned network, a frozen server, a proxy that stops forwarding), which
 * TCP alone would notice only after minutes. An enrollee waits 15 s for its answer
 * (README "Exit codes", DEFAULT_READ_TIMEOUT_MS), so every store step is bounded well below:
 * - statement_timeout, set per session: the server cancels a statement running longer;
 * - QUERY_TIMEOUT_MS, client-side: a statement whose answer does not arrive fails, and its
 *   connection is destroyed rather than reused (pg-pool releases it with the error);
 * - TX_DEADLINE_MS: a transaction (a commit batch among them) that has not committed by
 *   then has its connection destroyed: its statements fail at once, the batch's enrollees
 *   are answered UNAVAILABLE, and the next batch starts on a fresh connection;
 * - TCP keepalive (KEEPALIVE_IDLE_MS): an idle pooled connection to a host that went away
 *   is found dead before a request picks it.
 */
export const STATEMENT_TIMEOUT_MS = 5_000;
export const QUERY_TIMEOUT_MS = 6_000;
export const TX_DEADLINE_MS = 10_000;
const KEEPALIVE_IDLE_MS = 5_000;

/**
 * pg's Client leaves its socket open when connecting fails after the server answered (a
 * password the server asks for and that was not given: "SASL: … client password must be a
 * string"): the server then holds it until its authentication_timeout (60 s by default),
 * and so does this process, which cannot exit before. A failed connect destroys the socket.
 */
export class ClosingClient extends pg.Client {
  override connect(): Promise<void>;
  override connect(callback: (err: Error) => void): void;
  override connect(callback?: (err: Error) => void): Promise<void> | void {
    const destroy = (): void => {
      (this as unknown as { connection?: { stream?: { destroy?(): void } } }).connection?.stream?.destroy?.();
    };
    if (callback) {
      super.connect((err) => {
        if (err) destroy();
        callback(err);
      });
      return;
    }
    return super.connect().catch((err: unknown) => {
      destroy();
      throw err;
    });
  }
}

export type Queryable = pg.Pool | pg.PoolClient;
export type Row = Record<string, unknown>;

/** SQLSTATEs after which a transaction rolled back whole and may simply run again. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === '23505';
}

/** A connection-level failure (refused, reset, timeout, server shutting down), as opposed to a SQL error. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (/^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/.test(code)) return true;
    // 08: connection exception; 57P01..57P03: admin shutdown, crash shutdown, cannot connect now.
    if (code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03') return true;
  }
  const msg = (err as Error | null)?.message ?? '';
  return /Connection terminated|connection timeout|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable|Query read timeout|transaction deadline/i.test(msg);
}

export type HealthEvent = { state: 'down'; reason: string } | { state: 'up' };

export class PgDatabase {
  readonly location: Extract<StoreLocation, { kind: 'postgres' }>;
  readonly pool: pg.Pool;
  /** The connections' application_name (pg_stat_activity). */
  applicationName = 'ockam-enroll';
  #down = false;
  /** When the store was last found unreachable (performance.now()). */
  #downAt = 0;
  #listeners = new Set<(e: HealthEvent) => void>();
  #closed = false;

  private constructor(location: Extract<StoreLocation, { kind: 'postgres' }>, pool: pg.Pool) {
    this.location = location;
    this.pool = pool;
  }

  /** Connects, checks the schema version and migrates (creating the tables on first use). */
  static async open(location: Extract<StoreLocation, { kind: 'postgres' }>, opts: { poolSize?: number; applicationName?: string } = {}): Promise<PgDatabase> {
    const pool = new pg.Pool({
      Client: ClosingClient,
      connectionString: location.url,
      max: opts.poolSize ?? DEFAULT_POOL_SIZE,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      idleTimeoutMillis: 30_000,
      // PostgreSQL cuts application_name at 63 bytes; pg_stat_activity shows it (`service status`).
      application_name: (opts.applicationName ?? 'ockam-enroll').slice(0, 63),
      // Per session, whatever the database's default: a COMMIT returns once its WAL is flushed.
      options: '-c synchronous_commit=on',
      statement_timeout: STATEMENT_TIMEOUT_MS,
      query_timeout: QUERY_TIMEOUT_MS,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
    });
    const db = new PgDatabase(location, pool);
    db.applicationName = (opts.applicationName ?? 'ockam-enroll').slice(0, 63);
    // An idle connection that the server drops (a restart) must not crash the process: the
    // pool discards it and the next query reconnects.
    pool.on('error', (err) => db.#failed(err));
    try {
      await db.#migrate();
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw db.wrap(err, 'cannot open the store');
    }
    return db;
  }

  async #migrate(): Promise<void> {
    await this.tx(async (c) => {
      // The lock is tried, not waited for, so that each statement stays short (a database
      // that stops answering is still noticed within QUERY_TIMEOUT_MS); a replica starting
      // beside one that migrates tries again until that migration's deadline.
      const waitUntil = Date.now() + MIGRATE_DEADLINE_MS;
      while ((await c.query('SELECT pg_try_advisory_xact_lock($1) AS ok', [MIGRATE_LOCK.toString()])).rows[0]!.ok !== true) {
        if (Date.now() >= waitUntil) throw new EnrollError('ERR_STORE', `another replica has held the migration lock of ${this.location.masked} for ${MIGRATE_DEADLINE_MS / 60_000} minutes`);
        await new Promise((r) => setTimeout(r, MIGRATE_LOCK_POLL_MS));
      }
      const hasMeta = (await c.query(`SELECT to_regclass('meta') IS NOT NULL AS ok`)).rows[0]!.ok === true;
      const v = hasMeta ? (await c.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows[0] : undefined;
      let version = v === undefined ? undefined : Number(v.value);
      if (version !== undefined && version !== PG_SCHEMA_VERSION && PG_MIGRATIONS[version] !== undefined) {
        await c.query(`SET LOCAL statement_timeout = ${MIGRATE_DEADLINE_MS}`);
      }
      while (version !== undefined && version !== PG_SCHEMA_VERSION && PG_MIGRATIONS[version] !== undefined) {
        const step = PG_MIGRATIONS[version]!;
        for (const ddl of step.ddl()) await c.query({ text: ddl, query_timeout: MIGRATE_DEADLINE_MS } as pg.QueryConfig);
        await c.query(`UPDATE meta SET value = $1 WHERE key = 'schema_version'`, [String(step.to)]);
        version = step.to;
      }
      if (v !== undefined && version !== PG_SCHEMA_VERSION) {
        throw new EnrollError('ERR_STORE', `the store ${this.location.masked} has schema version ${String(v.value)}, this ockam-enroll understands ${PG_SCHEMA_VERSION}`);
      }
      if (v === undefined) {
        // Every table at once, in the same transaction: a replica that starts beside this one
        // waits on the advisory lock and then finds the version row.
        for (const ddl of [STORE_SCHEMA, COMMIT_FUNCTION, TOKENS_SCHEMA, LIFECYCLE_SCHEMA, AUDIT_SCHEMA, LIMITS_SCHEMA, REPLICAS_SCHEMA]) await c.query(ddl);
        await c.query(`INSERT INTO meta (key, value) VALUES ('schema_version', $1)`, [String(PG_SCHEMA_VERSION)]);
      }
    }, 'cannot open the store', MIGRATE_DEADLINE_MS);
  }

  /** Subscribes to reachability changes; returns the unsubscribe function. */
  onHealth(fn: (e: HealthEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #failed(err: unknown): void {
    if (this.#closed || this.#down) return;
    this.#down = true;
    this.#downAt = performance.now();
    const reason = maskSecret((err as Error)?.message ?? String(err), this.location);
    for (const fn of this.#listeners) fn({ state: 'down', reason });
  }

  /**
   * A query that started at `startedAt` succeeded. Only one started after the failure counts
   * as a recovery: one that was in flight before it may still complete on an old connection.
   */
  #succeeded(startedAt: number): void {
    if (!this.#down || startedAt <= this.#downAt) return;
    this.#down = false;
    for (const fn of this.#listeners) fn({ state: 'up' });
  }

  /** Whether the last query failed for want of a connection. */
  get down(): boolean {
    return this.#down;
  }

  /** An error of this store as an EnrollError: ERR_STORE, the password scrubbed, the SQLSTATE kept in the message. */
  wrap(err: unknown, what: string): EnrollError {
    if (err instanceof EnrollError) return err;
    const code = (err as { code?: unknown } | null)?.code;
    const msg = maskSecret((err as Error)?.message ?? String(err), this.location);
    const unreachable = isConnectionError(err);
    // pg's words for "the server asked for a password and there was none" (sasl.js).
    if (/SASL: SCRAM-SERVER-FIRST-MESSAGE: client password must be a (non-empty )?string/.test(msg)) {
      return new EnrollError('ERR_STORE', `${what}: PostgreSQL at ${this.location.masked} asks for a password, and none was given`, {
        hint: 'give it in PGPASSWORD or a libpq password file (PGPASSFILE, ~/.pgpass), not in the URL (docs/operations.md)',
      });
    }
    const out = new EnrollError(
      'ERR_STORE',
      `${what}: ${unreachable ? `PostgreSQL at ${this.location.masked} is unreachable: ` : ''}${typeof code === 'string' && !unreachable ? `${code}: ` : ''}${msg}`,
      unreachable ? { hint: 'check that PostgreSQL is running and reachable there (a running service retries by itself)' } : {},
    );
    // The SQLSTATE, for callers that retry (deadlock, serialization) or map (unique violation).
    if (typeof code === 'string') (out as { pgCode?: string }).pgCode = code;
    return out;
  }

  /**
   * One statement on the pool. `name` makes it a prepared statement on each connection (the
   * hot path's: parsed and planned once per connection, not per message).
   */
  async query(sql: string, params: unknown[] = [], what = 'store query failed', name?: string): Promise<pg.QueryResult<Row>> {
    const startedAt = performance.now();
    try {
      const r = await this.pool.query<Row>(name === undefined ? { text: sql, values: params } : { name, text: sql, values: params });
      this.#succeeded(startedAt);
      return r;
    } catch (err) {
      if (isConnectionError(err)) this.#failed(err);
      throw this.wrap(err, what);
    }
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED; the guarantees come from row locks and
   * conditional updates). An EnrollError thrown by `fn` rolls back and propagates as is.
   * Resolves after COMMIT has returned, so what it wrote is durable. `deadlineMs`: see
   * TX_DEADLINE_MS (longer only for a migration, MIGRATE_DEADLINE_MS).
   */
  async tx<T>(fn: (c: pg.PoolClient) => Promise<T>, what = 'store transaction failed', deadlineMs = TX_DEADLINE_MS): Promise<T> {
    const startedAt = performance.now();
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      if (isConnectionError(err)) this.#failed(err);
      throw this.wrap(err, what);
    }
    let broken = false;
    // A connection lost between two statements of ours is reported as an 'error' event on the
    // checked-out client, which must not be left unhandled (it would end the process); the
    // next statement fails with it anyway.
    const onError = (err: Error) => {
      broken = true;
      this.#failed(err);
    };
    client.on('error', onError);
    // TX_DEADLINE_MS: the connection is destroyed under a transaction that has not committed
    // in time, so that its pending statement fails now rather than when TCP gives up.
    let expired = false;
    const deadline = setTimeout(() => {
      expired = true;
      broken = true;
      destroyConnection(client);
    }, deadlineMs);
    try {
      await client.query('BEGIN');
      const out = await fn(client);
      await client.query('COMMIT');
      this.#succeeded(startedAt);
      return out;
    } catch (err) {
      if (expired && !(err instanceof EnrollError)) err = new Error(`transaction deadline of ${deadlineMs / 1000} s passed (${(err as Error)?.message ?? String(err)})`);
      if (isConnectionError(err)) {
        broken = true;
        this.#failed(err);
      } else {
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
      }
      throw this.wrap(err, what);
    } finally {
      clearTimeout(deadline);
      client.off('error', onError);
      if (broken) destroyConnection(client);
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.pool.end().catch(() => undefined);
  }
}

/**
 * Ends a client's socket at once. pg's own end() sends Terminate and waits for the server,
 * which a blackholed connection never answers; the pending query fails with "Connection
 * terminated" (a connection error) as soon as the socket is gone.
 */
function destroyConnection(client: pg.PoolClient): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/** The SQLSTATE of an error from PgDatabase.tx (kept as pgCode on the EnrollError). */
export function pgCode(err: unknown): string | undefined {
  const c = (err as { pgCode?: unknown; code?: unknown } | null)?.pgCode ?? (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

export function bytes(v: unknown): Uint8Array {
  return new Uint8Array(v as Buffer);
}
export function bytesOrNull(v: unknown): Uint8Array | null {
  return v == null ? null : bytes(v);
}
export function buf(b: Uint8Array): Buffer {
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}
export function num(v: unknown): number | null {
  return v == null ? null : Number(v);
}
