/**
 * Fixed-base multiplication on edwards25519, returning the RFC 8032 encoding of t·B, with
 * node:crypto's X25519 doing the scalar multiplication.
 *
 * Why: XEdDSA multiplies B by bare scalars (the nonce r, and k in calculate_key_pair), and
 * node:crypto can only sign Ed25519 from a seed, so R = rB used to come from
 * @noble/curves' `Point.BASE.multiply(r)`. That costs about 300-500 µs here; an X25519 fixed-base
 * multiplication in node:crypto (OpenSSL) costs about 50-70 µs. Two of those plus a little
 * field arithmetic give the same 32 bytes for less than half the time.
 *
 * How, for 1 <= t < L (L = 2^252 + 27742317777372353535851937790883648493, the order of B):
 *
 * 1. u-coordinates from X25519. RFC 7748 §4.1 maps edwards25519 to curve25519 by
 *    (u, v) = ((1+y)/(1-y), sqrt(-486664)·u/x), sending B to the Montgomery base point
 *    (9, v_B); the map is a group isomorphism on the order-L subgroup. X25519(k, 9) (§5) is
 *    u(k·B), but decodeScalar25519 clamps k: bits 0-2 and 255 cleared, bit 254 set, so
 *    k = 2^254 + 8m with 0 <= m < 2^251. As L·B = O, k·B = (k mod L)·B, and
 *    m0(t) = (t - 2^254)·8^-1 mod L gives k ≡ t whenever m0(t) < 2^251. Otherwise we use
 *    -t: u(P) = u(-P), and m0(t) + m0(-t) ≡ -2^252 ≡ δ = L - 2^252 ≈ 2^124.7 (mod L), so
 *    one of the two is below 2^251 unless 2^251 <= m0(t) <= 2^251 + 2δ. As 2^255 ≡ -8δ,
 *    those t are exactly t ≡ ±8j (mod L) with 1 <= j <= δ: small multiples of 8 such as
 *    t = 8, which no clamped k reaches. A random t is one of them with probability ~2^-126.
 * 2. v by Okeya–Sakurai y-recovery (K. Okeya, K. Sakurai, "Efficient Elliptic Curve
 *    Cryptosystems from a Scalar Multiplication Algorithm with Recovery of the
 *    y-Coordinate on a Montgomery-Form Elliptic Curve", CHES 2001, LNCS 2162): on
 *    v² = u³ + A·u² + u with P = (u1, v1), Q = (u2, v2) and u3 = u(Q + P),
 *      v2 = [(u1·u2 + 1)(u1 + u2 + 2A) - 2A - (u1 - u2)²·u3] / (2·v1)
 *    for Q ≠ -P. We take P = (9, v_B), Q = t·B, Q + P = (t+1)·B; u2 and u3 come from step 1.
 *    (Q = P, t = 1, is fine: the formula then gives v1, as it should.)
 * 3. Back to Edwards: y = (u2 - 1)/(u2 + 1), x = sqrt(-486664)·u2/v2 with the same root
 *    as the forward map, and the encoding is y little-endian with bit 255 = x mod 2
 *    (RFC 8032 §5.1.2). The two divisions share one field inversion (Montgomery's trick).
 *
 * Anything outside the generic case falls back to noble's `Point.BASE.multiply`: t = L - 1
 * (Q = -P, u3 would be u(O)), no usable m for t or t + 1, and, defensively, u values 0 or
 * p - 1, v2 = 0, or a result that is not on the curve (which would mean X25519 returned
 * something wrong). Only the first two can happen for 1 <= t < L; hash-derived nonces and
 * clamped private keys hit them with probability about 2^-126.
 *
 * Secrets: t is a secret scalar (a nonce or a private key). It passes through bigints, a
 * byte array that is wiped, and strings that JavaScript cannot wipe: the hex string inside
 * noble's numberToBytesLE and the base64url `d` of the JWK handed to node:crypto (see
 * importX25519Private in ./x25519.ts). OpenSSL clears its own copy when the KeyObject is
 * freed. Which of t and -t is used is one bit about t, so
 * both m0(t) and m0(-t) are always computed and the choice adds no work of its own (the
 * bigint arithmetic is not constant-time, like the rest of the bigint code in
 * ./xeddsa.ts; the scalar multiplication itself runs in OpenSSL's constant-time X25519,
 * and k = 2^254 + 8m always has 255 bits). Everything after step 1 uses only u(tB) and
 * u(tB + B), which anyone can compute from R = tB.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { EnrollError } from '../errors.js';
import { wipe } from './bytes.js';
import { x25519PublicKey } from './x25519.js';

const Point = ed25519.Point;
const Fp = Point.Fp;
const Fn = Point.Fn;
/** p = 2^255 - 19. */
const P = Fp.ORDER;
/** L, the prime order of B. */
const L = Fn.ORDER;
/** edwards25519's d = -121665/121666 (RFC 7748 §4.1), for the final on-curve check. */
const D = Point.CURVE().d;

