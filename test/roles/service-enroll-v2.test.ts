/**
 * EKA v2 on the service's side (src/roles/service/enroll.ts with acceptV2), driven directly
 * against a real ServiceHome and SQLite store, and the downgrade refusals of
 * docs/protocol.md §5A.3–§5A.5: a v1 message for a v2 bundle (and the reverse), a message
 * whose version byte is flipped, a wrong-length message, a ciphertext for another ML-KEM key
 * and a tampered ciphertext (implicit rejection: the same opaque REJECTED as a bad AEAD
 * tag, counted as a failed attempt), a KEM prekey that does not match the signed hash.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { mlKem768Encapsulate, mlKem768Keygen } from '../../src/crypto/mlkem.js';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { isEnrollError } from '../../src/errors.js';
import { signBundle, verifyBundle, type Bundle, type BundleV2 } from '../../src/protocol/codec/bundle.js';
import {
  ENROLLMENT_MESSAGE_V2_LEN,
  HEADER_V2_LEN,
  enrolleeId,
  enrolleeSession,
  initiate,
  initiateV2,
} from '../../src/protocol/enrollment/index.js';
import { ACCEPT_AAD, decodeAcceptance, decodeEnrollResponse, ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { handleEnrollment, type EnrollOutcome } from '../../src/roles/service/enroll.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import type { Decision, DecisionFields, DecisionLog } from '../../src/roles/service/log.js';
import { parseRate, TokenBuckets } from '../../src/roles/service/limits.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { testPool } from '../helpers/pool.js';

const ADDRESS = 'tcp://127.0.0.1:4100';
const NOW = 1_750_000_000;

let root: string;
let svc: ServiceHome;
let enroller: Uint8Array;
/** With OCKAM_ENROLL_TEST_WORKERS (test/pool), every enrollment here runs on a pool of workers. */
let pool: Awaited<ReturnType<typeof testPool>>;
let pqspkA: Uint8Array;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'ockam-svc-enroll-v2-'));
  svc = await ServiceHome.init(join(root, 'home'), { address: ADDRESS, now: NOW - 1000 });
  enroller = generateX25519().publicKey;
  await svc.store.allowEnroller(enroller, 'test-enroller', NOW - 1000);
  pool = await testPool(svc);
  const spk = await svc.store.currentSignedPrekey();
  assert.ok(spk?.kem, 'service init made a KEM prekey with the SPK');
  pqspkA = spk.kem.publicKey;
  assert.equal(toHex((await svc.store.getKemPrekey(spk.kem.hash))!.publicKey), toHex(pqspkA));
});
after(async () => {
  await pool?.close();
  await svc?.close();
  rmSync(root, { recursive: true, force: true });
});

function spyLog(): DecisionLog & { entries: { decision: Decision; fields: DecisionFields }[] } {
  const entries: { decision: Decision; fields: DecisionFields }[] = [];
  const log = ((decision: Decision, fields: DecisionFields) => {
    entries.push({ decision, fields });
  }) as DecisionLog & { entries: typeof entries };
  log.entries = entries;
  return log;
}

/** A bundle of EKA version `eka`, made and recorded the way serveBundles does. */
async function issueBundle(eka: 1 | 2): Promise<Bundle> {
  const spk = (await svc.store.currentSignedPrekey())!;
  const opk = generateX25519();
  const bundleId = new Uint8Array(randomBytes(16));
  const expiresAt = NOW + svc.settings.bundleTtl;
  const bundle = signBundle(
    {
      bundleId,
      ikA: svc.ikA.publicKey,
      spkA: spk.publicKey,
      spkSig: spk.signature,
      opkA: opk.publicKey,
      ...(eka === 2 ? { kemHash: spk.kem!.hash } : {}),
      expiresAt,
      addr: ADDRESS,
    },
    svc.ikA.privateKey,
  );
  await svc.store.insertBundles([
    {
      id: bundleId,
      spkId: spk.id,
      opkPublic: opk.publicKey,
      opkPrivateSealed: svc.sealer.seal(opk.privateKey, 'opk', bundleId),
      addr: ADDRESS,
      enroller,
      createdAt: NOW,
      expiresAt,
      state: 'issued',
      eka,
    },
  ]);
  opk.wipe();
  return verifyBundle(bundle, { now: NOW, ikA: svc.ikA.publicKey });
}

