/**
 * The service side of one enrollment message (src/roles/service/enroll.ts, handleEnrollment),
 * driven directly, without a network, against a real ServiceHome (keystore, settings and the
 * SQLite store in a temp dir). Bundles are made the way src/roles/service/enrollers.ts serves
 * them, approvals go through the store, and enrollee messages come from `initiate`.
 *
 * Checked: acceptance decrypts under the enrollee's session and names it; each rejection gets
 * its status, a 1-byte response, and its precise reason only in the decision log; failures
 * past decryption count towards the lock-out, failed decryptions against their source;
 * concurrent messages keep the single-use guarantees.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../src/errors.js';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { signBundle, verifyBundle, type Bundle } from '../../src/protocol/codec/bundle.js';
import { ENROLLMENT_MESSAGE_LEN, enrolleeId, enrolleeSession, initiate, type InitiateResult } from '../../src/protocol/enrollment/index.js';
import { ACCEPT_AAD, decodeAcceptance, decodeEnrollResponse, ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { commitQueueFor } from '../../src/roles/service/commits.js';
import { handleEnrollment, type EnrollOutcome } from '../../src/roles/service/enroll.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import type { Decision, DecisionFields, DecisionLog } from '../../src/roles/service/log.js';
import { parseRate, TokenBuckets } from '../../src/roles/service/limits.js';
import type { BundleRecord } from '../../src/store/types.js';
import { badPopMessage } from '../helpers/lab.js';
import { testPool } from '../helpers/pool.js';

const ADDRESS = 'tcp://127.0.0.1:4100';
const NOW = 1_750_000_000;

let root: string;
let svc: ServiceHome;
let enroller: Uint8Array;
/** With OCKAM_ENROLL_TEST_WORKERS (test/pool), every enrollment here runs on a pool of workers. */
let pool: Awaited<ReturnType<typeof testPool>>;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ockam-svc-enroll-'));
  svc = await ServiceHome.init(join(root, 'home'), { address: ADDRESS, now: NOW - 1000 });
  enroller = generateX25519().publicKey;
  await svc.store.allowEnroller(enroller, 'test-enroller', NOW - 1000);
  pool = await testPool(svc);
});
after(async () => {
  await pool?.close();
  await svc?.close();
  rmSync(root, { recursive: true, force: true });
});

/** A decision log that keeps every entry. */
function spyLog(): DecisionLog & { entries: { decision: Decision; fields: DecisionFields }[] } {
  const entries: { decision: Decision; fields: DecisionFields }[] = [];
  const log = ((decision: Decision, fields: DecisionFields) => {
    entries.push({ decision, fields });
  }) as DecisionLog & { entries: typeof entries };
  log.entries = entries;
  return log;
}

/**
 * Makes one bundle the way serveBundles does: a fresh OPK, signed with IK_A over the current
 * SPK, its private key sealed under the store key and recorded as issued to `to`.
 */
async function issueBundle(now = NOW, to: Uint8Array = enroller): Promise<Bundle> {
  const spk = await svc.store.currentSignedPrekey();
  assert.ok(spk, 'service init made an SPK');
  const opk = generateX25519();
  const bundleId = new Uint8Array(randomBytes(16));
  const expiresAt = now + svc.settings.bundleTtl;
  const bundle = signBundle(
    { bundleId, ikA: svc.ikA.publicKey, spkA: spk.publicKey, spkSig: spk.signature, opkA: opk.publicKey, expiresAt, addr: svc.settings.address },
    svc.ikA.privateKey,
  );
  const row: BundleRecord = {
    id: bundleId,
    spkId: spk.id,
    opkPublic: opk.publicKey,
    opkPrivateSealed: svc.sealer.seal(opk.privateKey, 'opk', bundleId),
    addr: svc.settings.address,
    enroller: to,
    createdAt: now,
    expiresAt,
    state: 'issued',
  };
  opk.wipe();
  await svc.store.insertBundles([row]);
  // What the enrollee would check before using it.
  return verifyBundle(bundle, { now, ikA: svc.ikA.publicKey });
}

