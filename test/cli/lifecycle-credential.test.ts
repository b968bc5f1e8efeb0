/**
 * Credentials end to end (docs/protocol.md §4.4, §5.7): a real `enrollee join` brings back a
 * credential signed by IK_A inside the sealed acceptance; the device keeps it and shows it;
 * `credential verify` accepts it with the service key (or, on another enrolled device, with
 * that device's own service key) and refuses a forged one (exit 5), one checked against
 * another service key (exit 5) and an expired one (exit 1), each with a clear message.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { Keystore } from '../../src/keystore/keystore.js';
import { decodeText, encodeText } from '../../src/protocol/codec/text.js';
import {
  CREDENTIAL_TEXT_PREFIX,
  credentialFromText,
  credentialToText,
  signCredential,
} from '../../src/protocol/credential.js';
import { assertFailure, ok, okJson, removeTempHomes, run, setupWorld, show, sleep, tempHome, type Enrollee, type World } from '../helpers/cli.js';
import { approve, EXIT, join, restartWith, startServiceWith } from '../helpers/lifecycle.js';
import { patience } from '../helpers/pace.js';

/** A home with nothing in it: these checks need only the key given. */
const bare = () => ({ home: tempHome('verifier') });

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 6 });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

interface CredentialJson {
  text: string;
  enrollee_id: string;
  name: string | null;
  identity_key: string;
  service_key: string;
  issued_at: string;
  expires_at: string;
  expired: boolean;
  stale: boolean;
}

async function enroll(name: string): Promise<{ e: Enrollee; joined: { identity_key: string; credential: CredentialJson } }> {
  const e = await w.newEnrollee(name);
  const r = await join(e, await approve(w, e), true);
  assert.equal(r.code, EXIT.OK, show(r));
  return { e, joined: JSON.parse(r.stdout) };
}

function credentialFile(e: Enrollee): string {
  return pathJoin(e.home, 'enrollee', 'credential.txt');
}

/** Writes `text` to a file and returns `@file`, as a device would hand its credential over. */
function handOver(text: string): string {
  const f = pathJoin(tempHome('cred'), 'credential.txt');
  writeFileSync(f, `${text}\n`);
  return `@${f}`;
}