async function approved(eka: 1 | 2): Promise<{ eikB: KeyPair; id: Uint8Array; bundle: Bundle }> {
  const eikB = generateX25519();
  const id = enrolleeId(eikB.publicKey);
  const bundle = await issueBundle(eka);
  await svc.store.approve({ enrolleeId: id, eikB: eikB.publicKey, bundleId: bundle.bundleId, petName: 'pq', enroller, now: NOW, expiresAt: NOW + 3600 });
  return { eikB, id, bundle };
}

function assertRejected(out: EnrollOutcome, status: number, log: ReturnType<typeof spyLog>, code: string): void {
  const last = log.entries.at(-1);
  assert.equal(out.status, status, `status ${out.status}: ${JSON.stringify(last?.fields)}`);
  assert.deepEqual(out.response, Uint8Array.of(status), 'a rejection is exactly the 1-byte status');
  assert.equal(last?.decision, 'rejected');
  assert.ok(String(last?.fields.reason).startsWith(`${code}:`), `reason ${String(last?.fields.reason)} names ${code}`);
}

async function failedAttempts(id: Uint8Array): Promise<number> {
  return (await svc.store.findEnrollee(toHex(id)))!.failedAttempts;
}

describe('EKA v2 enrollment at the service', () => {
  it('a v2 message for a v2 bundle is ACCEPTED, and the acceptance opens under the v2 session keys', async () => {
    const { eikB, id, bundle } = await approved(2);
    const attempt = initiateV2({ bundle: bundle as BundleV2, kemPrekey: pqspkA, eikB });
    assert.equal(attempt.message.length, ENROLLMENT_MESSAGE_V2_LEN);
    const log = spyLog();
    const out = await handleEnrollment(svc, attempt.message, NOW + 1, log, 'peer');
    assert.equal(out.status, ENROLL_STATUS.ACCEPTED, JSON.stringify(log.entries));
    const acc = decodeAcceptance(enrolleeSession(attempt.session).recv.open(decodeEnrollResponse(out.response), concat(ACCEPT_AAD, id)));
    assert.ok(equalBytes(acc.enrolleeId, id));
    assert.equal(log.entries.at(-1)?.fields.eka, 2);
    const b = await svc.store.getBundle(bundle.bundleId);
    assert.equal(b?.state, 'consumed');
    assert.equal(b?.eka, 2);
  });

  it('v1 still works beside it: a v1 message for a v1 bundle is ACCEPTED', async () => {
    const { eikB, bundle } = await approved(1);
    const log = spyLog();
    const out = await handleEnrollment(svc, initiate({ bundle, eikB }).message, NOW + 1, log);
    assert.equal(out.status, ENROLL_STATUS.ACCEPTED, JSON.stringify(log.entries));
    assert.equal(log.entries.at(-1)?.fields.eka, 1);
  });
});

