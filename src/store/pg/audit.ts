/**
 * The audit log on PostgreSQL: the `audit` table of src/store/audit.ts, and one more,
 * `audit_head`, a single row holding the chain's head (seq and hash). Every append locks that
 * row (SELECT … FOR UPDATE), writes its entries after the head and moves the head, in one
 * transaction: appends from every replica and every CLI command serialise into one chain
 * that `service audit verify` accepts. The table stays append-only: nothing here updates or
 * deletes an `audit` row.
 */
import { AUDIT_GENESIS, canonicalJson, entryHash, type AuditRow } from '../../audit/chain.js';
import type { AuditEntry } from '../audit.js';
import { bytes, type PgDatabase } from './database.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS audit (
  seq    bigint PRIMARY KEY,
  time   text NOT NULL,
  event  text NOT NULL,
  fields text NOT NULL,
  prev   bytea NOT NULL,
  hash   bytea NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (
  one  boolean PRIMARY KEY DEFAULT true CHECK (one),
  seq  bigint NOT NULL,
  hash bytea
);
INSERT INTO audit_head (one, seq, hash) VALUES (true, 0, NULL) ON CONFLICT DO NOTHING;
`;

/** Rows read per query by rows(). */
const PAGE = 5_000;

export class PgAuditStore {
  readonly #db: PgDatabase;

  constructor(db: PgDatabase) {
    this.#db = db;
  }

  get path(): string {
    return this.#db.location.masked;
  }

  /** Appends `entries` in order after the chain's head, in one transaction; returns the new head. */
  async append(entries: readonly AuditEntry[]): Promise<{ seq: number; hash: Uint8Array } | undefined> {
    if (entries.length === 0) return undefined;
    return this.#db.tx(async (c) => {
      const head = (await c.query(`SELECT seq, hash FROM audit_head WHERE one FOR UPDATE`)).rows[0]!;
      let seq = Number(head.seq);
      let prev: Uint8Array = head.hash == null ? AUDIT_GENESIS : bytes(head.hash);
      const cols = { seq: [] as number[], time: [] as string[], event: [] as string[], fields: [] as string[], prev: [] as Buffer[], hash: [] as Buffer[] };
      for (const e of entries) {
        seq += 1;
        const fields = canonicalJson(e.fields ?? {});
        const hash = entryHash(prev, seq, e.time, e.event, fields);
        cols.seq.push(seq);
        cols.time.push(e.time);
        cols.event.push(e.event);
        cols.fields.push(fields);
        cols.prev.push(Buffer.from(prev));
        cols.hash.push(Buffer.from(hash));
        prev = hash;
      }
      await c.query(
        `INSERT INTO audit (seq, time, event, fields, prev, hash)
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bytea[], $6::bytea[])`,
        [cols.seq, cols.time, cols.event, cols.fields, cols.prev, cols.hash],
      );
      await c.query(`UPDATE audit_head SET seq = $1, hash = $2 WHERE one`, [seq, Buffer.from(prev)]);
      return { seq, hash: prev };
    }, 'cannot append to the audit log');
  }

  /** Rows from `sinceSeq` on, in seq order, read a page at a time. */
  async *rows(opts: { sinceSeq?: number } = {}): AsyncIterableIterator<AuditRow> {
    let from = opts.sinceSeq ?? 0;
    for (;;) {
      const page = (
        await this.#db.query(`SELECT seq, time, event, fields, prev, hash FROM audit WHERE seq >= $1 ORDER BY seq LIMIT ${PAGE}`, [from], 'cannot read the audit log')
      ).rows;
      for (const r of page) {
        yield { seq: Number(r.seq), time: String(r.time), event: String(r.event), fields: String(r.fields), prev: bytes(r.prev), hash: bytes(r.hash) };
      }
      if (page.length < PAGE) return;
      from = Number(page[page.length - 1]!.seq) + 1;
    }
  }

  async count(): Promise<number> {
    return Number((await this.#db.query(`SELECT count(*) AS n FROM audit`)).rows[0]!.n);
  }

  async close(): Promise<void> {}
}
