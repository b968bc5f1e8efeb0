/**
 * XEdDSA on Curve25519 ("XEd25519"), as Signal's "The XEdDSA and VXEdDSA Signature Schemes"
 * (revision 1, 2016-10-20) specifies it: Ed25519-style signatures made and checked with
 * X25519 (Montgomery) key pairs, so one identity key serves both X3DH and signing.
 *
 * node:crypto cannot sign with a bare scalar, so signing is done here: the base-point
 * multiplications (kB in calculate_key_pair, R = rB) go through baseMultiplyEncoded
 * (src/crypto/base-mult.ts), which gets noble's exact encoding from node:crypto's X25519
 * plus y-recovery, and the scalar arithmetic mod q is bigint. Verification converts u to
 * the Edwards key the spec defines and hands the rest to node:crypto's RFC 8032 verifier
 * (src/crypto/ed25519.ts): the check in spec §3 `R == sB - hA` is exactly the
 * cofactorless RFC 8032 equation.
 *
 * This is the spec variant, not libsignal's `curve25519_sign`: `a` is negated so that the
 * Edwards public key always has sign bit 0 (spec §2.3), and nothing is stored in the
 * signature's top bit. Such signatures verify under libsignal too; the reverse holds only
 * about half the time.
 *
 * Unlike the spec (and libsignal), verification refuses low-order public keys: for u = 0
 * anyone can make a signature that verifies, and IK_B's proof of possession is checked
 * under a key the service never uses in a DH during enrollment, so x25519()'s ERR_DH_ZERO
 * would not catch it (docs/protocol.md §2.5).
 *
 * Secret scalars live in bigints while they are used; JavaScript cannot zero a bigint, so
 * only their byte encodings are wiped.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { EnrollError } from '../errors.js';
import { baseMultiplyEncoded } from './base-mult.js';
import { abytes, wipe } from './bytes.js';
import { ed25519Verify } from './ed25519.js';
import { sha512 } from './hash.js';
import { systemRandom, type RandomSource } from './random.js';

export const XEDDSA_SIGNATURE_LEN = 64;
/** Spec §3: Z is 64 bytes of secure random data. */
const XEDDSA_RANDOM_LEN = 64;

const Point = ed25519.Point;
const Fp = Point.Fp;
/** p = 2^255 - 19 (spec §2.2, §5). */
const P = Fp.ORDER;
/** q, the order of the base point B (spec §2.2, §5). */
const Q = Point.Fn.ORDER;
/** Spec §3 xeddsa_verify rejects s >= 2^|q|, |q| = 253 bits. */
const S_BOUND = 1n << 253n;
/** The 255 bits of a point encoding that hold y; bit 255 is the sign of x (spec §2.4). */
const Y_MASK = (1n << 255n) - 1n;

/**
 * Spec §2.5: hash_i(X) = hash(2^b - 1 - i ‖ X) with the prefix encoded in b = 256 bits,
 * little-endian. For i = 1 that is 0xFE followed by 31 bytes of 0xFF; it separates the
 * nonce hash from the challenge hash (which has no prefix) and from Ed25519's own use
 * of SHA-512 on a private seed.
 */
const HASH1_PREFIX: Uint8Array = (() => {
  const prefix = new Uint8Array(32).fill(0xff);
  prefix[0] = 0xfe;
  return prefix;
})();

function modQ(x: bigint): bigint {
  const r = x % Q;
  return r < 0n ? r + Q : r;
}

/** RFC 7748 §5 decodeScalar25519, on a copy: the caller's bytes are left as they were. */
function clamp(privateKey: Uint8Array): Uint8Array {
  const k = Uint8Array.from(privateKey);
  k[0] &= 248;
  k[31] &= 127;
  k[31] |= 64;
  return k;
}

/**
 * Spec §2.3 calculate_key_pair(k): E = kB; A.y = E.y, A.s = 0; a = -k mod q if E.s = 1,
 * else a = k mod q. So A = aB, and A's encoding has sign bit 0, which is what lets a
 * verifier rebuild A from the Montgomery u alone.
 *
 * `privateKey` is a raw X25519 private key; it is clamped here (RFC 7748 §5) so that k is
 * the scalar X25519 itself uses, and the caller's bytes are not modified.
 */
export function calculateKeyPair(privateKey: Uint8Array): { A: Uint8Array; a: bigint } {
  abytes(privateKey, 32, 'privateKey');
  const kBytes = clamp(privateKey);
  // A clamped k is 8·m with 2^251 <= m < 2^252 < q, so k mod q is never 0 and B's order
  // q makes kB = (k mod q)B.
  const k = modQ(bytesToNumberLE(kBytes));
  wipe(kBytes);
  const A = baseMultiplyEncoded(k);
  const signBit = A[31]! >> 7;
  A[31] &= 0x7f;
  const a = signBit === 1 ? modQ(-k) : k;
  return { A, a };
}

/**
 * Spec §3 xeddsa_sign(k, M, Z):
 *   A, a = calculate_key_pair(k); r = hash_1(a ‖ M ‖ Z) (mod q); R = rB;
 *   h = hash(R ‖ A ‖ M) (mod q); s = r + ha (mod q); return R ‖ s.
 * `a` is hashed as its 32-byte little-endian encoding (spec §2.4).
 *
 * @param privateKey 32-byte X25519 private key (clamped here per RFC 7748 before use).
 * @param random the 64-byte Z, or a RandomSource from which 64 bytes are drawn
 *   (default systemRandom). A fixed Z is for known-answer tests; reusing a Z with the same
 *   key and message is harmless, but Z must be secret and fresh in production.
 */
