/**
 * Version 2 credentials (attributes, signed with the CSK: docs/protocol.md §4.6) made on the
 * enrollment pool's workers (issues 20 and 23), driven through handleEnrollment against a
 * real ServiceHome and SQLite store, with real worker threads:
 *
 * - with 0 (in this thread), 1 and 4 workers, an enrollee approved with attributes gets a
 *   version 2 credential that carries them, verifies under IK_A (and with `credential verify
 *   --require` through the CLI), and is byte for byte the credential issueCredential signs in
 *   this thread for the same fields (Ed25519 is deterministic, and the workers sign under the
 *   certificate the main thread made); every message ran on the pool; one approved without
 *   attributes still gets version 1;
 * - a CSK the workers have not seen (what a rotation would be) reaches every worker before
 *   the first job that needs it, and a replacement worker is sent it before its first job;
 * - a set-attr that lands between the checks and the commit: the acceptance carries the
 *   committed attributes (the job runs again), as in this thread.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { equalBytes, toHex } from '../../src/crypto/bytes.js';
import { xeddsaSigner } from '../../src/crypto/xeddsa.js';
import type { Attributes } from '../../src/protocol/codec/attributes.js';
import { credentialToText, decodeCredential, verifyCredential, type AnyCredential } from '../../src/protocol/credential.js';
import { certifyCsk, cskFromSeed, type CredentialV2 } from '../../src/protocol/credential-v2.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import type { PoolCsk } from '../../src/pool/keys.js';
import { EnrollPool } from '../../src/pool/pool.js';
import { credentialTtl, issueCredential } from '../../src/roles/service/credentials.js';
import { serviceCsk } from '../../src/roles/service/csk.js';
import { handleEnrollment } from '../../src/roles/service/enroll.js';
import { setEnrollLifecycle } from '../../src/roles/service/hooks.js';
import type { ServiceHome } from '../../src/roles/service/home.js';
import type { DecisionLog } from '../../src/roles/service/log.js';
import { run } from '../helpers/cli.js';
import { EXIT } from '../helpers/lifecycle.js';
import { approveEnrollees, initServiceHome, messageFor, nowSeconds, openAcceptance, type LabEnrollee } from '../helpers/lab.js';

const quiet: DecisionLog = () => undefined;
const ATTRS: Attributes = Object.freeze({ role: 'sensor', site: 'berlin', floor: '3' });

let root: string;
let svc: ServiceHome;
let enroller: Uint8Array;
const poolErrors: string[] = [];

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ockam-pool-v2-'));
  const made = await initServiceHome(root, 4200);
  svc = made.svc;
  enroller = made.enroller.publicKey;
});
after(async () => {
  await svc?.close();
  rmSync(root, { recursive: true, force: true });
});

/** Runs `body` with a pool of `workers` registered as service start does; 0: no pool (this thread). */
async function withPool(workers: number, body: (pool: EnrollPool | undefined) => Promise<void>): Promise<void> {
  if (workers === 0) {
    setEnrollLifecycle(svc, {});
    await body(undefined);
    return;
  }
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

/** Enrolls `es` at once at `now`; returns each acceptance's credential, decoded, and its bytes. */
async function enrollAll(es: LabEnrollee[], now: number): Promise<{ bytes: Uint8Array; c: AnyCredential }[]> {
  const attempts = es.map((e) => messageFor(e));
  const outs = await Promise.all(attempts.map((a) => handleEnrollment(svc, a.message, now, quiet)));
  return outs.map((o, i) => {
    assert.equal(o.status, ENROLL_STATUS.ACCEPTED, `message ${i}`);
    const a = openAcceptance(attempts[i]!, o.response);
    assert.ok(a, `acceptance ${i} opens under the enrollee's session key`);
    assert.ok(a.credential, `acceptance ${i} carries a credential`);
    assert.ok(equalBytes(decodeCredential(a.credential).ikB, attempts[i]!.ikB.publicKey), 'the credential names the IK_B that enrolled');
    return { bytes: a.credential, c: decodeCredential(a.credential) };
  });
}

/** The credential the main thread signs (issueCredential: a version 2 is signed in this thread, whatever the pool) for the fields of `c`. */
async function inThread(c: AnyCredential, attributes: Attributes | undefined): Promise<Uint8Array> {
  return (await issueCredential(svc, { enrolleeId: c.enrolleeId, ikB: c.ikB, petName: c.petName, now: c.issuedAt, attributes })).credential;
}

/** A CSK other than the service's, certified by IK_A, in the form the pool sends (what a rotation would give). */
function otherCsk(): PoolCsk {
  const seed = new Uint8Array(randomBytes(32));
  const { publicKey } = cskFromSeed(seed);
  const certificate = certifyCsk(svc.ikA.publicKey, publicKey, xeddsaSigner(svc.ikA.privateKey));
  const seedSealed = svc.sealer.seal(seed, 'csk', publicKey);
  seed.fill(0);
  return { certificate, seedSealed };
}

/** The OpenJob fields for `e`, as enroll.ts builds them after checks 1–3. */
async function jobFor(e: LabEnrollee, now: number) {
  const attempt = messageFor(e);
  const found = await svc.store.lookupPending(e.id, now);
  assert.equal(found.status, 'ok');
  const { enrollee, bundle, spk } = (found as Extract<typeof found, { status: 'ok' }>).pending;
  const job = {
    eka: 1 as const,
    message: attempt.message,
    eikB: enrollee.eikB!,
    bundleId: bundle.id,
    opkSealed: bundle.opkPrivateSealed!,
    bundleAddr: bundle.addr,
    enrolleeId: e.id,
    issuedAt: now,
    expiresAt: now + credentialTtl(svc),
    petName: enrollee.petName ?? '',
    addr: svc.settings.address,
  };
  return { job, spk, attempt };
}

describe('version 2 credentials on the pool', () => {
  for (const workers of [0, 1, 4]) {
    it(`with ${workers} worker(s): the credential carries the attributes, verifies, and is byte for byte the one signed in this thread`, { timeout: 180_000 }, async () => {
      const es = await approveEnrollees(svc, enroller, 8, `v2-w${workers}`, ATTRS);
      const plain = await approveEnrollees(svc, enroller, 2, `v1-w${workers}`);
      const csk = serviceCsk(svc).certificate;
      await withPool(workers, async (pool) => {
        const jobs = pool?.jobs ?? 0;
        const now = nowSeconds();
        const got = await enrollAll([...es, ...plain], now);
        if (pool !== undefined) assert.equal(pool.jobs - jobs, es.length + plain.length, 'every message ran on the pool');
        for (const [i, { bytes, c }] of got.slice(0, es.length).entries()) {
          assert.equal(c.version, 2, `credential ${i}`);
          const v2 = c as CredentialV2;
          assert.deepEqual(v2.attributes, ATTRS);
          assert.equal(v2.petName, es[i]!.petName);
          assert.ok(equalBytes(v2.csk, csk.csk) && equalBytes(v2.cskSig, csk.cskSig), 'signed under the certificate the main thread made');
          assert.equal(v2.expiresAt, now + credentialTtl(svc));
          verifyCredential(c, { now, issuer: svc.ikA.publicKey });
          assert.equal(toHex(bytes), toHex(await inThread(c, ATTRS)), 'byte for byte the in-thread credential');
        }
        for (const { c } of got.slice(es.length)) {
          assert.equal(c.version, 1, 'an enrollee without attributes still gets version 1');
          verifyCredential(c, { now, issuer: svc.ikA.publicKey });
        }
        // And through the CLI: `credential verify --require` holds for the worker's credential.
        const file = join(root, `cred-w${workers}.txt`);
        writeFileSync(file, credentialToText(got[0]!.c) + '\n');
        const key = toHex(svc.ikA.publicKey);
        const yes = await run(['credential', 'verify', `@${file}`, '--service-key', key, '--require', 'subject.attributes.role == "sensor" && subject.attributes.site == "berlin"', '--json'], { home: root });
        assert.equal(yes.code, EXIT.OK, yes.stderr);
        const j = JSON.parse(yes.stdout) as { version: number; attributes: Attributes };
        assert.equal(j.version, 2);
        assert.deepEqual(j.attributes, ATTRS);
        const no = await run(['credential', 'verify', `@${file}`, '--service-key', key, '--require', 'subject.attributes.role == "camera"'], { home: root });
        assert.equal(no.code, EXIT.REJECTED, no.stderr);
        assert.match(no.stderr, /--require does not hold/);
        if (pool !== undefined) assert.equal(pool.started, workers, 'no worker failed');
      });
    });
  }

  it('a CSK the workers have not seen reaches every worker before the first job that needs it, and a replacement worker before its first', { timeout: 180_000 }, async () => {
    await withPool(4, async (pool) => {
      const rotated = otherCsk();
      const now = nowSeconds();
      const run8 = async (label: string) => {
        const es = await approveEnrollees(svc, enroller, 8, label, ATTRS);
        const jobs = await Promise.all(es.map((e) => jobFor(e, now)));
        const results = jobs.map(({ job, spk }) => pool!.open(job, spk, { attributes: ATTRS, csk: rotated }));
        // The least busy worker takes each job: two on each of the four, sent in this turn.
        for (const t of pool!.threadIds()) assert.equal(pool!.inFlight(t), 2, `worker ${t} holds two of the jobs`);
        for (const [i, r] of (await Promise.all(results)).entries()) {
          assert.ok(r.ok, `job ${i}: ${r.ok ? '' : `${r.code}: ${r.message}`}`);
          const c = decodeCredential(r.credential) as CredentialV2;
          assert.equal(c.version, 2);
          assert.ok(equalBytes(c.csk, rotated.certificate.csk), `job ${i} is signed with the new CSK`);
          assert.deepEqual(c.attributes, ATTRS);
          verifyCredential(c, { now, issuer: svc.ikA.publicKey });
        }
      };
      await run8('csk-rot');
      // A replacement worker gets the CSK in force first thing.
      const victim = pool!.threadIds()[0]!;
      await pool!.terminateThread(victim);
      const deadline = Date.now() + 60_000;
      while ((pool!.threadIds().length !== 4 || pool!.threadIds().includes(victim)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await pool!.ready();
      assert.ok(!pool!.threadIds().includes(victim) && pool!.threadIds().length === 4, 'replaced');
      await run8('csk-rot-replaced');
      assert.equal(pool!.started, 5);
    });
  });

  for (const workers of [0, 4]) {
    it(`with ${workers} worker(s): a set-attr between the checks and the commit reaches the acceptance's credential`, { timeout: 120_000 }, async () => {
      const [withAttrs] = await approveEnrollees(svc, enroller, 1, `race-v2-w${workers}`, ATTRS);
      const [without] = await approveEnrollees(svc, enroller, 1, `race-v1-w${workers}`);
      await withPool(workers, async () => {
        const now = nowSeconds();
        for (const [e, set, unset, want] of [
          [withAttrs!, { site: 'paris' }, ['floor'], { role: 'sensor', site: 'paris' }],
          [without!, { role: 'camera' }, [], { role: 'camera' }],
        ] as const) {
          const attempt = messageFor(e);
          // Asked just before the commit (enroll.ts): the SQLite store's set-attr runs its transaction at once.
          const canAnswer = () => {
            void svc.store.setAttributes(e.id, set, unset);
            return true;
          };
          const out = await handleEnrollment(svc, attempt.message, now, quiet, undefined, { canAnswer });
          assert.equal(out.status, ENROLL_STATUS.ACCEPTED);
          assert.deepEqual((await svc.store.findEnrollee(e.hex))?.attributes, want, 'the set-attr was committed');
          const a = openAcceptance(attempt, out.response);
          assert.ok(a?.credential);
          const c = decodeCredential(a.credential) as CredentialV2;
          assert.equal(c.version, 2);
          assert.deepEqual(c.attributes, want, 'the credential carries the committed attributes');
          verifyCredential(c, { now, issuer: svc.ikA.publicKey });
        }
      });
    });
  }
});