describe('EKA v2: no downgrade, opaque refusals', () => {
  it('a v1 message for a v2 bundle is REJECTED (ERR_EKA_VERSION) before any crypto, and is no failed attempt', async () => {
    const { eikB, id, bundle } = await approved(2);
    // The v1 computation over the same keys, as a downgrading enrollee (or attacker) would send it.
    const asV1 = { ...bundle, version: 1 } as unknown as Bundle;
    delete (asV1 as { kemHash?: unknown }).kemHash;
    const v1 = initiate({ bundle: asV1, eikB });
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, v1.message, NOW + 1, log), ENROLL_STATUS.REJECTED, log, 'ERR_EKA_VERSION');
    assert.equal(await failedAttempts(id), 0);
    // The enrollee can still enroll with v2.
    const ok = await handleEnrollment(svc, initiateV2({ bundle: bundle as BundleV2, kemPrekey: pqspkA, eikB }).message, NOW + 2, spyLog());
    assert.equal(ok.status, ENROLL_STATUS.ACCEPTED);
  });

  it('a v2 message for a v1 bundle is REJECTED (ERR_EKA_VERSION)', async () => {
    const { eikB, bundle } = await approved(1);
    const spk = (await svc.store.currentSignedPrekey())!;
    const asV2 = { ...bundle, version: 2, kemHash: spk.kem!.hash } as BundleV2;
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, initiateV2({ bundle: asV2, kemPrekey: pqspkA, eikB }).message, NOW + 1, log), ENROLL_STATUS.REJECTED, log, 'ERR_EKA_VERSION');
  });

  it('the library never falls back: initiate() refuses a v2 bundle (ERR_EKA_VERSION)', async () => {
    const { eikB, bundle } = await approved(2);
    assert.throws(() => initiate({ bundle, eikB }), (e) => isEnrollError(e, 'ERR_EKA_VERSION'));
  });

  it('a v2 message with its version byte flipped, or of the wrong length, is MALFORMED', async () => {
    const { eikB, bundle } = await approved(2);
    const m = initiateV2({ bundle: bundle as BundleV2, kemPrekey: pqspkA, eikB }).message;
    for (const v of [0, 1, 3, 0xff]) {
      const x = Uint8Array.from(m);
      x[0] = v;
      const log = spyLog();
      assertRejected(await handleEnrollment(svc, x, NOW + 1, log), ENROLL_STATUS.MALFORMED, log, 'ERR_MESSAGE_LENGTH');
    }
    for (const n of [ENROLLMENT_MESSAGE_V2_LEN - 1, ENROLLMENT_MESSAGE_V2_LEN + 1, HEADER_V2_LEN, 177]) {
      const log = spyLog();
      const x = n <= m.length ? m.subarray(0, n) : concat(m, new Uint8Array(n - m.length));
      assertRejected(await handleEnrollment(svc, x, NOW + 1, log), ENROLL_STATUS.MALFORMED, log, 'ERR_MESSAGE_LENGTH');
    }
  });

  it('a ciphertext for another ML-KEM key, or a tampered one, ends as the same REJECTED as a bad tag (implicit rejection)', async () => {
    const { eikB, id, bundle } = await approved(2);
    const good = initiateV2({ bundle: bundle as BundleV2, kemPrekey: pqspkA, eikB }).message;
    const ctStart = 1 + 32 + 32;
    // (a) The ciphertext swapped for one encapsulated to another key.
    const other = mlKem768Keygen();
    const swapped = Uint8Array.from(good);
    swapped.set(mlKem768Encapsulate(other.publicKey).cipherText, ctStart);
    // (b) One bit of the ciphertext flipped. (c) One bit of the AEAD tag flipped.
    const flipped = Uint8Array.from(good);
    flipped[ctStart + 500]! ^= 0x01;
    const badTag = Uint8Array.from(good);
    badTag[badTag.length - 1]! ^= 0x01;
    // Like a bad tag, each is a failed decryption (check 4): charged to its source, never to
    // the enrollee (docs/threat-model.md §5.4), so the source's bucket of 3 is empty after them.
    const failures = new TokenBuckets(parseRate('3/h', 'test')!);
    const peer = '192.0.2.7:40000';
    const responses: string[] = [];
    for (const msg of [swapped, flipped, badTag]) {
      const log = spyLog();
      const out = await handleEnrollment(svc, msg, NOW + 1, log, peer, { failuresPerSource: failures });
      assertRejected(out, ENROLL_STATUS.REJECTED, log, 'ERR_ENROLLMENT_DECRYPT');
      assert.equal(log.entries.at(-1)?.fields.counted, 'source', 'each is charged to its source');
      responses.push(toHex(out.response));
      assert.equal(await failedAttempts(id), 0, 'and never to the enrollee');
    }
    assert.equal(new Set(responses).size, 1, 'the peer sees one and the same answer for all three');
    assert.equal((await handleEnrollment(svc, badTag, NOW + 1, spyLog(), peer, { failuresPerSource: failures })).status, ENROLL_STATUS.RATE_LIMITED);
    // A message computed with a KEM prekey the service did not sign cannot even be made: the
    // enrollee checks the key against the bundle's KEM_hash first.
    assert.throws(() => initiateV2({ bundle: bundle as BundleV2, kemPrekey: other.publicKey, eikB }), (e) => isEnrollError(e, 'ERR_KEM_PREKEY'));
    assert.throws(() => initiateV2({ bundle: bundle as BundleV2, kemPrekey: pqspkA.subarray(1), eikB }), (e) => isEnrollError(e, 'ERR_KEM_PREKEY'));
    // The good message still enrolls (the failures above did not consume anything).
    assert.equal((await handleEnrollment(svc, good, NOW + 2, spyLog())).status, ENROLL_STATUS.ACCEPTED);
  });

  it('a KEM prekey that matches the signed hash but fails FIPS 203\'s modulus check is ERR_KEM_PREKEY, before anything is sent', async () => {
    const { eikB, bundle } = await approved(2);
    const bad = Uint8Array.from(pqspkA);
    bad.fill(0xff, 0, 3); // the first two 12-bit coefficients of t̂ become 4095 ≥ q = 3329
    const signedBad = { ...(bundle as BundleV2), kemHash: new Uint8Array(await crypto.subtle.digest('SHA-256', bad)) };
    assert.throws(
      () => initiateV2({ bundle: signedBad, kemPrekey: bad, eikB }),
      (e) => isEnrollError(e, 'ERR_KEM_PREKEY') && /not a valid ML-KEM-768 key/.test((e as Error).message) && /prekey rotate/.test(e.hint ?? ''),
    );
  });

  it('a v2 message made for another KEM_hash (a swapped KEM key) fails the AEAD: the AAD binds KEM_hash', async () => {
    const { eikB, id, bundle } = await approved(2);
    const other = mlKem768Keygen();
    const forged = { ...(bundle as BundleV2), kemHash: new Uint8Array(await crypto.subtle.digest('SHA-256', other.publicKey)) };
    const m = initiateV2({ bundle: forged, kemPrekey: other.publicKey, eikB }).message;
    const log = spyLog();
    assertRejected(await handleEnrollment(svc, m, NOW + 1, log), ENROLL_STATUS.REJECTED, log, 'ERR_ENROLLMENT_DECRYPT');
    assert.equal(log.entries.at(-1)?.fields.counted, 'source');
    assert.equal(await failedAttempts(id), 0);
  });
});

