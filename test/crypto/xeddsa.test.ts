/**
 * XEdDSA (Signal, "The XEdDSA and VXEdDSA Signature Schemes", rev 1) against the public
 * vectors in test/vectors/third-party/signal-xeddsa (see its README.md) and the spec's own rules.
 *
 * The vector file mixes two variants. For `xeddsa-spec` vectors our signer must reproduce
 * the signature byte for byte and our verifier must accept it. For
 * `libsignal-curve25519-sign` vectors our spec verifier must give what `verify_xeddsa_spec`
 * says; their libsignal-only fields (`verify_libsignal`, `sign_deterministic`, bit flips)
 * are checked with the small test-only reference of libsignal's `curve25519_sign` /
 * `curve25519_verify` below, so that every `expect` field is held to what it states.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { concat, fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { ed25519Verify } from '../../src/crypto/ed25519.js';
import { sha256, sha512 } from '../../src/crypto/hash.js';
import { generateX25519, x25519, x25519PublicKey } from '../../src/crypto/x25519.js';
import {
  XEDDSA_SIGNATURE_LEN,
  calculateKeyPair,
  xeddsaSign,
  xeddsaVerify,
} from '../../src/crypto/xeddsa.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { readVectorJson } from '../helpers/paths.js';

const Point = ed25519.Point;
const P = Point.Fp.ORDER;
const Q = Point.Fn.ORDER;
const HASH1_PREFIX = concat(Uint8Array.of(0xfe), new Uint8Array(31).fill(0xff));

interface XeddsaVector {
  id: string;
  variant: 'xeddsa-spec' | 'libsignal-curve25519-sign';
  private_key_unclamped?: string;
  private_key: string;
  public_key_u: string;
  public_key_u_derived?: boolean;
  message: string;
  random_Z: string | null;
  signature: string;
  expect: Record<string, boolean>;
}

const file = readVectorJson<{ vectors: XeddsaVector[] }>('signal-xeddsa', 'xeddsa_vectors.json');

function throwsCode(fn: () => unknown, code: ErrorCode, what: string): void {
  assert.throws(fn, (e: unknown) => isEnrollError(e, code), `${what}: expected ${code}`);
}

function clamp(k: Uint8Array): Uint8Array {
  const c = Uint8Array.from(k);
  c[0] &= 248;
  c[31] &= 127;
  c[31] |= 64;
  return c;
}

/** Sign bit of the Edwards point E = kB for clamped k (spec §2.3's E.s). */
function edwardsSignBit(privateKey: Uint8Array): number {
  const k = bytesToNumberLE(clamp(privateKey)) % Q;
  return Point.BASE.multiply(k).toBytes()[31]! >> 7;
}

function leU(n: bigint): Uint8Array {
  return numberToBytesLE(n, 32);
}

/** Flips bit `bit` (0..7) of byte `i` in a copy. */
function flipped(sig: Uint8Array, i: number, bit: number): Uint8Array {
  const c = Uint8Array.from(sig);
  c[i] ^= 1 << bit;
  return c;
}

/** Deterministic private keys whose Edwards sign bit is `want` (seeded, not random). */
function keyWithSignBit(want: number): Uint8Array {
  for (let i = 0; ; i++) {
    const k = sha256(utf8(`ockam-enroll xeddsa test key ${i}`));
    if (edwardsSignBit(k) === want) return k;
  }
}

// ---- test-only reference of libsignal's variant (curve25519-java curve_sigs.c) --------
// It exists only to check the libsignal-variant vectors' own `expect` fields. It is not
// XEdDSA: `a` is the raw clamped k, A keeps its real sign bit, and that bit is stored in
// bit 7 of signature[63].

function libsignalReferenceVerify(u: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  const uInt = bytesToNumberLE(u);
  if (uInt >= P || (uInt + 1n) % P === 0n) return false;
  const y = Point.Fp.div(Point.Fp.create(uInt - 1n), Point.Fp.create(uInt + 1n));
  const A = leU(y);
  A[31] |= signature[63]! & 0x80;
  const sig = Uint8Array.from(signature);
  sig[63] &= 0x7f;
  return ed25519Verify(A, message, sig);
}

function libsignalReferenceSign(privateKey: Uint8Array, message: Uint8Array, Z: Uint8Array): Uint8Array {
  const k = clamp(privateKey);
  const kInt = bytesToNumberLE(k);
  const A = Point.BASE.multiply(kInt % Q).toBytes();
  const r = bytesToNumberLE(sha512(HASH1_PREFIX, k, message, Z)) % Q;
  const R = Point.BASE.multiply(r).toBytes();
  const h = bytesToNumberLE(sha512(R, A, message)) % Q;
  const sig = concat(R, leU((r + h * kInt) % Q));
  sig[63] |= A[31]! & 0x80;
  return sig;
}