interface Enrollee {
  eikB: KeyPair;
  id: Uint8Array;
  hex: string;
  petName: string;
}

let serial = 0;
function newEnrollee(): Enrollee {
  const eikB = generateX25519();
  const id = enrolleeId(eikB.publicKey);
  return { eikB, id, hex: toHex(id), petName: `device-${serial++}` };
}

async function approve(e: Enrollee, bundle: Bundle, opts: { now?: number; ttl?: number } = {}): Promise<void> {
  const now = opts.now ?? NOW;
  await svc.store.approve({
    enrolleeId: e.id,
    eikB: e.eikB.publicKey,
    bundleId: bundle.bundleId,
    petName: e.petName,
    enroller,
    now,
    expiresAt: now + (opts.ttl ?? svc.settings.approvalTtl),
  });
}

/** A fresh, approved enrollee with its own bundle, and a message for it. */
async function ready(opts: { now?: number; ttl?: number } = {}): Promise<{ e: Enrollee; bundle: Bundle; attempt: InitiateResult }> {
  const e = newEnrollee();
  const bundle = await issueBundle(opts.now);
  await approve(e, bundle, opts);
  return { e, bundle, attempt: initiate({ bundle, eikB: e.eikB }) };
}

function reasonOf(log: ReturnType<typeof spyLog>): string {
  const last = log.entries.at(-1);
  assert.ok(last, 'something was logged');
  assert.equal(last.decision, 'rejected');
  return String(last.fields.reason);
}

/** A rejection: the status, one byte on the wire, and the precise reason only in the log. */
function assertRejected(out: EnrollOutcome, status: number, log: ReturnType<typeof spyLog>, code: string): void {
  assert.equal(out.status, status, `expected status ${status}, got ${out.status}; log: ${JSON.stringify(log.entries.at(-1)?.fields)}`);
  assert.deepEqual(out.response, Uint8Array.of(status), 'a rejection is exactly the 1-byte status');
  assert.ok(reasonOf(log).startsWith(`${code}:`) || reasonOf(log) === code, `reason ${reasonOf(log)} names ${code}`);
}

function openAcceptance(out: EnrollOutcome, attempt: InitiateResult) {
  assert.equal(out.status, ENROLL_STATUS.ACCEPTED);
  assert.equal(out.response[0], ENROLL_STATUS.ACCEPTED);
  const sealed = decodeEnrollResponse(out.response);
  const session = enrolleeSession(attempt.session);
  return decodeAcceptance(session.recv.open(sealed, concat(ACCEPT_AAD, attempt.enrolleeId)));
}

describe('handleEnrollment: acceptance', () => {
  it('a valid message is ACCEPTED; the response opens under the enrollee session and names the enrollee', async () => {
    const { e, bundle, attempt } = await ready();
    const log = spyLog();
    const out = await handleEnrollment(svc, attempt.message, NOW + 10, log, 'peer-1');
    const acceptance = openAcceptance(out, attempt);
    assert.ok(equalBytes(acceptance.enrolleeId, e.id));
    assert.equal(acceptance.petName, e.petName);
    assert.equal(acceptance.addr, ADDRESS);
    assert.equal(acceptance.enrolledAt, NOW + 10);

    // Under any other AAD or session it does not open.
    assert.throws(() => enrolleeSession(attempt.session).recv.open(decodeEnrollResponse(out.response), concat(ACCEPT_AAD, newEnrollee().id)));

    assert.equal(log.entries.length, 1);
    assert.equal(log.entries[0]?.decision, 'accepted');
    assert.equal(log.entries[0]?.fields.enrollee, e.hex);
    assert.equal(log.entries[0]?.fields.ik_b, toHex(attempt.ikB.publicKey));
    assert.equal(log.entries[0]?.fields.peer, 'peer-1');

    const rec = await svc.store.findEnrollee(e.hex);
    assert.equal(rec?.state, 'enrolled');
    assert.ok(rec?.ikB && equalBytes(rec.ikB, attempt.ikB.publicKey), 'IK_B from the message is enrolled');
    assert.equal(rec?.eikB, null);
    const b = await svc.store.getBundle(bundle.bundleId);
    assert.equal(b?.state, 'consumed');
    assert.equal(b?.opkPrivateSealed, null);
  });

  it('the same message again is REPLAY; a fresh message for the enrolled enrollee is USED', async () => {
    const { e, bundle, attempt } = await ready();
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 1, spyLog())).status, ENROLL_STATUS.ACCEPTED);
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, attempt.message, NOW + 2, log), ENROLL_STATUS.REPLAY, log, 'ERR_REPLAY');
    const fresh = initiate({ bundle, eikB: e.eikB });
    assertRejected(await handleEnrollment(svc, fresh.message, NOW + 3, log), ENROLL_STATUS.USED, log, 'ERR_BUNDLE_USED');
  });
});