describe('EKA v2: the KEM prekey lifecycle', () => {
  it('`service prekey rotate` (rotateSignedPrekey) makes a new KEM prekey with the SPK; the old one still answers', async () => {
    const spk = (await svc.store.currentSignedPrekey())!;
    const rotated = await svc.rotateSignedPrekey(NOW);
    assert.ok(rotated.kem, 'a rotated SPK has its KEM prekey');
    assert.ok(!equalBytes(rotated.kem.hash, spk.kem!.hash), 'the KEM prekey is rotated with the SPK');
    // The old KEM prekey still answers for bundles that name it until they expire.
    assert.ok(await svc.store.getKemPrekey(spk.kem!.hash));
    assert.equal(await svc.store.getKemPrekey(new Uint8Array(32)), undefined);
  });
});

describe('EKA v2: retired KEM prekeys are erased once no bundle can use them', () => {
  it('`service prekey rotate` erases the sealed seed of every retired KEM prekey whose bundles have all expired (by over an hour), keeps the others, and the public key still answers', async () => {
    const { rotatePrekey, KEM_SEED_ERASE_MARGIN } = await import('../../src/roles/service/rotation.js');
    const T0 = 1_760_000_000;
    const home = await ServiceHome.init(join(root, 'erase-home'), { address: ADDRESS, now: T0 });
    try {
      const spk1 = (await home.store.currentSignedPrekey())!;
      const opk = generateX25519();
      const bundleId = new Uint8Array(randomBytes(16));
      await home.store.insertBundles([
        { id: bundleId, spkId: spk1.id, opkPublic: opk.publicKey, opkPrivateSealed: home.sealer.seal(opk.privateKey, 'opk', bundleId), addr: ADDRESS, enroller, createdAt: T0, expiresAt: T0 + 100, state: 'issued', eka: 2 },
      ]);
      const seedOf = async (hash: Uint8Array) => (await home.store.getKemPrekey(hash))!.seedSealed.length;
      // spk1 is retired but a bundle still names it: its seed stays.
      const r2 = await rotatePrekey(home, T0 + 10);
      assert.equal(r2.kemSeedsErased, 0);
      assert.ok((await seedOf(spk1.kem!.hash)) > 0);
      // Within the margin after that bundle's expiry: still kept.
      assert.equal((await rotatePrekey(home, T0 + 100 + KEM_SEED_ERASE_MARGIN - 1)).kemSeedsErased, 1, 'only spk2 (no bundle ever) is erased');
      assert.ok((await seedOf(spk1.kem!.hash)) > 0);
      assert.equal(await seedOf(r2.spk.kem!.hash), 0);
      // Past it: erased. The current SPK's seed is never touched.
      const r4 = await rotatePrekey(home, T0 + 100 + KEM_SEED_ERASE_MARGIN + 1);
      assert.equal(r4.kemSeedsErased, 2, 'spk1 and spk3');
      assert.equal(await seedOf(spk1.kem!.hash), 0);
      assert.ok((await seedOf(r4.spk.kem!.hash)) > 0);
      assert.equal((await home.store.getKemPrekey(spk1.kem!.hash))!.publicKey.length, 1184, 'KIND_KEM_PREKEY still answers for it');
      // A later rotation does not count it again.
      assert.equal((await rotatePrekey(home, T0 + 100 + KEM_SEED_ERASE_MARGIN + 2)).kemSeedsErased, 1);
    } finally {
      await home.close();
    }
  });
});

