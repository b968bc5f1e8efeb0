/**
 * Schema step 6 (issue 23 item 3, src/store/sqlite.ts MIGRATE_5_TO_6, src/store/pg/database.ts
 * PG_MIGRATIONS[5]): a store at step 4 or 5, holding enrolled, pending and revoked enrollees,
 * migrates to 6 on its first writable open with its data intact, and the single-use
 * guarantees still hold after (an EK_B accepted before the migration is still a replay, an
 * IK_B enrolled before is still taken, an OPK is consumed once). Replicas opening together
 * migrate it once; a migration that fails or is interrupted leaves the store as it was.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { toHex } from '../../src/crypto/bytes.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { parseStoreLocation } from '../../src/store/location.js';
import { PG_SCHEMA_VERSION, PgDatabase } from '../../src/store/pg/database.js';
import { PgStore } from '../../src/store/pg/store.js';
import { SCHEMA_VERSION, SqliteStore } from '../../src/store/sqlite.js';
import type { EnrolleeRecord, ServiceStore } from '../../src/store/types.js';
import { pgToStep4, sqliteToStep4 } from '../helpers/old-schema.js';
import { freshDatabase, pgQuery } from '../helpers/pg.js';
import { newEnrollee, seedStore, type Enrollee, type SeededStore } from './contract.js';

const NOW = 1_700_000_000;
const STEP_4 = ['bundles_enroller', 'enrollees_ik_b', 'enrollees_state'];
const STEP_6 = ['bundles_live', 'enrollees_ik_b', 'enrollees_open'];

function rand(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (e: unknown) => isEnrollError(e, code) || assert.fail(`expected ${code}, got ${String(e)}`));
}

/** What the store holds before the migration, to compare after it. */
interface Before {
  enrolled: Enrollee;
  enrolledRec: EnrolleeRecord;
  ek: Uint8Array;
  ik: Uint8Array;
  pending: Enrollee;
  pendingBundle: Uint8Array;
  revoked: Enrollee;
  issued: Uint8Array;
  counts: Record<string, number>;
}

async function populate(store: ServiceStore, fx: SeededStore): Promise<Before> {
  const enrolled = newEnrollee();
  const b1 = await fx.issue();
  await fx.approve(enrolled, b1);
  const ek = rand(32);
  const ik = rand(32);
  const enrolledRec = await fx.commit(enrolled, b1, { ekB: ek, ikB: ik });
  const pending = newEnrollee();
  const pendingBundle = await fx.issue();
  await fx.approve(pending, pendingBundle, { ttl: 86400 });
  const revoked = newEnrollee();
  await fx.approve(revoked, await fx.issue());
  await store.revokeEnrollee(revoked.id, NOW + 1);
  const issued = await fx.issue();
  return { enrolled, enrolledRec, ek, ik, pending, pendingBundle, revoked, issued, counts: await store.counts() };
}

/** The data is as it was, and every single-use guarantee holds on rows from before the migration. */
async function checkAfter(store: ServiceStore, fx: SeededStore, b: Before): Promise<void> {
  assert.deepEqual(await store.counts(), b.counts);
  assert.deepEqual(await store.counts(), { pending: 1, enrolled: 1, revoked: 1 });
  assert.deepEqual(await store.findEnrollee(toHex(b.enrolled.id)), b.enrolledRec);
  assert.deepEqual(await store.getEnrolleeByIdentityKey(b.ik), b.enrolledRec);
  assert.equal(await store.isEkAccepted(b.ek), true);
  assert.equal((await store.checkMessage!(b.ek, b.pending.id, NOW + 2)).status, 'replay');
  assert.equal((await store.lookupPending(b.pending.id, NOW + 2)).status, 'ok');
  assert.equal((await store.lookupPending(b.revoked.id, NOW + 2)).status, 'revoked');
  assert.equal((await store.getBundle(b.issued))?.state, 'issued');
  assert.deepEqual((await store.listEnrollees('pending')).map((e) => toHex(e.id)), [toHex(b.pending.id)]);
  assert.deepEqual((await store.listEnrollees('revoked')).map((e) => toHex(e.id)), [toHex(b.revoked.id)]);
  assert.deepEqual((await store.listEnrollees('enrolled')).map((e) => toHex(e.id)), [toHex(b.enrolled.id)]);
  // An EK_B accepted before the migration is still refused, for any enrollee.
  await rejectsCode(fx.commit(b.pending, b.pendingBundle, { ekB: b.ek, now: NOW + 2 }), 'ERR_REPLAY');
  // An IK_B enrolled before is still taken.
  await rejectsCode(fx.commit(b.pending, b.pendingBundle, { ikB: b.ik, now: NOW + 2 }), 'ERR_REJECTED');
  // Both refusals rolled back: the pending enrollee enrolls now, once; its OPK is then used.
  assert.equal((await fx.commit(b.pending, b.pendingBundle, { now: NOW + 2 })).state, 'enrolled');
  await rejectsCode(fx.commit(b.pending, b.pendingBundle, { now: NOW + 3 }), 'ERR_OPK_USED');
  assert.equal((await store.getBundle(b.pendingBundle))?.state, 'consumed');
  assert.deepEqual(await store.counts(), { pending: 0, enrolled: 2, revoked: 1 });
  // Revoking an enroller still reaches its live bundles through bundles_live.
  assert.equal(await store.revokeEnroller(fx.alice, NOW + 4), true);
  assert.equal((await store.getBundle(b.issued))?.state, 'revoked');
  assert.equal((await store.getBundle(b.pendingBundle))?.state, 'consumed');
}

