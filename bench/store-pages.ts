/**
 * What one enrollment's durable commit writes (issue 23 item 3), and what the schema
 * migration costs on a big store. Not part of `npm run bench`: run it by hand,
 *
 *   node scripts/build.mjs && node dist/bench/store-pages.js [--enrollees N] [--batches K]
 *     [--batch B] [--migrate] [--pg] [--keep DIR]
 *
 * SQLite: a store of N background enrollees (half pending with an approved bundle, half
 * enrolled with an accepted EK_B, as bench/fixtures.ts bulkLoad makes them), then K batches
 * of B enrollments committed through SqliteStore.commitEnrollments (the commit thread's
 * call), with the commit thread's pragmas (32 MiB page cache, no checkpoint beside it). Each
 * commit appends every page it dirtied to the WAL once, so the WAL's growth per batch
 * (frames of page size + 24 bytes) is the pages the batch wrote; reported per enrollment,
 * with the thread's CPU µs per enrollment (process.cpuUsage around the call: the statements,
 * the WAL writes and the fsync's kernel time).
 *
 * --migrate: the store is made at schema step 4 (test/helpers/old-schema.ts) before it is
 * loaded, and the first writable open that migrates it is timed against a second open that
 * finds nothing to do.
 *
 * --schema 5: the commits are measured on the indexes before step 6 (step 4's, which step 5
 * kept: enrollees_state, the full unique enrollees_ik_b, bundles_enroller), to compare with
 * a run at the current schema. The store is made at step 6, its indexes swapped for step 4's
 * before the load (so that both runs' indexes grow by the same random inserts), its version
 * row left at 6 so that no open migrates it; the open of the commit connection creates
 * step 6's two new partial indexes again (SCHEMA, IF NOT EXISTS), and they are dropped on
 * another connection before the first commit. `indexes` in the output lists what the commits
 * ran against. Not with --migrate.
 *
 * --pg: the same on a throwaway PostgreSQL cluster (scripts/pg-cluster.mjs), N rows loaded
 * with generate_series; per batch, EXPLAIN (ANALYZE, BUFFERS, WAL) of the commit function
 * gives the shared blocks it dirtied and the WAL it wrote, and the backend's /proc stat its
 * CPU (utime + stime over the counted batches, EXPLAIN's timing included). With --migrate,
 * the database is made at step 4 and PgDatabase.open's migration is timed, while a second
 * open (another replica starting) runs beside it: the output says whether the migrating
 * connection held the advisory lock (pg_locks) while it ran, and when the second open
 * returned (after the first: it waited on the lock, then found schema 6).
 *
 * Prints one JSON object on stdout.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { SCHEMA_VERSION, SqliteStore } from '../src/store/sqlite.js';
import { PG_SCHEMA_VERSION, PgDatabase } from '../src/store/pg/database.js';
import { PgStore } from '../src/store/pg/store.js';
import { parseStoreLocation } from '../src/store/location.js';
import type { CommitEnrollmentInput } from '../src/store/types.js';
import { sqliteToStep4, pgToStep4 } from '../test/helpers/old-schema.js';
import { bulkLoad, storePath } from './fixtures.js';

function arg(name: string, def: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return def;
  const v = Number(process.argv[i + 1]);
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`--${name} wants a non-negative integer`);
  return v;
}
const flag = (name: string) => process.argv.includes(`--${name}`);

const N = arg('enrollees', 100_000);
const BATCHES = arg('batches', 60);
const BATCH = arg('batch', 32);
/** Batches run first and not counted: the page cache fills with the trees' upper levels. */
const WARM = Math.min(10, Math.floor(BATCHES / 3));
/** The schema step whose indexes the commits run against (--schema 5: before step 6). */
const SCHEMA = arg('schema', SCHEMA_VERSION);
if (SCHEMA !== SCHEMA_VERSION && SCHEMA !== 5) throw new Error(`--schema wants 5 or ${SCHEMA_VERSION}`);
if (SCHEMA !== SCHEMA_VERSION && flag('migrate')) throw new Error('--schema 5 measures commits before step 6; --migrate ends at step 6: not both');
/** Step 6's indexes that step 4 (and 5) did not have, by name; enrollees_ik_b is in both, partial only in 6. */
const STEP_6_ONLY = ['enrollees_open', 'bundles_live'];
const NOW = Math.floor(Date.now() / 1000);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

