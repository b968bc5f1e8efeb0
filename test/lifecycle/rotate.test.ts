/**
 * Rotation (docs/protocol.md §7.9.2, §3.1; docs/threat-model.md §5.11): an enrollee's
 * identity key over its session channel, with a proof of both keys bound to the channel,
 * and crash-safe files; the service's signed prekey, for new bundles only.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { xeddsaSign } from '../../src/crypto/xeddsa.js';
import { isEnrollError } from '../../src/errors.js';
import { decodeText } from '../../src/protocol/codec/text.js';
import { credentialToText, decodeCredential } from '../../src/protocol/credential.js';
import { decodeError, MSG_ERROR } from '../../src/protocol/messages/common.js';
import { decodeCredentialMsg, decodeRotated, encodeCredentialRequest, encodeRotate, rotateSignedBytes } from '../../src/protocol/messages/session.js';
import { requestStatus } from '../../src/roles/enrollee/lifecycle.js';
import type { SecureChannel } from '../../src/transport/channel.js';
import type { KeyPair } from '../../src/crypto/x25519.js';
import { assertFailure, eventually, ok, okJson, removeTempHomes, run, setupWorld, show, tempHome, type World } from '../helpers/cli.js';
import { cachedBundle, enrollDevice, enrolleeDir, enrolleeKeystore, EXIT, loadKey, sessionAs } from './helpers.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 10 });
});
after(async () => {
  await w?.dispose();
  removeTempHomes();
});

interface CredentialJson {
  text: string;
  enrollee_id: string;
  identity_key: string;
  service_key: string;
  stale: boolean;
}

function serviceJson(home: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(enrolleeDir(home), 'service.json'), 'utf8')) as Record<string, unknown>;
}

/** Sends a ROTATE over `channel` (authenticated by `oldKey`) to `newKey`, signed by `signOld` / `signNew`. */
async function sendRotate(channel: SecureChannel, oldKey: KeyPair, newKey: KeyPair, signers = { old: oldKey, new: newKey }): Promise<Uint8Array> {
  const signed = rotateSignedBytes(oldKey.publicKey, newKey.publicKey, channel.handshakeHash);
  await channel.send(encodeRotate({ newIkB: newKey.publicKey, sigOld: xeddsaSign(signers.old.privateKey, signed), sigNew: xeddsaSign(signers.new.privateKey, signed) }));
  return channel.receive(5_000);
}