// ---- vectors -----------------------------------------------------------------------------

describe('XEdDSA public vectors (signal-xeddsa/xeddsa_vectors.json)', () => {
  const handled = new Set([
    'sign_deterministic',
    'verify',
    'verify_with_public_key_ff',
    'verify_libsignal',
    'verify_xeddsa_spec',
    'verify_fails_if_any_single_bit_flipped',
  ]);

  for (const v of file.vectors) {
    test(`${v.id} [${v.variant}]`, () => {
      const unknown = Object.keys(v.expect).filter((k) => !handled.has(k));
      assert.deepEqual(unknown, [], `${v.id}: expect fields this test does not check`);

      const priv = fromHex(v.private_key);
      const u = fromHex(v.public_key_u);
      const msg = fromHex(v.message);
      const sig = fromHex(v.signature);
      assert.equal(sig.length, XEDDSA_SIGNATURE_LEN, `${v.id}: signature length`);

      // public_key_u (derived or given) is the X25519 public key of private_key.
      assert.equal(toHex(x25519PublicKey(priv)), v.public_key_u, `${v.id}: public_key_u`);
      if (v.private_key_unclamped !== undefined) {
        assert.equal(toHex(clamp(fromHex(v.private_key_unclamped))), v.private_key, `${v.id}: clamping`);
      }

      const e = v.expect;
      const Z = v.random_Z === null ? undefined : fromHex(v.random_Z);
      if (e.sign_deterministic !== undefined) {
        assert.ok(Z !== undefined, `${v.id}: sign_deterministic needs random_Z`);
        if (v.variant === 'xeddsa-spec') {
          const got = toHex(xeddsaSign(priv, msg, Z));
          assert.equal(got === v.signature, e.sign_deterministic, `${v.id}: sign(private_key) gave ${got}`);
          if (v.private_key_unclamped !== undefined) {
            // §2.3 takes the clamped scalar; xeddsaSign clamps, so both encodings sign alike.
            const again = toHex(xeddsaSign(fromHex(v.private_key_unclamped), msg, Z));
            assert.equal(again, got, `${v.id}: sign(private_key_unclamped)`);
          }
        } else {
          const got = toHex(libsignalReferenceSign(priv, msg, Z));
          assert.equal(got === v.signature, e.sign_deterministic, `${v.id}: libsignal reference sign gave ${got}`);
        }
      }
      if (v.variant === 'xeddsa-spec') {
        if (e.verify !== undefined) assert.equal(xeddsaVerify(u, msg, sig), e.verify, `${v.id}: verify`);
        if (e.verify_with_public_key_ff !== undefined) {
          const ff = new Uint8Array(32).fill(0xff);
          assert.equal(xeddsaVerify(ff, msg, sig), e.verify_with_public_key_ff, `${v.id}: verify with u = ff…ff`);
        }
      } else {
        assert.equal(v.variant, 'libsignal-curve25519-sign');
        // "verify" alone would not say which verifier; these vectors name it.
        assert.equal(e.verify, undefined, `${v.id}: ambiguous "verify"`);
        assert.equal(e.verify_with_public_key_ff, undefined, `${v.id}: ambiguous "verify_with_public_key_ff"`);
      }
      // The field about our verifier.
      if (e.verify_xeddsa_spec !== undefined) {
        assert.equal(xeddsaVerify(u, msg, sig), e.verify_xeddsa_spec, `${v.id}: spec verify`);
      }
      if (e.verify_libsignal !== undefined) {
        assert.equal(libsignalReferenceVerify(u, msg, sig), e.verify_libsignal, `${v.id}: libsignal verify`);
      }

      if (e.verify_fails_if_any_single_bit_flipped !== undefined) {
        const bad: string[] = [];
        for (let i = 0; i < 64; i++) {
          for (let bit = 0; bit < 8; bit++) {
            const f = flipped(sig, i, bit);
            const accepted =
              v.variant === 'xeddsa-spec' ? xeddsaVerify(u, msg, f) : libsignalReferenceVerify(u, msg, f);
            // Whatever the variant, a flipped signature must never pass our spec verifier.
            if (accepted || xeddsaVerify(u, msg, f)) bad.push(`byte ${i} bit ${bit}`);
          }
        }
        assert.equal(bad.length === 0, e.verify_fails_if_any_single_bit_flipped, `${v.id}: flips accepted: ${bad.join(', ')}`);
      }
    });
  }

  test('curve25519-java/xeddsa_fast_test key has Edwards sign bit 1 (README), so a = -k mod q', () => {
    const v = file.vectors.find((x) => x.id === 'curve25519-java/xeddsa_fast_test');
    assert.ok(v);
    const priv = fromHex(v.private_key);
    assert.equal(edwardsSignBit(priv), 1);
    const k = bytesToNumberLE(clamp(priv)) % Q;
    assert.equal(calculateKeyPair(priv).a, (Q - k) % Q);
  });

  test('libsignal reference accepts spec-variant signatures (README: libsignal verifies both)', () => {
    for (const want of [0, 1]) {
      const k = keyWithSignBit(want);
      const msg = utf8(`interop ${want}`);
      const sig = xeddsaSign(k, msg, new Uint8Array(64).fill(7));
      assert.equal(libsignalReferenceVerify(x25519PublicKey(k), msg, sig), true, `sign bit ${want}`);
    }
  });
});

