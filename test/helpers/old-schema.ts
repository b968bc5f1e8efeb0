/**
 * Stores as an older ockam-enroll left them, made from a current one: the indexes of schema
 * step 4 (before step 6's, src/store/sqlite.ts MIGRATE_5_TO_6) and the version row. Step 5
 * (the relay engineer's tables) only adds tables, which a step-4 store lacks and which its
 * migration creates with IF NOT EXISTS, so they are left in place.
 *
 * For the migration tests (test/store/*) and bench/store-pages.ts, never for production code.
 */
import type Database from 'better-sqlite3';

/** Step 4's indexes, as its SCHEMA created them. */
const STEP_4_INDEXES = `
DROP INDEX IF EXISTS enrollees_open;
DROP INDEX IF EXISTS bundles_live;
DROP INDEX IF EXISTS enrollees_ik_b;
CREATE INDEX IF NOT EXISTS bundles_enroller ON bundles(enroller, state);
CREATE INDEX IF NOT EXISTS enrollees_state ON enrollees(state);
CREATE UNIQUE INDEX IF NOT EXISTS enrollees_ik_b ON enrollees(ik_b);
`;

/** Makes the SQLite store open on `db` a schema step-4 store. */
export function sqliteToStep4(db: Database.Database, version = 4): void {
  db.exec(`BEGIN IMMEDIATE; ${STEP_4_INDEXES} UPDATE meta SET value = '${version}' WHERE key = 'schema_version'; COMMIT;`);
}

/** The same for a PostgreSQL store, on a connection of the caller's (inside its transaction, if any). */
export async function pgToStep4(c: { query(sql: string): Promise<unknown> }, version = 4): Promise<void> {
  for (const stmt of STEP_4_INDEXES.split(';').map((s) => s.trim()).filter(Boolean)) await c.query(stmt);
  await c.query(`UPDATE meta SET value = '${version}' WHERE key = 'schema_version'`);
}