describe('enrollee rotate', () => {
  test('a rotated key works and the old key is refused afterwards', async () => {
    const dev = await enrollDevice(w, 'Rotating Bot');
    // A copy of the whole home keeps the old IK_B, as an attacker holding the old key would.
    const before = tempHome('before-rotation');
    cpSync(dev.home, before, { recursive: true });
    const r = await okJson<Record<string, unknown>>(['enrollee', 'rotate'], { home: dev.home });
    assert.equal(r.rotated, true);
    assert.equal(r.enrollee_id, dev.id);
    assert.equal(r.previous_key, dev.identityKey);
    assert.match(String(r.identity_key), /^[0-9a-f]{64}$/);
    assert.notEqual(r.identity_key, dev.identityKey);
    assert.equal(r.recovered, false);
    assert.ok(!existsSync(join(enrolleeDir(dev.home), 'ik_b.old.key')), 'the old key file is gone once the service confirmed');
    assert.equal(serviceJson(dev.home).identity_key, r.identity_key);
    await eventually(() => w.service.decisions('rotated').some((l) => l.includes(`ik_b_old=${dev.identityKey}`) && l.includes(`ik_b=${String(r.identity_key)}`)), 'the rotated decision', 5_000);

    // The service knows the device by the new key now.
    const shown = await okJson<{ identity_key: string }>(['service', 'enrollee', 'show', dev.id], { home: w.serviceHome });
    assert.equal(shown.identity_key, r.identity_key);
    await ok(['enrollee', 'status'], { home: dev.home });

    // The old key is refused: by the CLI from the saved home, and on a channel from here.
    assertFailure(await run(['enrollee', 'status'], { home: before }), EXIT.REJECTED, 'does not know this identity key');
    const oldKey = await loadKey(before, 'enrollee', 'ik_b.key');
    const channel = await sessionAs(w, oldKey);
    try {
      await assert.rejects(requestStatus(channel, 5_000), (e: unknown) => isEnrollError(e, 'ERR_ENROLLEE_UNKNOWN'));
    } finally {
      channel.connection.destroy();
    }
    // Rotating again works, from the new key.
    const r2 = await okJson<Record<string, unknown>>(['enrollee', 'rotate'], { home: dev.home });
    assert.equal(r2.previous_key, r.identity_key);
    await ok(['enrollee', 'status'], { home: dev.home });
  });

  test('a crash after the service switched (answer lost): `enrollee status` finds the new key and finishes the rotation', async () => {
    const dev = await enrollDevice(w, 'Crash Bot A');
    const ks = enrolleeKeystore(dev.home);
    const oldKey = await ks.loadKeyPair('ik_b.key');
    const newKey = generateX25519();
    // The files as rotate leaves them before it sends ROTATE (steps 1-2) …
    await ks.saveKeyPair('ik_b.old.key', oldKey, { purpose: 'IK_B' });
    await ks.saveKeyPair('ik_b.key', newKey, { purpose: 'IK_B', force: true });
    // … then the service switches, and the answer never reaches the files.
    const channel = await sessionAs(w, oldKey);
    try {
      const rotated = decodeRotated(await sendRotate(channel, oldKey, newKey));
      assert.equal(toHex(rotated.newIkB), toHex(newKey.publicKey));
    } finally {
      channel.connection.destroy();
    }
    // Meanwhile the home is consistent: service.json and credential.txt still name the old key.
    const cred = decodeCredential(decodeText('OECR1:', readFileSync(join(enrolleeDir(dev.home), 'credential.txt'), 'utf8')));
    assert.equal(toHex(cred.ikB), serviceJson(dev.home).identity_key);
    const s = await run(['enrollee', 'status', '--json'], { home: dev.home });
    assert.equal(s.code, EXIT.OK, show(s));
    assert.ok(s.stderr.includes('finished an interrupted key rotation'), show(s));
    assert.ok(!existsSync(join(enrolleeDir(dev.home), 'ik_b.old.key')));
    assert.equal(serviceJson(dev.home).identity_key, toHex(newKey.publicKey));
    // The credential that ROTATED carried was lost with it: status asked for one (CREDENTIAL_REQUEST).
    assert.ok(s.stderr.includes('the service issued a credential for the new identity key'), show(s));
    const c = (JSON.parse(s.stdout) as { credential: CredentialJson }).credential;
    assert.deepEqual([c.identity_key, c.stale], [toHex(newKey.publicKey), false]);
    await eventually(() => w.service.decisions('credential-issued').some((l) => l.includes(`ik_b=${toHex(newKey.publicKey)}`)), 'the credential-issued decision', 5_000);
  });

  test('a crash after the new credential was staged: `enrollee status` installs it with the key, and asks for nothing', async () => {
    const dev = await enrollDevice(w, 'Crash Bot C');
    const ks = enrolleeKeystore(dev.home);
    const oldKey = await ks.loadKeyPair('ik_b.key');
    const oldCredential = readFileSync(join(enrolleeDir(dev.home), 'credential.txt'), 'utf8').trim();
    const newKey = generateX25519();
    await ks.saveKeyPair('ik_b.old.key', oldKey, { purpose: 'IK_B' });
    await ks.saveKeyPair('ik_b.key', newKey, { purpose: 'IK_B', force: true });
    const channel = await sessionAs(w, oldKey);
    let staged: string;
    try {
      const rotated = decodeRotated(await sendRotate(channel, oldKey, newKey));
      assert.ok(rotated.credential, 'ROTATED carries the credential for the new key');
      const cred = decodeCredential(rotated.credential);
      assert.equal(toHex(cred.ikB), toHex(newKey.publicKey));
      assert.equal(toHex(cred.enrolleeId), dev.id);
      staged = credentialToText(cred);
    } finally {
      channel.connection.destroy();
    }
    // rotate's step 1 (staged), then the crash: credential.txt and service.json still agree on the old key.
    writeFileSync(join(enrolleeDir(dev.home), 'credential.next.txt'), `${staged}\n`, { mode: 0o600 });
    const mid = await okJson<{ credential: CredentialJson }>(['enrollee', 'status'], { home: dev.home });
    assert.deepEqual([mid.credential.text, mid.credential.stale], [staged, false]);
    assert.notEqual(mid.credential.text, oldCredential);
    assert.equal(existsSync(join(enrolleeDir(dev.home), 'credential.next.txt')), false);
    assert.equal(serviceJson(dev.home).identity_key, toHex(newKey.publicKey));
    assert.equal(w.service.decisions('credential-issued').filter((l) => l.includes(`enrollee=${dev.id}`)).length, 0, 'nothing was asked for');
  });

  test('CREDENTIAL_REQUEST: a credential for the channel\'s own key, at most 6 an hour per key (then ERR_RATE_LIMITED, the channel stays open)', async () => {
    const dev = await enrollDevice(w, 'Asking Bot');
    const ikB = await enrolleeKeystore(dev.home).loadKeyPair('ik_b.key');
    const channel = await sessionAs(w, ikB);
    try {
      for (let i = 0; i < 6; i++) {
        await channel.send(encodeCredentialRequest());
        const c = decodeCredential(decodeCredentialMsg(await channel.receive(5_000)));
        assert.deepEqual([toHex(c.ikB), toHex(c.enrolleeId), toHex(c.issuer)], [toHex(ikB.publicKey), dev.id, w.serviceKey]);
      }
      await channel.send(encodeCredentialRequest());
      const refused = await channel.receive(5_000);
      assert.equal(refused[0], MSG_ERROR);
      const e = decodeError(refused);
      assert.equal(e.code, 'ERR_RATE_LIMITED');
      assert.match(e.message, /too many credential requests for this identity key \(limit 6\/h\)/);
      // Still usable for other requests.
      assert.equal(toHex((await requestStatus(channel, 5_000)).enrolleeId), dev.id);
    } finally {
      channel.connection.destroy();
    }
  });

  test('rotate reissues the credential within the rotation: verify accepts it for the new key, status no longer says stale, the old one names the replaced key', async () => {
    const dev = await enrollDevice(w, 'Credential Rotor');
    const file = join(enrolleeDir(dev.home), 'credential.txt');
    const oldCredential = readFileSync(file, 'utf8').trim();
    const r = await okJson<{ identity_key: string; previous_key: string; credential: CredentialJson | null }>(['enrollee', 'rotate'], { home: dev.home });
    assert.ok(r.credential, `rotate --json shows the new credential: ${JSON.stringify(r)}`);
    assert.deepEqual([r.credential.identity_key, r.credential.enrollee_id, r.credential.service_key, r.credential.stale], [r.identity_key, dev.id, w.serviceKey, false]);
    const now = readFileSync(file, 'utf8').trim();
    assert.equal(now, r.credential.text);
    assert.notEqual(now, oldCredential);
    assert.equal(existsSync(join(enrolleeDir(dev.home), 'credential.next.txt')), false);

    // credential verify (the device's own service key by default, and given explicitly).
    const v = await okJson<{ valid: boolean; identity_key: string; enrollee_id: string }>(['credential', 'verify', `@${file}`], { home: dev.home });
    assert.deepEqual([v.valid, v.identity_key, v.enrollee_id], [true, r.identity_key, dev.id]);
    await ok(['credential', 'verify', `@${file}`, '--service-key', w.serviceKey], { home: tempHome('verifier') });
    const status = await okJson<{ credential: CredentialJson }>(['enrollee', 'status'], { home: dev.home });
    assert.deepEqual([status.credential.stale, status.credential.identity_key], [false, r.identity_key]);

    // The old credential is still a valid signature (credentials are not revoked), but it names
    // the replaced key, which the service no longer admits: it no longer matches this device.
    const old = await okJson<{ identity_key: string }>(['credential', 'verify', oldCredential], { home: dev.home });
    assert.equal(old.identity_key, r.previous_key);
    assert.notEqual(old.identity_key, status.credential.identity_key);
    await eventually(() => w.service.decisions('rotated').some((l) => l.includes(`ik_b=${r.identity_key}`) && l.includes('credential_expires_at=')), 'the rotated decision names the credential', 5_000);
  });

  test('a crash before ROTATE was sent: `enrollee status` still works with the old key, and a re-run of rotate finishes with the same new key', async () => {
    const dev = await enrollDevice(w, 'Crash Bot B');
    const ks = enrolleeKeystore(dev.home);
    const oldKey = await ks.loadKeyPair('ik_b.key');
    const newKey = generateX25519();
    await ks.saveKeyPair('ik_b.old.key', oldKey, { purpose: 'IK_B' });
    await ks.saveKeyPair('ik_b.key', newKey, { purpose: 'IK_B', force: true });

    const s = await run(['enrollee', 'status'], { home: dev.home });
    assert.equal(s.code, EXIT.OK, show(s));
    assert.ok(s.stderr.includes('a key rotation was interrupted'), show(s));
    assert.ok(existsSync(join(enrolleeDir(dev.home), 'ik_b.old.key')), 'status does not finish a rotation the service has not made');

    const r = await okJson<Record<string, unknown>>(['enrollee', 'rotate'], { home: dev.home });
    assert.equal(r.previous_key, toHex(oldKey.publicKey));
    assert.equal(r.identity_key, toHex(newKey.publicKey), 'the re-run sends the key already on disk');
    assert.ok(!existsSync(join(enrolleeDir(dev.home), 'ik_b.old.key')));
    await ok(['enrollee', 'status'], { home: dev.home });
  });

  test('the service refuses a bad proof, a key enrolled elsewhere and a key rotated away from; the channel stays usable', async () => {
    const a = await enrollDevice(w, 'Refused Bot A');
    const b = await enrollDevice(w, 'Refused Bot B');
    const keyA = await loadKey(a.home, 'enrollee', 'ik_b.key');
    const keyB = await loadKey(b.home, 'enrollee', 'ik_b.key');
    const fresh = generateX25519();
    const channel = await sessionAs(w, keyA);
    try {
      // sig_new made by another key than IK_B': nobody moves an enrollee to a key it does not hold.
      const bad = await sendRotate(channel, keyA, fresh, { old: keyA, new: keyB });
      assert.equal(bad[0], MSG_ERROR);
      assert.equal(decodeError(bad).code, 'ERR_ROTATE_PROOF');
      // IK_B' is another enrollee's key, with a valid proof (the test holds both keys).
      const taken = await sendRotate(channel, keyA, keyB);
      assert.equal(decodeError(taken).code, 'ERR_ROTATE_CONFLICT');
      // Still open, still A's.
      assert.equal(toHex((await requestStatus(channel, 5_000)).enrolleeId), a.id);
    } finally {
      channel.connection.destroy();
    }
    // A proof is bound to its channel: the same signatures on a new channel fail.
    const first = await sessionAs(w, keyA);
    const second = await sessionAs(w, keyA);
    try {
      const signed = rotateSignedBytes(keyA.publicKey, fresh.publicKey, first.handshakeHash);
      await second.send(encodeRotate({ newIkB: fresh.publicKey, sigOld: xeddsaSign(keyA.privateKey, signed), sigNew: xeddsaSign(fresh.privateKey, signed) }));
      assert.equal(decodeError(await second.receive(5_000)).code, 'ERR_ROTATE_PROOF');
    } finally {
      first.connection.destroy();
      second.connection.destroy();
    }
    // A → fresh, then fresh → A again: a key rotated away from is never taken back.
    const c1 = await sessionAs(w, keyA);
    try {
      decodeRotated(await sendRotate(c1, keyA, fresh));
    } finally {
      c1.connection.destroy();
    }
    const c2 = await sessionAs(w, fresh);
    try {
      assert.equal(decodeError(await sendRotate(c2, fresh, keyA)).code, 'ERR_ROTATE_CONFLICT');
    } finally {
      c2.connection.destroy();
    }
    // The service's stderr reaches the test a moment after its answers.
    await eventually(() => w.service.decisions('rotate-refused').length >= 4, 'four rotate-refused decisions', 5_000);
  });

  test('a revoked enrollee cannot rotate, and its files are left as they were', async () => {
    const dev = await enrollDevice(w, 'Revoked Bot');
    await ok(['service', 'enrollee', 'revoke', dev.id], { home: w.serviceHome });
    const r = await run(['enrollee', 'rotate'], { home: dev.home });
    assertFailure(r, EXIT.REJECTED, 'revoked');
    const ks = enrolleeKeystore(dev.home);
    assert.equal(toHex(ks.loadPublicKey('ik_b.key')), dev.identityKey, 'the refused rotation was undone');
    assert.ok(!existsSync(join(enrolleeDir(dev.home), 'ik_b.old.key')));
  });
});