describe('handleEnrollment: a store that fails the commit', () => {
  it('throws the store error (the server answers UNAVAILABLE): it is no lost race, and nothing is consumed', async () => {
    const { e, bundle, attempt } = await ready();
    // The disk failing under the commit cannot be made to happen here: the commit queue is
    // replaced for this one call by one that fails as a locked or broken store would.
    const queue = commitQueueFor(svc.store);
    const commit = queue.commit;
    queue.commit = () => Promise.reject(new EnrollError('ERR_STORE', 'SQLITE_BUSY: database is locked'));
    const log = spyLog();
    try {
      await assert.rejects(handleEnrollment(svc, attempt.message, NOW + 1, log), (err: unknown) => isEnrollError(err, 'ERR_STORE'));
    } finally {
      queue.commit = commit;
    }
    assert.equal(log.entries.filter((x) => x.decision === 'rejected').length, 0, 'not logged as a refusal (USED) of the enrollee');
    assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'pending');
    assert.equal((await svc.store.getBundle(bundle.bundleId))?.state, 'approved');
    // The enrollee's retry with a fresh EK_B succeeds.
    const retry = initiate({ bundle, eikB: e.eikB });
    assert.equal((await handleEnrollment(svc, retry.message, NOW + 2, spyLog())).status, ENROLL_STATUS.ACCEPTED);
  });
});

