/**
 * The lifecycle encodings: session messages (docs/protocol.md §7.9) and the signed address
 * announcement (§7.10). Decoders throw only EnrollError with their documented code; what
 * decodes re-encodes to the same bytes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { concat, toHex, utf8 } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { EnrollError } from '../../src/errors.js';
import {
  ADDRESS_SIG_CONTEXT,
  announcementSignedBytes,
  decodeAnnouncement,
  encodeAnnouncement,
  signAnnouncement,
  verifyAnnouncement,
} from '../../src/protocol/announce.js';
import { encodeError } from '../../src/protocol/messages/common.js';
import {
  decodeAddress,
  decodeAddressRequest,
  decodeRotate,
  decodeRotated,
  encodeAddress,
  encodeAddressRequest,
  encodeRotate,
  encodeRotated,
  MSG_ADDRESS,
  MSG_ROTATE,
  ROTATE_BODY_LEN,
  rotateSignedBytes,
  decodeCredentialMsg,
  decodeCredentialRequest,
  encodeCredentialMsg,
  encodeCredentialRequest,
} from '../../src/protocol/messages/session.js';

const code = (c: EnrollError['code']) => (e: unknown) => e instanceof EnrollError && e.code === c;

describe('§7.10 address announcement', () => {
  const ikA = generateX25519();
  const Z = new Uint8Array(64).fill(7);

  test('signed bytes are "ockam-enroll/v1/address" ‖ seq u64 ‖ address; the signature verifies under IK_A', () => {
    const bytes = announcementSignedBytes(0x0102, 'tcp://127.0.0.1:4100');
    assert.equal(toHex(bytes), toHex(concat(utf8('ockam-enroll/v1/address'), Uint8Array.of(0, 0, 0, 0, 0, 0, 1, 2), utf8('tcp://127.0.0.1:4100'))));
    assert.equal(ADDRESS_SIG_CONTEXT.length, 23);
    const a = signAnnouncement(ikA.privateKey, 0x0102, 'tcp://127.0.0.1:4100', Z);
    assert.ok(xeddsaVerify(ikA.publicKey, bytes, a.signature));
  });

  test('encoding: seq u64 ‖ addr_len u16 ‖ address ‖ signature 64, round-trips exactly', () => {
    const a = signAnnouncement(ikA.privateKey, 3, 'tcp://[2001:db8::1]:4100', Z);
    const enc = encodeAnnouncement(a);
    assert.equal(enc.length, 8 + 2 + 24 + 64);
    assert.deepEqual(decodeAnnouncement(enc), a);
    assert.equal(toHex(encodeAnnouncement(decodeAnnouncement(enc))), toHex(enc));
  });

  test('malformed encodings: truncated, trailing, seq 0, seq > 2^53-1, addr_len > 512, bad UTF-8 → ERR_ANNOUNCEMENT_INVALID', () => {
    const enc = encodeAnnouncement(signAnnouncement(ikA.privateKey, 1, 'tcp://h:1', Z));
    const cases: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      ['truncated', enc.subarray(0, enc.length - 1)],
      ['trailing', concat(enc, Uint8Array.of(0))],
      ['seq 0', concat(new Uint8Array(8), enc.subarray(8))],
      ['seq 2^53', concat(Uint8Array.of(0, 0x20, 0, 0, 0, 0, 0, 0), enc.subarray(8))],
      ['addr_len 513', concat(enc.subarray(0, 8), Uint8Array.of(2, 1), new Uint8Array(513 + 64))],
      ['bad utf-8', concat(enc.subarray(0, 8), Uint8Array.of(0, 1, 0xff), new Uint8Array(64))],
    ];
    for (const [name, bytes] of cases) assert.throws(() => decodeAnnouncement(bytes), code('ERR_ANNOUNCEMENT_INVALID'), name);
  });

  test('verify: newer and signed by the pinned key → true; not newer → false (no crypto); wrong key, tampered address or seq → ERR_ANNOUNCEMENT_INVALID', () => {
    const a = signAnnouncement(ikA.privateKey, 5, 'tcp://10.0.0.2:4100');
    assert.equal(verifyAnnouncement(a, { ikA: ikA.publicKey, knownSeq: 4 }), true);
    assert.equal(verifyAnnouncement(a, { ikA: ikA.publicKey, knownSeq: 5 }), false);
    assert.equal(verifyAnnouncement({ ...a, signature: new Uint8Array(64) }, { ikA: ikA.publicKey, knownSeq: 9 }), false, 'a stale one is dropped before the signature is looked at');
    const other = generateX25519();
    assert.throws(() => verifyAnnouncement(a, { ikA: other.publicKey, knownSeq: 0 }), code('ERR_ANNOUNCEMENT_INVALID'));
    assert.throws(() => verifyAnnouncement({ ...a, address: 'tcp://10.0.0.3:4100' }, { ikA: ikA.publicKey, knownSeq: 0 }), code('ERR_ANNOUNCEMENT_INVALID'));
    assert.throws(() => verifyAnnouncement({ ...a, seq: 6 }, { ikA: ikA.publicKey, knownSeq: 0 }), code('ERR_ANNOUNCEMENT_INVALID'));
    // An unusable address is refused before the signature check.
    assert.throws(
      () => verifyAnnouncement(a, { ikA: ikA.publicKey, knownSeq: 0, checkAddress: () => { throw new EnrollError('ERR_ADDRESS', 'no'); } }),
      code('ERR_ANNOUNCEMENT_INVALID'),
    );
  });
});

describe('§7.9 session messages', () => {
  test('ADDRESS_REQUEST is exactly 0x32; ADDRESS is 0x33 ‖ present ‖ [announcement]', () => {
    assert.equal(toHex(encodeAddressRequest()), '32');
    decodeAddressRequest(encodeAddressRequest());
    assert.throws(() => decodeAddressRequest(Uint8Array.of(0x32, 0)), code('ERR_FRAME_MALFORMED'));
    assert.equal(toHex(encodeAddress(undefined)), '3300');
    assert.equal(decodeAddress(encodeAddress(undefined)), undefined);
    const ikA = generateX25519();
    const a = signAnnouncement(ikA.privateKey, 2, 'tcp://127.0.0.1:1');
    assert.deepEqual(decodeAddress(encodeAddress(a)), a);
    for (const bad of [Uint8Array.of(MSG_ADDRESS), Uint8Array.of(MSG_ADDRESS, 2), Uint8Array.of(MSG_ADDRESS, 0, 0), Uint8Array.of(MSG_ADDRESS, 1, 0, 0)]) {
      assert.throws(() => decodeAddress(bad), code('ERR_FRAME_MALFORMED'), toHex(bad));
    }
    // An ERROR in its place becomes the peer's error.
    assert.throws(() => decodeAddress(encodeError(new EnrollError('ERR_ENROLLEE_REVOKED', 'x'))), code('ERR_ENROLLEE_REVOKED'));
  });

  test('ROTATE is 0x34 ‖ IK_B\' ‖ sig_old ‖ sig_new (161 bytes); any other length is ERR_FRAME_MALFORMED', () => {
    const req = { newIkB: new Uint8Array(32).fill(1), sigOld: new Uint8Array(64).fill(2), sigNew: new Uint8Array(64).fill(3) };
    const enc = encodeRotate(req);
    assert.equal(enc.length, 1 + ROTATE_BODY_LEN);
    assert.equal(enc.length, 161);
    assert.deepEqual(decodeRotate(enc), req);
    assert.throws(() => decodeRotate(enc.subarray(0, 160)), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeRotate(concat(enc, Uint8Array.of(0))), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeRotate(Uint8Array.of(0x30)), code('ERR_PROTOCOL'));
    assert.throws(() => decodeRotate(new Uint8Array(0)), code('ERR_FRAME_MALFORMED'));
    assert.equal(enc[0], MSG_ROTATE);
  });

  test('the rotation proof covers "ockam-enroll/v1/rotate" ‖ IK_B ‖ IK_B\' ‖ h', () => {
    const a = new Uint8Array(32).fill(0xaa);
    const b = new Uint8Array(32).fill(0xbb);
    const h = new Uint8Array(32).fill(0xcc);
    assert.equal(toHex(rotateSignedBytes(a, b, h)), toHex(concat(utf8('ockam-enroll/v1/rotate'), a, b, h)));
    assert.throws(() => rotateSignedBytes(a, b, h.subarray(1)), code('ERR_INVALID_ARG'));
  });

  test('ROTATED is 0x35 ‖ enrollee_id ‖ IK_B\' ‖ rotated_at u64', () => {
    const r = { enrolleeId: new Uint8Array(32).fill(9), newIkB: new Uint8Array(32).fill(8), rotatedAt: 1_800_000_000 };
    const enc = encodeRotated(r);
    assert.equal(enc.length, 1 + 32 + 32 + 8);
    assert.deepEqual(decodeRotated(enc), r);
    assert.throws(() => decodeRotated(enc.subarray(0, enc.length - 1)), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeRotated(concat(enc, Uint8Array.of(1))), code('ERR_FRAME_MALFORMED'));
    const big = Uint8Array.from(enc);
    big[65] = 0xff;
    assert.throws(() => decodeRotated(big), code('ERR_FRAME_MALFORMED'), 'u64 above 2^53 - 1');
  });

  test('ROTATED with the new key\'s credential: ‖ cred_len u16 (178..242) ‖ credential; the legacy form still decodes', () => {
    const credential = new Uint8Array(180).fill(7);
    const r = { enrolleeId: new Uint8Array(32).fill(9), newIkB: new Uint8Array(32).fill(8), rotatedAt: 1_800_000_000, credential };
    const enc = encodeRotated(r);
    assert.equal(enc.length, 1 + 32 + 32 + 8 + 2 + 180);
    assert.equal(toHex(enc.subarray(73, 75)), '00b4');
    assert.deepEqual(decodeRotated(enc), r);
    assert.throws(() => decodeRotated(enc.subarray(0, enc.length - 1)), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeRotated(concat(enc, Uint8Array.of(0))), code('ERR_FRAME_MALFORMED'));
    for (const n of [0, 177, 243, 0xffff]) {
      const bad = concat(enc.subarray(0, 73), Uint8Array.of(n >> 8, n & 0xff), new Uint8Array(Math.min(n, 300)));
      assert.throws(() => decodeRotated(bad), code('ERR_FRAME_MALFORMED'), `cred_len ${n}`);
    }
    assert.throws(() => encodeRotated({ ...r, credential: new Uint8Array(10) }), code('ERR_INVALID_ARG'));
  });

  test('CREDENTIAL_REQUEST is 0x36 alone; CREDENTIAL is 0x37 ‖ cred_len u16 ‖ credential', () => {
    assert.deepEqual(encodeCredentialRequest(), Uint8Array.of(0x36));
    decodeCredentialRequest(Uint8Array.of(0x36));
    assert.throws(() => decodeCredentialRequest(Uint8Array.of(0x36, 0)), code('ERR_FRAME_MALFORMED'));
    const c = new Uint8Array(242).fill(3);
    const enc = encodeCredentialMsg(c);
    assert.equal(toHex(enc.subarray(0, 3)), '3700f2');
    assert.deepEqual(decodeCredentialMsg(enc), c);
    assert.throws(() => decodeCredentialMsg(enc.subarray(0, enc.length - 1)), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => decodeCredentialMsg(concat(enc, Uint8Array.of(0))), code('ERR_FRAME_MALFORMED'));
    assert.throws(() => encodeCredentialMsg(new Uint8Array(243)), code('ERR_INVALID_ARG'));
  });
});
