/**
 * The store contract: the guarantees of src/store/types.ts, checked the same way against
 * every ServiceStore implementation (SQLite: contract-sqlite.test.ts, PostgreSQL:
 * contract-pg.test.ts). An OPK is used at most once, an EK_B is accepted at most once,
 * expired and revoked entries are refused, every failed commit rolls back; the approval
 * rules, enroller revocation, id lookup; and two store instances on one database (two
 * connections, as two processes or two replicas would have) racing for the same rows; the
 * token store's identities and their attributes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import type { BundleRecord, CommitEnrollmentInput, ServiceStore, SignedPrekeyRecord } from '../../src/store/types.js';
import type { TokenStore } from '../../src/store/tokens.js';

const NOW = 1_700_000_000;
const TTL = 600;

function rand(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, label = ''): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isEnrollError(e), `${label}: expected EnrollError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `${label}: expected ${code}, got ${e.code}: ${e.message}`);
    return true;
  });
}

export interface Enrollee {
  id: Uint8Array;
  eikB: Uint8Array;
}

export function newEnrollee(): Enrollee {
  const eikB = rand(32);
  return { id: sha256(eikB), eikB };
}

/** One fresh, empty store of the backend under test. */
export interface OpenedStore {
  store: ServiceStore;
  /** The raw `bundles` row, read beside the store (another connection). */
  rawBundle(id: Uint8Array): Promise<Record<string, unknown> | undefined>;
  /** A second store instance on the same database (its own connection); closed by the caller. */
  second(): Promise<ServiceStore>;
  /** The token store (src/store/tokens.ts) on the same database; closed by the caller. */
  tokens(): Promise<TokenStore>;
}

export interface ContractBackend {
  open(): Promise<OpenedStore>;
}

/** A store with two allowed enrollers (alice, bob) and an SPK, and helpers to drive it (seedStore). */
export interface SeededStore {
  spk: SignedPrekeyRecord;
  alice: Uint8Array;
  bob: Uint8Array;
  /** Inserts one issued bundle served to `enroller` and returns its id. */
  issue(enroller?: Uint8Array, expiresAt?: number): Promise<Uint8Array>;
  /** Approves `e` with `bundleId` for `enroller` (default alice) at `now`, pending for TTL seconds. */
  approve(e: Enrollee, bundleId: Uint8Array, opts?: { enroller?: Uint8Array; now?: number; ttl?: number; petName?: string | null; attributes?: Record<string, string> }): ReturnType<ServiceStore['approve']>;
  commit(e: Enrollee, bundleId: Uint8Array, opts?: { ekB?: Uint8Array; ikB?: Uint8Array; now?: number }): ReturnType<ServiceStore['commitEnrollment']>;
}

interface Fixture extends SeededStore {
  store: ServiceStore;
  rawBundle: OpenedStore['rawBundle'];
  second: OpenedStore['second'];
  tokens: OpenedStore['tokens'];
}

/** Seeds an empty store of any backend (the contract's fixture; sqlite.test.ts's too). */
export async function seedStore(store: ServiceStore): Promise<SeededStore> {
  const alice = rand(32);
  const bob = rand(32);
  await store.allowEnroller(alice, 'alice', NOW - 100);
  await store.allowEnroller(bob, 'bob', NOW - 100);
  const spk = await store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: NOW - 100 });
  return {
    spk,
    alice,
    bob,
    async issue(enroller = alice, expiresAt = NOW + 7 * 86400) {
      const id = rand(16);
      const row: BundleRecord = { id, spkId: spk.id, opkPublic: rand(32), opkPrivateSealed: rand(60), addr: 'tcp://127.0.0.1:4100', enroller, createdAt: NOW - 50, expiresAt, state: 'issued' };
      await store.insertBundles([row]);
      return id;
    },
    approve(e, bundleId, opts = {}) {
      const now = opts.now ?? NOW;
      return store.approve({
        enrolleeId: e.id,
        eikB: e.eikB,
        bundleId,
        petName: opts.petName === undefined ? 'sensor' : opts.petName,
        enroller: opts.enroller ?? alice,
        now,
        expiresAt: now + (opts.ttl ?? TTL),
        ...(opts.attributes ? { attributes: opts.attributes } : {}),
      });
    },
    commit(e, bundleId, opts = {}) {
      return store.commitEnrollment({ enrolleeId: e.id, bundleId, ekB: opts.ekB ?? rand(32), ikB: opts.ikB ?? rand(32), now: opts.now ?? NOW + 1 });
    },
  };
}

async function seed(opened: OpenedStore): Promise<Fixture> {
  return { store: opened.store, rawBundle: opened.rawBundle, second: opened.second, tokens: opened.tokens, ...(await seedStore(opened.store)) };
}

async function stateOf(store: ServiceStore, e: Enrollee, now = NOW + 1): Promise<string> {
  return (await store.lookupPending(e.id, now)).status;
}