describe('store schema 1 → 2 migration', () => {
  it('a version 1 store is migrated on open: its bundles are EKA v1, its SPKs have no KEM prekey', async () => {
    const Database = (await import('better-sqlite3')).default;
    const { SqliteStore, SCHEMA_VERSION } = await import('../../src/store/sqlite.js');
    assert.equal(SCHEMA_VERSION, 6);
    const path = join(root, 'v1.db');
    const fresh = SqliteStore.open(path);
    await fresh.addSignedPrekey({ publicKey: new Uint8Array(32).fill(1), privateSealed: new Uint8Array(60), signature: new Uint8Array(64), createdAt: NOW });
    const spk = (await fresh.currentSignedPrekey())!;
    assert.equal(spk.kem, null);
    await fresh.insertBundles([
      { id: new Uint8Array(16).fill(7), spkId: spk.id, opkPublic: new Uint8Array(32), opkPrivateSealed: new Uint8Array(60), addr: ADDRESS, enroller, createdAt: NOW, expiresAt: NOW + 60, state: 'issued' },
    ]);
    await fresh.close();
    // Make it a schema 1 store, as ockam-enroll before EKA v2 left it.
    const db = new Database(path);
    // (and without schema 3's columns, schema 4's outlets and schema 5's replicas, which a version 1 store never had)
    db.exec(`DROP TABLE kem_prekeys; DROP TABLE outlets; DROP TABLE device_outlets; DROP TABLE replicas; ALTER TABLE bundles DROP COLUMN eka; ALTER TABLE enrollees DROP COLUMN attributes; ALTER TABLE enrollers DROP COLUMN scopes; UPDATE meta SET value = '1' WHERE key = 'schema_version'`);
    db.close();
    // A read-only open cannot migrate: refused, with a hint.
    assert.throws(() => SqliteStore.open(path, { readonly: true }), (e) => isEnrollError(e, 'ERR_STORE') && /schema version 1/.test(e.message) && /upgrades the store/.test(e.hint ?? ''));
    const migrated = SqliteStore.open(path);
    try {
      assert.equal((await migrated.getBundle(new Uint8Array(16).fill(7)))?.eka, 1);
      assert.equal((await migrated.currentSignedPrekey())?.kem, null);
      const kem = mlKem768Keygen();
      const hash = new Uint8Array(await crypto.subtle.digest('SHA-256', kem.publicKey));
      const rec = await migrated.addSignedPrekey({ publicKey: new Uint8Array(32).fill(2), privateSealed: new Uint8Array(60), signature: new Uint8Array(64), createdAt: NOW, kem: { publicKey: kem.publicKey, hash, seedSealed: new Uint8Array(92) } });
      assert.ok(rec.kem && equalBytes(rec.kem.hash, hash));
      assert.ok(equalBytes((await migrated.getKemPrekey(hash))!.publicKey, kem.publicKey));
      // Every step up to the current one ran: schema 4's outlets table is there, and empty.
      assert.deepEqual(await migrated.listOutlets(), []);
    } finally {
      await migrated.close();
    }
    const again = new Database(path, { readonly: true });
    assert.equal(again.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String(SCHEMA_VERSION));
    again.close();
  });

  it('two processes opening the same version 1 store at once: the second finds it migrated under the write lock, and opens it', async () => {
    const Database = (await import('better-sqlite3')).default;
    const { SqliteStore } = await import('../../src/store/sqlite.js');
    const path = join(root, 'v1-race.db');
    (await SqliteStore.open(path).close());
    const db = new Database(path);
    // (and without schema 3's columns, schema 4's outlets and schema 5's replicas, which a version 1 store never had)
    db.exec(`DROP TABLE kem_prekeys; DROP TABLE outlets; DROP TABLE device_outlets; DROP TABLE replicas; ALTER TABLE bundles DROP COLUMN eka; ALTER TABLE enrollees DROP COLUMN attributes; ALTER TABLE enrollers DROP COLUMN scopes; UPDATE meta SET value = '1' WHERE key = 'schema_version'`);
    db.close();
    const storeJs = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'store', 'sqlite.js')).href;
    // Process A: another ockam-enroll migrating the store, its transaction still open.
    const a = spawn(process.execPath, ['--input-type=module', '-e', `
      import Database from 'better-sqlite3';
      const db = new Database(${JSON.stringify(path)});
      db.exec("BEGIN IMMEDIATE; ALTER TABLE bundles ADD COLUMN eka INTEGER NOT NULL DEFAULT 1 CHECK (eka IN (1, 2)); UPDATE meta SET value = '2' WHERE key = 'schema_version'");
      process.stdout.write('locked\\n');
      process.stdin.once('data', () => { db.exec('COMMIT'); db.close(); process.exit(0); });
    `], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'inherit'] });
    const line = (p: ChildProcess, want: string) =>
      new Promise<void>((resolve, reject) => {
        let buf = '';
        p.stdout!.on('data', (d: Buffer) => {
          buf += d.toString();
          if (buf.includes(want)) resolve();
        });
        p.once('exit', (code) => reject(new Error(`exited ${code} before printing ${want}: ${buf}`)));
      });
    await line(a, 'locked');
    // Process B: this ockam-enroll, which reads schema version 1 (A has not committed) and
    // then waits for the write lock A holds (busy_timeout 5 s).
    const b = spawn(process.execPath, ['--input-type=module', '-e', `
      const { SqliteStore } = await import(${JSON.stringify(storeJs)});
      process.stdout.write('opening\\n');
      try { await SqliteStore.open(${JSON.stringify(path)}).close(); process.stdout.write('opened\\n'); }
      catch (e) { process.stdout.write('refused ' + e.code + ': ' + e.message + '\\n'); }
    `], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    b.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const bDone = new Promise((r) => b.once('exit', r));
    await line(b, 'opening');
    // B is inside SqliteStore.open now, a synchronous call: give it time to read the version
    // and block on the lock (well inside its 5 s busy timeout), then let A commit.
    await new Promise((r) => setTimeout(r, 500));
    a.stdin!.end('commit\n');
    await Promise.all([bDone, new Promise((r) => (a.exitCode !== null ? r(null) : a.once('exit', r)))]);
    assert.match(out, /opened/, out);
    const check = new Database(path, { readonly: true });
    // B found A's step 1 → 2 done under the lock, and ran the later steps itself.
    assert.equal(check.prepare(`SELECT value FROM meta WHERE key = 'schema_version'`).pluck().get(), String((await import('../../src/store/sqlite.js')).SCHEMA_VERSION));
    assert.ok(check.prepare(`SELECT 1 FROM sqlite_master WHERE name = 'kem_prekeys'`).get(), 'B completed the schema');
    check.close();
  });
});