describe('credentials', () => {
  let first: Awaited<ReturnType<typeof enroll>>;

  test('a real join brings back a credential for this device, shown by join and status, kept in credential.txt', async () => {
    first = await enroll('Robot Cred');
    const c = first.joined.credential;
    assert.ok(c, 'join --json has the credential');
    assert.match(c.text, /^OECR1:[A-Z2-7]+$/);
    assert.equal(c.enrollee_id, first.e.id);
    assert.equal(c.name, 'Robot Cred');
    assert.equal(c.identity_key, first.joined.identity_key);
    assert.equal(c.service_key, w.serviceKey);
    assert.equal(c.expired, false);
    assert.equal(c.stale, false);
    // 24 hours by default (issue #18 finding 2: the bound on revocation for offline verifiers).
    const hours = (Date.parse(c.expires_at) - Date.parse(c.issued_at)) / 3600e3;
    assert.equal(hours, 24);
    assert.equal(readFileSync(credentialFile(first.e), 'utf8').trim(), c.text);
    const status = await okJson<{ credential: CredentialJson }>(['enrollee', 'status'], { home: first.e.home });
    assert.deepEqual(status.credential, c);
  });

  test('credential verify: valid with the service key; prints who it names', async () => {
    const file = `@${credentialFile(first.e)}`;
    const j = await okJson<Record<string, unknown>>(['credential', 'verify', file, '--service-key', w.serviceKey], { home: tempHome('verifier') });
    assert.deepEqual(j, {
      valid: true,
      enrollee_id: first.e.id,
      name: 'Robot Cred',
      identity_key: first.joined.identity_key,
      service_key: w.serviceKey,
      issued_at: first.joined.credential.issued_at,
      expires_at: first.joined.credential.expires_at,
      // An enrollee without attributes gets a version 1 credential (docs/policies.md).
      version: 1,
      attributes: {},
      // No --revocations: said plainly (issue #18 finding 2; test/cli/revocations.test.ts).
      revocations: { checked: false, message: 'no revocation information was checked' },
    });
    const human = await ok(['credential', 'verify', '-', '--service-key', w.serviceKey], { home: tempHome('verifier'), input: first.joined.credential.text });
    assert.ok(human.stdout.startsWith(`valid credential for ${first.e.id} (Robot Cred)\n`), show(human));
    assert.ok(human.stdout.includes(`identity_key  ${first.joined.identity_key}`));
  });

  test('another enrolled device checks it offline, with its own service key as the default', async () => {
    const second = await enroll('Robot Peer');
    await w.service.stop(); // offline: no service to ask
    const r = await okJson<{ enrollee_id: string }>(['credential', 'verify', first.joined.credential.text], { home: second.e.home });
    assert.equal(r.enrollee_id, first.e.id);
    w.service = await startServiceWith(w.serviceHome, w.port, w.httpsPort, []);
    // Without a key and without an enrolled device in the home, there is nothing to trust.
    assertFailure(await run(['credential', 'verify', first.joined.credential.text], { home: tempHome('nobody') }), EXIT.USAGE, 'pass --service-key');
  });

  test('a forged credential (one byte flipped, re-encoded with a valid checksum) is refused: exit 5', async () => {
    const bytes = decodeText(CREDENTIAL_TEXT_PREFIX, first.joined.credential.text);
    for (const [what, offset] of [['pet name', 114], ['IK_B', 70], ['expiry', 110]] as const) {
      const forged = Uint8Array.from(bytes);
      forged[offset]! ^= 0x01;
      const r = await run(['credential', 'verify', handOver(encodeText(CREDENTIAL_TEXT_PREFIX, forged)), '--service-key', w.serviceKey], bare());
      assertFailure(r, EXIT.AUTH, 'the credential\'s signature does not verify: it was altered or forged', 'ask the device for its credential again');
      assert.ok(!r.stderr.includes('valid'), `${what}: ${show(r)}`);
    }
    // A text that was mistyped is caught by the checksum first (exit 1).
    const t = first.joined.credential.text;
    assertFailure(await run(['credential', 'verify', `${t.slice(0, 20)}${t[20] === 'A' ? 'B' : 'A'}${t.slice(21)}`, '--service-key', w.serviceKey], bare()), EXIT.FAILURE, 'checksum mismatch');
  });

  test('checked against another service key: refused, exit 5', async () => {
    const other = toHex(generateX25519().publicKey);
    assertFailure(
      await run(['credential', 'verify', first.joined.credential.text, '--service-key', other], bare()),
      EXIT.AUTH,
      'the credential was issued by another service key',
      '--service-key',
    );
  });

  test('an expired credential is refused with exit 1: one signed by the real IK_A with an old expiry, and one from a service with a 2 s lifetime', async () => {
    // Built with the library and the service's own IK_A (read from its keystore, as an operator could).
    const ikA = await Keystore.open(w.serviceHome, 'service').loadKeyPair('ik_a.key');
    assert.equal(toHex(ikA.publicKey), w.serviceKey);
    const c = credentialFromText(first.joined.credential.text);
    const now = Math.floor(Date.now() / 1000);
    const old = credentialToText(signCredential({ ...c, issuedAt: now - 86400, expiresAt: now - 3600 }, ikA.privateKey));
    const r = await run(['credential', 'verify', old, '--service-key', w.serviceKey], bare());
    assertFailure(r, EXIT.FAILURE, `the credential expired at ${new Date((now - 3600) * 1000).toISOString()}`, 'enroll again');

    // The service's lifetime setting, through `service start --credential-ttl`.
    // 2 s on an idle machine, longer on a busy one: the verify below must run within it.
    const ttl = Math.ceil((await patience(2000)) / 1000);
    await restartWith(w, ['--credential-ttl', `${ttl}s`]);
    const { joined } = await enroll('Robot Brief');
    assert.equal(Date.parse(joined.credential.expires_at) - Date.parse(joined.credential.issued_at), ttl * 1000);
    assert.ok(w.service.decisions('accepted').some((l) => l.includes(`credential_expires_at=${joined.credential.expires_at}`)));
    await ok(['credential', 'verify', joined.credential.text, '--service-key', w.serviceKey], bare());
    await sleep(Date.parse(joined.credential.expires_at) - Date.now() + 1100);
    assertFailure(await run(['credential', 'verify', joined.credential.text, '--service-key', w.serviceKey], bare()), EXIT.FAILURE, 'the credential expired at');
  });

  test('a device renews its credential over its session once half the lifetime has passed; a revoked one gets none, so its credential fails within one lifetime (issue #18)', async () => {
    // 1 s: half the lifetime has passed at once, so every status renews.
    await restartWith(w, ['--credential-ttl', '1s']);
    const { e, joined } = await enroll('Robot Renew');
    const status = await run(['enrollee', 'status', '--json'], { home: e.home });
    assert.equal(status.code, 0, show(status));
    assert.match(status.stderr, /renewed this enrollee's credential/, show(status));
    const renewed = readFileSync(credentialFile(e), 'utf8').trim();
    assert.notEqual(renewed, joined.credential.text, 'a new credential was kept');
    assert.ok(w.service.decisions('credential-issued').some((l) => l.includes(`enrollee=${e.id}`)));

    await ok(['service', 'enrollee', 'revoke', e.id], { home: w.serviceHome });
    const after = await run(['enrollee', 'status'], { home: e.home });
    assert.notEqual(after.code, 0, show(after));
    assert.equal(readFileSync(credentialFile(e), 'utf8').trim(), renewed, 'no credential after the revocation');
    const c = credentialFromText(renewed);
    await sleep(c.expiresAt * 1000 - Date.now() + 1100);
    assertFailure(await run(['credential', 'verify', renewed, '--service-key', w.serviceKey], bare()), EXIT.FAILURE, 'the credential expired at');
  });
});
