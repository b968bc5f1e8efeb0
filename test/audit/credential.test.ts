/**
 * The enrollee credential (src/protocol/credential.ts, docs/protocol.md §4.4) and the
 * acceptance that carries it (§5.7, version 2): layout, signing and the verification order,
 * every structural refusal, the text form, and the enrollee's own check.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { xeddsaSigner, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import {
  CREDENTIAL_MAX_LEN,
  CREDENTIAL_MIN_LEN,
  CREDENTIAL_SIG_CONTEXT,
  CREDENTIAL_TEXT_PREFIX,
  credentialFromText,
  credentialSignedBytes,
  credentialToText,
  decodeCredential,
  encodeCredential,
  signCredential,
  verifyCredential,
  type CredentialFields,
} from '../../src/protocol/credential.js';
import { cardToText } from '../../src/protocol/codec/index.js';
import {
  ACCEPT_CREDENTIAL_MAX_LEN,
  ACCEPT_CREDENTIAL_MIN_LEN,
  decodeAcceptance,
  encodeAcceptance,
} from '../../src/protocol/messages/service.js';
import { acceptCredential } from '../../src/roles/enrollee/credential.js';
import { check, expectCode, hostileBytes, hostileText, typed } from '../fuzz/arbitraries.js';

const NOW = 1_800_000_000;
const ikA = generateX25519();
const ikB = generateX25519();
const eikB = generateX25519();
const fields: CredentialFields = {
  issuer: ikA.publicKey,
  enrolleeId: sha256(eikB.publicKey),
  ikB: ikB.publicKey,
  petName: 'Robot Axiom',
  issuedAt: NOW,
  expiresAt: NOW + 365 * 86400,
};

function throwsCode(f: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(f, (err: unknown) => {
    assert.ok(isEnrollError(err, code), `expected ${code}, got ${String((err as Error)?.message)} (${(err as { code?: string }).code})`);
    if (message) assert.match((err as Error).message, message);
    return true;
  });
}

describe('credential v1: layout and signature', () => {
  it('encodes to 178 + pet_len bytes in the documented order, signed over the context label and every byte before sig', () => {
    const c = signCredential(fields, ikA.privateKey);
    const bytes = encodeCredential(c);
    assert.equal(bytes.length, CREDENTIAL_MIN_LEN + Buffer.byteLength('Robot Axiom'));
    assert.equal(CREDENTIAL_MIN_LEN, 178);
    assert.equal(CREDENTIAL_MAX_LEN, 242);
    assert.equal(bytes[0], 1);
    assert.deepEqual(bytes.subarray(1, 33), ikA.publicKey);
    assert.deepEqual(bytes.subarray(33, 65), fields.enrolleeId);
    assert.deepEqual(bytes.subarray(65, 97), ikB.publicKey);
    assert.equal(Buffer.from(bytes.subarray(97, 105)).readBigUInt64BE(), BigInt(NOW));
    assert.equal(bytes[113], 11);
    const signed = bytes.subarray(0, bytes.length - 64);
    assert.deepEqual(credentialSignedBytes(fields), concat(CREDENTIAL_SIG_CONTEXT, signed));
    assert.ok(xeddsaVerify(ikA.publicKey, concat(CREDENTIAL_SIG_CONTEXT, signed), bytes.subarray(bytes.length - 64)));
    // Without the context label the same signature is worthless: no cross-protocol reuse.
    assert.ok(!xeddsaVerify(ikA.publicKey, signed, bytes.subarray(bytes.length - 64)));
    assert.deepEqual(decodeCredential(bytes), c);
    assert.deepEqual(verifyCredential(decodeCredential(bytes), { now: NOW + 1, issuer: ikA.publicKey }), c);
  });

  it('a prepared signer (what the service keeps) makes signatures that verify the same', () => {
    const c = signCredential({ ...fields, petName: '' }, xeddsaSigner(ikA.privateKey));
    assert.equal(encodeCredential(c).length, CREDENTIAL_MIN_LEN);
    verifyCredential(c, { now: NOW, issuer: ikA.publicKey });
  });

  it('the signer must hold the issuer key', () => {
    throwsCode(() => signCredential(fields, generateX25519().privateKey), 'ERR_INVALID_ARG', /issuer/);
  });

  it('verification order: issuer, then signature, then time', () => {
    const bytes = encodeCredential(signCredential(fields, ikA.privateKey));
    const other = generateX25519().publicKey;
    throwsCode(() => verifyCredential(decodeCredential(bytes), { now: NOW, issuer: other }), 'ERR_CREDENTIAL_ISSUER');
    // A flipped bit anywhere in the signed part or the signature: the signature fails.
    for (const i of [40, 70, 100, 110, 114, bytes.length - 1]) {
      const forged = Uint8Array.from(bytes);
      forged[i]! ^= 0x01;
      let c;
      try {
        c = decodeCredential(forged);
      } catch (err) {
        assert.ok(isEnrollError(err, 'ERR_CREDENTIAL_MALFORMED'), `byte ${i}`);
        continue;
      }
      throwsCode(() => verifyCredential(c, { now: NOW, issuer: ikA.publicKey }), 'ERR_CREDENTIAL_SIGNATURE');
      // … even when it is also expired: authenticity is judged first.
      throwsCode(() => verifyCredential(c, { now: NOW + 400 * 86400, issuer: ikA.publicKey }), 'ERR_CREDENTIAL_SIGNATURE');
    }
    const c = decodeCredential(bytes);
    throwsCode(() => verifyCredential(c, { now: fields.expiresAt, issuer: ikA.publicKey }), 'ERR_CREDENTIAL_EXPIRED', /expired at/);
    throwsCode(() => verifyCredential(c, { now: NOW - 301, issuer: ikA.publicKey }), 'ERR_CREDENTIAL_EXPIRED', /not valid until/);
    verifyCredential(c, { now: NOW - 300, issuer: ikA.publicKey });
  });
});

describe('credential v1: decoding refuses', () => {
  const good = encodeCredential(signCredential(fields, ikA.privateKey));
  const cases: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['version 2', concat(Uint8Array.of(2), good.subarray(1))],
    ['every truncation', good.subarray(0, 150)],
    ['one trailing byte', concat(good, Uint8Array.of(0))],
    ['too long', new Uint8Array(CREDENTIAL_MAX_LEN + 1).fill(1)],
  ];
  for (const [name, bytes] of cases) {
    it(name, () => throwsCode(() => decodeCredential(bytes), 'ERR_CREDENTIAL_MALFORMED'));
  }

  it('each truncated prefix', () => {
    for (let n = 0; n < good.length; n++) throwsCode(() => decodeCredential(good.subarray(0, n)), 'ERR_CREDENTIAL_MALFORMED');
  });

  it('pet_len over 64, ill-formed UTF-8, a control or bidi character', () => {
    const withPet = (pet: Uint8Array) => {
      const head = good.subarray(0, 113);
      return concat(head, Uint8Array.of(pet.length), pet, new Uint8Array(64));
    };
    throwsCode(() => decodeCredential(withPet(new Uint8Array(65).fill(0x41))), 'ERR_CREDENTIAL_MALFORMED', /at most 242/);
    throwsCode(() => decodeCredential(concat(good.subarray(0, 113), Uint8Array.of(65), new Uint8Array(64))), 'ERR_CREDENTIAL_MALFORMED', /pet_len/);
    throwsCode(() => decodeCredential(withPet(Uint8Array.of(0xc3, 0x28))), 'ERR_CREDENTIAL_MALFORMED', /UTF-8/);
    throwsCode(() => decodeCredential(withPet(Buffer.from('a\nb'))), 'ERR_CREDENTIAL_MALFORMED', /control/);
    throwsCode(() => decodeCredential(withPet(Buffer.from('a\u202eb'))), 'ERR_CREDENTIAL_MALFORMED', /control/);
  });

  it('expires_at not after issued_at, or a lifetime over ten years', () => {
    for (const [issuedAt, expiresAt] of [[NOW, NOW], [NOW, NOW - 1], [NOW, NOW + 3651 * 86400]]) {
      const b = Uint8Array.from(good);
      const v = new DataView(b.buffer);
      v.setBigUint64(97, BigInt(issuedAt!));
      v.setBigUint64(105, BigInt(expiresAt!));
      throwsCode(() => decodeCredential(b), 'ERR_CREDENTIAL_MALFORMED');
      throwsCode(() => signCredential({ ...fields, issuedAt: issuedAt!, expiresAt: expiresAt! }, ikA.privateKey), 'ERR_INVALID_ARG');
    }
  });
});

describe('credential text form', () => {
  it('OECR1: + base32 with checksum; round-trips; a card is named as such', () => {
    const c = signCredential(fields, ikA.privateKey);
    const text = credentialToText(c);
    assert.ok(text.startsWith(CREDENTIAL_TEXT_PREFIX));
    assert.deepEqual(credentialFromText(text.toLowerCase()), c);
    throwsCode(() => credentialFromText(`${text.slice(0, -2)}AA`), 'ERR_TEXT_CHECKSUM');
    throwsCode(() => credentialFromText(cardToText({ version: 1, eikB: eikB.publicKey })), 'ERR_TEXT_PREFIX', /an enrollee card \(OEC1:\), not a credential \(OECR1:\)/);
  });
});

describe('the acceptance (§5.7): version 2 carries the credential', () => {
  const base = { enrolleeId: fields.enrolleeId, enrolledAt: NOW, petName: 'Robot Axiom', addr: 'tcp://127.0.0.1:4100' };
  const cred = encodeCredential(signCredential(fields, ikA.privateKey));

  it('version 1 without, version 2 with cred_len ‖ credential; both decode and re-encode exactly', () => {
    const v1 = encodeAcceptance(base);
    const v2 = encodeAcceptance({ ...base, credential: cred });
    assert.equal(v1[0], 1);
    assert.equal(v2[0], 2);
    assert.deepEqual(v2.subarray(0, v1.length).subarray(1), v1.subarray(1));
    assert.equal(Buffer.from(v2.subarray(v1.length, v1.length + 2)).readUInt16BE(), cred.length);
    assert.deepEqual(decodeAcceptance(v1), base);
    assert.deepEqual(decodeAcceptance(v2), { ...base, credential: cred });
    assert.deepEqual(encodeAcceptance(decodeAcceptance(v2)), v2);
  });

  it('refuses a cred_len out of range, a missing credential, trailing bytes, version 3', () => {
    const v2 = encodeAcceptance({ ...base, credential: cred });
    const at = v2.length - cred.length - 2;
    for (const n of [0, ACCEPT_CREDENTIAL_MIN_LEN - 1, ACCEPT_CREDENTIAL_MAX_LEN + 1]) {
      const b = Uint8Array.from(v2);
      b[at] = n >> 8;
      b[at + 1] = n & 0xff;
      throwsCode(() => decodeAcceptance(b), 'ERR_FRAME_MALFORMED');
    }
    throwsCode(() => decodeAcceptance(v2.subarray(0, at)), 'ERR_FRAME_MALFORMED');
    throwsCode(() => decodeAcceptance(concat(v2, Uint8Array.of(0))), 'ERR_FRAME_MALFORMED');
    throwsCode(() => decodeAcceptance(concat(Uint8Array.of(3), v2.subarray(1))), 'ERR_FRAME_MALFORMED');
    throwsCode(() => encodeAcceptance({ ...base, credential: new Uint8Array(10) }), 'ERR_INVALID_ARG');
  });

  it('the enrollee keeps it only if it verifies under the bundle\'s IK_A and names its own id and IK_B', () => {
    const text = acceptCredential(cred, { ikA: ikA.publicKey, enrolleeId: fields.enrolleeId, ikB: ikB.publicKey });
    assert.ok(text.startsWith('OECR1:'));
    throwsCode(() => acceptCredential(cred, { ikA: generateX25519().publicKey, enrolleeId: fields.enrolleeId, ikB: ikB.publicKey }), 'ERR_PROTOCOL');
    throwsCode(() => acceptCredential(cred, { ikA: ikA.publicKey, enrolleeId: fields.enrolleeId, ikB: generateX25519().publicKey }), 'ERR_PROTOCOL', /another enrollee or identity key/);
    throwsCode(() => acceptCredential(cred, { ikA: ikA.publicKey, enrolleeId: sha256(ikB.publicKey), ikB: ikB.publicKey }), 'ERR_PROTOCOL');
    // An expired one is still accepted at enrollment: the device does not judge the service's clock.
    const old = encodeCredential(signCredential({ ...fields, issuedAt: 1000, expiresAt: 2000 }, ikA.privateKey));
    acceptCredential(old, { ikA: ikA.publicKey, enrolleeId: fields.enrolleeId, ikB: ikB.publicKey });
    assert.equal(toHex(fields.ikB), toHex(ikB.publicKey));
  });
});

describe('hostile input (seeded, test/fuzz/arbitraries.ts)', () => {
  const cred = encodeCredential(signCredential(fields, ikA.privateKey));
  const noName = encodeCredential(signCredential({ ...fields, petName: '' }, ikA.privateKey));

  it('decodeCredential throws only ERR_CREDENTIAL_MALFORMED; what decodes re-encodes exactly, and verifies only if unchanged', () =>
    check(
      fc.property(hostileBytes([cred, noName], 300), (input) => {
        const r = typed(() => decodeCredential(input));
        expectCode(r, ['ERR_CREDENTIAL_MALFORMED'], 'decodeCredential');
        if (!r.ok) return;
        assert.deepEqual(encodeCredential(r.value), input);
        const v = typed(() => verifyCredential(r.value, { now: NOW, issuer: ikA.publicKey }));
        if (v.ok) assert.ok(equalBytes(input, cred) || equalBytes(input, noName), 'only an unchanged credential verifies');
        else expectCode(v, ['ERR_CREDENTIAL_ISSUER', 'ERR_CREDENTIAL_SIGNATURE', 'ERR_CREDENTIAL_EXPIRED'], 'verifyCredential');
      }),
    ));

  it('credentialFromText throws only text and credential codes', () =>
    check(
      fc.property(hostileText([credentialToText(decodeCredential(cred))], 300), (text) => {
        const r = typed(() => credentialFromText(text));
        expectCode(r, ['ERR_TEXT_PREFIX', 'ERR_TEXT_ALPHABET', 'ERR_TEXT_CHECKSUM', 'ERR_CREDENTIAL_MALFORMED'], 'credentialFromText');
      }),
    ));

  it('decodeAcceptance (version 2) throws only ERR_FRAME_MALFORMED, and what decodes re-encodes exactly', () =>
    check(
      fc.property(
        hostileBytes([encodeAcceptance({ enrolleeId: fields.enrolleeId, enrolledAt: NOW, petName: 'Robot Axiom', addr: 'tcp://127.0.0.1:4100', credential: cred })], 600),
        (input) => {
          const r = typed(() => decodeAcceptance(input));
          expectCode(r, ['ERR_FRAME_MALFORMED'], 'decodeAcceptance');
          if (r.ok) assert.deepEqual(encodeAcceptance(r.value), input);
        },
      ),
    ));
});