export function xeddsaSign(
  privateKey: Uint8Array,
  message: Uint8Array,
  random: Uint8Array | RandomSource = systemRandom,
): Uint8Array {
  return xeddsaSigner(privateKey)(message, random);
}

/** Signs messages with one key pair prepared once (see {@link xeddsaSigner}). */
export type XEdDSASigner = (message: Uint8Array, random?: Uint8Array | RandomSource) => Uint8Array;

/**
 * A signer for one private key: calculate_key_pair (spec §2.3, a base-point multiplication,
 * about half the cost of a signature here) runs once, not once per message. For a service
 * that signs with IK_A on every enrollment (credentials). The signer holds the secret scalar
 * `a` for as long as it is referenced, like the key pair it came from.
 */
export function xeddsaSigner(privateKey: Uint8Array): XEdDSASigner {
  const { A, a } = calculateKeyPair(privateKey);
  return (message, random = systemRandom) => {
    abytes(message, undefined, 'message');
    let Z: Uint8Array;
    let ownZ = false;
    if (random instanceof Uint8Array) {
      Z = abytes(random, XEDDSA_RANDOM_LEN, 'random');
    } else if (typeof random === 'function') {
      Z = abytes(random(XEDDSA_RANDOM_LEN), XEDDSA_RANDOM_LEN, 'random');
      ownZ = true;
    } else {
      throw new EnrollError('ERR_INVALID_ARG', `"random" expected Uint8Array or RandomSource, got ${typeof random}`);
    }
    const aBytes = numberToBytesLE(a, 32);
    const rHash = sha512(HASH1_PREFIX, aBytes, message, Z);
    const r = modQ(bytesToNumberLE(rHash));
    wipe(aBytes, rHash);
    if (ownZ) wipe(Z);
    if (r === 0n) {
      // Probability 2^-252; R would be the identity and s would expose a.
      throw new EnrollError('ERR_INTERNAL', 'xeddsa nonce reduced to zero');
    }
    const R = baseMultiplyEncoded(r);
    const h = modQ(bytesToNumberLE(sha512(R, A, message)));
    const sBytes = numberToBytesLE(modQ(r + h * a), 32);

    const signature = new Uint8Array(XEDDSA_SIGNATURE_LEN);
    signature.set(R, 0);
    signature.set(sBytes, 32);
    return signature;
  };
}

/**
 * Spec §3 xeddsa_verify(u, M, R ‖ s): reject u >= p, R.y >= p, s >= 2^253; A =
 * convert_mont(u); reject A off the curve; accept iff R == sB - hA.
 *
 * The final equation and the on-curve check run in node:crypto's Ed25519 verifier, which
 * also rejects s >= q. That is stricter than the spec's s < 2^253 and closes the only
 * malleability the spec leaves open (s and s + q both verifying); a signer following §3
 * always outputs s < q, so no honest signature is lost.
 *
 * @param publicKey 32-byte Montgomery u (the X25519 public key).
 * @returns false (never throws) for any invalid signature or key; throws ERR_INVALID_ARG
 *   only for non-Uint8Array arguments.
 */
export function xeddsaVerify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  abytes(publicKey, undefined, 'publicKey');
  abytes(message, undefined, 'message');
  abytes(signature, undefined, 'signature');
  if (publicKey.length !== 32 || signature.length !== XEDDSA_SIGNATURE_LEN) return false;

  // §3: all 256 bits of u count, so a set bit 255 means u >= p (X25519's masking of
  // that bit, RFC 7748 §5, does not apply to signature keys).
  const u = bytesToNumberLE(publicKey);
  if (u >= P) return false;
  // Beyond the spec: a low-order u (order 1, 2, 4 or 8) lets anyone forge a signature that
  // verifies. A signature key that is never also used in a DH (IK_B's POP) would not be
  // caught by x25519()'s all-zero check, so refuse these u values here.
  if (LOW_ORDER_U.has(u)) return false;
  // §3 "R.y >= 2^|p|": R's y must be a canonical field element. The byte comparison
  // with the recomputed R would reject a non-canonical R anyway; checking first says why.
  if ((bytesToNumberLE(signature.subarray(0, 32)) & Y_MASK) >= P) return false;
  if (bytesToNumberLE(signature.subarray(32, 64)) >= S_BOUND) return false;

  const A = convertMont(u);
  if (A === undefined) return false;
  return ed25519Verify(A, message, signature);
}

/**
 * Canonical (< p) u values that give no key of prime order q, as libsodium's blocklist
 * has them: 0 (the point of order 2), 1 (order 4), the two u of order 8, and p - 1 (a
 * twist point; also refused by convertMont).
 */
const LOW_ORDER_U: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  P - 1n,
  325606250916557431795983626356110631294008115727848805560023387167927233504n,
  39382357235489614581723060781553021112529911719440698176882885853963445705823n,
]);

/**
 * Spec §2.3 convert_mont(u): P.y = u_to_y(u) = (u - 1)/(u + 1) (mod p), P.s = 0.
 * u = p - 1 makes u + 1 ≡ 0. The spec's inv(0) = 0 (§2.1) would turn that into y = 0, a
 * point of order 4: no X25519 key pair has that u (clamped keys give points of order q),
 * and, like u = 0, such a key would let anyone forge. We return false for it instead.
 */
function convertMont(u: bigint): Uint8Array | undefined {
  const denominator = Fp.create(u + 1n);
  if (denominator === 0n) return undefined;
  const y = Fp.div(Fp.create(u - 1n), denominator);
  // y < p < 2^255, so bit 255, the sign bit, is 0 as §2.3 requires.
  return numberToBytesLE(y, 32);
}