describe('handleEnrollment: rejections', () => {
  it('a message of the wrong length is MALFORMED, before any lookup', async () => {
    const { attempt } = await ready();
    const log = spyLog();
    for (const len of [0, 1, 64, ENROLLMENT_MESSAGE_LEN - 1, ENROLLMENT_MESSAGE_LEN + 1, 4096]) {
      const msg = new Uint8Array(len);
      msg.set(attempt.message.subarray(0, Math.min(len, ENROLLMENT_MESSAGE_LEN)));
      assertRejected(await handleEnrollment(svc, msg, NOW + 1, log), ENROLL_STATUS.MALFORMED, log, 'ERR_MESSAGE_LENGTH');
    }
    // The genuine message still works: nothing was recorded against it.
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 1, log)).status, ENROLL_STATUS.ACCEPTED);
  });

  it('an id with no approval is UNKNOWN, the log names ERR_ENROLLEE_UNKNOWN, no failure is counted', async () => {
    const e = newEnrollee();
    const bundle = await issueBundle();
    const attempt = initiate({ bundle, eikB: e.eikB });
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, attempt.message, NOW + 1, log), ENROLL_STATUS.UNKNOWN, log, 'ERR_ENROLLEE_UNKNOWN');
    assert.match(reasonOf(log), /ERR_ENROLLEE_UNKNOWN/);
    assert.equal(log.entries.at(-1)?.fields.enrollee, e.hex);
    assert.equal(await svc.store.findEnrollee(e.hex), undefined);
    assert.equal((await svc.store.getBundle(bundle.bundleId))?.state, 'issued');
    // Once approved, the very same message is accepted (the enrollee may have sent it early).
    await approve(e, bundle);
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 2, log)).status, ENROLL_STATUS.ACCEPTED);
  });

  it('an approval past its expiry is EXPIRED and nothing is recorded', async () => {
    const { e, bundle, attempt } = await ready({ ttl: 60 });
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, attempt.message, NOW + 60, log), ENROLL_STATUS.EXPIRED, log, 'ERR_APPROVAL_EXPIRED');
    assertRejected(await handleEnrollment(svc, attempt.message, NOW + 3600, log), ENROLL_STATUS.EXPIRED, log, 'ERR_APPROVAL_EXPIRED');
    assert.equal(await svc.store.isEkAccepted(attempt.message.subarray(0, 32)), false);
    assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'pending');
    assert.equal((await svc.store.getBundle(bundle.bundleId))?.state, 'approved');
    // One second before expiry it was fine.
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 59, log)).status, ENROLL_STATUS.ACCEPTED);
  });

  // docs/threat-model.md §5.4: anyone who has seen the card can make a message that does not
  // decrypt, so such a message is charged to its source; only a message that decrypts (its
  // sender holds EIK_B's private key and the bundle) and then fails counts against the enrollee.
  it('a message made with another bundle (wrong OPK) is REJECTED, logged as ERR_ENROLLMENT_DECRYPT, and charged to its source, not to the enrollee', async () => {
    const { e, bundle, attempt } = await ready();
    const other = await issueBundle(); // a genuine bundle of this service, but not the approved one
    const wrong = initiate({ bundle: other, eikB: e.eikB });
    const log = spyLog();
    const failures = new TokenBuckets(parseRate('2/h', 'test')!);
    const peer = '192.0.2.7:40000';
    assertRejected(await handleEnrollment(svc, wrong.message, NOW + 1, log, peer, { failuresPerSource: failures }), ENROLL_STATUS.REJECTED, log, 'ERR_ENROLLMENT_DECRYPT');
    assert.equal(log.entries.at(-1)?.fields.failed_attempts, undefined);
    assert.equal(log.entries.at(-1)?.fields.counted, 'source');
    assert.equal(log.entries.at(-1)?.fields.enrollee, e.hex);
    assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 0);
    // Neither bundle moved, the EK_B was not recorded.
    assert.equal((await svc.store.getBundle(bundle.bundleId))?.state, 'approved');
    assert.equal((await svc.store.getBundle(other.bundleId))?.state, 'issued');
    assert.equal(await svc.store.isEkAccepted(wrong.message.subarray(0, 32)), false);

    // A tampered ciphertext is the same opaque REJECTED, byte for byte, and takes the source's last token.
    const tampered = Uint8Array.from(attempt.message);
    tampered[ENROLLMENT_MESSAGE_LEN - 1] ^= 0x80;
    const t = await handleEnrollment(svc, tampered, NOW + 1, log, peer, { failuresPerSource: failures });
    assertRejected(t, ENROLL_STATUS.REJECTED, log, 'ERR_ENROLLMENT_DECRYPT');
    assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 0);

    // That source is now over its limit: RATE_LIMITED before any crypto, even for the genuine
    // message (nobody can tell it apart without decrypting it), logged as `limited`.
    const limited = await handleEnrollment(svc, attempt.message, NOW + 1, log, peer, { failuresPerSource: failures });
    assert.deepEqual(limited.response, Uint8Array.of(ENROLL_STATUS.RATE_LIMITED));
    assert.equal(log.entries.at(-1)?.decision, 'limited');
    assert.match(String(log.entries.at(-1)?.fields.reason), /^ERR_RATE_LIMITED: over 2\/h failed decryptions from this address/);
    // The genuine message from another source enrolls, and the count is still 0.
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 2, log, '192.0.2.8:40000', { failuresPerSource: failures })).status, ENROLL_STATUS.ACCEPTED);
  });

  it('a message that decrypts but fails the POP is REJECTED, logged as ERR_POP_INVALID, and counted against the enrollee', async () => {
    const { e, bundle, attempt } = await ready();
    const log = spyLog();
    for (let i = 1; i <= 2; i++) {
      assertRejected(await handleEnrollment(svc, badPopMessage({ ...e, bundle }), NOW + 1, log), ENROLL_STATUS.REJECTED, log, 'ERR_POP_INVALID');
      assert.equal(log.entries.at(-1)?.fields.failed_attempts, i);
    }
    assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 2);
    // The genuine message still enrolls, and the count is cleared.
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 2, log)).status, ENROLL_STATUS.ACCEPTED);
    assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 0);
  });

  it(`after maxFailedAttempts failures the enrollee is LOCKED, even with a valid message`, async () => {
    const saved = svc.settings.maxFailedAttempts;
    svc.settings.maxFailedAttempts = 3;
    try {
      const { e, bundle, attempt } = await ready();
      const log = spyLog();
      for (let i = 1; i <= 3; i++) {
        assertRejected(await handleEnrollment(svc, badPopMessage({ ...e, bundle }), NOW + 1, log), ENROLL_STATUS.REJECTED, log, 'ERR_POP_INVALID');
        assert.equal(log.entries.at(-1)?.fields.failed_attempts, i);
      }
      assertRejected(await handleEnrollment(svc, attempt.message, NOW + 1, log), ENROLL_STATUS.LOCKED, log, 'ERR_ENROLLEE_LOCKED');
      assertRejected(await handleEnrollment(svc, badPopMessage({ ...e, bundle }), NOW + 1, log), ENROLL_STATUS.LOCKED, log, 'ERR_ENROLLEE_LOCKED');
      const wrong = initiate({ bundle: await issueBundle(), eikB: e.eikB });
      assertRejected(await handleEnrollment(svc, wrong.message, NOW + 1, log), ENROLL_STATUS.LOCKED, log, 'ERR_ENROLLEE_LOCKED');
      assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 3, 'a locked enrollee costs no DH and no count');
      assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'pending');
      assert.equal(await svc.store.isEkAccepted(attempt.message.subarray(0, 32)), false);

      // The enroller approving it again (with a new bundle) unlocks it.
      const fresh = await issueBundle();
      await approve(e, fresh);
      const again = initiate({ bundle: fresh, eikB: e.eikB });
      assert.equal((await handleEnrollment(svc, again.message, NOW + 2, log)).status, ENROLL_STATUS.ACCEPTED);
    } finally {
      svc.settings.maxFailedAttempts = saved;
    }
  });

  it('the default lock-out is 20 failed attempts', async () => {
    assert.equal(svc.settings.maxFailedAttempts, 20);
    const { e, attempt } = await ready();
    for (let i = 0; i < 19; i++) await svc.store.recordFailure(e.id);
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 1, spyLog())).status, ENROLL_STATUS.ACCEPTED, '19 failures: not yet locked');
    const second = await ready();
    for (let i = 0; i < 20; i++) await svc.store.recordFailure(second.e.id);
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, second.attempt.message, NOW + 1, log), ENROLL_STATUS.LOCKED, log, 'ERR_ENROLLEE_LOCKED');
  });

  it('a revoked enrollee is REVOKED, whether it was pending or enrolled', async () => {
    const log = spyLog();
    const p = await ready();
    await svc.store.revokeEnrollee(p.e.id, NOW + 1);
    assertRejected(await handleEnrollment(svc, p.attempt.message, NOW + 2, log), ENROLL_STATUS.REVOKED, log, 'ERR_ENROLLEE_REVOKED');
    assert.equal((await svc.store.getBundle(p.bundle.bundleId))?.state, 'revoked');

    const d = await ready();
    assert.equal((await handleEnrollment(svc, d.attempt.message, NOW + 1, log)).status, ENROLL_STATUS.ACCEPTED);
    await svc.store.revokeEnrollee(d.e.id, NOW + 2);
    const fresh = initiate({ bundle: d.bundle, eikB: d.e.eikB });
    assertRejected(await handleEnrollment(svc, fresh.message, NOW + 3, log), ENROLL_STATUS.REVOKED, log, 'ERR_ENROLLEE_REVOKED');
  });

  it('every rejection is exactly its 1-byte status: the reason stays in the log', async () => {
    const seen = new Map<number, Uint8Array>();
    const collect = (out: EnrollOutcome) => {
      assert.notEqual(out.status, ENROLL_STATUS.ACCEPTED);
      assert.equal(out.response.length, 1);
      assert.equal(out.response[0], out.status);
      // The enrollee learns the status, and only the status's generic message.
      assert.throws(() => decodeEnrollResponse(out.response), (err: unknown) => isEnrollError(err));
      seen.set(out.status, out.response);
    };
    const log = spyLog();
    const a = await ready();
    collect(await handleEnrollment(svc, a.attempt.message.subarray(1), NOW + 1, log));
    collect(await handleEnrollment(svc, initiate({ bundle: await issueBundle(), eikB: newEnrollee().eikB }).message, NOW + 1, log));
    collect(await handleEnrollment(svc, initiate({ bundle: await issueBundle(), eikB: a.e.eikB }).message, NOW + 1, log));
    const b = await ready({ ttl: 1 });
    collect(await handleEnrollment(svc, b.attempt.message, NOW + 5, log));
    assert.equal((await handleEnrollment(svc, a.attempt.message, NOW + 1, log)).status, ENROLL_STATUS.ACCEPTED);
    collect(await handleEnrollment(svc, a.attempt.message, NOW + 1, log));
    collect(await handleEnrollment(svc, initiate({ bundle: a.bundle, eikB: a.e.eikB }).message, NOW + 1, log));
    const c = await ready();
    await svc.store.revokeEnrollee(c.e.id, NOW);
    collect(await handleEnrollment(svc, c.attempt.message, NOW + 1, log));
    assert.deepEqual(
      [...seen.keys()].sort((x, y) => x - y),
      [ENROLL_STATUS.REJECTED, ENROLL_STATUS.MALFORMED, ENROLL_STATUS.REPLAY, ENROLL_STATUS.UNKNOWN, ENROLL_STATUS.EXPIRED, ENROLL_STATUS.REVOKED, ENROLL_STATUS.USED],
    );
    // Every rejection was logged with a precise code; none of the log fields hold secrets.
    const rejected = log.entries.filter((x) => x.decision === 'rejected');
    assert.equal(rejected.length, 7);
    for (const r of rejected) assert.match(String(r.fields.reason), /^ERR_[A-Z_]+/);
    const logText = JSON.stringify(log.entries);
    assert.ok(!logText.includes(toHex(svc.ikA.privateKey)));
  });
});

