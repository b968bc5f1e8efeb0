/**
 * Known-answer tests for the Enrollment Key Agreement v1.
 *
 * test/vectors/enrollment-v1.json (made by test/vectors/generate-enrollment-v1.ts): every
 * field of every vector is recomputed from the private inputs (keys, Z values, Addr), with
 * independent primitives where they exist (@noble/curves X25519, @noble/hashes SHA-256 and
 * HKDF, node's AES-256-GCM called directly; XEdDSA has only our implementation, which
 * test/crypto/xeddsa.test.ts checks against published vectors). Then `initiate` and
 * `accept` run on every vector and must give the same message, IK_B and session keys.
 *
 * test/vectors/third-party/signal-x3dh/libsignal_x3dh_kat.json: Signal's X3DH (no one-time prekey,
 * info "WhisperText", L = 64) through the same DH-ordering and KDF helpers, showing that
 * the 0xFF-prefix + HKDF plumbing matches libsignal.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { keyPairFromPrivate, x25519PublicKey } from '../../src/crypto/x25519.js';
import { xeddsaSign, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { decodeBundle, encodeBundle, signBundle, verifyBundle } from '../../src/protocol/codec/bundle.js';
import { bundleFromText, bundleToText } from '../../src/protocol/codec/text.js';
import {
  INFO,
  accept,
  enrolleeSession,
  initiate,
  serviceSession,
  x3dhInitiatorDh,
  x3dhKdf,
  x3dhResponderDh,
  x3dhStateHash,
} from '../../src/protocol/enrollment/index.js';
import { REPO_ROOT, readVectorJson } from '../helpers/paths.js';
import { edwardsSignBit, renderEnrollmentV1 } from '../vectors/generate-enrollment-v1.js';

const REQUIRED = [
  'ik_a', 'spk_a', 'opk_a', 'eik_b', 'ek_b', 'ik_b', 'addr', 'spk_sig_z', 'pop_z',
  'ik_a_pub', 'spk_a_pub', 'opk_a_pub', 'eik_b_pub', 'ek_b_pub', 'ik_b_pub', 'spk_sig',
  'dh1', 'dh2', 'dh3', 'dh4', 'sk', 'h', 'enrollee_id', 'header', 'aad', 'plaintext', 'pop',
  'message', 'k_s2e', 'k_e2s',
] as const;

type V = Record<(typeof REQUIRED)[number], string> & {
  comment: string;
  ik_a_sign: number;
  ik_b_sign: number;
  bundle_id: string;
  expires_at: number;
  bundle_sig_z: string;
  bundle: string;
  bundle_text: string;
};

const FILE = join(REPO_ROOT, 'test', 'vectors', 'enrollment-v1.json');
const raw = readFileSync(FILE, 'utf8');
const kat = JSON.parse(raw) as { info: string; vectors: V[] };

const FF32 = new Uint8Array(32).fill(0xff);
const ZERO32 = new Uint8Array(32);

function gcm(key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return concat(c.update(pt), c.final(), c.getAuthTag());
}

describe('enrollment-v1.json: file', () => {
  test('is byte for byte what the generator produces (deterministic)', () => {
    assert.equal(renderEnrollmentV1(), raw);
  });

  test('has the INFO string, at least 8 vectors with every required field, and the required coverage', () => {
    assert.equal(kat.info, 'ockam-enroll/v1/X3DH_25519_AESGCM_SHA256');
    assert.equal(toHex(utf8(kat.info)), toHex(INFO));
    assert.ok(kat.vectors.length >= 8);
    for (const v of kat.vectors) {
      for (const k of REQUIRED) {
        assert.equal(typeof v[k], 'string', `${v.comment}: ${k}`);
        if (k !== 'addr') assert.match(v[k], /^([0-9a-f]{2})+$/, `${v.comment}: ${k}`);
      }
    }
    const combos = new Set(kat.vectors.map((v) => `${v.ik_a_sign}${v.ik_b_sign}`));
    assert.deepEqual([...combos].sort(), ['00', '01', '10', '11']);
    const lens = kat.vectors.map((v) => utf8(v.addr).length);
    assert.ok(lens.includes(0), 'an empty Addr');
    assert.ok(lens.some((n) => n >= 200), 'a long Addr');
    assert.ok(kat.vectors.some((v) => /[^\x00-\x7f]/.test(v.addr)), 'a non-ASCII Addr');
  });
});

describe('enrollment-v1.json: every field recomputed', () => {
  for (const v of kat.vectors) {
    test(v.comment, () => {
      const x = (k: keyof V): Uint8Array => fromHex(v[k] as string, k);
      const eq = (k: keyof V, actual: Uint8Array): void => assert.equal(toHex(actual), v[k], `${v.comment}: ${k}`);

      // Public keys: ours and @noble/curves.
      for (const k of ['ik_a', 'spk_a', 'opk_a', 'eik_b', 'ek_b', 'ik_b'] as const) {
        eq(`${k}_pub`, x25519PublicKey(x(k)));
        eq(`${k}_pub`, nobleX25519.getPublicKey(x(k)));
      }
      assert.equal(edwardsSignBit(x('ik_a')), v.ik_a_sign);
      assert.equal(edwardsSignBit(x('ik_b')), v.ik_b_sign);

      // SPK_sig = XEdDSA(IK_A, SPK_A), over the 32 raw bytes of SPK_A.
      eq('spk_sig', xeddsaSign(x('ik_a'), x('spk_a_pub'), x('spk_sig_z')));
      assert.ok(xeddsaVerify(x('ik_a_pub'), x('spk_a_pub'), x('spk_sig')));

      // DH1 = DH(EIK_B, SPK_A), DH2 = DH(EK_B, IK_A), DH3 = DH(EK_B, SPK_A), DH4 = DH(EK_B, OPK_A).
      eq('dh1', nobleX25519.getSharedSecret(x('eik_b'), x('spk_a_pub')));
      eq('dh2', nobleX25519.getSharedSecret(x('ek_b'), x('ik_a_pub')));
      eq('dh3', nobleX25519.getSharedSecret(x('ek_b'), x('spk_a_pub')));
      eq('dh4', nobleX25519.getSharedSecret(x('ek_b'), x('opk_a_pub')));
      const dhs = ['dh1', 'dh2', 'dh3', 'dh4'].map((k) => x(k as keyof V));
      const init = x3dhInitiatorDh({
        identity: x('eik_b'), ephemeral: x('ek_b'),
        peerIdentity: x('ik_a_pub'), peerSignedPrekey: x('spk_a_pub'), peerOneTimePrekey: x('opk_a_pub'),
      });
      const resp = x3dhResponderDh({
        identity: x('ik_a'), signedPrekey: x('spk_a'), oneTimePrekey: x('opk_a'),
        peerIdentity: x('eik_b_pub'), peerEphemeral: x('ek_b_pub'),
      });
      assert.deepEqual(init.map(toHex), dhs.map(toHex));
      assert.deepEqual(resp.map(toHex), dhs.map(toHex));

      // SK = HKDF(salt = 0^32, IKM = 0xFF^32 ‖ KM, INFO, 32); h = SHA-256(INFO ‖ 0xFF^32 ‖ KM).
      const km = concat(...dhs);
      eq('sk', hkdf(sha256, concat(FF32, km), ZERO32, INFO, 32));
      eq('sk', x3dhKdf(km));
      eq('h', sha256(concat(INFO, FF32, km)));
      eq('h', x3dhStateHash(km));

      // Header, AAD, POP, plaintext, message.
      eq('enrollee_id', sha256(x('eik_b_pub')));
      eq('header', concat(x('ek_b_pub'), x('enrollee_id')));
      eq('aad', concat(x('header'), INFO, utf8(v.addr), x('h')));
      eq('pop', xeddsaSign(x('ik_b'), x('eik_b_pub'), x('pop_z')));
      assert.ok(xeddsaVerify(x('ik_b_pub'), x('eik_b_pub'), x('pop')));
      eq('plaintext', concat(x('ik_b_pub'), x('pop')));
      eq('message', concat(x('header'), gcm(x('sk'), x('ek_b_pub').subarray(0, 12), x('plaintext'), x('aad'))));
      assert.equal(x('message').length, 176);

      // K = HKDF(salt = h, IKM = SK, info = INFO ‖ "/session", 64) = k_s2e ‖ k_e2s.
      const k = hkdf(sha256, x('sk'), x('h'), concat(INFO, utf8('/session')), 64);
      eq('k_s2e', k.subarray(0, 32));
      eq('k_e2s', k.subarray(32));

      // The bundle (extra fields): layout, signature, text form.
      const b = decodeBundle(x('bundle'));
      assert.deepEqual(
        [b.bundleId, b.ikA, b.spkA, b.spkSig, b.opkA].map(toHex),
        [v.bundle_id, v.ik_a_pub, v.spk_a_pub, v.spk_sig, v.opk_a_pub],
      );
      assert.equal(b.expiresAt, v.expires_at);
      assert.equal(b.addr, v.addr);
      verifyBundle(b, { now: v.expires_at - 1, ikA: x('ik_a_pub') });
      const resigned = signBundle(
        { bundleId: x('bundle_id'), ikA: x('ik_a_pub'), spkA: x('spk_a_pub'), spkSig: x('spk_sig'), opkA: x('opk_a_pub'), expiresAt: v.expires_at, addr: v.addr },
        x('ik_a'),
        x('bundle_sig_z'),
      );
      eq('bundle', encodeBundle(resigned));
      assert.equal(bundleToText(b), v.bundle_text);
      assert.deepEqual(bundleFromText(v.bundle_text, { now: v.expires_at - 1 }), b);

      // initiate reproduces the message; accept recovers IK_B and the session keys.
      const r = initiate({
        bundle: b,
        eikB: keyPairFromPrivate(x('eik_b')),
        ikB: keyPairFromPrivate(x('ik_b')),
        ekB: keyPairFromPrivate(x('ek_b')),
        popZ: x('pop_z'),
      });
      eq('message', r.message);
      eq('h', r.h);
      eq('enrollee_id', r.enrolleeId);
      eq('ik_b_pub', r.ikB.publicKey);
      eq('k_s2e', r.session.kS2e);
      eq('k_e2s', r.session.kE2s);
      const a = accept(x('message'), x('ik_a'), {
        isReplay: () => false,
        lookupPending: (id) => (toHex(id) === v.enrollee_id ? { eikB: x('eik_b_pub'), spkA: x('spk_a'), opkA: x('opk_a'), addr: v.addr } : undefined),
      });
      eq('ik_b_pub', a.ikB);
      eq('ek_b_pub', a.ekB);
      eq('enrollee_id', a.enrolleeId);
      eq('h', a.h);
      eq('k_s2e', a.session.kS2e);
      eq('k_e2s', a.session.kE2s);
      const e = enrolleeSession(r.session);
      const s = serviceSession(a.session);
      assert.deepEqual(s.recv.open(e.send.seal(utf8('hello'))), utf8('hello'));
      assert.deepEqual(e.recv.open(s.send.seal(utf8('welcome'))), utf8('welcome'));
    });
  }
});

interface LibsignalKat {
  alice_identity_private: string;
  alice_identity_public: string;
  alice_base_private: string;
  alice_base_public: string;
  bob_identity_private: string;
  bob_identity_public: string;
  bob_signed_prekey_private: string;
  bob_signed_prekey_public: string;
  expected_chain_key: string;
  derived_root_key: string;
}

describe('libsignal X3DH known answer (third-party/signal-x3dh, signalapp/libsignal@a280bc65 ratchet.rs)', () => {
  const ls = readVectorJson<LibsignalKat>('signal-x3dh', 'libsignal_x3dh_kat.json');
  /** libsignal serializes public keys as 0x05 ‖ u. */
  const pub = (hex: string): Uint8Array => {
    const b = fromHex(hex);
    assert.equal(b.length, 33);
    assert.equal(b[0], 0x05);
    return b.subarray(1);
  };
  const WHISPER = utf8('WhisperText');

  test('public keys match their private keys', () => {
    for (const who of ['alice_identity', 'alice_base', 'bob_identity', 'bob_signed_prekey'] as const) {
      assert.equal(toHex(x25519PublicKey(fromHex(ls[`${who}_private`]))), toHex(pub(ls[`${who}_public`])), who);
    }
  });

  test('Alice (initiator): DH order + 0xFF prefix + HKDF("WhisperText", 64) gives root ‖ chain', () => {
    const dhs = x3dhInitiatorDh({
      identity: fromHex(ls.alice_identity_private),
      ephemeral: fromHex(ls.alice_base_private),
      peerIdentity: pub(ls.bob_identity_public),
      peerSignedPrekey: pub(ls.bob_signed_prekey_public),
    });
    assert.equal(dhs.length, 3);
    const okm = x3dhKdf(concat(...dhs), { info: WHISPER, salt: new Uint8Array(32), length: 64 });
    assert.equal(toHex(okm.subarray(32)), ls.expected_chain_key);
    assert.equal(toHex(okm.subarray(0, 32)), ls.derived_root_key);
    // libsignal passes no salt; RFC 5869 §2.2 makes that HashLen zero bytes: the same output.
    assert.deepEqual(x3dhKdf(concat(...dhs), { info: WHISPER, salt: new Uint8Array(0), length: 64 }), okm);
  });

  test('Bob (responder): the mirrored DHs give the same root ‖ chain', () => {
    const dhs = x3dhResponderDh({
      identity: fromHex(ls.bob_identity_private),
      signedPrekey: fromHex(ls.bob_signed_prekey_private),
      peerIdentity: pub(ls.alice_identity_public),
      peerEphemeral: pub(ls.alice_base_public),
    });
    const okm = x3dhKdf(concat(...dhs), { info: WHISPER, length: 64 });
    assert.equal(toHex(okm.subarray(32)), ls.expected_chain_key);
    assert.equal(toHex(okm.subarray(0, 32)), ls.derived_root_key);
  });

  test('the vector is sensitive to the plumbing: wrong DH order, no 0xFF prefix, other info all miss', () => {
    const dhs = x3dhInitiatorDh({
      identity: fromHex(ls.alice_identity_private),
      ephemeral: fromHex(ls.alice_base_private),
      peerIdentity: pub(ls.bob_identity_public),
      peerSignedPrekey: pub(ls.bob_signed_prekey_public),
    });
    const chain = (okm: Uint8Array): string => toHex(okm.subarray(32));
    assert.notEqual(chain(x3dhKdf(concat(dhs[1]!, dhs[0]!, dhs[2]!), { info: WHISPER, length: 64 })), ls.expected_chain_key);
    assert.notEqual(chain(hkdf(sha256, concat(...dhs), new Uint8Array(32), WHISPER, 64)), ls.expected_chain_key);
    assert.notEqual(chain(x3dhKdf(concat(...dhs), { info: INFO, length: 64 })), ls.expected_chain_key);
    assert.equal(chain(hkdf(sha256, concat(FF32, ...dhs), new Uint8Array(32), WHISPER, 64)), ls.expected_chain_key);
  });
});
