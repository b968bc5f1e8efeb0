/**
 * baseMultiplyEncoded (src/crypto/base-mult.ts): edwards25519 t·B via node:crypto X25519
 * (RFC 7748 §5) and Okeya–Sakurai y-recovery, checked byte for byte against
 * @noble/curves' `Point.BASE.multiply(t).toBytes()`.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import { baseMultiplyEncoded, recoverEdwardsEncoding, x25519ScalarFor } from '../../src/crypto/base-mult.js';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha512 } from '../../src/crypto/hash.js';
import { x25519PublicKey } from '../../src/crypto/x25519.js';
import { EnrollError, type ErrorCode } from '../../src/errors.js';

const Point = ed25519.Point;
const Fp = Point.Fp;
const Fn = Point.Fn;
const P = Fp.ORDER;
const L = Fn.ORDER;
/** δ = L - 2^252; m0(t) + m0(-t) ≡ δ (mod L). */
const DELTA = L - (1n << 252n);
const M_BOUND = 1n << 251n;
const RANDOM_SCALARS = 3000;

function throwsCode(fn: () => unknown, code: ErrorCode, message?: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EnrollError, `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code);
    if (message !== undefined) assert.equal(e.message, message);
    return true;
  });
}

/** Counter-mode SHA-512 stream: the same seed gives the same scalars (tests only). */
function seededScalars(seed: string, count: number): bigint[] {
  const out: bigint[] = [];
  for (let i = 0; out.length < count; i++) {
    const t = bytesToNumberLE(sha512(utf8(`${seed}/${i}`))) % L;
    if (t !== 0n) out.push(t);
  }
  return out;
}

/** m0(t) = (t - 2^254)·8^-1 mod L, the m of a clamped X25519 scalar k ≡ t. */
function m0(t: bigint): bigint {
  return Fn.mul(Fn.sub(t, Fn.create(1n << 254n)), Fn.inv(8n));
}

/** The scalar t whose m0 is m: t = 2^254 + 8m mod L. */
function scalarWithM0(m: bigint): bigint {
  return Fn.create((1n << 254n) + 8n * m);
}

function assertMatchesNoble(t: bigint, what = `t = ${t}`): void {
  assert.equal(toHex(baseMultiplyEncoded(t)), toHex(Point.BASE.multiply(t).toBytes()), what);
}

describe('base-mult constants (RFC 7748 §4.1)', () => {
  test('the Montgomery base point (9, v_B) is noble\'s base point under (u, v) = ((1+y)/(1-y), sqrt(-486664)·u/x)', () => {
    const c = 51042569399160536130206135233146329284152202253034631822681833788666877215207n;
    const vB = 14781619447589544791020593568409986887264606134616475288964881837755586237401n;
    assert.equal(Fp.sqr(c), Fp.neg(486664n), 'c² = -486664');
    const { x, y } = Point.BASE.toAffine();
    assert.equal(y, Fp.div(4n, 5n), 'B.y = 4/5');
    assert.equal(Fp.div(Fp.add(1n, y), Fp.sub(1n, y)), 9n, 'u(B) = 9');
    assert.equal(Fp.div(Fp.mul(c, 9n), x), vB, 'v(B) = c·9/x = v_B');
    assert.equal(Fp.sqr(vB), Fp.add(Fp.add(729n, Fp.mul(486662n, 81n)), 9n), 'v_B² = 9³ + A·9² + 9');
  });

  test('u = -1 is not on curve25519 (A - 2 is a non-square), so u(tB) = p - 1 is impossible', () => {
    assert.notEqual(Fp.pow(486660n, (P - 1n) / 2n), 1n);
  });

  test('m0(t) + m0(-t) ≡ δ = L - 2^252 (mod L)', () => {
    for (const t of seededScalars('m0-sum', 50)) assert.equal(Fn.add(m0(t), m0(Fn.neg(t))), DELTA);
  });

  test('X25519(2^254 + 8·m0(t), 9) = u(t·B) (node clamps nothing away)', () => {
    let checked = 0;
    for (const t of seededScalars('x25519-u', 40)) {
      if (m0(t) >= M_BOUND) continue;
      const k = (1n << 254n) + 8n * m0(t);
      const { y } = Point.BASE.multiply(t).toAffine();
      const u = Fp.div(Fp.add(1n, y), Fp.sub(1n, y));
      assert.equal(bytesToNumberLE(x25519PublicKey(numberToBytesLE(k, 32))), u);
      checked++;
    }
    assert.ok(checked >= 10, `only ${checked} of 40 scalars had m0(t) < 2^251`);
  });
});

describe('x25519ScalarFor: clamped k ≡ ±t (mod L)', () => {
  function assertClampedFor(t: bigint, want: 'direct' | 'negated'): void {
    const k = x25519ScalarFor(t);
    assert.ok(k !== undefined, `t = ${t}: expected a scalar`);
    assert.equal(k & 7n, 0n, 'bits 0-2 clear');
    assert.equal(k >> 254n, 1n, 'bit 254 set, bit 255 clear');
    assert.equal(k % L, want === 'direct' ? t : L - t, want);
  }

  test('m0 just below / above 2^251 and the edges of the fallback window [2^251, 2^251 + 2δ]', () => {
    assertClampedFor(scalarWithM0(M_BOUND - 1n), 'direct');
    assertClampedFor(scalarWithM0(0n), 'direct');
    assertClampedFor(scalarWithM0(DELTA), 'direct'); // m0(-t) = 0
    assertClampedFor(scalarWithM0(DELTA + 1n), 'direct'); // m0(-t) = L - 1
    assertClampedFor(scalarWithM0(M_BOUND + 2n * DELTA + 1n), 'negated'); // m0(-t) = 2^251 - 1
    assertClampedFor(scalarWithM0(L - 1n), 'negated'); // m0(-t) = δ + 1
    assert.equal(x25519ScalarFor(scalarWithM0(M_BOUND)), undefined, 'm0 = 2^251: m0(-t) = 2^251 + 2δ');
    assert.equal(x25519ScalarFor(scalarWithM0(M_BOUND + DELTA)), undefined);
    assert.equal(x25519ScalarFor(scalarWithM0(M_BOUND + 2n * DELTA)), undefined, 'm0(-t) = 2^251');
  });

  test('seeded scalars: about half direct, half negated, none unusable', () => {
    let negated = 0;
    for (const t of seededScalars('plan', 400)) {
      const k = x25519ScalarFor(t);
      assert.ok(k !== undefined);
      if (k % L !== t) {
        assert.equal(k % L, L - t);
        negated++;
      }
    }
    assert.ok(negated > 100 && negated < 300, `negated ${negated} of 400`);
  });
});

/** u(t·B) = (1 + y)/(1 - y) from noble's affine y (RFC 7748 §4.1). */
function nobleU(t: bigint): bigint {
  const { y } = Point.BASE.multiply(t).toAffine();
  return Fp.div(Fp.add(1n, y), Fp.sub(1n, y));
}

describe('recoverEdwardsEncoding: Okeya–Sakurai y-recovery without node:crypto and without fallback', () => {
  test('u(tB), u((t+1)B) from noble give noble\'s encoding of tB (seeded scalars, 1, 2, L-2)', () => {
    for (const t of [1n, 2n, L - 2n, ...seededScalars('recover', 300)]) {
      if (t === L - 1n) continue;
      const got = recoverEdwardsEncoding(nobleU(t), nobleU(t + 1n));
      assert.ok(got !== undefined, `t = ${t}: recovery refused a valid input`);
      assert.equal(toHex(got), toHex(Point.BASE.multiply(t).toBytes()), `t = ${t}`);
    }
  });

  test('the fast path end to end: X25519 outputs for x25519ScalarFor(t), (t+1) recover noble\'s tB', () => {
    const x25519U = (t: bigint): bigint => {
      const k = x25519ScalarFor(t);
      assert.ok(k !== undefined);
      return bytesToNumberLE(x25519PublicKey(numberToBytesLE(k, 32)));
    };
    for (const t of seededScalars('fast-path', 200)) {
      const got = recoverEdwardsEncoding(x25519U(t), x25519U(t + 1n));
      assert.ok(got !== undefined, `t = ${t}: fast path refused`);
      assert.equal(toHex(got), toHex(Point.BASE.multiply(t).toBytes()));
    }
  });

  test('uNext = u((t-1)B) gives -tB: the sign of x comes from uNext', () => {
    for (const t of seededScalars('recover-minus', 20)) {
      const got = recoverEdwardsEncoding(nobleU(t), nobleU(t - 1n));
      assert.ok(got !== undefined);
      assert.equal(toHex(got), toHex(Point.BASE.multiply(L - t).toBytes()));
    }
  });

  test('inconsistent or degenerate input is refused: wrong uNext, u or uNext 0, p - 1, >= p', () => {
    for (const t of seededScalars('recover-bad', 20)) {
      const u = nobleU(t);
      assert.equal(recoverEdwardsEncoding(u, nobleU(t + 2n)), undefined, 'uNext = u((t+2)B)');
      assert.equal(recoverEdwardsEncoding(u, Fp.add(nobleU(t + 1n), 1n)), undefined, 'uNext off by one');
      assert.equal(recoverEdwardsEncoding(u, 0n), undefined);
      assert.equal(recoverEdwardsEncoding(u, P - 1n), undefined);
      assert.equal(recoverEdwardsEncoding(0n, u), undefined);
      assert.equal(recoverEdwardsEncoding(P - 1n, u), undefined);
      assert.equal(recoverEdwardsEncoding(u + P, nobleU(t + 1n)), undefined, 'non-canonical u');
    }
  });
});

describe('baseMultiplyEncoded equals noble Point.BASE.multiply(t).toBytes()', () => {
  test(`${RANDOM_SCALARS} seeded random scalars`, () => {
    for (const [i, t] of seededScalars('base-mult', RANDOM_SCALARS).entries()) assertMatchesNoble(t, `#${i}`);
  });

  test('clamped X25519 private keys reduced mod L (calculate_key_pair\'s kB)', () => {
    for (const t of seededScalars('clamped', 200)) {
      const k = (1n << 254n) | ((t << 3n) & ((1n << 254n) - 8n));
      assertMatchesNoble(k % L);
    }
  });

  test('small and special scalars: 1, 2, 3, 7, 8, L-1, L-2, (L-1)/2, (L+1)/2, 2^251, 2^252', () => {
    for (const t of [1n, 2n, 3n, 7n, 8n, L - 1n, L - 2n, (L - 1n) / 2n, (L + 1n) / 2n, 1n << 251n, 1n << 252n]) {
      assertMatchesNoble(t);
    }
  });

  test('scalars with m0 at the 2^251 boundary, and t + 1 at it', () => {
    for (const m of [0n, 1n, DELTA, DELTA + 1n, M_BOUND - 1n, M_BOUND + 2n * DELTA + 1n, L - 1n]) {
      const t = scalarWithM0(m);
      assertMatchesNoble(t, `m0 = ${m}`);
      assertMatchesNoble(Fn.create(t - 1n), `m0(t + 1) = ${m}`);
    }
  });

  test('fallback to noble: no clamped scalar for t, or for t + 1 (window [2^251, 2^251 + 2δ]), and t = L - 1', () => {
    // m0 = 2^251 + δ is t = 0 (excluded); the window is t ≡ ±8j, 1 <= j <= δ.
    for (const m of [M_BOUND, M_BOUND + 1n, M_BOUND + DELTA - 1n, M_BOUND + DELTA + 1n, M_BOUND + 2n * DELTA]) {
      const t = scalarWithM0(m);
      assert.notEqual(t, 0n);
      assert.equal(x25519ScalarFor(t), undefined, 'forced fallback for t');
      assertMatchesNoble(t, `m0 = ${m}`);
      const before = Fn.create(t - 1n);
      assert.notEqual(x25519ScalarFor(before), undefined);
      assertMatchesNoble(before, `fallback for t + 1, m0(t + 1) = ${m}`);
    }
    assertMatchesNoble(L - 1n, 'L - 1: Q = -P');
  });

  test('small multiples of 8 (t ≡ ±8j, j <= δ) have no clamped scalar and fall back', () => {
    for (const j of [1n, 2n, 3n, 1000n, DELTA - 1n, DELTA]) {
      for (const t of [8n * j, L - 8n * j]) {
        assert.equal(x25519ScalarFor(t), undefined, `t = ±8·${j}`);
        assertMatchesNoble(t);
      }
    }
    for (const t of [8n * (DELTA + 1n), L - 8n * (DELTA + 1n), 4n, 12n]) {
      assert.notEqual(x25519ScalarFor(t), undefined, `t = ${t} is reachable`);
      assertMatchesNoble(t);
    }
  });
});

describe('baseMultiplyEncoded rejects scalars outside [1, L)', () => {
  test('0, L, L + 1, -1: ERR_INVALID_ARG without the value in the message', () => {
    for (const t of [0n, L, L + 1n, -1n, -(L - 1n)]) {
      throwsCode(() => baseMultiplyEncoded(t), 'ERR_INVALID_ARG', '"scalar" expected bigint in [1, L)');
    }
  });

  test('a number instead of a bigint', () => {
    throwsCode(() => baseMultiplyEncoded(1 as unknown as bigint), 'ERR_INVALID_ARG', '"scalar" expected bigint, got number');
  });
});
