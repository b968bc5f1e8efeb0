/**
 * The audit log's table, in the service's SQLite store (beside the X3DH and token tables):
 *
 *   CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY, time TEXT, event TEXT,
 *                                     fields TEXT (canonical JSON), prev BLOB, hash BLOB)
 *
 * hash = SHA-256(prev ‖ canonical entry) (src/audit/chain.ts). Like tokens.ts, this is a
 * connection of its own to the store's file, so sqlite.ts is untouched and an existing store
 * gains the table on first use. Appends run in one IMMEDIATE transaction that reads the
 * current head and writes the new rows after it, so appends from several processes (the
 * running service, `service enrollee revoke` in a shell) serialise into one chain.
 *
 * Nothing here updates or deletes a row: the table is append-only by construction, and
 * anything else that changes it shows up in `service audit verify`.
 */
import Database from 'better-sqlite3';
import { EnrollError } from '../errors.js';
import { canonicalJson, entryHash, AUDIT_GENESIS, type AuditRow } from '../audit/chain.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit (
  seq    INTEGER PRIMARY KEY,
  time   TEXT NOT NULL,
  event  TEXT NOT NULL,
  fields TEXT NOT NULL,
  prev   BLOB NOT NULL,
  hash   BLOB NOT NULL
);
`;

/** One entry to append; seq, prev and hash are assigned inside the transaction. */
export interface AuditEntry {
  /** ISO 8601 time, as the decision log writes it. */
  time: string;
  event: string;
  fields: Record<string, unknown>;
}

export interface AuditStoreOptions {
  /** Open read-only (verify, export): the table may then be absent, which reads as empty. */
  readonly?: boolean;
  /**
   * synchronous=FULL (default) makes every append durable at COMMIT. The service's audit
   * thread batches its appends, so it pays one WAL fsync per batch, not per entry.
   */
  synchronous?: 'FULL' | 'NORMAL';
}

type Row = Record<string, unknown>;

function toRow(r: Row): AuditRow {
  const blob = (v: unknown) => (v instanceof Uint8Array ? new Uint8Array(v) : (v as Uint8Array));
  return {
    seq: Number(r.seq),
    time: r.time as string,
    event: r.event as string,
    fields: r.fields as string,
    prev: blob(r.prev),
    hash: blob(r.hash),
  };
}

export class AuditStore {
  readonly path: string;
  readonly #db: Database.Database;
  readonly #hasTable: boolean;

  private constructor(path: string, db: Database.Database, hasTable: boolean) {
    this.path = path;
    this.#db = db;
    this.#hasTable = hasTable;
  }

  /** Opens a connection to the store at `path` (which `service init` made) and adds the table. */
  static open(path: string, opts: AuditStoreOptions = {}): AuditStore {
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { fileMustExist: true, readonly: opts.readonly ?? false });
      db.pragma('busy_timeout = 5000');
      let hasTable = true;
      if (opts.readonly) {
        hasTable = db.prepare(`SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'`).get() !== undefined;
      } else {
        db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
        db.exec(SCHEMA);
      }
      return new AuditStore(path, db, hasTable);
    } catch (cause) {
      if (db?.open) db.close();
      throw new EnrollError('ERR_STORE', `cannot open the audit log in ${path}: ${(cause as Error).message}`, {
        cause,
        hint: 'run `ockam-enroll service init` first, and check the store is readable (and writable, to append)',
      });
    }
  }

  /**
   * Appends `entries` in order after the current head, in one IMMEDIATE transaction; returns
   * the last seq and hash written. Fields are stored as canonical JSON.
   */
  append(entries: readonly AuditEntry[]): { seq: number; hash: Uint8Array } | undefined {
    if (entries.length === 0) return undefined;
    try {
      const head = this.#db.prepare(`SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1`);
      const insert = this.#db.prepare(`INSERT INTO audit (seq, time, event, fields, prev, hash) VALUES (?, ?, ?, ?, ?, ?)`);
      return this.#db
        .transaction(() => {
          const last = head.get() as Row | undefined;
          let seq = last === undefined ? 0 : Number(last.seq);
          let prev: Uint8Array = last === undefined ? AUDIT_GENESIS : new Uint8Array(last.hash as Buffer);
          for (const e of entries) {
            seq += 1;
            const fields = canonicalJson(e.fields ?? {});
            const hash = entryHash(prev, seq, e.time, e.event, fields);
            insert.run(seq, e.time, e.event, fields, Buffer.from(prev), Buffer.from(hash));
            prev = hash;
          }
          return { seq, hash: prev };
        })
        .immediate();
    } catch (cause) {
      throw new EnrollError('ERR_STORE', `cannot append to the audit log in ${this.path}: ${(cause as Error).message}`, { cause });
    }
  }

  /** Every row in seq order, read lazily (a long log is never held in memory at once). */
  *rows(opts: { sinceSeq?: number } = {}): IterableIterator<AuditRow> {
    if (!this.#hasTable) return;
    const stmt = this.#db.prepare(`SELECT seq, time, event, fields, prev, hash FROM audit WHERE seq >= ? ORDER BY seq`);
    for (const r of stmt.iterate(opts.sinceSeq ?? 0)) yield toRow(r as Row);
  }

  count(): number {
    if (!this.#hasTable) return 0;
    return Number((this.#db.prepare(`SELECT count(*) AS n FROM audit`).get() as Row).n);
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
