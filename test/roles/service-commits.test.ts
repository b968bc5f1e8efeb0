/**
 * Group commit (src/roles/service/commits.ts, SqliteStore.commitEnrollments): batches keep
 * every single-use guarantee of commitEnrollment, a failed enrollment does not take its
 * batch with it, and a commit resolves only once it is visible to a fresh connection.
 * Both ways of committing are checked: on the commit thread and in this thread.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EnrollError } from '../../src/errors.js';
import { CommitQueue } from '../../src/roles/service/commits.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import type { CommitEnrollmentInput } from '../../src/store/types.js';

const NOW = 1_750_000_000;
const root = mkdtempSync(join(tmpdir(), 'ockam-commits-'));
after(() => rmSync(root, { recursive: true, force: true }));

const rand = (n: number) => new Uint8Array(randomBytes(n));
let n = 0;

/** A store with `count` approved, pending enrollees, each with its own bundle. */
async function seeded(count: number): Promise<{ path: string; store: SqliteStore; enrollees: { id: Uint8Array; bundleId: Uint8Array }[] }> {
  const path = join(root, `store-${n++}.db`);
  const store = SqliteStore.open(path);
  const enroller = rand(32);
  await store.allowEnroller(enroller, 'e', NOW - 100);
  const spk = await store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: NOW - 100 });
  const enrollees = [];
  for (let i = 0; i < count; i++) {
    const bundleId = rand(16);
    await store.insertBundles([
      { id: bundleId, spkId: spk.id, opkPublic: rand(32), opkPrivateSealed: rand(60), addr: 'tcp://127.0.0.1:4100', enroller, createdAt: NOW - 50, expiresAt: NOW + 86400, state: 'issued' },
    ]);
    const eikB = rand(32);
    const id = new Uint8Array(createHash('sha256').update(eikB).digest());
    await store.approve({ enrolleeId: id, eikB, bundleId, petName: `d${i}`, enroller, now: NOW, expiresAt: NOW + 3600 });
    enrollees.push({ id, bundleId });
  }
  return { path, store, enrollees };
}

function input(e: { id: Uint8Array; bundleId: Uint8Array }, ekB: Uint8Array = rand(32)): CommitEnrollmentInput {
  return { enrolleeId: e.id, bundleId: e.bundleId, ekB, ikB: rand(32), now: NOW + 1 };
}

function enrolledCount(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return Number(db.prepare(`SELECT count(*) FROM enrollees WHERE state = 'enrolled'`).pluck().get());
  } finally {
    db.close();
  }
}

describe('SqliteStore.commitEnrollments', () => {
  it('a batch refused with SQLITE_BUSY (the write lock held past busy_timeout) is run again, and commits', async () => {
    const { path, store, enrollees } = await seeded(2);
    // Another process holds the write lock for 5.5 s, longer than the 5 s busy_timeout.
    const holder = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import Database from 'better-sqlite3';
         const db = new Database(process.argv[1]);
         db.exec('BEGIN IMMEDIATE');
         process.stdout.write('locked\\n');
         Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5500);
         db.exec('COMMIT');
         db.close();`,
        path,
      ],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const t0 = Date.now();
    const out = await store.commitEnrollments([input(enrollees[0]!), input(enrollees[1]!)]);
    const ms = Date.now() - t0;
    assert.ok(out.every((r) => !(r instanceof EnrollError)), 'both committed once the lock was free');
    assert.ok(ms >= 5000, `it waited for the lock (${ms} ms), so the first attempt met SQLITE_BUSY`);
    assert.equal(enrolledCount(path), 2);
    await new Promise((r) => holder.once('exit', r));
    await store.close();
  });

  it('commits a batch in one transaction; a failing input is rolled back alone and comes back as its error', async () => {
    const { path, store, enrollees } = await seeded(3);
    const ek = rand(32);
    const out = await store.commitEnrollments([
      input(enrollees[0]!, ek),
      input(enrollees[1]!, ek), // same EK_B: a replay within the batch
      input(enrollees[2]!),
      input(enrollees[2]!), // the same bundle twice: its OPK is single-use
    ]);
    assert.ok(!(out[0] instanceof EnrollError));
    assert.ok(out[1] instanceof EnrollError && out[1].code === 'ERR_REPLAY');
    assert.ok(!(out[2] instanceof EnrollError));
    assert.ok(out[3] instanceof EnrollError && out[3].code === 'ERR_OPK_USED');
    assert.equal(enrolledCount(path), 2);
    // The replayed enrollee is untouched: still pending, its OPK unconsumed.
    assert.equal((await store.lookupPending(enrollees[1]!.id, NOW + 2)).status, 'ok');
    await store.close();
  });
});

for (const thread of [true, false]) {
  describe(`CommitQueue (${thread ? 'commit thread' : 'in thread'})`, () => {
    it('concurrent commits batch together, and each resolves once durable', async () => {
      const { path, store, enrollees } = await seeded(40);
      const q = new CommitQueue(store, { thread });
      const recs = await Promise.all(
        enrollees.map(async (e) => {
          const rec = await q.commit(input(e));
          // Resolved: a fresh connection already sees it.
          const db = new Database(path, { readonly: true });
          const state = db.prepare('SELECT state FROM enrollees WHERE id = ?').pluck().get(Buffer.from(e.id));
          db.close();
          assert.equal(state, 'enrolled');
          return rec;
        }),
      );
      assert.equal(recs.length, 40);
      assert.ok(q.batches < 40, `${q.batches} batches for 40 commits`);
      assert.equal(q.committed, 40);
      await q.close();
      await store.close();
    });

    it('racing commits for one bundle: exactly one succeeds, the others get the store\'s errors', async () => {
      const { path, store, enrollees } = await seeded(1);
      const q = new CommitQueue(store, { thread });
      const ek = rand(32);
      const results = await Promise.allSettled([
        ...Array.from({ length: 10 }, () => q.commit(input(enrollees[0]!))),
        q.commit(input(enrollees[0]!, ek)),
        q.commit(input(enrollees[0]!, ek)),
      ]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      assert.equal(ok.length, 1);
      for (const r of results) {
        if (r.status === 'rejected') {
          assert.ok(r.reason instanceof EnrollError, String(r.reason));
          assert.ok(['ERR_OPK_USED', 'ERR_REPLAY'].includes(r.reason.code), r.reason.code);
        }
      }
      assert.equal(enrolledCount(path), 1);
      await q.close();
      await store.close();
    });

    it('close() waits for the batch in flight', async () => {
      const { path, store, enrollees } = await seeded(5);
      const q = new CommitQueue(store, { thread });
      const pending = enrollees.map((e) => q.commit(input(e)));
      await q.close();
      assert.equal((await Promise.allSettled(pending)).filter((r) => r.status === 'fulfilled').length, 5);
      assert.equal(enrolledCount(path), 5);
      await store.close();
    });
  });
}
