/**
 * The signed revocation list end to end (issue #18 finding 2, docs/protocol.md §4.7): two
 * devices enroll; `credential verify` says plainly when it checked no revocation
 * information; after `service enrollee revoke`, `service revocations --out` writes a list
 * that makes `credential verify --revocations FILE` refuse the revoked device's credential
 * (exit 3) and still accept the other one; the running service serves the same list at
 * https://…/revocations; tampered, foreign and stale lists are refused (exit 5, 5, 1).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join as pathJoin } from 'node:path';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { xeddsaSigner } from '../../src/crypto/xeddsa.js';
import { fromHex } from '../../src/crypto/bytes.js';
import { decodeRevocationList, signRevocationList } from '../../src/protocol/revocations.js';
import { assertFailure, ok, okJson, removeTempHomes, run, setupWorld, show, sleep, tempHome, type World } from '../helpers/cli.js';
import { freePort } from '../helpers/ports.js';
import { patience } from '../helpers/pace.js';
import { approve, EXIT, join } from '../helpers/lifecycle.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 3 });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

async function enroll(name: string): Promise<{ id: string; credential: string }> {
  const e = await w.newEnrollee(name);
  const r = await join(e, await approve(w, e), true);
  assert.equal(r.code, EXIT.OK, show(r));
  return { id: e.id, credential: JSON.parse(r.stdout).credential.text };
}

const verifier = () => ({ home: tempHome('verifier') });
const verify = (credential: string, ...extra: string[]) => run(['credential', 'verify', credential, '--service-key', w.serviceKey, ...extra], verifier());
const REVOKED = /^ockam-enroll: error: the credential is revoked: the service revoked [0-9a-f]{64} \(Robot Gone\) at \d{4}-\d\d-\d\dT/;

describe('signed revocation list', () => {
  let gone: { id: string; credential: string };
  let kept: { id: string; credential: string };
  const dir = () => tempHome('lists');

  test('without --revocations, the output says no revocation information was checked (text and --json)', async () => {
    gone = await enroll('Robot Gone');
    kept = await enroll('Robot Kept');
    const text = await ok(['credential', 'verify', gone.credential, '--service-key', w.serviceKey], verifier());
    assert.match(text.stdout, /^revocations {3}no revocation information was checked \(pass --revocations FILE\|URL\)$/m, show(text));
    const j = await okJson<{ valid: boolean; revocations: unknown }>(['credential', 'verify', gone.credential, '--service-key', w.serviceKey], verifier());
    assert.equal(j.valid, true);
    assert.deepEqual(j.revocations, { checked: false, message: 'no revocation information was checked' });
  });

  test('before the revocation, a list with no entry lets the credential through and says it was checked', async () => {
    const f = pathJoin(dir(), 'empty.bin');
    const w0 = await okJson<{ file: string; entries: number; issued_at: string; next_update: string; bytes: number }>(['service', 'revocations', '--out', f], { home: w.serviceHome });
    assert.equal(w0.file, f);
    assert.equal(w0.entries, 0);
    assert.equal(Date.parse(w0.next_update) - Date.parse(w0.issued_at), 3600e3, 'fresh for 1 h by default');
    assert.equal(statSync(f).size, w0.bytes);
    const j = await okJson<{ revocations: Record<string, unknown> }>(['credential', 'verify', gone.credential, '--service-key', w.serviceKey, '--revocations', f], verifier());
    assert.deepEqual(j.revocations, { checked: true, revoked: false, source: f, issued_at: w0.issued_at, next_update: w0.next_update, entries: 0 });
    const text = await ok(['credential', 'verify', gone.credential, '--service-key', w.serviceKey, '--revocations', f], verifier());
    assert.match(text.stdout, new RegExp(`^revocations {3}not revoked \\(list from ${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, issued `, 'm'), show(text));
  });

  test('after `service enrollee revoke`, the list written by `service revocations --out` refuses the revoked credential (exit 3) and accepts the other', async () => {
    await ok(['service', 'enrollee', 'revoke', gone.id], { home: w.serviceHome });
    const f = pathJoin(dir(), 'list.bin');
    const text = await ok(['service', 'revocations', '--out', f], { home: w.serviceHome });
    assert.match(text.stdout, /^wrote .*list\.bin: 1 revoked enrollee\(s\), issued /, show(text));
    const list = decodeRevocationList(new Uint8Array(readFileSync(f)));
    assert.deepEqual(list.entries.map((e) => Buffer.from(e.enrolleeId).toString('hex')), [gone.id]);
    const r = await verify(gone.credential, '--revocations', f);
    assertFailure(r, EXIT.REJECTED, REVOKED, 'do not trust this device');
    assert.equal(r.stdout, '', 'no result on stdout for a refused credential');
    const rj = await verify(gone.credential, '--revocations', f, '--json');
    assert.equal(rj.code, EXIT.REJECTED);
    assert.equal(JSON.parse(rj.stdout).error.code ?? JSON.parse(rj.stdout).code, 'ERR_CREDENTIAL_REVOKED', show(rj));
    const other = await okJson<{ enrollee_id: string; revocations: { checked: boolean; entries: number } }>(['credential', 'verify', kept.credential, '--service-key', w.serviceKey, '--revocations', f], verifier());
    assert.equal(other.enrollee_id, kept.id);
    assert.equal(other.revocations.checked, true);
    assert.equal(other.revocations.entries, 1);
  });

  test('the running service serves the list over HTTPS at /revocations: the URL refuses the revoked credential too', async () => {
    assert.ok(w.httpsPort !== undefined, 'this build serves HTTPS');
    const url = `https://127.0.0.1:${w.httpsPort}/revocations`;
    // The service re-reads the revoked set at most once a second.
    const end = Date.now() + (await patience(5000));
    let r = await verify(gone.credential, '--revocations', url);
    while (r.code !== EXIT.REJECTED && Date.now() < end) {
      await sleep(300);
      r = await verify(gone.credential, '--revocations', url);
    }
    assertFailure(r, EXIT.REJECTED, REVOKED);
    const j = await okJson<{ revocations: { source: string; entries: number; issued_at: string; next_update: string } }>(['credential', 'verify', kept.credential, '--service-key', w.serviceKey, '--revocations', url], verifier());
    assert.deepEqual([j.revocations.source, j.revocations.entries], [url, 1]);
    assert.equal(Date.parse(j.revocations.next_update) - Date.parse(j.revocations.issued_at), 3600e3, 'the served list is fresh for 1 h by default');
    // Nothing listens there: exit 4, the URL named.
    const nowhere = `https://127.0.0.1:${await freePort()}/revocations`;
    assertFailure(await verify(kept.credential, '--revocations', nowhere), EXIT.UNREACHABLE, /^ockam-enroll: error: cannot fetch the revocation list from https:\/\/127\.0\.0\.1:\d+\/revocations: ECONNREFUSED/, 'check the URL');
  });

  test('a tampered list (exit 5), a list of another service (exit 5) and a stale list (exit 1) are refused, even for the credential that is not revoked', async () => {
    const d = dir();
    const f = pathJoin(d, 'list.bin');
    await ok(['service', 'revocations', '--out', f], { home: w.serviceHome });
    const bytes = new Uint8Array(readFileSync(f));
    // Remove the revoked id: the signature no longer verifies.
    const tampered = Uint8Array.from(bytes);
    tampered[60]! ^= 0x80;
    writeFileSync(pathJoin(d, 'tampered.bin'), tampered);
    for (const c of [gone.credential, kept.credential]) {
      assertFailure(await verify(c, '--revocations', pathJoin(d, 'tampered.bin')), EXIT.AUTH, 'the revocation list\'s signature does not verify: it was altered or forged', 'fetch the list again');
    }
    // Another service's key signed it (it lists nothing, so it would let the revoked device pass).
    const foreign = generateX25519();
    const now = Math.floor(Date.now() / 1000);
    writeFileSync(pathJoin(d, 'foreign.bin'), signRevocationList({ issuer: foreign.publicKey, issuedAt: now, nextUpdate: now + 3600, entries: [] }, xeddsaSigner(foreign.privateKey)));
    assertFailure(await verify(gone.credential, '--revocations', pathJoin(d, 'foreign.bin')), EXIT.AUTH, 'the revocation list was signed by another service key', 'fetch the list from the service that issued the credential');
    // Names the real IK_A as issuer, signed by another key.
    writeFileSync(pathJoin(d, 'forged.bin'), signRevocationList({ issuer: fromHex(w.serviceKey), issuedAt: now, nextUpdate: now + 3600, entries: [] }, xeddsaSigner(foreign.privateKey)));
    assertFailure(await verify(gone.credential, '--revocations', pathJoin(d, 'forged.bin')), EXIT.AUTH, /signature does not verify/);
    // Stale: a list fresh for 1 s, checked after it.
    const stale = pathJoin(d, 'stale.bin');
    const s = await okJson<{ next_update: string }>(['service', 'revocations', '--out', stale, '--validity', '1s'], { home: w.serviceHome });
    await sleep(Math.max(0, Date.parse(s.next_update) - Date.now()) + 1100);
    assertFailure(await verify(kept.credential, '--revocations', stale), EXIT.FAILURE, /^ockam-enroll: error: the revocation list is stale: its next update was due at /, 'fetch a current list');
    // Not a list at all; a missing file.
    writeFileSync(pathJoin(d, 'junk.bin'), 'OECR1:AAAA');
    assertFailure(await verify(kept.credential, '--revocations', pathJoin(d, 'junk.bin')), EXIT.FAILURE, /^ockam-enroll: error: revocation list: version 79 is not supported/);
    assertFailure(await verify(kept.credential, '--revocations', pathJoin(d, 'none.bin')), EXIT.USAGE, /cannot read the revocation list from .*none\.bin: ENOENT/, 'service revocations --out');
  });

  test('service revocations: usage errors before any passphrase or store', async () => {
    assertFailure(await run(['service', 'revocations'], { home: w.serviceHome }), EXIT.USAGE, 'where should the list go? pass --out FILE');
    assertFailure(await run(['service', 'revocations', '--out', pathJoin(dir(), 'x.bin'), '--validity', '31d'], { home: w.serviceHome }), EXIT.USAGE, /--validity/);
  });
});