async function sqlite(): Promise<Record<string, unknown>> {
  const home = mkdtempSync(join(tmpdir(), 'ockam-pages-'));
  try {
    mkdirSync(join(home, 'service'), { recursive: true });
    const path = storePath(home);
    const first = SqliteStore.open(path);
    await first.allowEnroller(randomBytes(32), 'pages', NOW - 100);
    await first.addSignedPrekey({ publicKey: randomBytes(32), privateSealed: randomBytes(60), signature: randomBytes(64), createdAt: NOW - 100 });
    await first.close();
    const migrate = flag('migrate');
    if (migrate) {
      const db = new Database(path);
      try {
        sqliteToStep4(db);
      } finally {
        db.close();
      }
    } else if (SCHEMA === 5) {
      const db = new Database(path);
      try {
        sqliteToStep4(db, SCHEMA_VERSION);
      } finally {
        db.close();
      }
    }
    // Pending rows beyond N: the ones this run enrolls.
    const target = BATCHES * BATCH;
    const t0 = performance.now();
    bulkLoad(home, { pending: Math.floor(N / 2) + target, enrolled: N - Math.floor(N / 2), now: NOW });
    const loadS = (performance.now() - t0) / 1000;
    const out: Record<string, unknown> = { store: 'sqlite', enrollees: N, load_s: round(loadS), file_mb: round(statSync(path).size / 2 ** 20) };
    if (migrate) {
      const m0 = performance.now();
      (await SqliteStore.open(path, { integrityCheck: false })).close();
      const migrateS = (performance.now() - m0) / 1000;
      const o0 = performance.now();
      (await SqliteStore.open(path, { integrityCheck: false })).close();
      const openS = (performance.now() - o0) / 1000;
      Object.assign(out, { migrate_from: 4, migrate_to: SCHEMA_VERSION, migrate_s: round(migrateS, 2), open_without_migration_s: round(openS, 3), file_mb_after: round(statSync(path).size / 2 ** 20) });
    }
    const picks = pickPending(path, target);
    const store = SqliteStore.open(path, { integrityCheck: false, cacheKiB: 32 * 1024, walAutocheckpointPages: 1_000_000_000 });
    let pageSize: number;
    let indexes: string[];
    {
      const db = new Database(path);
      try {
        if (SCHEMA === 5) db.exec(STEP_6_ONLY.map((n) => `DROP INDEX IF EXISTS ${n};`).join(' '));
        pageSize = Number(db.pragma('page_size', { simple: true }));
        indexes = indexList(db.prepare(`SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('enrollees', 'bundles', 'accepted_ek') AND sql IS NOT NULL ORDER BY name`).all() as { name: string; sql: string }[]);
      } finally {
        db.close();
      }
    }
    const walSize = () => {
      try {
        return statSync(`${path}-wal`).size;
      } catch {
        return 0;
      }
    };
    const frames: number[] = [];
    const walBytes: number[] = [];
    const cpu: number[] = [];
    const wall: number[] = [];
    try {
      for (let k = 0; k < BATCHES; k++) {
        const inputs: CommitEnrollmentInput[] = picks.slice(k * BATCH, (k + 1) * BATCH).map((p) => ({ enrolleeId: p.id, bundleId: p.bundle, ekB: randomBytes(32), ikB: randomBytes(32), now: NOW }));
        const w0 = walSize();
        const c0 = process.cpuUsage();
        const t = performance.now();
        const r = await store.commitEnrollments(inputs);
        const dt = performance.now() - t;
        const c = process.cpuUsage(c0);
        for (const x of r) if (!('state' in x) || x.state !== 'enrolled') throw new Error(`a commit failed: ${String(x)}`);
        if (k < WARM) continue;
        frames.push((walSize() - w0) / (pageSize + 24));
        walBytes.push(walSize() - w0);
        cpu.push((c.user + c.system) / BATCH);
        wall.push(dt);
      }
    } finally {
      await store.close();
    }
    Object.assign(out, {
      schema: SCHEMA,
      indexes,
      batch: BATCH,
      batches_counted: frames.length,
      page_size: pageSize,
      pages_per_batch: median(frames),
      pages_per_enrollment: round(median(frames) / BATCH, 2),
      wal_bytes_per_enrollment: Math.round(median(walBytes) / BATCH),
      cpu_us_per_enrollment: round(median(cpu)),
      batch_ms: round(median(wall), 2),
      load_1m: round(loadavg()[0]!, 2),
    });
    return out;
  } finally {
    if (!flag('keep')) rmSync(home, { recursive: true, force: true });
  }
}

/** Index names, `(partial)` after those with a WHERE clause: what the commits maintain. */
function indexList(rows: { name: string; sql: string }[]): string[] {
  return rows.map((r) => (/\bWHERE\b/i.test(r.sql) ? `${r.name} (partial)` : r.name));
}

/** A process's CPU (user + system) in µs, from /proc/PID/stat (clock ticks of 1/100 s on Linux). */
function procCpuUs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 (utime, stime) of proc(5); f[0] is field 3.
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/** Pending enrollees with their approved bundles, in random order. */
function pickPending(path: string, n: number): { id: Buffer; bundle: Buffer }[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(`SELECT id, bundle_id AS bundle FROM enrollees WHERE state = 'pending' ORDER BY random() LIMIT ?`).all(n) as { id: Buffer; bundle: Buffer }[];
  } finally {
    db.close();
  }
}