// ---- spec §2.3 calculate_key_pair / §3 xeddsa_sign round trips -------------------------------------------------------

describe('XEdDSA §2.3 calculate_key_pair and §3 xeddsa_sign', () => {
  for (const want of [0, 1]) {
    test(`round trip with an Edwards sign-bit-${want} key`, () => {
      const k = keyWithSignBit(want);
      const kCopy = Uint8Array.from(k);
      const u = x25519PublicKey(k);
      const { A, a } = calculateKeyPair(k);
      const kMod = bytesToNumberLE(clamp(k)) % Q;

      // §2.3: A = aB with sign bit 0; a = k or -k mod q by E.s; A is the Edwards form of u.
      assert.equal(A[31]! >> 7, 0, 'A.s');
      assert.equal(a, want === 1 ? (Q - kMod) % Q : kMod, 'a');
      assert.equal(toHex(Point.BASE.multiply(a).toBytes()), toHex(A), 'A = aB');
      assert.equal(toHex(ed25519.utils.toMontgomery(A)), toHex(u), 'birational map of A is u');

      const msg = utf8(`XEdDSA round trip, sign bit ${want}`);
      const sig = xeddsaSign(k, msg);
      assert.equal(sig.length, XEDDSA_SIGNATURE_LEN);
      assert.equal(xeddsaVerify(u, msg, sig), true, 'verify');
      // §3: an XEdDSA signature is an EdDSA signature under A.
      assert.equal(ed25519Verify(A, msg, sig), true, 'plain Ed25519 under A');
      assert.equal(xeddsaVerify(u, utf8('another message'), sig), false, 'wrong message');
      assert.equal(xeddsaVerify(x25519PublicKey(keyWithSignBit(1 - want)), msg, sig), false, 'wrong key');

      // A RandomSource is asked for exactly 64 bytes; the same Z gives the same signature.
      const Z = sha512(utf8(`Z ${want}`));
      const asked: number[] = [];
      const fromSource = xeddsaSign(k, msg, (n) => {
        asked.push(n);
        return Uint8Array.from(Z);
      });
      assert.deepEqual(asked, [64]);
      assert.equal(toHex(fromSource), toHex(xeddsaSign(k, msg, Z)));
      assert.notEqual(toHex(xeddsaSign(k, msg, sha512(utf8('other Z')))), toHex(fromSource));
      assert.notEqual(toHex(xeddsaSign(k, msg)), toHex(xeddsaSign(k, msg)), 'fresh Z per signature');

      // Inputs are not modified (clamping works on a copy).
      assert.equal(toHex(k), toHex(kCopy));
      assert.equal(toHex(Z), toHex(sha512(utf8(`Z ${want}`))));
    });
  }

  test('§3 r = hash_1(a ‖ M ‖ Z) mod q hashes a = k mod q for a sign-bit-0 key, not the raw clamped k', () => {
    // The public spec vector has sign bit 1 (README), so it cannot tell these apart;
    // curve25519-java's xed25519_sign hashes the raw k here, which the spec does not.
    const k = keyWithSignBit(0);
    const msg = utf8('nonce derivation');
    const Z = new Uint8Array(64).fill(0x5a);
    const sig = xeddsaSign(k, msg, Z);
    const kRaw = clamp(k);
    const kMod = leU(bytesToNumberLE(kRaw) % Q);
    assert.notEqual(toHex(kRaw), toHex(kMod));
    const rFor = (aBytes: Uint8Array): bigint => bytesToNumberLE(sha512(HASH1_PREFIX, aBytes, msg, Z)) % Q;
    const R = toHex(sig.subarray(0, 32));
    assert.equal(R, toHex(Point.BASE.multiply(rFor(kMod)).toBytes()), 'R from a = k mod q');
    assert.notEqual(R, toHex(Point.BASE.multiply(rFor(kRaw)).toBytes()), 'not from raw k');
  });

  test('argument checks: ERR_INVALID_ARG', () => {
    const k = keyWithSignBit(0);
    const msg = utf8('m');
    throwsCode(() => xeddsaSign(k.subarray(0, 31), msg), 'ERR_INVALID_ARG', '31-byte private key');
    throwsCode(() => xeddsaSign(k, msg, new Uint8Array(63)), 'ERR_INVALID_ARG', '63-byte Z');
    throwsCode(() => xeddsaSign(k, msg, new Uint8Array(65)), 'ERR_INVALID_ARG', '65-byte Z');
    throwsCode(() => xeddsaSign(k, msg, () => new Uint8Array(32)), 'ERR_INVALID_ARG', 'short RandomSource');
    throwsCode(() => xeddsaSign(k, 'm' as unknown as Uint8Array), 'ERR_INVALID_ARG', 'string message');
    throwsCode(() => calculateKeyPair(new Uint8Array(33)), 'ERR_INVALID_ARG', '33-byte private key');
    const sig = xeddsaSign(k, msg);
    const u = x25519PublicKey(k);
    throwsCode(() => xeddsaVerify('u' as unknown as Uint8Array, msg, sig), 'ERR_INVALID_ARG', 'string key');
    throwsCode(() => xeddsaVerify(u, [1] as unknown as Uint8Array, sig), 'ERR_INVALID_ARG', 'array message');
    throwsCode(() => xeddsaVerify(u, msg, null as unknown as Uint8Array), 'ERR_INVALID_ARG', 'null signature');
  });
});