describe('service prekey rotate', () => {
  test('a bundle fetched before the rotation still enrolls after it; bundles fetched after carry the new SPK', async () => {
    const early = w.bundles[w.bundles.length - 1]!;
    const earlyBundle = await cachedBundle(w, early);
    const list0 = await okJson<{ prekeys: { spk_id: number; spk_public: string; state: string }[] }>(['service', 'prekey', 'list'], { home: w.serviceHome });
    const current0 = list0.prekeys.find((p) => p.state === 'current')!;
    assert.equal(toHex(earlyBundle.spkA), current0.spk_public);

    const rot = await okJson<{ spk_id: number; spk_public: string; retired: number }>(['service', 'prekey', 'rotate'], { home: w.serviceHome });
    assert.match(rot.spk_public, /^[0-9a-f]{64}$/);
    assert.notEqual(rot.spk_public, current0.spk_public);
    assert.ok(rot.spk_id > current0.spk_id);
    assert.equal(rot.retired, 1);
    // Made outside `service start`, so recorded in the audit log by the command itself (src/audit).
    const audited = await ok(['service', 'audit', 'export'], { home: w.serviceHome });
    assert.ok(audited.stdout.includes(`prekey-rotated retired=1 spk_id=${rot.spk_id} spk_public=${rot.spk_public}`), audited.stdout);

    // The running service serves the new SPK at once: it reads the current one per fetch.
    const [late] = await w.fetchBundles(1);
    const lateBundle = await cachedBundle(w, late!);
    assert.equal(toHex(lateBundle.spkA), rot.spk_public);

    // Both enroll.
    const e1 = await enrollDevice(w, 'Early Bundle Bot', early);
    const e2 = await enrollDevice(w, 'Late Bundle Bot', late!);
    await ok(['enrollee', 'status'], { home: e1.home });
    await ok(['enrollee', 'status'], { home: e2.home });

    const list1 = await okJson<{ prekeys: { spk_id: number; state: string }[] }>(['service', 'prekey', 'list'], { home: w.serviceHome });
    assert.deepEqual(
      list1.prekeys.filter((p) => p.spk_id >= current0.spk_id).map((p) => [p.spk_id, p.state]),
      [[current0.spk_id, 'retired'], [rot.spk_id, 'current']],
    );
  });
});
