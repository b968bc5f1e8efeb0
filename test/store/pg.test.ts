/**
 * What is particular to the PostgreSQL store (src/store/pg), on the test cluster: the schema
 * version and its migration by replicas starting together; the audit chain appended from two
 * pools at once; the per-enroller rate bucket shared by two pools; an unreachable server or a
 * refused login as ERR_STORE with the password masked; synchronous_commit=on per session.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { verifyChain } from '../../src/audit/chain.js';
import { isEnrollError } from '../../src/errors.js';
import { parseStoreLocation, maskSecret } from '../../src/store/location.js';
import { PgAuditStore } from '../../src/store/pg/audit.js';
import { PG_SCHEMA_VERSION, PgDatabase } from '../../src/store/pg/database.js';
import { PgLifecycleStore } from '../../src/store/pg/lifecycle.js';
import { PgTokenBuckets } from '../../src/store/pg/limits.js';
import { PgStore } from '../../src/store/pg/store.js';
import { freePort } from '../helpers/cli.js';
import { freshDatabase, pgQuery } from '../helpers/pg.js';

function loc(url: string) {
  const l = parseStoreLocation(url, 'test');
  assert.equal(l.kind, 'postgres');
  return l as Extract<typeof l, { kind: 'postgres' }>;
}

describe('PgDatabase: schema and sessions', () => {
  it('replicas opening a new database at once migrate it once; the version is recorded', async () => {
    const url = await freshDatabase();
    const dbs = await Promise.all(Array.from({ length: 4 }, () => PgDatabase.open(loc(url), { poolSize: 2 })));
    try {
      const rows = await pgQuery(url, `SELECT value FROM meta WHERE key = 'schema_version'`);
      assert.deepEqual(rows, [{ value: String(PG_SCHEMA_VERSION) }]);
      // Every session commits synchronously, whatever the database default.
      await pgQuery(url, `ALTER DATABASE ${new URL(url).pathname.slice(1)} SET synchronous_commit = off`);
      const db = await PgDatabase.open(loc(url), { poolSize: 1 });
      try {
        assert.equal((await db.query('SHOW synchronous_commit')).rows[0]!.synchronous_commit, 'on');
      } finally {
        await db.close();
      }
    } finally {
      await Promise.all(dbs.map((d) => d.close()));
    }
  });

  it('a schema 1 database migrates to 3 under the advisory lock: attributes and scopes columns, the commit function returning attributes', async () => {
    const url = await freshDatabase();
    await (await PgDatabase.open(loc(url), { poolSize: 1 })).close();
    await pgQuery(url, `ALTER TABLE enrollees DROP COLUMN attributes`);
    await pgQuery(url, `ALTER TABLE enrollers DROP COLUMN scopes`);
    await pgQuery(url, `UPDATE meta SET value = '1' WHERE key = 'schema_version'`);
    const dbs = await Promise.all(Array.from({ length: 3 }, () => PgDatabase.open(loc(url), { poolSize: 1 })));
    try {
      assert.deepEqual(await pgQuery(url, `SELECT value FROM meta WHERE key = 'schema_version'`), [{ value: String(PG_SCHEMA_VERSION) }]);
      const cols = await pgQuery(url, `SELECT table_name, column_name FROM information_schema.columns WHERE column_name IN ('attributes', 'scopes') ORDER BY 1`);
      assert.deepEqual(cols, [{ table_name: 'enrollees', column_name: 'attributes' }, { table_name: 'enrollers', column_name: 'scopes' }]);
      const fn = await pgQuery(url, `SELECT prosrc FROM pg_proc WHERE proname = 'ockam_commit_enrollments'`);
      assert.match(String(fn[0]!.prosrc), /'attributes', e_row\.attributes/);
    } finally {
      await Promise.all(dbs.map((d) => d.close()));
    }
  });

  it('refuses a database of another schema version (ERR_STORE), without changing it', async () => {
    const url = await freshDatabase();
    await (await PgDatabase.open(loc(url), { poolSize: 1 })).close();
    await pgQuery(url, `UPDATE meta SET value = '99' WHERE key = 'schema_version'`);
    await assert.rejects(PgDatabase.open(loc(url), { poolSize: 1 }), (e: unknown) => isEnrollError(e, 'ERR_STORE') && /schema version 99/.test((e as Error).message));
    assert.deepEqual(await pgQuery(url, `SELECT value FROM meta WHERE key = 'schema_version'`), [{ value: '99' }]);
  });

  it('an unreachable server, or a refused login, is ERR_STORE naming the store with its password masked', async () => {
    const port = await freePort();
    const secret = 'S3cr3t-pass';
    await assert.rejects(PgDatabase.open(loc(`postgres://ockam:${secret}@127.0.0.1:${port}/x`), { poolSize: 1 }), (e: unknown) => {
      assert.ok(isEnrollError(e, 'ERR_STORE'), String(e));
      assert.match(e.message, /unreachable/);
      assert.ok(e.message.includes(`postgres://ockam:***@127.0.0.1:${port}/x`), e.message);
      assert.ok(!e.message.includes(secret) && !JSON.stringify(e).includes(secret));
      return true;
    });
    const l = loc(`postgres://ockam:${secret}@127.0.0.1:5432/x`);
    assert.equal(maskSecret(`password ${secret} and ${encodeURIComponent(secret)}`, l), 'password *** and ***');
  });
});

describe('PgAuditStore: one chain from several pools', () => {
  it('appends racing from two pools serialise into one chain that verifies', async () => {
    const url = await freshDatabase();
    const a = await PgDatabase.open(loc(url), { poolSize: 4 });
    const b = await PgDatabase.open(loc(url), { poolSize: 4 });
    try {
      const sa = new PgAuditStore(a);
      const sb = new PgAuditStore(b);
      const entry = (who: string, i: number) => ({ time: new Date().toISOString(), event: 'accepted', fields: { who, i } });
      await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? sa : sb).append([entry(i % 2 ? 'a' : 'b', i), entry(i % 2 ? 'a' : 'b', i + 1000)])),
      );
      const rows = [];
      for await (const r of sa.rows()) rows.push(r);
      assert.equal(rows.length, 80);
      const report = verifyChain(rows);
      assert.deepEqual(report.problems, []);
      assert.equal(report.head?.seq, 80);
      const [head] = await pgQuery(url, `SELECT seq, encode(hash, 'hex') AS hash FROM audit_head`);
      assert.equal(Number(head!.seq), 80);
      assert.equal(head!.hash, report.head?.hash);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('PgTokenBuckets: a per-enroller bucket shared by replicas', () => {
  it('a burst of 5 allows 5 requests in all, whichever of two pools takes them', async () => {
    const url = await freshDatabase();
    const a = await PgDatabase.open(loc(url), { poolSize: 4 });
    const b = await PgDatabase.open(loc(url), { poolSize: 4 });
    try {
      // 5 per hour: nothing refills during the test.
      const spec = { burst: 5, perSecond: 5 / 3600, text: '5/h' };
      const ba = new PgTokenBuckets(a, 'enroller', spec);
      const bb = new PgTokenBuckets(b, 'enroller', spec);
      const waits = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? ba : bb).take('k1')));
      assert.equal(waits.filter((w) => w === 0).length, 5, JSON.stringify(waits));
      for (const w of waits.filter((x) => x !== 0)) assert.ok(w > 0);
      assert.equal(await ba.take('k2'), 0, 'another key has its own bucket');
    } finally {
      await a.close();
      await b.close();
    }
  });
});

describe('PgLifecycleStore: retired ML-KEM seeds (EKA v2, docs/protocol.md §5A.6)', () => {
  it('erases the sealed seed of a retired KEM prekey once no live bundle names it, keeps the public key, and leaves the rest', async () => {
    const url = await freshDatabase();
    const db = await PgDatabase.open(loc(url), { poolSize: 2 });
    const store = new PgStore(db);
    const lifecycle = new PgLifecycleStore(db);
    try {
      const now = 1_750_000_000;
      const rand = (n: number) => new Uint8Array(randomBytes(n));
      const kem = () => ({ publicKey: rand(1184), hash: rand(32), seedSealed: rand(92) });
      const k1 = kem();
      const k2 = kem();
      const k3 = kem();
      await store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: now - 300, kem: k1 });
      const spk2 = await store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: now - 200, kem: k2 });
      const spk3 = await store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: now - 100, kem: k3 });
      // spk2 still serves an unexpired bundle; spk1 serves none; spk3 is current.
      await store.allowEnroller(rand(32), 'e', now - 400);
      await store.insertBundles([
        { id: rand(16), spkId: spk2.id, opkPublic: rand(32), opkPrivateSealed: rand(60), addr: 'tcp://127.0.0.1:4100', enroller: rand(32), createdAt: now - 150, expiresAt: now + 3600, state: 'issued', eka: 2 },
      ]);
      assert.equal(await lifecycle.retireOtherPrekeys(spk3.id, now), 2);
      assert.equal(await lifecycle.eraseRetiredKemSeeds(now), 1, 'only the retired prekey no live bundle names');
      assert.equal((await store.getKemPrekey(k1.hash))?.seedSealed.length, 0);
      assert.deepEqual((await store.getKemPrekey(k1.hash))?.publicKey, k1.publicKey, 'its public key stays');
      assert.deepEqual((await store.getKemPrekey(k2.hash))?.seedSealed, k2.seedSealed);
      assert.deepEqual((await store.getKemPrekey(k3.hash))?.seedSealed, k3.seedSealed, 'the current one is never erased');
      assert.equal(await lifecycle.eraseRetiredKemSeeds(now), 0, 'nothing is erased twice');
      // Once spk2's bundle has expired, its seed goes too.
      assert.equal(await lifecycle.eraseRetiredKemSeeds(now + 3601), 1);
      assert.equal((await store.getKemPrekey(k2.hash))?.seedSealed.length, 0);
    } finally {
      await db.close();
    }
  });
});
