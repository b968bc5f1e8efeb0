/**
 * The enrollment pool (src/pool, issue 23 item 1), driven through handleEnrollment against a
 * real ServiceHome and SQLite store, with real worker threads:
 *
 * - a worker killed with messages in flight: those messages fail (ERR_INTERNAL, which
 *   service start answers UNAVAILABLE, server.ts), nothing of theirs is consumed, the worker
 *   is replaced, and the enrollees' next attempts are ACCEPTED;
 * - `service prekey rotate` (a new SPK) reaches every worker before the first message that
 *   needs it; bundles of the old SPK still enroll;
 * - the keys reach the workers once: no job message carries anything secret.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError } from '../../src/errors.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { EnrollPool } from '../../src/pool/pool.js';
import { handleEnrollment, type EnrollOutcome } from '../../src/roles/service/enroll.js';
import { setEnrollLifecycle } from '../../src/roles/service/hooks.js';
import type { ServiceHome } from '../../src/roles/service/home.js';
import type { DecisionLog } from '../../src/roles/service/log.js';
import { approveEnrollees, initServiceHome, messageFor, nowSeconds, openAcceptance, type LabEnrollee } from '../helpers/lab.js';

const quiet: DecisionLog = () => undefined;

let root: string;
let svc: ServiceHome;
let enroller: Uint8Array;
const poolErrors: string[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ockam-pool-'));
  const made = await initServiceHome(root, 4100);
  svc = made.svc;
  enroller = made.enroller.publicKey;
});
after(async () => {
  await svc?.close();
  rmSync(root, { recursive: true, force: true });
});

async function withPool(workers: number, body: (pool: EnrollPool) => Promise<void>): Promise<void> {
  const pool = EnrollPool.start(svc, { workers, onError: (r) => poolErrors.push(r) });
  try {
    await pool.ready();
    assert.equal(pool.threadIds().length, workers);
    setEnrollLifecycle(svc, { pool });
    await body(pool);
  } finally {
    setEnrollLifecycle(svc, {});
    await pool.close();
  }
}

/** Resolves once `cond` holds, checking at every turn of the event loop (bounded). */
async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

describe('the enrollment pool', () => {
  it('a worker killed with messages in flight: they fail with nothing consumed, the worker is replaced, and their retries are ACCEPTED', { timeout: 180_000 }, async () => {
    const N = 200;
    const enrollees = await approveEnrollees(svc, enroller, N, 'kill');
    await withPool(2, async (pool) => {
      const attempts = enrollees.map((e) => messageFor(e));
      const now = nowSeconds();
      type Ran = { out?: EnrollOutcome; err?: unknown };
      const runs = attempts.map((a) =>
        handleEnrollment(svc, a.message, now, quiet).then(
          (out): Ran => ({ out }),
          (err: unknown): Ran => ({ err }),
        ),
      );
      // One worker killed while it has messages in flight: chosen in the same turn of the event
      // loop that sees them, since a fast worker works through a share before a later check.
      let victim: number | undefined;
      await until(() => (victim = pool.threadIds().find((t) => pool.inFlight(t) >= 10)) !== undefined, 'a worker with 10 messages in flight');
      await pool.terminateThread(victim!);
      const results = await Promise.all(runs);

      const failed: LabEnrollee[] = [];
      let accepted = 0;
      for (const [i, r] of results.entries()) {
        if (r.err !== undefined) {
          assert.ok(isEnrollError(r.err, 'ERR_INTERNAL'), `a lost job fails as ERR_INTERNAL (answered UNAVAILABLE): ${String(r.err)}`);
          failed.push(enrollees[i]!);
          continue;
        }
        assert.equal(r.out!.status, ENROLL_STATUS.ACCEPTED);
        assert.ok(openAcceptance(attempts[i]!, r.out!.response), 'the acceptance opens under the enrollee\'s session key');
        accepted++;
      }
      assert.ok(failed.length > 0, 'the killed worker had messages in flight');
      assert.equal(accepted + failed.length, N);
      // Nothing consumed for the lost ones: still pending, the bundle still approved, EK_B not recorded.
      for (const [i, r] of results.entries()) {
        if (r.err === undefined) continue;
        const e = enrollees[i]!;
        assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'pending');
        assert.equal((await svc.store.getBundle(e.bundle.bundleId))?.state, 'approved');
        assert.equal(await svc.store.isEkAccepted(attempts[i]!.message.subarray(0, 32)), false);
      }
      // Replaced: two live workers again, one of them new.
      await until(() => pool.threadIds().length === 2 && !pool.threadIds().includes(victim!), 'the replacement worker');
      assert.equal(pool.started, 3);
      assert.ok(poolErrors.some((r) => r.includes('replaced')), poolErrors.join('\n'));
      // And the service goes on: every lost enrollee's next attempt is accepted.
      const retries = failed.map((e) => messageFor(e));
      const outs = await Promise.all(retries.map((a) => handleEnrollment(svc, a.message, nowSeconds(), quiet)));
      for (const [i, o] of outs.entries()) {
        assert.equal(o.status, ENROLL_STATUS.ACCEPTED);
        assert.ok(openAcceptance(retries[i]!, o.response));
      }
    });
  });

  it('a rotated SPK reaches every worker before the first message that needs it; bundles of the old SPK still enroll', { timeout: 120_000 }, async () => {
    await withPool(4, async (pool) => {
      // Every worker gets a message over the first SPK (the least busy worker takes each job).
      const old = await approveEnrollees(svc, enroller, 8, 'spk1');
      const outs1 = await Promise.all(old.slice(0, 4).map((e) => handleEnrollment(svc, messageFor(e).message, nowSeconds(), quiet)));
      assert.deepEqual(outs1.map((o) => o.status), [0, 0, 0, 0]);
      const before = (await svc.store.currentSignedPrekey())!;
      const rotated = await svc.rotateSignedPrekey(nowSeconds());
      assert.notEqual(rotated.id, before.id);
      const fresh = await approveEnrollees(svc, enroller, 8, 'spk2');
      assert.ok(fresh.every((e) => Buffer.from(e.bundle.spkA).equals(Buffer.from(rotated.publicKey))), 'the new bundles are over the new SPK');
      // Eight at once over the new SPK: two per worker, every one accepted; and the old SPK's too.
      const mixed = [...fresh, ...old.slice(4)];
      const attempts = mixed.map((e) => messageFor(e));
      const jobs = pool.jobs;
      const outs = await Promise.all(attempts.map((a) => handleEnrollment(svc, a.message, nowSeconds(), quiet)));
      assert.equal(pool.jobs - jobs, mixed.length, 'every message ran on the pool');
      for (const [i, o] of outs.entries()) {
        assert.equal(o.status, ENROLL_STATUS.ACCEPTED, `message ${i}`);
        assert.ok(openAcceptance(attempts[i]!, o.response));
      }
      assert.equal(pool.started, 4, 'no worker failed');
    });
  });
});
