/**
 * Known-answer tests for the Enrollment Key Agreement v2 (hybrid X3DH + ML-KEM-768,
 * docs/protocol.md §5A and §10.4).
 *
 * test/vectors/enrollment-v2.json (made by test/vectors/generate-enrollment-v2.ts): the file
 * must be what the generator produces, then every field is recomputed from the private
 * inputs with independent primitives where they exist (@noble/curves X25519, @noble/hashes
 * SHA-256 and HKDF, node's AES-256-GCM called directly; ML-KEM-768 through the wrapper that
 * test/crypto/mlkem.test.ts checks against NIST's ACVP vectors), and initiateV2/acceptV2
 * must reproduce the message, IK_B and the session keys.
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
import { mlKem768Decapsulate, mlKem768Encapsulate, mlKem768Keygen } from '../../src/crypto/mlkem.js';
import { keyPairFromPrivate } from '../../src/crypto/x25519.js';
import { xeddsaSign, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { decodeBundle, encodeBundle, signBundle, verifyBundle } from '../../src/protocol/codec/bundle.js';
import { bundleFromText, bundleToText } from '../../src/protocol/codec/text.js';
import {
  ENROLLMENT_MESSAGE_V2_LEN,
  INFO,
  INFO_V2,
  acceptV2,
  enrolleeSession,
  initiateV2,
  serviceSession,
} from '../../src/protocol/enrollment/index.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { renderEnrollmentV2 } from '../vectors/generate-enrollment-v2.js';

const REQUIRED = [
  'ik_a', 'spk_a', 'opk_a', 'kem_seed', 'eik_b', 'ek_b', 'kem_m', 'ik_b', 'spk_sig_z', 'pop_z',
  'ik_a_pub', 'spk_a_pub', 'opk_a_pub', 'kem_pub', 'kem_hash', 'eik_b_pub', 'ek_b_pub', 'ik_b_pub', 'spk_sig',
  'dh1', 'dh2', 'dh3', 'dh4', 'kem_ct', 'ss', 'sk', 'h', 'enrollee_id', 'header', 'aad', 'plaintext', 'pop',
  'message', 'k_s2e', 'k_e2s', 'bundle_id', 'bundle_sig_z', 'bundle',
] as const;

type V = Record<(typeof REQUIRED)[number], string> & {
  comment: string;
  addr: string;
  ik_a_sign: number;
  ik_b_sign: number;
  expires_at: number;
  bundle_text: string;
};

const FILE = join(REPO_ROOT, 'test', 'vectors', 'enrollment-v2.json');
const raw = readFileSync(FILE, 'utf8');
const kat = JSON.parse(raw) as { info: string; vectors: V[] };
const FF32 = new Uint8Array(32).fill(0xff);
const ZERO32 = new Uint8Array(32);

function gcm(key: Uint8Array, nonce: Uint8Array, pt: Uint8Array, aad: Uint8Array): Uint8Array {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(aad);
  return concat(c.update(pt), c.final(), c.getAuthTag());
}

describe('enrollment-v2.json: file', () => {
  test('is byte for byte what the generator produces (deterministic)', () => {
    assert.equal(renderEnrollmentV2(), raw);
  });

  test('has the v2 INFO string (distinct from v1), every required field, and the coverage of v1', () => {
    assert.equal(kat.info, 'ockam-enroll/v2/PQXDH_25519_MLKEM768_AESGCM_SHA256');
    assert.equal(toHex(utf8(kat.info)), toHex(INFO_V2));
    assert.notEqual(toHex(INFO_V2), toHex(INFO));
    assert.ok(kat.vectors.length >= 8);
    for (const v of kat.vectors) {
      for (const k of REQUIRED) assert.match(v[k], /^([0-9a-f]{2})+$/, `${v.comment}: ${k}`);
    }
    const combos = new Set(kat.vectors.map((v) => `${v.ik_a_sign}${v.ik_b_sign}`));
    assert.deepEqual([...combos].sort(), ['00', '01', '10', '11']);
    const lens = kat.vectors.map((v) => utf8(v.addr).length);
    assert.ok(lens.includes(0) && lens.includes(512));
  });
});

describe('enrollment-v2.json: every field recomputed', () => {
  for (const v of kat.vectors) {
    test(v.comment, () => {
      const x = (k: (typeof REQUIRED)[number]): Uint8Array => fromHex(v[k], k);
      const eq = (k: (typeof REQUIRED)[number], actual: Uint8Array): void => assert.equal(toHex(actual), v[k], `${v.comment}: ${k}`);

      for (const k of ['ik_a', 'spk_a', 'opk_a', 'eik_b', 'ek_b', 'ik_b'] as const) eq(`${k}_pub`, nobleX25519.getPublicKey(x(k)));
      eq('spk_sig', xeddsaSign(x('ik_a'), x('spk_a_pub'), x('spk_sig_z')));

      // PQSPK_A = ML-KEM.KeyGen_internal(d ‖ z); KEM_hash = SHA-256(PQSPK_A).
      const kem = mlKem768Keygen(x('kem_seed'));
      eq('kem_pub', kem.publicKey);
      eq('kem_hash', sha256(x('kem_pub')));

      eq('dh1', nobleX25519.getSharedSecret(x('eik_b'), x('spk_a_pub')));
      eq('dh2', nobleX25519.getSharedSecret(x('ek_b'), x('ik_a_pub')));
      eq('dh3', nobleX25519.getSharedSecret(x('ek_b'), x('spk_a_pub')));
      eq('dh4', nobleX25519.getSharedSecret(x('ek_b'), x('opk_a_pub')));
      // (CT, SS) = ML-KEM.Encaps_internal(PQSPK_A, m); Decaps(dk, CT) = SS.
      const enc = mlKem768Encapsulate(x('kem_pub'), x('kem_m'));
      eq('kem_ct', enc.cipherText);
      eq('ss', enc.sharedSecret);
      eq('ss', mlKem768Decapsulate(x('kem_ct'), kem.secretKey));

      // KM = DH1 ‖ DH2 ‖ DH3 ‖ DH4 ‖ SS; SK = HKDF(0^32, 0xFF^32 ‖ KM, INFO_V2, 32); h = SHA-256(INFO_V2 ‖ 0xFF^32 ‖ KM).
      const km = concat(x('dh1'), x('dh2'), x('dh3'), x('dh4'), x('ss'));
      assert.equal(km.length, 160);
      eq('sk', hkdf(sha256, concat(FF32, km), ZERO32, INFO_V2, 32));
      eq('h', sha256(concat(INFO_V2, FF32, km)));

      eq('enrollee_id', sha256(x('eik_b_pub')));
      eq('header', concat(Uint8Array.of(2), x('ek_b_pub'), x('enrollee_id'), x('kem_ct')));
      eq('aad', concat(x('header'), INFO_V2, x('kem_hash'), utf8(v.addr), x('h')));
      eq('pop', xeddsaSign(x('ik_b'), x('eik_b_pub'), x('pop_z')));
      assert.ok(xeddsaVerify(x('ik_b_pub'), x('eik_b_pub'), x('pop')));
      eq('plaintext', concat(x('ik_b_pub'), x('pop')));
      eq('message', concat(x('header'), gcm(x('sk'), x('ek_b_pub').subarray(0, 12), x('plaintext'), x('aad'))));
      assert.equal(x('message').length, ENROLLMENT_MESSAGE_V2_LEN);
      assert.equal(ENROLLMENT_MESSAGE_V2_LEN, 1265);

      const k = hkdf(sha256, x('sk'), x('h'), concat(INFO_V2, utf8('/session')), 64);
      eq('k_s2e', k.subarray(0, 32));
      eq('k_e2s', k.subarray(32));

      // The bundle v2: layout at the §4.5 offsets, signature, text form.
      const bytes = x('bundle');
      assert.equal(bytes[0], 2);
      assert.equal(toHex(bytes.subarray(177, 209)), v.kem_hash);
      assert.equal(bytes.length, 283 + utf8(v.addr).length);
      const b = decodeBundle(bytes);
      assert.equal(b.version, 2);
      verifyBundle(b, { now: v.expires_at - 1, ikA: x('ik_a_pub') });
      const resigned = signBundle(
        { bundleId: x('bundle_id'), ikA: x('ik_a_pub'), spkA: x('spk_a_pub'), spkSig: x('spk_sig'), opkA: x('opk_a_pub'), kemHash: x('kem_hash'), expiresAt: v.expires_at, addr: v.addr },
        x('ik_a'),
        x('bundle_sig_z'),
      );
      eq('bundle', encodeBundle(resigned));
      assert.ok(v.bundle_text.startsWith('OEB2:'));
      assert.equal(bundleToText(b), v.bundle_text);
      assert.deepEqual(bundleFromText(v.bundle_text, { now: v.expires_at - 1 }), b);

      if (b.version !== 2) throw new Error('unreachable');
      const r = initiateV2({
        bundle: b,
        kemPrekey: x('kem_pub'),
        eikB: keyPairFromPrivate(x('eik_b')),
        ikB: keyPairFromPrivate(x('ik_b')),
        ekB: keyPairFromPrivate(x('ek_b')),
        kemM: x('kem_m'),
        popZ: x('pop_z'),
      });
      assert.equal(toHex(r.message), v.message);
      assert.equal(toHex(r.session.kS2e), v.k_s2e);
      const a = acceptV2(x('message'), x('ik_a'), {
        isReplay: () => false,
        lookupPending: (id) =>
          toHex(id) === v.enrollee_id
            ? { eikB: x('eik_b_pub'), spkA: x('spk_a'), opkA: x('opk_a'), addr: v.addr, kemHash: x('kem_hash'), kemSecretKey: kem.secretKey }
            : undefined,
      });
      eq('ik_b_pub', a.ikB);
      eq('h', a.h);
      eq('k_e2s', a.session.kE2s);
      const e = enrolleeSession(r.session);
      const s = serviceSession(a.session);
      assert.deepEqual(s.recv.open(e.send.seal(utf8('hello'))), utf8('hello'));
    });
  }
});