function sqliteIndexes(path: string): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('enrollees', 'bundles') AND sql IS NOT NULL ORDER BY name`).pluck().all() as string[]);
  } finally {
    db.close();
  }
}

function sqliteVersion(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return String(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get());
  } finally {
    db.close();
  }
}

/** A SQLite store with data, at schema `version` (4 or 5) with step 4's indexes. */
async function oldSqliteStore(dir: string, version: number): Promise<{ path: string; before: Before }> {
  const path = join(dir, `store-${version}-${randomBytes(4).toString('hex')}.db`);
  const store = SqliteStore.open(path);
  const fx = await seedStore(store);
  const before = await populate(store, fx);
  await store.close();
  const db = new Database(path);
  try {
    sqliteToStep4(db, version);
  } finally {
    db.close();
  }
  assert.deepEqual(sqliteIndexes(path), STEP_4);
  return { path, before };
}

/** The helpers of seedStore on a reopened store: the enrollers and SPK it was populated with. */
async function reseed(store: ServiceStore): Promise<SeededStore> {
  const enrollers = await store.listEnrollers();
  const spk = (await store.currentSignedPrekey())!;
  const alice = enrollers.find((e) => e.name === 'alice')!.publicKey;
  const bob = enrollers.find((e) => e.name === 'bob')!.publicKey;
  return {
    spk,
    alice,
    bob,
    issue: (enroller = alice, expiresAt = NOW + 7 * 86400) => issueOn(store, spk.id, enroller, expiresAt),
    approve: (e, bundleId, opts = {}) =>
      store.approve({ enrolleeId: e.id, eikB: e.eikB, bundleId, petName: 'sensor', enroller: opts.enroller ?? alice, now: opts.now ?? NOW, expiresAt: (opts.now ?? NOW) + (opts.ttl ?? 600) }),
    commit: (e, bundleId, opts = {}) => store.commitEnrollment({ enrolleeId: e.id, bundleId, ekB: opts.ekB ?? rand(32), ikB: opts.ikB ?? rand(32), now: opts.now ?? NOW + 1 }),
  };
}

async function issueOn(store: ServiceStore, spkId: number, enroller: Uint8Array, expiresAt: number): Promise<Uint8Array> {
  const id = rand(16);
  await store.insertBundles([{ id, spkId, opkPublic: rand(32), opkPrivateSealed: rand(60), addr: 'tcp://127.0.0.1:4100', enroller, createdAt: NOW - 50, expiresAt, state: 'issued' }]);
  return id;
}

/** Opens the store at `path` in a process of its own; resolves with its exit code and stderr. */
function openInChild(path: string): Promise<{ code: number | null; stderr: string }> {
  const mod = new URL('../../src/store/sqlite.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `const { SqliteStore } = await import(${JSON.stringify(mod)}); (SqliteStore.open(${JSON.stringify(path)})).close();`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

describe('schema step 6 on SQLite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ockam-schema6-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

  for (const version of [4, 5]) {
    it(`a step-${version} store migrates to ${SCHEMA_VERSION} on its first writable open: the new indexes, the data intact, every guarantee kept`, async () => {
      const { path, before } = await oldSqliteStore(dir, version);
      assert.throws(() => SqliteStore.open(path, { readonly: true }), (e: unknown) => isEnrollError(e, 'ERR_STORE') && new RegExp(`schema version ${version}`).test(e.message));
      const store = SqliteStore.open(path);
      try {
        assert.equal(sqliteVersion(path), String(SCHEMA_VERSION));
        assert.deepEqual(sqliteIndexes(path), STEP_6);
        await checkAfter(store, await reseed(store), before);
      } finally {
        await store.close();
      }
    });
  }

  it('two processes opening a step-4 store at once: both open it, it is migrated once', async () => {
    const { path, before } = await oldSqliteStore(dir, 4);
    const results = await Promise.all([openInChild(path), openInChild(path)]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    assert.equal(sqliteVersion(path), String(SCHEMA_VERSION));
    assert.deepEqual(sqliteIndexes(path), STEP_6);
    const store = SqliteStore.open(path);
    try {
      assert.deepEqual(await store.counts(), before.counts);
    } finally {
      await store.close();
    }
  });

  it('a migration that fails part way rolls back whole: the store stays at step 5 with its indexes, and migrates once the cause is gone', async () => {
    const { path, before } = await oldSqliteStore(dir, 5);
    // A table where step 6 creates an index: its CREATE INDEX fails after the DROPs ran.
    const db = new Database(path);
    db.exec('CREATE TABLE bundles_live (x)');
    db.close();
    assert.throws(() => SqliteStore.open(path), (e: unknown) => isEnrollError(e, 'ERR_STORE') && /bundles_live/.test(e.message));
    assert.equal(sqliteVersion(path), '5');
    assert.deepEqual(sqliteIndexes(path), STEP_4);
    const again = new Database(path);
    again.exec('DROP TABLE bundles_live');
    again.close();
    const store = SqliteStore.open(path);
    try {
      assert.deepEqual(sqliteIndexes(path), STEP_6);
      await checkAfter(store, await reseed(store), before);
    } finally {
      await store.close();
    }
  });
});

function loc(url: string) {
  const l = parseStoreLocation(url, 'test');
  assert.equal(l.kind, 'postgres');
  return l as Extract<typeof l, { kind: 'postgres' }>;
}

async function pgIndexes(url: string): Promise<string[]> {
  // Only the indexes steps 4 and 6 name (lifecycle.ts adds enrollees_revoked_at, which stays).
  const rows = await pgQuery(url, `SELECT indexname FROM pg_indexes WHERE tablename IN ('enrollees', 'bundles') AND indexname = ANY($1) ORDER BY 1`, [[...STEP_4, ...STEP_6]]);
  return rows.map((r) => String(r.indexname));
}

async function pgVersion(url: string): Promise<string> {
  return String((await pgQuery(url, `SELECT value FROM meta WHERE key = 'schema_version'`))[0]!.value);
}

/** A PostgreSQL store with data, at schema 4 with step 4's indexes. */
async function oldPgStore(): Promise<{ url: string; before: Before }> {
  const url = await freshDatabase();
  const db = await PgDatabase.open(loc(url), { poolSize: 2 });
  const store = new PgStore(db);
  const before = await populate(store, await seedStore(store));
  await db.tx((c) => pgToStep4(c));
  await db.close();
  assert.deepEqual(await pgIndexes(url), STEP_4);
  return { url, before };
}

describe('schema step 6 on PostgreSQL', () => {
  it(`replicas opening a step-4 database at once migrate it to ${PG_SCHEMA_VERSION} once, under the advisory lock: data intact, every guarantee kept across them`, async () => {
    const { url, before } = await oldPgStore();
    const dbs = await Promise.all(Array.from({ length: 3 }, () => PgDatabase.open(loc(url), { poolSize: 2 })));
    try {
      assert.equal(await pgVersion(url), String(PG_SCHEMA_VERSION));
      assert.deepEqual(await pgIndexes(url), STEP_6);
      const a = new PgStore(dbs[0]!);
      const b = new PgStore(dbs[1]!);
      // The replay and IK_B refusals from the second replica, the rest from the first.
      const fb = await reseed(b);
      await rejectsCode(fb.commit(before.pending, before.pendingBundle, { ekB: before.ek, now: NOW + 2 }), 'ERR_REPLAY');
      await checkAfter(a, await reseed(a), before);
    } finally {
      await Promise.all(dbs.map((d) => d.close()));
    }
  });

  it('a migration interrupted part way (its backend terminated) leaves the database at step 4 with its indexes; the next open migrates it', async () => {
    const { url, before } = await oldPgStore();
    // Another session holds a lock on bundles, so the migration's DROP INDEX waits inside its transaction.
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE bundles IN ACCESS SHARE MODE');
      const opening = PgDatabase.open(loc(url), { poolSize: 1, applicationName: 'schema6-migrating' }).then(
        (db) => db.close().then(() => 'opened'),
        (err: unknown) => err,
      );
      let waiting: Record<string, unknown>[] = [];
      for (let i = 0; i < 300 && waiting.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        waiting = await pgQuery(url, `SELECT pid FROM pg_stat_activity WHERE application_name = 'schema6-migrating' AND wait_event_type = 'Lock'`);
      }
      assert.equal(waiting.length, 1, 'the migration waits on the held lock');
      await pgQuery(url, `SELECT pg_terminate_backend($1)`, [waiting[0]!.pid]);
      const err = await opening;
      assert.ok(isEnrollError(err, 'ERR_STORE'), `the open failed with ERR_STORE, got ${String(err)}`);
    } finally {
      await holder.query('ROLLBACK').catch(() => undefined);
      await holder.end();
    }
    assert.equal(await pgVersion(url), '4');
    assert.deepEqual(await pgIndexes(url), STEP_4);
    const db = await PgDatabase.open(loc(url), { poolSize: 2 });
    try {
      assert.deepEqual(await pgIndexes(url), STEP_6);
      const store = new PgStore(db);
      await checkAfter(store, await reseed(store), before);
    } finally {
      await db.close();
    }
  });
});