/** curve25519: v² = u³ + A·u² + u (RFC 7748 §4.1). */
const MONT_A = 486662n;
/** The Montgomery base point (RFC 7748 §4.1): u = 9 and its v. */
const U_B = 9n;
const V_B = 14781619447589544791020593568409986887264606134616475288964881837755586237401n;
/**
 * The square root of -486664 mod p for which RFC 7748's map sends noble's base point
 * (x = Gx, y = 4/5) to (9, V_B), i.e. V_B·Gx = 9·SQRT_M486664 (checked in the tests).
 * With it, x = SQRT_M486664·u/v is the inverse map.
 */
const SQRT_M486664 = 51042569399160536130206135233146329284152202253034631822681833788666877215207n;
/** x = SQRT_M486664·u2/v2 and v2 = N/(2·V_B), so x = X_SCALE·u2/N. */
const X_SCALE = Fp.mul(Fp.mul(2n, V_B), SQRT_M486664);
const TWO_A = 2n * MONT_A;

/** X25519 clamps k to 2^254 + 8m with m < 2^251 (RFC 7748 §5 decodeScalar25519). */
const CLAMP_BASE = 1n << 254n;
const M_BOUND = 1n << 251n;
const CLAMP_BASE_MOD_L = Fn.create(CLAMP_BASE);
const INV8_MOD_L = Fn.inv(8n);

/**
 * The X25519 scalar for t: a clamped k = 2^254 + 8m (0 <= m < 2^251) with k ≡ t or
 * k ≡ -t (mod L), so that X25519(k, 9) = u(t·B); undefined when neither fits (t ≡ ±8j,
 * 0 <= j <= L - 2^252: probability about 2^-126 for a random t). Exported for tests; the
 * caller keeps k secret.
 */
export function x25519ScalarFor(t: bigint): bigint | undefined {
  const m = Fn.mul(Fn.sub(t, CLAMP_BASE_MOD_L), INV8_MOD_L);
  const mNeg = Fn.mul(Fn.sub(Fn.neg(t), CLAMP_BASE_MOD_L), INV8_MOD_L);
  const chosen = m < M_BOUND ? m : mNeg;
  return chosen < M_BOUND ? CLAMP_BASE + 8n * chosen : undefined;
}

/** u(t·B) from node:crypto's X25519, or undefined when t has no usable clamped scalar. */
function montgomeryU(t: bigint): bigint | undefined {
  const k = x25519ScalarFor(t);
  if (k === undefined) return undefined;
  const kBytes = numberToBytesLE(k, 32);
  try {
    // k is already clamped, so X25519's own decodeScalar25519 leaves it unchanged.
    return bytesToNumberLE(x25519PublicKey(kBytes));
  } finally {
    wipe(kBytes);
  }
}

/** The slow, general path: noble's Edwards fixed-base multiplication. */
function nobleBaseMultiply(t: bigint): Uint8Array {
  return Point.BASE.multiply(t).toBytes();
}

