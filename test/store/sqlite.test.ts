/**
 * What is particular to the SQLite store (src/store/sqlite.ts), on a real database file:
 * connections in racing worker threads sharing one file, the durability pragmas, reopening
 * and the schema version. The guarantees every store keeps (an OPK used at most once, an EK_B
 * accepted at most once, the approval rules, …) are the contract (contract.ts), run against
 * SQLite by contract-sqlite.test.ts.
 */
import { after, before, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { toHex } from '../../src/crypto/bytes.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { SCHEMA_VERSION, SqliteStore } from '../../src/store/sqlite.js';
import { newEnrollee, seedStore, type SeededStore } from './contract.js';

const NOW = 1_700_000_000;
const TTL = 600;

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'ockam-store-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});

let counter = 0;
function dbPath(): string {
  return join(root, `store-${counter++}.db`);
}

function rand(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

function throwsCode(fn: () => unknown, code: ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** A raw read-only connection to the file, as another process would have. */
function writable<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path, { fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

function raw<T>(path: string, fn: (db: Database.Database) => T): T {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

interface Fixture extends SeededStore {
  path: string;
  store: SqliteStore;
}

async function seed(store: SqliteStore, path: string): Promise<Fixture> {
  return { path, store, ...(await seedStore(store)) };
}

async function fixture(): Promise<Fixture> {
  const path = dbPath();
  return seed(SqliteStore.open(path), path);
}

// ---- two connections on one file

/**
 * Runs in a worker thread (plain JS, eval'd): opens its own SqliteStore on the file, waits at
 * a barrier so that every worker starts its transaction at once, runs one operation and
 * posts the outcome.
 */
const WORKER_SOURCE = `
const { workerData, parentPort } = require('node:worker_threads');
(async () => {
  const { SqliteStore } = await import(workerData.storeUrl);
  const store = SqliteStore.open(workerData.path);
  const flag = new Int32Array(workerData.sab);
  Atomics.add(flag, 1, 1);
  Atomics.wait(flag, 0, 0);
  try {
    const rec = workerData.op === 'commit'
      ? await store.commitEnrollment(workerData.input)
      : await store.approve(workerData.input);
    parentPort.postMessage({ ok: true, state: rec.state });
  } catch (e) {
    parentPort.postMessage({ ok: false, code: e && e.code, message: String(e && e.message) });
  } finally {
    await store.close();
  }
})();
`;

interface RaceResult {
  ok: boolean;
  state?: string;
  code?: string;
  message?: string;
}

async function race(path: string, op: 'commit' | 'approve', inputs: unknown[]): Promise<RaceResult[]> {
  const sab = new SharedArrayBuffer(8);
  const flag = new Int32Array(sab);
  const storeUrl = new URL('../../src/store/sqlite.js', import.meta.url).href;
  const workers = inputs.map((input) => new Worker(WORKER_SOURCE, { eval: true, workerData: { storeUrl, path, sab, op, input } }));
  const results = workers.map(
    (w) =>
      new Promise<RaceResult>((resolve, reject) => {
        w.once('message', resolve);
        w.on('error', reject); // kept: a late error must not crash the test process
        w.once('exit', (code) => reject(new Error(`worker exited with ${code} before answering`)));
      }),
  );
  const deadline = Date.now() + 20_000;
  while (Atomics.load(flag, 1) < workers.length) {
    if (Date.now() > deadline) throw new Error('workers did not reach the barrier');
    await new Promise((r) => setTimeout(r, 5));
  }
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  try {
    return await Promise.all(results);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

describe('SqliteStore: two connections on one file', () => {
  // A second instance seeing the first one's commits: the store contract (contract.ts), which
  // runs on SQLite with a second connection to the same file.
  it('racing commitEnrollment for one bundle from 8 connections in 8 threads: exactly one succeeds', async () => {
    const fx = await fixture();
    try {
      const e = newEnrollee();
      const b = await fx.issue();
      await fx.approve(e, b);
      const inputs = Array.from({ length: 8 }, () => ({ enrolleeId: e.id, bundleId: b, ekB: rand(32), ikB: rand(32), now: NOW + 1 }));
      const results = await race(fx.path, 'commit', inputs);
      const ok = results.filter((r) => r.ok);
      assert.equal(ok.length, 1, JSON.stringify(results));
      assert.equal(ok[0]?.state, 'enrolled');
      for (const r of results.filter((x) => !x.ok)) assert.equal(r.code, 'ERR_OPK_USED', r.message);
      // Exactly one EK_B was recorded: the winner's.
      const accepted = await Promise.all(inputs.map((i) => fx.store.isEkAccepted(i.ekB)));
      assert.equal(accepted.filter(Boolean).length, 1);
      assert.equal((await fx.store.getBundle(b))?.state, 'consumed');
    } finally {
      await fx.store.close();
    }
  });

  it('racing the same EK_B from 8 connections: exactly one succeeds, the rest are ERR_REPLAY', async () => {
    const fx = await fixture();
    try {
      const e = newEnrollee();
      const b = await fx.issue();
      await fx.approve(e, b);
      const ekB = rand(32);
      const inputs = Array.from({ length: 8 }, () => ({ enrolleeId: e.id, bundleId: b, ekB, ikB: rand(32), now: NOW + 1 }));
      const results = await race(fx.path, 'commit', inputs);
      assert.equal(results.filter((r) => r.ok).length, 1, JSON.stringify(results));
      for (const r of results.filter((x) => !x.ok)) assert.equal(r.code, 'ERR_REPLAY', r.message);
    } finally {
      await fx.store.close();
    }
  });

  it('racing approvals of one bundle for 8 enrollees: exactly one succeeds, the rest are ERR_BUNDLE_USED', async () => {
    const fx = await fixture();
    try {
      const b = await fx.issue();
      const inputs = Array.from({ length: 8 }, () => {
        const e = newEnrollee();
        return { enrolleeId: e.id, eikB: e.eikB, bundleId: b, petName: null, enroller: fx.alice, now: NOW, expiresAt: NOW + TTL };
      });
      const results = await race(fx.path, 'approve', inputs);
      assert.equal(results.filter((r) => r.ok).length, 1, JSON.stringify(results));
      for (const r of results.filter((x) => !x.ok)) assert.equal(r.code, 'ERR_BUNDLE_USED', r.message);
      assert.deepEqual(await fx.store.counts(), { pending: 1, enrolled: 0, revoked: 0 });
    } finally {
      await fx.store.close();
    }
  });
});

describe('SqliteStore: durability settings', () => {
  it("the store's own connection runs WAL with synchronous=FULL (2), on creation and on reopen", async () => {
    const path = dbPath();
    for (const round of ['create', 'reopen']) {
      // synchronous is per connection (a fresh connection to a WAL file gets NORMAL, 1), so
      // it is read on the very connection the store opened, caught by spying on pragma().
      const spy = mock.method(Database.prototype, 'pragma');
      let store: SqliteStore | undefined;
      try {
        store = SqliteStore.open(path);
      } finally {
        spy.mock.restore();
      }
      try {
        const conns = new Set(spy.mock.calls.map((c) => c.this as Database.Database));
        assert.equal(conns.size, 1, `${round}: one connection`);
        const db = [...conns][0]!;
        assert.equal(db.pragma('journal_mode', { simple: true }), 'wal', round);
        assert.equal(db.pragma('synchronous', { simple: true }), 2, `${round}: synchronous=FULL`);
        assert.equal(db.pragma('foreign_keys', { simple: true }), 1, round);
        assert.ok(Number(db.pragma('busy_timeout', { simple: true })) > 0, `${round}: waits for a busy writer`);
      } finally {
        await store?.close();
      }
    }
    // WAL is a property of the file: another connection sees it too.
    raw(path, (db) => assert.equal(db.pragma('journal_mode', { simple: true }), 'wal'));
  });

  it('a read-only store runs synchronous=FULL too and cannot write', async () => {
    const fx = await fixture();
    await fx.store.close();
    const spy = mock.method(Database.prototype, 'pragma');
    let ro: SqliteStore | undefined;
    try {
      ro = SqliteStore.open(fx.path, { readonly: true });
    } finally {
      spy.mock.restore();
    }
    try {
      const db = spy.mock.calls[0]!.this as Database.Database;
      assert.equal(db.readonly, true);
      assert.equal(db.pragma('synchronous', { simple: true }), 2);
      assert.equal((await ro.listEnrollers()).length, 2);
      await assert.rejects(ro.allowEnroller(rand(32), null, NOW));
    } finally {
      await ro.close();
    }
  });
});

describe('SqliteStore: reopening and the schema version', () => {
  it('everything survives close and reopen', async () => {
    const fx = await fixture();
    const e = newEnrollee();
    const p = newEnrollee();
    const b1 = await fx.issue();
    const b2 = await fx.issue();
    await fx.approve(e, b1);
    const ek = rand(32);
    const ikB = rand(32);
    const enrolled = await fx.commit(e, b1, { ekB: ek, ikB });
    const pending = await fx.approve(p, b2, { petName: 'pump-7' });
    await fx.store.recordFailure(p.id);
    await fx.store.close();
    await fx.store.close(); // closing twice is harmless

    const again = SqliteStore.open(fx.path);
    try {
      assert.equal((await again.listEnrollers()).length, 2);
      assert.deepEqual(await again.currentSignedPrekey(), fx.spk);
      assert.equal(await again.isEkAccepted(ek), true);
      assert.deepEqual(await again.findEnrollee(toHex(e.id)), enrolled);
      assert.deepEqual(await again.getEnrolleeByIdentityKey(ikB), enrolled);
      assert.deepEqual(await again.findEnrollee(toHex(p.id)), { ...pending, failedAttempts: 1 });
      assert.equal((await again.getBundle(b1))?.state, 'consumed');
      assert.equal((await again.getBundle(b2))?.state, 'approved');
      assert.deepEqual(await again.counts(), { pending: 1, enrolled: 1, revoked: 0 });
      assert.equal((await again.lookupPending(p.id, NOW + 1)).status, 'ok');
      raw(fx.path, (db) =>
        assert.equal(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION)),
      );
    } finally {
      await again.close();
    }
  });

  it('refuses a store of a future schema version (ERR_STORE), read-write or read-only, without touching it', async () => {
    const fx = await fixture();
    await fx.store.close();
    const future = String(SCHEMA_VERSION + 1);
    {
      const db = new Database(fx.path);
      db.prepare(`UPDATE meta SET value = ? WHERE key = 'schema_version'`).run(future);
      // A future version might have dropped a table this version would create.
      db.exec('DROP TABLE accepted_ek');
      db.close();
    }
    throwsCode(() => SqliteStore.open(fx.path), 'ERR_STORE');
    assert.throws(() => SqliteStore.open(fx.path), /schema version/);
    throwsCode(() => SqliteStore.open(fx.path, { readonly: true }), 'ERR_STORE');
    raw(fx.path, (db) => {
      assert.equal(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), future);
      const t = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'accepted_ek'`).get();
      assert.equal(t, undefined, 'the refused store was not migrated behind its back');
    });
  });

  it('a schema 2 store migrates (through 3) to the current version on its first writable open: rows kept, no attributes, no scopes; read-only opens refuse it', async () => {
    const fx = await fixture();
    const e = newEnrollee();
    const b = await fx.issue();
    await fx.approve(e, b, { petName: 'pump-7' });
    const enrolled = await fx.commit(e, b);
    await fx.store.close();
    // Make it a schema 2 store, as ockam-enroll before attributes left it.
    writable(fx.path, (db) => db.exec(`ALTER TABLE enrollees DROP COLUMN attributes; ALTER TABLE enrollers DROP COLUMN scopes; UPDATE meta SET value = '2' WHERE key = 'schema_version'`));
    assert.throws(() => SqliteStore.open(fx.path, { readonly: true }), (e: unknown) => isEnrollError(e, 'ERR_STORE') && /schema version 2/.test(e.message) && /upgrades the store/.test(e.hint ?? ''));
    const again = SqliteStore.open(fx.path);
    try {
      assert.deepEqual(await again.findEnrollee(toHex(e.id)), { ...enrolled, attributes: {} });
      assert.equal((await again.getEnroller(fx.alice))?.scopes, undefined);
      const r = await again.setAttributes(e.id, { role: 'sensor' }, []);
      assert.deepEqual(r?.after.attributes, { role: 'sensor' });
    } finally {
      await again.close();
    }
    raw(fx.path, (db) => assert.equal(db.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION)));
  });

  it('a hand-edited attributes column is refused on read (ERR_STORE), not trusted', async () => {
    const fx = await fixture();
    const e = newEnrollee();
    await fx.approve(e, await fx.issue());
    await fx.store.close();
    writable(fx.path, (db) => db.prepare(`UPDATE enrollees SET attributes = ? WHERE id = ?`).run('{"Role":"x"}', Buffer.from(e.id)));
    const again = SqliteStore.open(fx.path);
    try {
      await assert.rejects(again.findEnrollee(toHex(e.id)), (err: unknown) => isEnrollError(err, 'ERR_STORE'));
    } finally {
      await again.close();
    }
  });

  it('a file that is not a database, or a missing file opened read-only, is ERR_STORE', () => {
    const path = dbPath();
    throwsCode(() => SqliteStore.open(path, { readonly: true }), 'ERR_STORE');
    throwsCode(() => SqliteStore.open(root), 'ERR_STORE');
  });
});