async function postgres(): Promise<Record<string, unknown>> {
  const { startCluster } = (await import(new URL('../../scripts/pg-cluster.mjs', import.meta.url).href)) as {
    startCluster(): Promise<{ url: string; dir: string; stop(): void }>;
  };
  const cluster = await startCluster();
  try {
    const admin = new pg.Client({ connectionString: cluster.url });
    await admin.connect();
    await admin.query('CREATE DATABASE pages');
    await admin.end();
    const u = new URL(cluster.url);
    u.pathname = '/pages';
    const url = u.toString();
    const loc = parseStoreLocation(url, 'bench');
    if (loc.kind !== 'postgres') throw new Error('not a postgres URL');
    const migrate = flag('migrate');
    {
      const db = await PgDatabase.open(loc, { poolSize: 2 });
      const store = new PgStore(db);
      await store.addSignedPrekey({ publicKey: randomBytes(32), privateSealed: randomBytes(60), signature: randomBytes(64), createdAt: NOW - 100 });
      if (migrate) await db.tx((c) => pgToStep4(c));
      else if (SCHEMA === 5) await db.tx((c) => pgToStep4(c, PG_SCHEMA_VERSION));
      await db.close();
    }
    const target = BATCHES * BATCH;
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    const t0 = performance.now();
    // Half pending (approved bundle, sealed-size OPK), half enrolled (consumed bundle, IK_B,
    // accepted EK_B), as bulkLoad; random bytes from gen_random_uuid, 16 at a time.
    const pending = Math.floor(N / 2) + target;
    const enrolled = N - Math.floor(N / 2);
    await c.query(`CREATE TEMP TABLE g AS SELECT i, uuid_send(gen_random_uuid()) AS bid, sha256(uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid())) AS eid,
                     sha256(uuid_send(gen_random_uuid())) AS k1, sha256(uuid_send(gen_random_uuid())) AS k2 FROM generate_series(1, $1::int) i`, [pending + enrolled]);
    await c.query(`INSERT INTO bundles (id, spk_id, opk_public, opk_private_sealed, addr, enroller, created_at, expires_at, state)
                   SELECT bid, (SELECT max(id) FROM signed_prekeys), k1, CASE WHEN i <= $1 THEN k2 || k2 ELSE NULL END, 'tcp://127.0.0.1:4100', sha256(int4send(i % 16)),
                          $2::bigint - 3600, $2::bigint + 604800, CASE WHEN i <= $1 THEN 'approved' ELSE 'consumed' END FROM g`, [pending, NOW]);
    await c.query(`INSERT INTO enrollees (id, method, state, eik_b, ik_b, pet_name, enroller, bundle_id, approved_at, expires_at, enrolled_at)
                   SELECT eid, 'x3dh', CASE WHEN i <= $1 THEN 'pending' ELSE 'enrolled' END, CASE WHEN i <= $1 THEN k2 ELSE NULL END,
                          CASE WHEN i <= $1 THEN NULL ELSE k2 END, 'device-' || i, sha256(int4send(i % 16)), bid, $2::bigint - 600,
                          $2::bigint + 2592000, CASE WHEN i <= $1 THEN NULL ELSE $2::bigint - 80000 END FROM g`, [pending, NOW]);
    await c.query(`INSERT INTO accepted_ek (ek_b, accepted_at) SELECT sha256(k1 || k2), $2::bigint - 80000 FROM g WHERE i > $1`, [pending, NOW]);
    await c.query('VACUUM ANALYZE');
    const loadS = (performance.now() - t0) / 1000;
    const out: Record<string, unknown> = { store: 'postgres', enrollees: N, load_s: round(loadS) };
    const picks = (await c.query(`SELECT id, bundle_id AS bundle FROM enrollees WHERE state = 'pending' ORDER BY random() LIMIT $1`, [target])).rows as { id: Buffer; bundle: Buffer }[];
    await c.query('CHECKPOINT');
    if (migrate) {
      // Two replicas starting together: the first migrates; the second, started once the
      // first holds the advisory lock, must wait for it and then find nothing to do.
      const opened = (name: string, t0: number) =>
        PgDatabase.open(loc, { poolSize: 1, applicationName: name }).then(async (db) => {
          const s = (performance.now() - t0) / 1000;
          await db.close();
          return s;
        });
      const holders = async () =>
        (await c.query(`SELECT a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted`)).rows.map((r) => String(r.app));
      const m0 = performance.now();
      let migrateDone = false;
      const migrating = opened('pages-migrate', m0).finally(() => {
        migrateDone = true;
      });
      let held = false;
      for (let i = 0; i < 3000 && !held && !migrateDone; i++) {
        held = (await holders()).includes('pages-migrate');
        if (!held) await new Promise((r) => setTimeout(r, 10));
      }
      const w0 = performance.now();
      const waiting = opened('pages-waiter', m0);
      // While the first migrates: who holds the lock (only it, never the second).
      const seen = new Set<string>();
      let samples = 0;
      while (!migrateDone) {
        for (const h of await holders()) seen.add(h);
        samples++;
        await new Promise((r) => setTimeout(r, 50));
      }
      const migrateS = await migrating;
      const waiterS = await waiting;
      const o0 = performance.now();
      await (await PgDatabase.open(loc, { poolSize: 1 })).close();
      const version = String((await c.query(`SELECT value FROM meta WHERE key = 'schema_version'`)).rows[0]!.value);
      const idx = (await c.query(`SELECT indexname AS name, indexdef AS sql FROM pg_indexes WHERE tablename IN ('enrollees', 'bundles', 'accepted_ek') ORDER BY 1`)).rows as { name: string; sql: string }[];
      Object.assign(out, {
        migrate_from: 4,
        migrate_to: PG_SCHEMA_VERSION,
        migrate_s: round(migrateS, 2),
        advisory_lock_held_by_migrator: held,
        advisory_lock_holders_during_migration: [...seen].sort(),
        lock_samples: samples,
        second_replica_started_after_s: round((w0 - m0) / 1000, 2),
        second_replica_opened_after_s: round(waiterS, 2),
        second_replica_waited: waiterS >= migrateS,
        version_after: version,
        open_without_migration_s: round((performance.now() - o0) / 1000, 3),
        indexes_after: indexList(idx.filter((r) => !r.name.endsWith('_pkey'))),
      });
      await c.query('VACUUM ANALYZE');
      await c.query('CHECKPOINT');
    }
    // The function as the store calls it, under EXPLAIN: its buffers and WAL, nested statements included.
    await c.query('SET synchronous_commit = on');
    const idx = (await c.query(`SELECT indexname AS name, indexdef AS sql FROM pg_indexes WHERE tablename IN ('enrollees', 'bundles', 'accepted_ek') ORDER BY 1`)).rows as { name: string; sql: string }[];
    const backend = Number((await c.query('SELECT pg_backend_pid() AS pid')).rows[0]!.pid);
    let cpuUs = 0;
    const dirtied: number[] = [];
    const walBytes: number[] = [];
    const fpi: number[] = [];
    const wall: number[] = [];
    for (let k = 0; k < BATCHES; k++) {
      const batch = picks.slice(k * BATCH, (k + 1) * BATCH);
      const t = performance.now();
      const cpu0 = procCpuUs(backend);
      const r = await c.query(
        `EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) SELECT o_idx, o_outcome FROM ockam_commit_enrollments($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint)`,
        [batch.map((p) => p.id), batch.map((p) => p.bundle), batch.map(() => randomBytes(32)), batch.map(() => randomBytes(32)), NOW],
      );
      const dt = performance.now() - t;
      const cpu1 = procCpuUs(backend);
      const plan = (r.rows[0]!['QUERY PLAN'] as { Plan: Record<string, number> }[])[0]!.Plan;
      if (k < WARM) continue;
      cpuUs += cpu1 - cpu0;
      dirtied.push(plan['Shared Dirtied Blocks']!);
      walBytes.push(plan['WAL Bytes']!);
      fpi.push(plan['WAL FPI']!);
      wall.push(dt);
    }
    const ok = Number((await c.query(`SELECT count(*) AS n FROM enrollees WHERE state = 'enrolled'`)).rows[0]!.n);
    if (ok !== enrolled + target) throw new Error(`expected ${enrolled + target} enrolled, found ${ok}`);
    await c.end();
    Object.assign(out, {
      schema: SCHEMA,
      indexes: indexList(idx.filter((r) => !r.name.endsWith('_pkey'))),
      batch: BATCH,
      batches_counted: dirtied.length,
      backend_cpu_us_per_enrollment: round(cpuUs / (dirtied.length * BATCH)),
      dirtied_blocks_per_enrollment: round(median(dirtied) / BATCH, 2),
      wal_bytes_per_enrollment: Math.round(median(walBytes) / BATCH),
      wal_fpi_per_enrollment: round(median(fpi) / BATCH, 2),
      batch_ms: round(median(wall), 2),
      load_1m: round(loadavg()[0]!, 2),
    });
    return out;
  } finally {
    cluster.stop();
    rmSync(cluster.dir, { recursive: true, force: true });
  }
}

const result = flag('pg') ? await postgres() : await sqlite();
process.stdout.write(`${JSON.stringify(result)}\n`);