// ---- spec §3 xeddsa_verify -------------------------------------------------------------------

describe('XEdDSA §3 xeddsa_verify rejects', () => {
  const k = keyWithSignBit(0);
  const u = x25519PublicKey(k);
  const msg = utf8('verify rejections');
  const sig = xeddsaSign(k, msg);

  test('the valid signature itself verifies (control)', () => {
    assert.equal(xeddsaVerify(u, msg, sig), true);
  });

  test('every single-bit flip of the signature (512 flips each: sign-bit-0 key, sign-bit-1 key, xeddsa_fast_test)', () => {
    const spec = file.vectors.find((x) => x.id === 'curve25519-java/xeddsa_fast_test');
    assert.ok(spec);
    const cases: [string, Uint8Array, Uint8Array, Uint8Array][] = [0, 1].map((want) => {
      const key = keyWithSignBit(want);
      return [`sign bit ${want}`, x25519PublicKey(key), msg, xeddsaSign(key, msg)];
    });
    cases.push([spec.id, fromHex(spec.public_key_u), fromHex(spec.message), fromHex(spec.signature)]);
    for (const [name, pub, m, s] of cases) {
      assert.equal(xeddsaVerify(pub, m, s), true, `${name}: control`);
      const accepted: string[] = [];
      for (let i = 0; i < 64; i++) {
        for (let bit = 0; bit < 8; bit++) {
          if (xeddsaVerify(pub, m, flipped(s, i, bit))) accepted.push(`byte ${i} bit ${bit}`);
        }
      }
      assert.deepEqual(accepted, [], `${name}: flipped signatures accepted`);
    }
  });

  test('u >= p: u = p, p + 1, 2^255 - 1, 2^256 - 1, and a valid u with bit 255 set', () => {
    const cases: [string, Uint8Array][] = [
      ['u = p', leU(P)],
      ['u = p + 1', leU(P + 1n)],
      ['u = 2^255 - 1', leU((1n << 255n) - 1n)],
      ['u = 2^256 - 1', new Uint8Array(32).fill(0xff)],
      ['valid u + 2^255', leU(bytesToNumberLE(u) + (1n << 255n))],
    ];
    for (const [name, badU] of cases) assert.equal(xeddsaVerify(badU, msg, sig), false, name);
  });

  test('low-order u (0, 1, p - 1 and the two of order 8) are refused: u = 0 admits a real forgery', () => {
    // convert_mont(0) is y = -1, the point of order 2, so sB - hA = sB whenever h is even:
    // R = sB then verifies for any message. The spec (like libsignal) would accept that;
    // we refuse every low-order u, since IK_B's POP is checked under a key that the
    // service never uses in a DH (so x25519()'s ERR_DH_ZERO would not catch it).
    const A0 = leU(P - 1n);
    const forged = utf8('forged');
    let sig: Uint8Array | undefined;
    for (let s = 1n; sig === undefined; s++) {
      const R = Point.BASE.multiply(s).toBytes();
      if (bytesToNumberLE(sha512(R, A0, forged)) % Q % 2n === 0n) sig = concat(R, leU(s));
    }
    assert.equal(ed25519Verify(A0, forged, sig), true, 'the forgery is real under the converted key');
    assert.equal(xeddsaVerify(leU(0n), forged, sig), false, 'u = 0');
    assert.equal(xeddsaVerify(leU(P), forged, sig), false, 'u = p');
    assert.equal(xeddsaVerify(leU(1n << 255n), forged, sig), false, 'u = 0 with bit 255 set');
    const order8 = [
      325606250916557431795983626356110631294008115727848805560023387167927233504n,
      39382357235489614581723060781553021112529911719440698176882885853963445705823n,
    ];
    for (const u of [1n, P - 1n, ...order8]) {
      assert.equal(xeddsaVerify(leU(u), forged, sig), false, `u = ${u}`);
      assert.throws(() => x25519(generateX25519().privateKey, leU(u)), { code: 'ERR_DH_ZERO' }, `x25519 agrees u = ${u} is low-order`);
    }
  });

  test('u = p - 1 (u + 1 ≡ 0; the spec\'s inv(0) = 0 would give an order-4 point) returns false without throwing', () => {
    assert.equal(xeddsaVerify(leU(P - 1n), msg, sig), false);
  });

  test('u whose Edwards y is not on the curve (twist point) returns false', () => {
    // Search small u for one whose converted y fails to decode as an Edwards point.
    let twist: bigint | undefined;
    for (let c = 2n; twist === undefined; c++) {
      const y = Point.Fp.div(Point.Fp.create(c - 1n), Point.Fp.create(c + 1n));
      try {
        Point.fromBytes(leU(y));
      } catch {
        twist = c;
      }
    }
    assert.equal(xeddsaVerify(leU(twist), msg, sig), false, `u = ${twist}`);
  });

  test('s >= 2^253 (spec bound) and q <= s < 2^253 (RFC 8032 bound, stricter than the spec)', () => {
    const R = sig.subarray(0, 32);
    const s = bytesToNumberLE(sig.subarray(32));
    assert.equal(xeddsaVerify(u, msg, concat(R, leU(s + (1n << 253n)))), false, 's + 2^253');
    assert.equal(xeddsaVerify(u, msg, concat(R, leU((1n << 253n) | 1n))), false, 's = 2^253 + 1');
    assert.ok(s + Q < 1n << 253n);
    // s + q satisfies the same equation, (s + q)B = sB: only the s < q check refuses it.
    assert.equal(xeddsaVerify(u, msg, concat(R, leU(s + Q))), false, 's + q (malleated)');
  });

  test('R with a non-canonical y (R.y >= p)', () => {
    const s = sig.subarray(32);
    for (const y of [P, P + 1n, (1n << 255n) - 1n]) {
      assert.equal(xeddsaVerify(u, msg, concat(leU(y), s)), false, `R.y = ${y - P} + p`);
    }
  });

  test('wrong message, wrong key, wrong lengths', () => {
    assert.equal(xeddsaVerify(u, utf8('verify rejections!'), sig), false, 'wrong message');
    assert.equal(xeddsaVerify(u, new Uint8Array(0), sig), false, 'empty message');
    assert.equal(xeddsaVerify(x25519PublicKey(keyWithSignBit(1)), msg, sig), false, 'wrong key');
    assert.equal(xeddsaVerify(u.subarray(0, 31), msg, sig), false, '31-byte key');
    assert.equal(xeddsaVerify(concat(u, Uint8Array.of(0)), msg, sig), false, '33-byte key');
    assert.equal(xeddsaVerify(u, msg, sig.subarray(0, 63)), false, '63-byte signature');
    assert.equal(xeddsaVerify(u, msg, concat(sig, Uint8Array.of(0))), false, '65-byte signature');
    assert.equal(xeddsaVerify(u, msg, new Uint8Array(64)), false, 'all-zero signature');
  });
});