describe('handleEnrollment: concurrency', () => {
  it('20 approved enrollees enrolling at once are all ACCEPTED', async () => {
    const parties = await Promise.all(Array.from({ length: 20 }, () => ready()));
    const log = spyLog();
    const outs = await Promise.all(parties.map((p) => handleEnrollment(svc, p.attempt.message, NOW + 1, log)));
    outs.forEach((out, i) => {
      const acceptance = openAcceptance(out, parties[i]!.attempt);
      assert.ok(equalBytes(acceptance.enrolleeId, parties[i]!.e.id));
    });
    assert.equal(log.entries.filter((x) => x.decision === 'accepted').length, 20);
    for (const p of parties) assert.equal((await svc.store.findEnrollee(p.e.hex))?.state, 'enrolled');
  });

  it('20 concurrent copies of one message: exactly one ACCEPTED, the rest REPLAY or USED', async () => {
    const { e, bundle, attempt } = await ready();
    const log = spyLog();
    const outs = await Promise.all(Array.from({ length: 20 }, () => handleEnrollment(svc, Uint8Array.from(attempt.message), NOW + 1, log)));
    const accepted = outs.filter((o) => o.status === ENROLL_STATUS.ACCEPTED);
    assert.equal(accepted.length, 1, JSON.stringify(outs.map((o) => o.status)));
    openAcceptance(accepted[0]!, attempt);
    for (const o of outs.filter((x) => x.status !== ENROLL_STATUS.ACCEPTED)) {
      assert.ok(o.status === ENROLL_STATUS.REPLAY || o.status === ENROLL_STATUS.USED, `status ${o.status}`);
      assert.equal(o.response.length, 1);
    }
    assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'enrolled');
    assert.equal((await svc.store.getBundle(bundle.bundleId))?.state, 'consumed');
  });

  // The lock-out counts failures past decryption still being recorded with the recorded ones
  // (enroll.ts, attemptsInFlight): interleaved messages that decrypt and fail cannot all pass
  // the check before the first failure is recorded.
  it('concurrent messages that decrypt and fail the POP cannot run more than maxFailedAttempts failing checks', async () => {
    const saved = svc.settings.maxFailedAttempts;
    svc.settings.maxFailedAttempts = 3;
    try {
      const { e, bundle } = await ready();
      const wrong = Array.from({ length: 10 }, () => badPopMessage({ ...e, bundle }));
      const outs = await Promise.all(wrong.map((m) => handleEnrollment(svc, m, NOW + 1, spyLog())));
      assert.equal(outs.filter((o) => o.status === ENROLL_STATUS.REJECTED).length, 3, JSON.stringify(outs.map((o) => o.status)));
      assert.equal(outs.filter((o) => o.status === ENROLL_STATUS.LOCKED).length, 7);
      assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 3);
    } finally {
      svc.settings.maxFailedAttempts = saved;
    }
  });

  // The source's bucket is checked and charged in the same synchronous step as the decryption.
  it('concurrent messages that do not decrypt cannot run more decryptions than their source\'s bucket; the enrollee is untouched', async () => {
    const { e, attempt } = await ready();
    const failures = new TokenBuckets(parseRate('3/h', 'test')!);
    const peer = '198.51.100.9:5000';
    const wrong = await Promise.all(Array.from({ length: 10 }, async () => initiate({ bundle: await issueBundle(), eikB: e.eikB }).message));
    const outs = await Promise.all(wrong.map((m) => handleEnrollment(svc, m, NOW + 1, spyLog(), peer, { failuresPerSource: failures })));
    assert.equal(outs.filter((o) => o.status === ENROLL_STATUS.REJECTED).length, 3, JSON.stringify(outs.map((o) => o.status)));
    assert.equal(outs.filter((o) => o.status === ENROLL_STATUS.RATE_LIMITED).length, 7);
    assert.equal((await svc.store.findEnrollee(e.hex))?.failedAttempts, 0);
    // An IPv6 peer in another /64 is another source; one in the same /64 is the same.
    const v6 = new TokenBuckets(parseRate('1/h', 'test')!);
    assert.equal((await handleEnrollment(svc, wrong[0]!, NOW + 1, spyLog(), '[2001:db8:1:2::5]:1', { failuresPerSource: v6 })).status, ENROLL_STATUS.REJECTED);
    assert.equal((await handleEnrollment(svc, wrong[1]!, NOW + 1, spyLog(), '[2001:db8:1:2:ffff::9]:2', { failuresPerSource: v6 })).status, ENROLL_STATUS.RATE_LIMITED);
    assert.equal((await handleEnrollment(svc, wrong[2]!, NOW + 1, spyLog(), '[2001:db8:1:3::5]:1', { failuresPerSource: v6 })).status, ENROLL_STATUS.REJECTED);
    assert.equal((await handleEnrollment(svc, attempt.message, NOW + 2, spyLog(), '203.0.113.1:1', { failuresPerSource: failures })).status, ENROLL_STATUS.ACCEPTED);
  });

  it('20 concurrent different messages (fresh EK_B each) for one approval: exactly one ACCEPTED', async () => {
    const { e, bundle } = await ready();
    const attempts = Array.from({ length: 20 }, () => initiate({ bundle, eikB: e.eikB }));
    const outs = await Promise.all(attempts.map((a) => handleEnrollment(svc, a.message, NOW + 1, spyLog())));
    const winners = outs.map((o, i) => [o, i] as const).filter(([o]) => o.status === ENROLL_STATUS.ACCEPTED);
    assert.equal(winners.length, 1, JSON.stringify(outs.map((o) => o.status)));
    const [win, i] = winners[0]!;
    openAcceptance(win, attempts[i]!);
    for (const o of outs) if (o !== win) assert.equal(o.status, ENROLL_STATUS.USED);
    const rec = await svc.store.findEnrollee(e.hex);
    assert.ok(rec?.ikB && equalBytes(rec.ikB, attempts[i]!.ikB.publicKey), "the winner's IK_B is the one enrolled");
    const accepted = await Promise.all(attempts.map((a) => svc.store.isEkAccepted(a.message.subarray(0, 32))));
    assert.equal(accepted.filter(Boolean).length, 1);
  });
});