/**
 * Steps 2 and 3 of the file comment: the encoding of the point Q = t·B of order L, given
 * only u = u(Q) and uNext = u(Q + B), with Q ≠ -B. Returns undefined for input no such Q
 * gives (u or uNext 0 or p - 1, v = 0, or a (u, v) off the curve). Exported for tests;
 * the values are public once Q is.
 */
export function recoverEdwardsEncoding(u: bigint, uNext: bigint): Uint8Array | undefined {
  // Points of order L never have u = 0 (order 2, or O) or u = -1 (not on the curve).
  if (u <= 0n || u >= P - 1n || uNext <= 0n || uNext >= P - 1n) return undefined;

  // Okeya–Sakurai with P = (U_B, V_B): v = N / (2·V_B).
  const diff = Fp.sub(U_B, u);
  const N = Fp.sub(
    Fp.sub(Fp.mul(Fp.add(Fp.mul(U_B, u), 1n), Fp.add(Fp.add(U_B, u), TWO_A)), TWO_A),
    Fp.mul(Fp.sqr(diff), uNext),
  );
  // y = (u - 1)/(u + 1) and x = X_SCALE·u/N, with one inversion of (u + 1)·N.
  const uPlus1 = Fp.add(u, 1n);
  const product = Fp.mul(uPlus1, N);
  if (product === 0n) return undefined; // v = 0: a point of order 2
  const inv = Fp.inv(product);
  const y = Fp.mul(Fp.sub(u, 1n), Fp.mul(inv, N));
  const x = Fp.mul(Fp.mul(X_SCALE, u), Fp.mul(inv, uPlus1));

  // -x² + y² = 1 + d·x²·y² holds iff v² = u³ + A·u² + u, i.e. v = ±v(Q). For u ≠ 9, N is
  // linear in uNext with slope -(9 - u)² ≠ 0, so only uNext = u(Q + B) or u(Q - B) (which
  // gives -Q) pass: an X25519 output corrupted any other way is caught here rather than
  // turned into a wrong R. (u = 9 is Q = ±B, where any uNext passes this check.)
  const x2 = Fp.sqr(x);
  const y2 = Fp.sqr(y);
  if (Fp.sub(y2, x2) !== Fp.add(1n, Fp.mul(D, Fp.mul(x2, y2)))) return undefined;

  const out = numberToBytesLE(y, 32);
  out[31] |= Number(x & 1n) << 7;
  return out;
}

/**
 * The 32-byte Edwards encoding (RFC 8032 §5.1.2) of scalar·B, byte for byte what
 * `ed25519.Point.BASE.multiply(scalar).toBytes()` returns, computed with node:crypto's
 * X25519 and y-recovery (see the file comment).
 *
 * @param scalar 1 <= scalar < L; a secret (an XEdDSA nonce or private scalar).
 * @throws EnrollError ERR_INVALID_ARG for a non-bigint or a scalar out of range.
 */
export function baseMultiplyEncoded(scalar: bigint): Uint8Array {
  if (typeof scalar !== 'bigint') {
    throw new EnrollError('ERR_INVALID_ARG', `"scalar" expected bigint, got ${typeof scalar}`);
  }
  if (scalar < 1n || scalar >= L) {
    // No value in the message: the scalar is secret.
    throw new EnrollError('ERR_INVALID_ARG', '"scalar" expected bigint in [1, L)');
  }
  // t = L - 1: Q = -B, where Okeya–Sakurai does not apply (and u((t+1)B) = u(O)).
  if (scalar === L - 1n) return nobleBaseMultiply(scalar);
  const u = montgomeryU(scalar);
  if (u === undefined) return nobleBaseMultiply(scalar);
  const uNext = montgomeryU(scalar + 1n);
  if (uNext === undefined) return nobleBaseMultiply(scalar);
  // undefined cannot happen for X25519 output; noble gives the right answer if it does.
  return recoverEdwardsEncoding(u, uNext) ?? nobleBaseMultiply(scalar);
}