/** Registers the contract's tests for one backend, named `name` in the test names. */
export function storeContract(name: string, backend: ContractBackend): void {
  const fixture = async () => seed(await backend.open());

  describe(`${name}: an OPK is used at most once`, () => {
    it('commitEnrollment consumes the OPK and enrolls; a second commit for the bundle is ERR_OPK_USED', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        const pending = await fx.approve(e, b);
        assert.equal(pending.state, 'pending');
        assert.equal(pending.method, 'x3dh');
        assert.deepEqual(pending.eikB, e.eikB);
        assert.deepEqual(pending.bundleId, b);
        assert.equal(pending.approvedAt, NOW);
        assert.equal(pending.expiresAt, NOW + TTL);
        assert.equal(pending.failedAttempts, 0);
        assert.equal((await fx.store.getBundle(b))?.state, 'approved');

        const found = await fx.store.lookupPending(e.id, NOW + 1);
        assert.equal(found.status, 'ok');
        assert.ok(found.status === 'ok');
        assert.deepEqual(found.pending.bundle.id, b);
        assert.equal(found.pending.spk.id, fx.spk.id);
        assert.deepEqual(found.pending.spk.privateSealed, fx.spk.privateSealed);
        assert.ok(found.pending.bundle.opkPrivateSealed);

        const ek1 = rand(32);
        const ikB = rand(32);
        const enrolled = await fx.commit(e, b, { ekB: ek1, ikB, now: NOW + 5 });
        assert.equal(enrolled.state, 'enrolled');
        assert.deepEqual(enrolled.ikB, ikB);
        assert.equal(enrolled.eikB, null, 'EIK_B is deleted once IK_B replaces it');
        assert.equal(enrolled.enrolledAt, NOW + 5);
        assert.equal(await fx.store.isEkAccepted(ek1), true);

        const bundle = await fx.store.getBundle(b);
        assert.equal(bundle?.state, 'consumed');
        assert.equal(bundle?.opkPrivateSealed, null);
        const row = await fx.rawBundle(b);
        assert.equal(row?.opk_private_sealed, null, 'the sealed OPK private key is gone from the row');
        assert.equal(row?.state, 'consumed');

        const ek2 = rand(32);
        await rejectsCode(fx.commit(e, b, { ekB: ek2 }), 'ERR_OPK_USED');
        assert.equal(await fx.store.isEkAccepted(ek2), false, 'the failed commit recorded nothing');
        assert.equal(await stateOf(fx.store, e), 'enrolled');
        assert.deepEqual((await fx.store.getEnrolleeByIdentityKey(ikB))?.id, e.id);

        // Nor can another enrollee ride on the consumed bundle.
        const other = newEnrollee();
        await fx.approve(other, await fx.issue());
        await rejectsCode(fx.commit(other, b), 'ERR_OPK_USED');
        assert.equal(await stateOf(fx.store, other), 'ok');
      } finally {
        await fx.store.close();
      }
    });

    it('commitEnrollment refuses a bundle that is not the one the enrollee was approved with', async () => {
      // The enrollee ↔ bundle binding must hold inside the commit transaction: a service that
      // looked up the approval, then lost a race with a re-approval, must not enroll anyone
      // with an OPK approved for somebody else.
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const f = newEnrollee();
        const bE = await fx.issue();
        const bF = await fx.issue();
        await fx.approve(e, bE);
        await fx.approve(f, bF);
        const ek = rand(32);
        await rejectsCode(fx.commit(e, bF, { ekB: ek }), 'ERR_ENROLLEE_UNKNOWN');
        assert.equal(await fx.store.isEkAccepted(ek), false);
        assert.equal((await fx.store.getBundle(bF))?.state, 'approved', "f's OPK is untouched");
        assert.ok((await fx.store.getBundle(bF))?.opkPrivateSealed);
        assert.equal(await stateOf(fx.store, e), 'ok');
        assert.equal(await stateOf(fx.store, f), 'ok');
        // Both still enroll with their own bundles.
        assert.equal((await fx.commit(e, bE)).state, 'enrolled');
        assert.equal((await fx.commit(f, bF)).state, 'enrolled');
      } finally {
        await fx.store.close();
      }
    });

    it('the race "looked up bundle 1, enroller re-approved with bundle 2, bundle 1 went to another enrollee" enrolls nobody', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const f = newEnrollee();
        const b1 = await fx.issue();
        const b2 = await fx.issue();
        await fx.approve(e, b1);
        const looked = await fx.store.lookupPending(e.id, NOW + 1);
        assert.equal(looked.status, 'ok');
        await fx.approve(e, b2); // b1 back to 'issued'
        await fx.approve(f, b1); // b1 now approved for f
        await rejectsCode(fx.commit(e, b1), 'ERR_ENROLLEE_UNKNOWN');
        assert.equal((await fx.store.getBundle(b1))?.state, 'approved');
        assert.equal(await stateOf(fx.store, e), 'ok');
        assert.equal(await stateOf(fx.store, f), 'ok');
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: an EK_B is accepted at most once`, () => {
    it('a commit with an already accepted EK_B is ERR_REPLAY and changes nothing', async () => {
      const fx = await fixture();
      try {
        const e1 = newEnrollee();
        const e2 = newEnrollee();
        const b1 = await fx.issue();
        const b2 = await fx.issue();
        await fx.approve(e1, b1);
        await fx.approve(e2, b2);
        const ek = rand(32);
        assert.equal(await fx.store.isEkAccepted(ek), false);
        await fx.commit(e1, b1, { ekB: ek });
        assert.equal(await fx.store.isEkAccepted(ek), true);

        await rejectsCode(fx.commit(e2, b2, { ekB: ek }), 'ERR_REPLAY');
        // Rolled back: the bundle is still approved with its OPK, the enrollee still pending.
        const b = await fx.store.getBundle(b2);
        assert.equal(b?.state, 'approved');
        assert.ok(b?.opkPrivateSealed);
        const e = await fx.store.findEnrollee(toHex(e2.id));
        assert.equal(e?.state, 'pending');
        assert.equal(e?.ikB, null);
        assert.deepEqual(e?.eikB, e2.eikB);
        assert.equal(await stateOf(fx.store, e2), 'ok');
        assert.deepEqual(await fx.store.counts(), { pending: 1, enrolled: 1, revoked: 0 });

        // The same EK_B for the same enrollee again is a replay too, not a second enrollment.
        await rejectsCode(fx.commit(e1, b1, { ekB: ek }), 'ERR_REPLAY');
        // A fresh EK_B still works for e2: nothing was left half-done.
        assert.equal((await fx.commit(e2, b2)).state, 'enrolled');
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: a pending entry past its expiry is refused`, () => {
    it('lookupPending reports expired from expiresAt on, and commitEnrollment fails and rolls back', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b, { ttl: 60 });
        assert.equal(await stateOf(fx.store, e, NOW + 59), 'ok');
        assert.equal(await stateOf(fx.store, e, NOW + 60), 'expired');
        assert.equal(await stateOf(fx.store, e, NOW + 10_000), 'expired');

        const ek = rand(32);
        await rejectsCode(fx.commit(e, b, { ekB: ek, now: NOW + 60 }), 'ERR_ENROLLEE_UNKNOWN');
        assert.equal(await fx.store.isEkAccepted(ek), false, 'EK_B not recorded');
        const bundle = await fx.store.getBundle(b);
        assert.equal(bundle?.state, 'approved', 'OPK not consumed');
        assert.ok(bundle?.opkPrivateSealed);
        assert.equal((await fx.store.findEnrollee(toHex(e.id)))?.state, 'pending');

        // The enroller may approve it again (same bundle), and then it enrolls.
        await fx.approve(e, b, { now: NOW + 100 });
        assert.equal(await stateOf(fx.store, e, NOW + 101), 'ok');
        assert.equal((await fx.commit(e, b, { now: NOW + 101 })).state, 'enrolled');
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: checkMessage (checks 2 and 3 in one read)`, () => {
    it('answers as isEkAccepted then lookupPending do, in every state', async () => {
      const fx = await fixture();
      try {
        const separately = async (ekB: Uint8Array, id: Uint8Array, now: number) =>
          (await fx.store.isEkAccepted(ekB)) ? { status: 'replay' } : await fx.store.lookupPending(id, now);
        const cases: [string, Uint8Array, Uint8Array, number][] = [];
        // unknown id, fresh EK_B
        cases.push(['unknown', rand(32), rand(32), NOW + 1]);
        // pending and valid; then the same past its expiry
        const pending = newEnrollee();
        await fx.approve(pending, await fx.issue());
        cases.push(['ok', rand(32), pending.id, NOW + 1], ['expired', rand(32), pending.id, NOW + TTL + 1]);
        // enrolled: a fresh EK_B, and its accepted EK_B (a replay, whatever the id)
        const enrolled = newEnrollee();
        const ek = rand(32);
        await fx.approve(enrolled, await fx.issue());
        await fx.commit(enrolled, (await fx.store.findEnrollee(toHex(enrolled.id)))!.bundleId!, { ekB: ek });
        cases.push(['enrolled', rand(32), enrolled.id, NOW + 2], ['replay', ek, enrolled.id, NOW + 2], ['replay', ek, rand(32), NOW + 2]);
        // revoked
        const revoked = newEnrollee();
        await fx.approve(revoked, await fx.issue());
        await fx.store.revokeEnrollee(revoked.id, NOW + 1);
        cases.push(['revoked', rand(32), revoked.id, NOW + 2]);
        for (const [want, ekB, id, now] of cases) {
          assert.ok(fx.store.checkMessage, 'the store answers checks 2 and 3 in one read');
        const one = await fx.store.checkMessage(ekB, id, now);
          assert.equal(one.status, want);
          assert.deepEqual(one, await separately(ekB, id, now), want);
        }
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: EKA v2 (PQSPK_A beside SPK_A, bundles that know their version)`, () => {
    it('keeps an SPK\'s KEM prekey with it, finds it by its hash, and hands check 3 the bundle\'s version and the KEM prekey', async () => {
      const fx = await fixture();
      try {
        // An SPK made before EKA v2 has none.
        assert.equal(fx.spk.kem ?? null, null);
        const kem = { publicKey: rand(1184), hash: rand(32), seedSealed: rand(92) };
        const spk2 = await fx.store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: NOW - 10, kem });
        assert.deepEqual(spk2.kem, kem);
        assert.deepEqual((await fx.store.currentSignedPrekey())?.kem, kem, 'the current SPK comes with its KEM prekey');
        assert.deepEqual(await fx.store.getKemPrekey(kem.hash), kem);
        assert.equal(await fx.store.getKemPrekey(rand(32)), undefined);
        // A second KEM prekey with the same hash is refused (hash is unique), and takes its SPK with it.
        await assert.rejects(fx.store.addSignedPrekey({ publicKey: rand(32), privateSealed: rand(60), signature: rand(64), createdAt: NOW - 5, kem: { ...kem, publicKey: rand(1184) } }));
        assert.equal((await fx.store.currentSignedPrekey())?.id, spk2.id, 'the refused SPK was not kept without its KEM prekey');

        const v2 = rand(16);
        const v1 = rand(16);
        const base = { opkPrivateSealed: rand(60), addr: 'tcp://127.0.0.1:4100', enroller: fx.alice, createdAt: NOW - 5, expiresAt: NOW + 86400, state: 'issued' as const };
        await fx.store.insertBundles([
          { ...base, id: v2, spkId: spk2.id, opkPublic: rand(32), eka: 2 },
          { ...base, id: v1, spkId: fx.spk.id, opkPublic: rand(32) },
        ]);
        assert.equal((await fx.store.getBundle(v2))?.eka, 2);
        assert.equal((await fx.store.getBundle(v1))?.eka, 1, 'a bundle given no version is v1');
        const e = newEnrollee();
        await fx.approve(e, v2);
        const found = await fx.store.checkMessage!(rand(32), e.id, NOW + 1);
        assert.equal(found.status, 'ok');
        if (found.status === 'ok') {
          assert.equal(found.pending.bundle.eka, 2);
          assert.deepEqual(found.pending.spk.kem, kem);
        }
        const old = newEnrollee();
        await fx.approve(old, v1);
        const looked = await fx.store.lookupPending(old.id, NOW + 1);
        assert.equal(looked.status, 'ok');
        if (looked.status === 'ok') {
          assert.equal(looked.pending.bundle.eka, 1);
          assert.equal(looked.pending.spk.kem ?? null, null);
        }
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: a revoked enrollee is refused`, () => {
    it('a revoked pending enrollee: lookupPending → revoked, its bundle revoked, commits fail', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        assert.equal(await fx.store.revokeEnrollee(e.id, NOW + 2), true);
        assert.equal(await stateOf(fx.store, e), 'revoked');
        const bundle = await fx.store.getBundle(b);
        assert.equal(bundle?.state, 'revoked');
        assert.equal(bundle?.opkPrivateSealed, null);
        const rec = await fx.store.findEnrollee(toHex(e.id));
        assert.equal(rec?.state, 'revoked');
        assert.equal(rec?.revokedAt, NOW + 2);

        const ek = rand(32);
        await assert.rejects(fx.commit(e, b, { ekB: ek }), (err: unknown) => isEnrollError(err));
        assert.equal(await fx.store.isEkAccepted(ek), false);
        assert.equal(await stateOf(fx.store, e), 'revoked');

        assert.equal(await fx.store.revokeEnrollee(e.id, NOW + 3), false, 'already revoked');
        assert.equal((await fx.store.findEnrollee(toHex(e.id)))?.revokedAt, NOW + 2, 'the first revocation time stays');
        await rejectsCode(fx.approve(e, await fx.issue()), 'ERR_ENROLLEE_REVOKED');
        assert.equal(await fx.store.revokeEnrollee(rand(32), NOW), false, 'unknown id');
      } finally {
        await fx.store.close();
      }
    });

    it('a revoked enrolled enrollee: lookupPending → revoked, its consumed bundle stays consumed', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        await fx.commit(e, b);
        assert.equal(await fx.store.revokeEnrollee(e.id, NOW + 2), true);
        assert.equal(await stateOf(fx.store, e), 'revoked');
        assert.equal((await fx.store.getBundle(b))?.state, 'consumed');
        assert.deepEqual(await fx.store.counts(), { pending: 0, enrolled: 0, revoked: 1 });
        assert.equal((await fx.store.listEnrollees('revoked')).length, 1);
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: approve`, () => {
    it('refuses an unknown bundle and a bundle served to another enroller (ERR_BUNDLE_UNKNOWN)', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        await rejectsCode(fx.approve(e, rand(16)), 'ERR_BUNDLE_UNKNOWN', 'unknown');
        const bobs = await fx.issue(fx.bob);
        await rejectsCode(fx.approve(e, bobs, { enroller: fx.alice }), 'ERR_BUNDLE_UNKNOWN', "bob's bundle");
        assert.equal((await fx.store.getBundle(bobs))?.state, 'issued');
        assert.equal(await stateOf(fx.store, e), 'unknown', 'nothing was recorded');
        assert.equal((await fx.approve(e, bobs, { enroller: fx.bob })).state, 'pending');
      } finally {
        await fx.store.close();
      }
    });

    it('refuses a bundle approved for another enrollee, or consumed (ERR_BUNDLE_USED)', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const f = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        await rejectsCode(fx.approve(f, b), 'ERR_BUNDLE_USED', 'approved for e');
        assert.equal(await stateOf(fx.store, f), 'unknown');
        assert.equal(await stateOf(fx.store, e), 'ok', "e's approval is untouched");
        await fx.commit(e, b);
        await rejectsCode(fx.approve(f, b), 'ERR_BUNDLE_USED', 'consumed');
      } finally {
        await fx.store.close();
      }
    });

    it('refuses an expired bundle (ERR_BUNDLE_EXPIRED), from its expiresAt on', async () => {
      const fx = await fixture();
      try {
        const b = await fx.issue(fx.alice, NOW + 10);
        await rejectsCode(fx.approve(newEnrollee(), b, { now: NOW + 10 }), 'ERR_BUNDLE_EXPIRED', 'at expiry');
        await rejectsCode(fx.approve(newEnrollee(), b, { now: NOW + 11 }), 'ERR_BUNDLE_EXPIRED', 'after');
        assert.equal((await fx.store.getBundle(b))?.state, 'issued');
        assert.equal((await fx.approve(newEnrollee(), b, { now: NOW + 9 })).state, 'pending');
      } finally {
        await fx.store.close();
      }
    });

    it('re-approving a pending enrollee with a new bundle releases the old one to issued', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b1 = await fx.issue();
        const b2 = await fx.issue();
        await fx.approve(e, b1);
        assert.equal(await fx.store.recordFailure(e.id), 1);
        assert.equal(await fx.store.recordFailure(e.id), 2);
        const again = await fx.approve(e, b2, { now: NOW + 30, petName: 'renamed' });
        assert.deepEqual(again.bundleId, b2);
        assert.equal(again.petName, 'renamed');
        assert.equal(again.approvedAt, NOW + 30);
        assert.equal(again.failedAttempts, 0, 'a new approval clears the failure count');
        assert.equal((await fx.store.getBundle(b1))?.state, 'issued');
        assert.ok((await fx.store.getBundle(b1))?.opkPrivateSealed, 'the released OPK is still usable');
        assert.equal((await fx.store.getBundle(b2))?.state, 'approved');
        assert.deepEqual(await fx.store.counts(), { pending: 1, enrolled: 0, revoked: 0 });

        // The released bundle serves another enrollee; the old one can no longer commit with it.
        const f = newEnrollee();
        await fx.approve(f, b1);
        await rejectsCode(fx.commit(e, b1), 'ERR_ENROLLEE_UNKNOWN');
        assert.equal((await fx.commit(e, b2, { now: NOW + 31 })).state, 'enrolled');
        assert.equal((await fx.commit(f, b1, { now: NOW + 31 })).state, 'enrolled');
      } finally {
        await fx.store.close();
      }
    });

    it('a refused re-approval keeps the existing approval (the transaction rolls back)', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b1 = await fx.issue();
        await fx.approve(e, b1);
        await rejectsCode(fx.approve(e, rand(16)), 'ERR_BUNDLE_UNKNOWN');
        await rejectsCode(fx.approve(e, await fx.issue(fx.bob)), 'ERR_BUNDLE_UNKNOWN');
        assert.equal((await fx.store.getBundle(b1))?.state, 'approved');
        const found = await fx.store.lookupPending(e.id, NOW + 1);
        assert.ok(found.status === 'ok');
        assert.deepEqual(found.pending.bundle.id, b1);
      } finally {
        await fx.store.close();
      }
    });

    it('refuses an enrolled enrollee (ERR_REJECTED) and a revoked one (ERR_ENROLLEE_REVOKED)', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        await fx.commit(e, b);
        const spare = await fx.issue();
        await rejectsCode(fx.approve(e, spare), 'ERR_REJECTED');
        assert.equal((await fx.store.getBundle(spare))?.state, 'issued');
        assert.equal(await stateOf(fx.store, e), 'enrolled');

        const r = newEnrollee();
        await fx.approve(r, await fx.issue());
        await fx.store.revokeEnrollee(r.id, NOW);
        await rejectsCode(fx.approve(r, spare), 'ERR_ENROLLEE_REVOKED');
        assert.equal((await fx.store.getBundle(spare))?.state, 'issued');
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: revokeEnroller`, () => {
    it("revokes the enroller's unused bundles, drops its pending approvals, keeps its enrolled enrollees", async () => {
      const fx = await fixture();
      try {
        const issued = await fx.issue(fx.alice);
        const approvedB = await fx.issue(fx.alice);
        const consumedB = await fx.issue(fx.alice);
        const pendingE = newEnrollee();
        const enrolledE = newEnrollee();
        await fx.approve(pendingE, approvedB);
        await fx.approve(enrolledE, consumedB);
        await fx.commit(enrolledE, consumedB);
        // bob's things must not move.
        const bobIssued = await fx.issue(fx.bob);
        const bobApproved = await fx.issue(fx.bob);
        const bobE = newEnrollee();
        await fx.approve(bobE, bobApproved, { enroller: fx.bob });

        assert.equal(await fx.store.revokeEnroller(fx.alice, NOW + 7), true);
        assert.equal((await fx.store.getEnroller(fx.alice))?.revokedAt, NOW + 7);
        for (const id of [issued, approvedB]) {
          const b = await fx.store.getBundle(id);
          assert.equal(b?.state, 'revoked');
          assert.equal(b?.opkPrivateSealed, null);
        }
        assert.equal((await fx.store.getBundle(consumedB))?.state, 'consumed');
        assert.equal(await fx.store.findEnrollee(toHex(pendingE.id)), undefined, 'pending approval dropped');
        assert.equal(await stateOf(fx.store, pendingE), 'unknown');
        assert.equal(await stateOf(fx.store, enrolledE), 'enrolled');
        assert.equal((await fx.store.getBundle(bobIssued))?.state, 'issued');
        assert.equal((await fx.store.getBundle(bobApproved))?.state, 'approved');
        assert.equal(await stateOf(fx.store, bobE), 'ok');
        assert.deepEqual(await fx.store.counts(), { pending: 1, enrolled: 1, revoked: 0 });

        assert.equal(await fx.store.revokeEnroller(fx.alice, NOW + 8), false, 'already revoked');
        assert.equal((await fx.store.getEnroller(fx.alice))?.revokedAt, NOW + 7);
        assert.equal(await fx.store.revokeEnroller(rand(32), NOW), false, 'unknown enroller');

        // Re-allowing clears revoked_at; the revoked bundles stay dead.
        const back = await fx.store.allowEnroller(fx.alice, 'alice-2', NOW + 9);
        assert.equal(back.revokedAt, null);
        assert.equal(back.name, 'alice-2');
        assert.equal((await fx.store.getEnroller(fx.alice))?.revokedAt, null);
        assert.equal((await fx.store.listEnrollers()).length, 2);
        await rejectsCode(fx.approve(newEnrollee(), issued), 'ERR_BUNDLE_USED');
        assert.equal((await fx.approve(newEnrollee(), await fx.issue(fx.alice))).state, 'pending');
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: findEnrollee`, () => {
    it('finds by full id (either case, trimmed) and by an unambiguous prefix of 8+ hex characters', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        await fx.approve(e, await fx.issue());
        const hex = toHex(e.id);
        for (const q of [hex, hex.toUpperCase(), `  ${hex}\n`, hex.slice(0, 8), hex.slice(0, 9), hex.slice(0, 63)]) {
          assert.deepEqual((await fx.store.findEnrollee(q))?.id, e.id, q);
        }
        assert.equal(await fx.store.findEnrollee(toHex(rand(32))), undefined, 'no such id');
        const miss = (hex[0] === '0' ? '1' : '0') + hex.slice(1, 8);
        assert.equal(await fx.store.findEnrollee(miss), undefined, 'no such prefix');
      } finally {
        await fx.store.close();
      }
    });

    it('an ambiguous prefix is ERR_USAGE; a longer one resolves it', async () => {
      const fx = await fixture();
      try {
        // The store takes ids as given, so two ids can share their first 5 bytes.
        const shared = rand(5);
        const a = { id: Uint8Array.from([...shared, ...rand(27)]), eikB: rand(32) };
        const b = { id: Uint8Array.from([...shared, ...rand(27)]), eikB: rand(32) };
        while (a.id[5] === b.id[5]) b.id[5] = (b.id[5]! + 1) & 0xff;
        await fx.approve(a, await fx.issue());
        await fx.approve(b, await fx.issue());
        await rejectsCode(fx.store.findEnrollee(toHex(shared).slice(0, 8)), 'ERR_USAGE');
        await rejectsCode(fx.store.findEnrollee(toHex(shared)), 'ERR_USAGE');
        assert.deepEqual((await fx.store.findEnrollee(toHex(a.id).slice(0, 12)))?.id, a.id);
        assert.deepEqual((await fx.store.findEnrollee(toHex(b.id).slice(0, 12)))?.id, b.id);
      } finally {
        await fx.store.close();
      }
    });

    it('refuses input that is not 8 to 64 hex characters (ERR_USAGE), including LIKE wildcards', async () => {
      const fx = await fixture();
      try {
        await fx.approve(newEnrollee(), await fx.issue());
        for (const bad of ['', '1234567', 'abcdefgh', 'xyz', '%%%%%%%%', '________', '1234567%', 'a'.repeat(65), '12345678 9', '0x12345678']) {
          await rejectsCode(fx.store.findEnrollee(bad), 'ERR_USAGE', JSON.stringify(bad));
        }
      } finally {
        await fx.store.close();
      }
    });
  });


  describe(`${name}: two store instances on one database`, () => {
    it('a second instance sees the first one’s commits and cannot reuse the OPK or EK_B', async () => {
      const fx = await fixture();
      const other = await fx.second();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        assert.equal((await other.lookupPending(e.id, NOW + 1)).status, 'ok');
        const ek = rand(32);
        await fx.commit(e, b, { ekB: ek });
        assert.equal(await other.isEkAccepted(ek), true);
        assert.equal((await other.lookupPending(e.id, NOW + 1)).status, 'enrolled');
        await rejectsCode(
          other.commitEnrollment({ enrolleeId: e.id, bundleId: b, ekB: rand(32), ikB: rand(32), now: NOW + 1 }),
          'ERR_OPK_USED',
        );
        await rejectsCode(
          other.commitEnrollment({ enrolleeId: e.id, bundleId: b, ekB: ek, ikB: rand(32), now: NOW + 1 }),
          'ERR_REPLAY',
        );
      } finally {
        await other.close();
        await fx.store.close();
      }
    });

    it('racing commits of one bundle from both instances, 8 at once: exactly one succeeds, the rest ERR_OPK_USED', async () => {
      const fx = await fixture();
      const other = await fx.second();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        const inputs = Array.from({ length: 8 }, () => ({ enrolleeId: e.id, bundleId: b, ekB: rand(32), ikB: rand(32), now: NOW + 1 }));
        const results = await Promise.allSettled(inputs.map((i, n) => (n % 2 ? other : fx.store).commitEnrollment(i)));
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'ERR_OPK_USED', String(r.reason));
        const accepted = await Promise.all(inputs.map((i) => fx.store.isEkAccepted(i.ekB)));
        assert.equal(accepted.filter(Boolean).length, 1, 'only the winner\'s EK_B is recorded');
      } finally {
        await other.close();
        await fx.store.close();
      }
    });

    it('racing the same EK_B from both instances: exactly one succeeds, the rest ERR_REPLAY', async () => {
      const fx = await fixture();
      const other = await fx.second();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        const ekB = rand(32);
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, n) => (n % 2 ? other : fx.store).commitEnrollment({ enrolleeId: e.id, bundleId: b, ekB, ikB: rand(32), now: NOW + 1 })),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'ERR_REPLAY', String(r.reason));
      } finally {
        await other.close();
        await fx.store.close();
      }
    });

    it('racing approvals of one bundle for 8 enrollees from both instances: exactly one succeeds, the rest ERR_BUNDLE_USED', async () => {
      const fx = await fixture();
      const other = await fx.second();
      try {
        const b = await fx.issue();
        const results = await Promise.allSettled(
          Array.from({ length: 8 }, (_, n) => {
            const e = newEnrollee();
            return (n % 2 ? other : fx.store).approve({ enrolleeId: e.id, eikB: e.eikB, bundleId: b, petName: null, enroller: fx.alice, now: NOW, expiresAt: NOW + TTL });
          }),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
        for (const r of results) if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'ERR_BUNDLE_USED', String(r.reason));
        assert.deepEqual(await fx.store.counts(), { pending: 1, enrolled: 0, revoked: 0 });
      } finally {
        await other.close();
        await fx.store.close();
      }
    });
  });

  describe(`${name}: group commit (commitEnrollments)`, () => {
    it('each input succeeds or fails on its own, in place; failures write nothing', async () => {
      const fx = await fixture();
      try {
        if (fx.store.commitEnrollments === undefined) return;
        const good = [newEnrollee(), newEnrollee(), newEnrollee()];
        const bundles = [];
        for (const e of good) {
          const b = await fx.issue();
          await fx.approve(e, b);
          bundles.push(b);
        }
        const unknown = newEnrollee();
        const sharedEk = rand(32);
        const ikTaken = rand(32);
        const inputs: CommitEnrollmentInput[] = [
          { enrolleeId: good[0]!.id, bundleId: bundles[0]!, ekB: sharedEk, ikB: ikTaken, now: NOW + 1 },
          { enrolleeId: unknown.id, bundleId: rand(16), ekB: rand(32), ikB: rand(32), now: NOW + 1 },
          { enrolleeId: good[1]!.id, bundleId: bundles[1]!, ekB: sharedEk, ikB: rand(32), now: NOW + 1 },
          { enrolleeId: good[2]!.id, bundleId: bundles[2]!, ekB: rand(32), ikB: rand(32), now: NOW + 1 },
          { enrolleeId: good[0]!.id, bundleId: bundles[0]!, ekB: rand(32), ikB: rand(32), now: NOW + 1 },
        ];
        const out = await fx.store.commitEnrollments(inputs);
        assert.equal(out.length, inputs.length);
        const codes = out.map((r) => (isEnrollError(r) ? r.code : (r as { state: string }).state));
        // Which of two inputs sharing an EK_B (or a bundle) wins is the store's order; exactly one does.
        assert.equal(codes[1], 'ERR_OPK_USED');
        assert.equal(codes[3], 'enrolled');
        assert.deepEqual([codes[0], codes[2]].sort(), ['ERR_REPLAY', 'enrolled'].sort());
        assert.ok(codes[4] === 'ERR_OPK_USED' || codes[4] === 'enrolled');
        assert.equal([codes[0], codes[4]].filter((c) => c === 'enrolled').length, 1, 'one enrollment of good[0], whichever input made it');
        const counts = await fx.store.counts();
        assert.equal(counts.enrolled, out.filter((r) => !isEnrollError(r)).length);
        for (const [i, r] of out.entries()) {
          if (isEnrollError(r)) continue;
          assert.equal((await fx.store.checkMessage!(inputs[i]!.ekB, inputs[i]!.enrolleeId, NOW + 2)).status, 'replay');
        }
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: attributes and scopes (schema 3)`, () => {
    it('an approval records its attributes; the pending lookup, the commit and every read return them', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        const approved = await fx.approve(e, b, { attributes: { site: 'berlin', role: 'sensor' } });
        assert.deepEqual(approved.attributes, { role: 'sensor', site: 'berlin' });
        const pending = await fx.store.lookupPending(e.id, NOW + 1);
        assert.equal(pending.status, 'ok');
        assert.deepEqual(pending.status === 'ok' && pending.pending.enrollee.attributes, { role: 'sensor', site: 'berlin' });
        const enrolled = await fx.commit(e, b);
        assert.deepEqual(enrolled.attributes, { role: 'sensor', site: 'berlin' });
        if (fx.store.commitEnrollments) {
          const e2 = newEnrollee();
          const b2 = await fx.issue();
          await fx.approve(e2, b2, { attributes: { role: 'camera' } });
          const [r] = await fx.store.commitEnrollments([{ enrolleeId: e2.id, bundleId: b2, ekB: rand(32), ikB: rand(32), now: NOW + 1 }]);
          assert.ok(!isEnrollError(r));
          assert.deepEqual((r as { attributes?: unknown }).attributes, { role: 'camera' });
        }
        assert.deepEqual((await fx.store.findEnrollee(toHex(e.id)))?.attributes, { role: 'sensor', site: 'berlin' });
        assert.deepEqual((await fx.store.listEnrollees('enrolled')).find((r) => toHex(r.id) === toHex(e.id))?.attributes, { role: 'sensor', site: 'berlin' });
        // Without attributes: an empty set, not undefined.
        const plain = newEnrollee();
        assert.deepEqual((await fx.approve(plain, await fx.issue())).attributes, {});
      } finally {
        await fx.store.close();
      }
    });

    it('setAttributes sets and unsets in one step, refuses a missing key, the 17th attribute and a revoked enrollee, and changes nothing then', async () => {
      const fx = await fixture();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b, { attributes: { role: 'sensor' } });
        await fx.commit(e, b);
        const r = await fx.store.setAttributes(e.id, { site: 'paris', role: 'camera' }, []);
        assert.deepEqual(r?.before.attributes, { role: 'sensor' });
        assert.deepEqual(r?.after.attributes, { role: 'camera', site: 'paris' });
        const u = await fx.store.setAttributes(e.id, {}, ['role']);
        assert.deepEqual(u?.after.attributes, { site: 'paris' });
        await rejectsCode(fx.store.setAttributes(e.id, {}, ['floor']), 'ERR_USAGE', 'unset a missing key');
        const many: Record<string, string> = {};
        for (let i = 0; i < 16; i++) many[`k${i}`] = 'v';
        await rejectsCode(fx.store.setAttributes(e.id, many, []), 'ERR_USAGE', '17 attributes');
        assert.deepEqual((await fx.store.findEnrollee(toHex(e.id)))?.attributes, { site: 'paris' });
        assert.equal(await fx.store.setAttributes(rand(32), { role: 'x' }, []), undefined);
        assert.equal(await fx.store.revokeEnrollee(e.id, NOW + 5), true);
        await rejectsCode(fx.store.setAttributes(e.id, { role: 'x' }, []), 'ERR_ENROLLEE_REVOKED', 'revoked');
        assert.deepEqual((await fx.store.findEnrollee(toHex(e.id)))?.attributes, { site: 'paris' });
      } finally {
        await fx.store.close();
      }
    });

    it('a change through one store instance is seen by another at its next read', async () => {
      const fx = await fixture();
      const other = await fx.second();
      try {
        const e = newEnrollee();
        const b = await fx.issue();
        await fx.approve(e, b);
        await fx.commit(e, b);
        await fx.store.setAttributes(e.id, { role: 'operator' }, []);
        assert.deepEqual((await other.getEnrolleeByIdentityKey((await fx.store.findEnrollee(toHex(e.id)))!.ikB!))?.attributes, { role: 'operator' });
      } finally {
        await other.close();
        await fx.store.close();
      }
    });

    it('allowEnroller records scopes; allowing again without them leaves none', async () => {
      const fx = await fixture();
      try {
        const key = rand(32);
        const rec = await fx.store.allowEnroller(key, 'line3', NOW, { role: ['camera', 'sensor'], site: '*' });
        assert.deepEqual(rec.scopes, { role: ['camera', 'sensor'], site: '*' });
        assert.deepEqual((await fx.store.getEnroller(key))?.scopes, { role: ['camera', 'sensor'], site: '*' });
        assert.deepEqual((await fx.store.listEnrollers()).find((r) => toHex(r.publicKey) === toHex(key))?.scopes, { role: ['camera', 'sensor'], site: '*' });
        const again = await fx.store.allowEnroller(key, 'line3', NOW + 1);
        assert.equal(again.scopes, undefined);
      } finally {
        await fx.store.close();
      }
    });
  });

  describe(`${name}: token identities carry their attributes (docs/policies.md)`, () => {
    const cert = () => ({ serial: toHex(rand(16)), der: rand(200), notAfter: NOW + 86400 });
    const jti = () => Buffer.from(rand(24)).toString('base64url');

    it('a token created with attributes is redeemed; the enrollee carries exactly those attributes in every read', async () => {
      const fx = await fixture();
      const tokens = await fx.tokens();
      try {
        const id = rand(32);
        const t = jti();
        // Given unsorted: the store keeps the canonical (sorted) set, as for an approval.
        await tokens.createTokenIdentity({ id, name: 'sensor-12', enroller: fx.alice, jti: t, now: NOW, expiresAt: NOW + TTL, attributes: { site: 'berlin', role: 'sensor', floor: '3' } });
        const want = { floor: '3', role: 'sensor', site: 'berlin' };
        const got = await tokens.getToken(t);
        assert.equal(got?.identity.state, 'pending');
        assert.deepEqual(got?.identity.attributes, want);
        assert.deepEqual(Object.keys(got!.identity.attributes), ['floor', 'role', 'site']);
        const pending = await fx.store.findEnrollee(toHex(id));
        assert.equal(pending?.method, 'token');
        assert.deepEqual(pending?.attributes, want);

        const c = cert();
        await tokens.redeemToken({ jti: t, enrolleeId: id, now: NOW + 10, cert: c });
        const after = await tokens.getToken(t);
        assert.equal(after?.identity.state, 'enrolled');
        assert.equal(after?.token.usedAt, NOW + 10);
        assert.deepEqual(after?.identity.attributes, want);
        assert.deepEqual((await tokens.getCertificate(c.serial))?.identity.attributes, want);
        const enrolled = await fx.store.findEnrollee(toHex(id));
        assert.equal(enrolled?.state, 'enrolled');
        assert.deepEqual(enrolled?.attributes, want);
        assert.deepEqual((await fx.store.listEnrollees('enrolled')).find((r) => toHex(r.id) === toHex(id))?.attributes, want);
        // A second redemption is refused and changes nothing.
        await rejectsCode(tokens.redeemToken({ jti: t, enrolleeId: id, now: NOW + 11, cert: cert() }), 'ERR_TOKEN_USED', 'second redemption');
        assert.deepEqual((await fx.store.findEnrollee(toHex(id)))?.attributes, want);

        // set-attr on the redeemed identity is what its next certificate reads (getCertificate's identity).
        await fx.store.setAttributes(id, { role: 'camera' }, ['floor']);
        assert.deepEqual((await tokens.getCertificate(c.serial))?.identity.attributes, { role: 'camera', site: 'berlin' });

        // Without attributes: an empty set, not undefined.
        const plain = rand(32);
        const tp = jti();
        await tokens.createTokenIdentity({ id: plain, name: 'plain', enroller: fx.alice, jti: tp, now: NOW, expiresAt: NOW + TTL });
        assert.deepEqual((await tokens.getToken(tp))?.identity.attributes, {});
        await tokens.redeemToken({ jti: tp, enrolleeId: plain, now: NOW + 10, cert: cert() });
        assert.deepEqual((await fx.store.findEnrollee(toHex(plain)))?.attributes, {});
      } finally {
        await tokens.close();
        await fx.store.close();
      }
    });

    it('the store refuses attributes out of bounds (17 of them, a bad key, a long or control-character value) and writes nothing', async () => {
      const fx = await fixture();
      const tokens = await fx.tokens();
      try {
        const many: Record<string, string> = {};
        for (let i = 0; i < 17; i++) many[`k${i}`] = 'v';
        const bad: [string, Record<string, string>][] = [
          ['17 attributes', many],
          ['an upper-case key', { Role: 'sensor' }],
          ['a key of 33 characters', { ['k'.repeat(33)]: 'v' }],
          ['a value of 65 bytes', { site: 'x'.repeat(65) }],
          ['a value of 33 two-byte characters (66 bytes)', { site: 'é'.repeat(33) }],
          ['an empty value', { site: '' }],
          ['a control character', { site: 'ber\nlin' }],
          ['a bidirectional override', { site: 'ber\u202elin' }],
        ];
        for (const [what, attributes] of bad) {
          const id = rand(32);
          const t = jti();
          await rejectsCode(tokens.createTokenIdentity({ id, name: 'sensor-13', enroller: fx.alice, jti: t, now: NOW, expiresAt: NOW + TTL, attributes }), 'ERR_INVALID_ARG', what);
          assert.equal(await tokens.getToken(t), undefined, `${what}: no token`);
          assert.equal(await fx.store.findEnrollee(toHex(id)), undefined, `${what}: no identity`);
        }
        // 16 attributes and values of exactly 64 bytes are within bounds; the name was never taken.
        const sixteen: Record<string, string> = {};
        for (let i = 0; i < 16; i++) sixteen[`k${i}`] = 'é'.repeat(32);
        const id = rand(32);
        const t = jti();
        await tokens.createTokenIdentity({ id, name: 'sensor-13', enroller: fx.alice, jti: t, now: NOW, expiresAt: NOW + TTL, attributes: sixteen });
        await tokens.redeemToken({ jti: t, enrolleeId: id, now: NOW + 1, cert: cert() });
        assert.deepEqual((await fx.store.findEnrollee(toHex(id)))?.attributes, Object.fromEntries(Object.entries(sixteen).sort(([a], [b]) => (a < b ? -1 : 1))));
      } finally {
        await tokens.close();
        await fx.store.close();
      }
    });
  });

  describe(`${name}: service outlets (schema 4)`, () => {
    it('put adds and replaces, get and list read them back, remove deletes once', async () => {
      const fx = await fixture();
      try {
        assert.deepEqual(await fx.store.listOutlets(), []);
        assert.equal(await fx.store.getOutlet('web'), undefined);
        await fx.store.putOutlet({ name: 'web', host: '127.0.0.1', port: 8080, allow: null, createdAt: NOW });
        await fx.store.putOutlet({ name: 'db', host: 'localhost', port: 5432, allow: 'pump-7', createdAt: NOW + 1 });
        assert.deepEqual(await fx.store.getOutlet('web'), { name: 'web', host: '127.0.0.1', port: 8080, allow: null, createdAt: NOW });
        await fx.store.putOutlet({ name: 'web', host: '::1', port: 8081, allow: 'a,b', createdAt: NOW + 2 });
        assert.deepEqual(
          (await fx.store.listOutlets()).map((o) => [o.name, o.host, o.port, o.allow]),
          [
            ['db', 'localhost', 5432, 'pump-7'],
            ['web', '::1', 8081, 'a,b'],
          ],
        );
        assert.equal(await fx.store.removeOutlet('web'), true);
        assert.equal(await fx.store.removeOutlet('web'), false);
        assert.deepEqual((await fx.store.listOutlets()).map((o) => o.name), ['db']);
        await assert.rejects(fx.store.putOutlet({ name: 'bad', host: 'h', port: 0, allow: null, createdAt: NOW }));
      } finally {
        await fx.store.close();
      }
    });
  });
  describe(`${name}: replicas and the device outlets they hold (schema 5)`, () => {
    const Y = new Uint8Array(32).fill(0x59);
    const Z = new Uint8Array(32).fill(0x5a);
    it('a heartbeat inserts then refreshes; outlets are found through fresh replicas only, newest first; a session and a replica are forgotten', async () => {
      const fx = await fixture();
      try {
        assert.deepEqual(await fx.store.listReplicas(), []);
        await fx.store.replicaHeartbeat({ id: 'r-a', address: '127.0.0.1:4200', startedAt: NOW, lastSeen: NOW });
        await fx.store.replicaHeartbeat({ id: 'r-b', address: null, startedAt: NOW, lastSeen: NOW + 1 });
        await fx.store.replicaHeartbeat({ id: 'r-a', address: '127.0.0.1:4201', startedAt: NOW, lastSeen: NOW + 5 });
        assert.deepEqual(await fx.store.listReplicas(), [
          { id: 'r-a', address: '127.0.0.1:4201', startedAt: NOW, lastSeen: NOW + 5 },
          { id: 'r-b', address: null, startedAt: NOW, lastSeen: NOW + 1 },
        ]);
        await fx.store.putDeviceOutlets({ replicaId: 'r-a', session: 1, enrolleeId: Y, names: ['ssh', 'web'], since: NOW });
        await fx.store.putDeviceOutlets({ replicaId: 'r-b', session: 7, enrolleeId: Y, names: ['web'], since: NOW + 1 });
        await fx.store.putDeviceOutlets({ replicaId: 'r-a', session: 2, enrolleeId: Z, names: ['db'], since: NOW });
        const found = await fx.store.findDeviceOutlets(Y, NOW);
        assert.deepEqual(
          found.map((h) => [h.replicaId, h.address, h.session, h.name, h.since, h.lastSeen]),
          [
            ['r-b', null, 7, 'web', NOW + 1, NOW + 1],
            ['r-a', '127.0.0.1:4201', 1, 'ssh', NOW, NOW + 5],
            ['r-a', '127.0.0.1:4201', 1, 'web', NOW, NOW + 5],
          ],
        );
        // r-b's heartbeat (NOW + 1) is older than the bound: its rows are ignored, not deleted.
        assert.deepEqual((await fx.store.findDeviceOutlets(Y, NOW + 2)).map((h) => `${h.replicaId}/${h.name}`), ['r-a/ssh', 'r-a/web']);
        // A session registering again replaces its names.
        await fx.store.putDeviceOutlets({ replicaId: 'r-a', session: 1, enrolleeId: Y, names: ['ssh'], since: NOW + 3 });
        assert.deepEqual((await fx.store.findDeviceOutlets(Y, NOW + 2)).map((h) => `${h.replicaId}/${h.session}/${h.name}/${h.since}`), [`r-a/1/ssh/${NOW + 3}`]);
        await fx.store.removeDeviceOutlets('r-a', 1);
        assert.deepEqual(await fx.store.findDeviceOutlets(Y, NOW + 2), []);
        assert.equal((await fx.store.findDeviceOutlets(Z, NOW)).length, 1);
        // Removing a replica takes its outlets with it.
        await fx.store.removeReplica('r-a');
        assert.deepEqual(await fx.store.findDeviceOutlets(Z, 0), []);
        assert.deepEqual((await fx.store.listReplicas()).map((r) => r.id), ['r-b']);
        // Pruning: replicas last seen before the bound go, with their rows.
        await fx.store.replicaHeartbeat({ id: 'r-c', address: 'h:1', startedAt: NOW, lastSeen: NOW + 100 });
        assert.equal(await fx.store.pruneReplicas(NOW + 50), 1);
        assert.deepEqual(await fx.store.findDeviceOutlets(Y, 0), []);
        assert.deepEqual((await fx.store.listReplicas()).map((r) => r.id), ['r-c']);
        // The checks of the schema hold: an id of 65 bytes, an enrollee id that is not 32 bytes.
        await assert.rejects(fx.store.replicaHeartbeat({ id: 'x'.repeat(65), address: null, startedAt: NOW, lastSeen: NOW }));
        await assert.rejects(fx.store.putDeviceOutlets({ replicaId: 'r-c', session: 1, enrolleeId: new Uint8Array(31), names: ['a'], since: NOW }));
      } finally {
        await fx.store.close();
      }
    });
  });
}
