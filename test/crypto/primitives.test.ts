/**
 * Unit tests for the node:crypto primitives and the byte helpers: argument checks and their
 * messages, key redaction, RFC 7748 §6.1 all-zero rejection, and AEAD tamper detection.
 * The published vectors run in wycheproof.test.ts and xeddsa.test.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { format, inspect } from 'node:util';
import { ED25519_TORSION_SUBGROUP, ed25519 } from '@noble/curves/ed25519.js';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils.js';
import * as cryptoIndex from '../../src/crypto/index.js';
import { aesGcmDecrypt, aesGcmEncrypt } from '../../src/crypto/aead.js';
import {
  abytes,
  concat,
  equalBytes,
  fromHex,
  isAllZero,
  toBase64Url,
  toHex,
  utf8,
  wipe,
} from '../../src/crypto/bytes.js';
import { ed25519Verify } from '../../src/crypto/ed25519.js';
import { HKDF_SHA256_MAX, hkdfSha256, sha256, sha512 } from '../../src/crypto/hash.js';
import type { RandomSource } from '../../src/crypto/random.js';
import {
  KeyPair,
  generateX25519,
  importX25519Private,
  importX25519Public,
  keyPairFromPrivate,
  x25519,
  x25519PublicKey,
} from '../../src/crypto/x25519.js';
import { EnrollError, isEnrollError, type ErrorCode } from '../../src/errors.js';

function throwsCode(fn: () => unknown, code: ErrorCode, message?: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof EnrollError, `expected EnrollError, got ${String(e)}`);
      assert.equal(e.code, code);
      if (message !== undefined) assert.equal(e.message, message);
      return true;
    },
  );
}

/** A counter-mode RandomSource: the same seed gives the same bytes (tests only). */
function seededRandom(seed: string): RandomSource {
  let counter = 0;
  return (n) => {
    const out = new Uint8Array(n);
    for (let o = 0; o < n; o += 64) {
      out.set(sha512(utf8(`${seed}/${counter++}`)).subarray(0, Math.min(64, n - o)), o);
    }
    return out;
  };
}

describe('bytes helpers', () => {
  test('abytes returns its input and checks type and length with noble-style messages', () => {
    const b = new Uint8Array(32);
    assert.equal(abytes(b, 32, 'key'), b);
    const any = new Uint8Array(5);
    assert.equal(abytes(any, undefined, 'payload'), any, 'no length: any length passes');
    throwsCode(() => abytes(new Uint8Array(31), 32, 'key'), 'ERR_INVALID_ARG', '"key" expected Uint8Array of length 32, got length=31');
    throwsCode(() => abytes('00', 32, 'key'), 'ERR_INVALID_ARG', '"key" expected Uint8Array, got string');
    throwsCode(() => abytes(undefined, 32, 'nonce'), 'ERR_INVALID_ARG', '"nonce" expected Uint8Array, got undefined');
    throwsCode(() => abytes([1, 2, 3], 3, 'arr'), 'ERR_INVALID_ARG', '"arr" expected Uint8Array, got object');
    throwsCode(() => abytes(null), 'ERR_INVALID_ARG', '"value" expected Uint8Array, got object');
    // A Buffer is a Uint8Array and is accepted.
    assert.ok(abytes(Buffer.alloc(4), 4, 'buf'));
  });

  test('equalBytes: equal content, different content, different lengths', () => {
    assert.equal(equalBytes(fromHex('00ff10'), fromHex('00ff10')), true);
    assert.equal(equalBytes(new Uint8Array(0), new Uint8Array(0)), true);
    assert.equal(equalBytes(fromHex('00ff10'), fromHex('00ff11')), false);
    assert.equal(equalBytes(fromHex('00ff10'), fromHex('00ff')), false);
    assert.equal(equalBytes(fromHex('00ff'), fromHex('00ff10')), false);
    // Views into larger buffers compare by their own bytes.
    const big = fromHex('aa00ff10bb');
    assert.equal(equalBytes(big.subarray(1, 4), fromHex('00ff10')), true);
  });

  test('fromHex / toHex round trip, and ERR_DECODE for odd length, non-hex and non-strings', () => {
    assert.equal(toHex(fromHex('00AbcD')), '00abcd');
    assert.equal(fromHex('').length, 0);
    const msg = '"spk" is not an even-length hex string';
    throwsCode(() => fromHex('abc', 'spk'), 'ERR_DECODE', msg);
    throwsCode(() => fromHex('zz', 'spk'), 'ERR_DECODE', msg);
    throwsCode(() => fromHex('0x00', 'spk'), 'ERR_DECODE', msg);
    throwsCode(() => fromHex('00 11', 'spk'), 'ERR_DECODE', msg);
    throwsCode(() => fromHex(42 as unknown as string), 'ERR_DECODE', '"hex" is not an even-length hex string');
    assert.equal(toHex(fromHex('0102').subarray(1)), '02', 'toHex respects a view’s offset');
  });

  test('concat, isAllZero, wipe, toBase64Url, utf8', () => {
    assert.equal(toHex(concat(fromHex('01'), new Uint8Array(0), fromHex('0203'))), '010203');
    assert.equal(concat().length, 0);
    assert.equal(isAllZero(new Uint8Array(32)), true);
    assert.equal(isAllZero(new Uint8Array(0)), true);
    const one = new Uint8Array(32);
    one[31] = 1;
    assert.equal(isAllZero(one), false);
    const a = fromHex('0102');
    const b = fromHex('0304');
    wipe(a, undefined, b);
    assert.equal(toHex(a) + toHex(b), '00000000');
    assert.equal(toBase64Url(fromHex('fbff')), '-_8');
    assert.equal(toHex(utf8('é')), 'c3a9');
  });
});

describe('crypto/index.ts re-exports', () => {
  test('every primitive is reachable from the index and is the same object', async () => {
    const modules = await Promise.all([
      import('../../src/crypto/bytes.js'),
      import('../../src/crypto/random.js'),
      import('../../src/crypto/hash.js'),
      import('../../src/crypto/aead.js'),
      import('../../src/crypto/x25519.js'),
      import('../../src/crypto/ed25519.js'),
      import('../../src/crypto/xeddsa.js'),
    ]);
    const index = cryptoIndex as Record<string, unknown>;
    const missing: string[] = [];
    for (const m of modules) {
      for (const [name, value] of Object.entries(m)) {
        if (index[name] !== value) missing.push(name);
      }
    }
    assert.deepEqual(missing, []);
  });
});

describe('KeyPair redaction (key objects never print key material)', () => {
  const privateKey = sha256(utf8('redaction test key'));
  const kp = keyPairFromPrivate(Uint8Array.from(privateKey));
  const secretForms = [
    toHex(privateKey),
    toHex(privateKey).toUpperCase(),
    Buffer.from(privateKey).toString('base64'),
    toBase64Url(privateKey),
    Array.from(privateKey.subarray(0, 6)).join(', '),
    Array.from(privateKey.subarray(0, 6)).join(','),
  ];

  for (const [name, render] of [
    ['JSON.stringify', () => JSON.stringify(kp)],
    ['JSON.stringify nested', () => JSON.stringify({ keys: [kp] })],
    ['util.inspect', () => inspect(kp)],
    ['util.inspect showHidden, deep', () => inspect({ a: { b: kp } }, { showHidden: true, depth: Infinity })],
    ['util.format %o %O %s %j', () => format('%o %O %s %j', kp, kp, kp, kp)],
    ['template string', () => `${kp}`],
    ['String()', () => String(kp)],
    ['Object.entries', () => inspect(Object.entries(kp))],
  ] as const) {
    test(`${name} shows the public key only`, () => {
      const out = render();
      assert.ok(out.includes(toHex(kp.publicKey)) || out.includes(String(kp.publicKey[0])), `${name}: public key shown`);
      for (const form of secretForms) assert.ok(!out.includes(form), `${name} leaked the private key`);
    });
  }

  test('privateKey stays reachable to code; wipe() zero-fills it', () => {
    const pair = keyPairFromPrivate(Uint8Array.from(privateKey));
    assert.equal(toHex(pair.privateKey), toHex(privateKey));
    assert.equal(toHex(pair.publicKey), toHex(x25519PublicKey(privateKey)));
    pair.wipe();
    assert.equal(isAllZero(pair.privateKey), true);
  });

  test('constructor and generateX25519 check lengths', () => {
    throwsCode(() => new KeyPair(new Uint8Array(31), new Uint8Array(32)), 'ERR_INVALID_ARG');
    throwsCode(() => new KeyPair(new Uint8Array(32), new Uint8Array(33)), 'ERR_INVALID_ARG');
    throwsCode(() => generateX25519(() => new Uint8Array(16)), 'ERR_INVALID_ARG');
    const a = generateX25519(seededRandom('kp'));
    const b = generateX25519(seededRandom('kp'));
    assert.equal(toHex(a.publicKey), toHex(b.publicKey), 'same RandomSource seed, same key');
  });
});

describe('X25519 (RFC 7748)', () => {
  // RFC 7748 §6.1 Diffie-Hellman test vector.
  test('RFC 7748 §6.1: Alice and Bob agree on the shared secret', () => {
    const alice = fromHex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a');
    const bob = fromHex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb');
    assert.equal(toHex(x25519PublicKey(alice)), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a');
    assert.equal(toHex(x25519PublicKey(bob)), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f');
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
    assert.equal(toHex(x25519(alice, x25519PublicKey(bob))), shared);
    assert.equal(toHex(x25519(importX25519Private(bob), importX25519Public(x25519PublicKey(alice)))), shared);
  });

  // Low-order u: the Montgomery images of the Edwards 8-torsion (noble's
  // ED25519_TORSION_SUBGROUP; the identity has no image) and u = p - 1, as in libsodium's
  // blocklist; then their other encodings: u + p where that fits in 255 bits, and bit 255
  // set, which RFC 7748 §5 masks off.
  const P = ed25519.Point.Fp.ORDER;
  const lowOrder: bigint[] = [P - 1n];
  for (const hex of ED25519_TORSION_SUBGROUP) {
    if (hex === '0100000000000000000000000000000000000000000000000000000000000000') continue;
    const u = bytesToNumberLE(ed25519.utils.toMontgomery(fromHex(hex)));
    if (!lowOrder.includes(u)) lowOrder.push(u);
  }
  const encodings: Uint8Array[] = [];
  for (const u of lowOrder) {
    encodings.push(numberToBytesLE(u, 32), numberToBytesLE(u | (1n << 255n), 32));
    if (u + P < 1n << 255n) encodings.push(numberToBytesLE(u + P, 32));
  }

  test('all-zero and low-order public keys give ERR_DH_ZERO (RFC 7748 §6.1)', () => {
    // u in {0, 1, p - 1, two of order 8}, each with 2 or 3 encodings.
    assert.equal(lowOrder.length, 5);
    assert.equal(encodings.length, 12);
    const rnd = seededRandom('low-order');
    const failures: string[] = [];
    for (let i = 0; i < 4; i++) {
      const priv = rnd(32);
      for (const pub of encodings) {
        try {
          failures.push(`${toHex(pub)}: returned ${toHex(x25519(priv, pub))}`);
        } catch (e) {
          if (!isEnrollError(e, 'ERR_DH_ZERO')) failures.push(`${toHex(pub)}: threw ${String(e)}`);
        }
      }
    }
    assert.deepEqual(failures, []);
  });

  test('a normal public key gives a non-zero secret that both sides agree on', () => {
    const rnd = seededRandom('dh');
    const a = generateX25519(rnd);
    const b = generateX25519(rnd);
    const ab = x25519(a.privateKey, b.publicKey);
    assert.equal(toHex(ab), toHex(x25519(b.privateKey, a.publicKey)));
    assert.equal(isAllZero(ab), false);
  });

  test('argument checks: wrong lengths are ERR_INVALID_ARG, not key errors', () => {
    throwsCode(() => x25519(new Uint8Array(31), new Uint8Array(32).fill(9)), 'ERR_INVALID_ARG');
    throwsCode(() => x25519(new Uint8Array(32).fill(1), new Uint8Array(33)), 'ERR_INVALID_ARG');
    throwsCode(() => importX25519Public(new Uint8Array(0)), 'ERR_INVALID_ARG');
  });
});

describe('AES-256-GCM tampering (SP 800-38D)', () => {
  const key = sha256(utf8('aead key'));
  const nonce = sha256(utf8('aead nonce')).subarray(0, 12);
  const aad = utf8('header');
  const plaintext = utf8('enrollment payload');
  const sealed = aesGcmEncrypt(key, nonce, plaintext, aad);

  test('round trip, and ciphertext ‖ tag layout', () => {
    assert.equal(sealed.length, plaintext.length + 16);
    assert.equal(toHex(aesGcmDecrypt(key, nonce, sealed, aad)), toHex(plaintext));
    assert.equal(aesGcmDecrypt(key, nonce, aesGcmEncrypt(key, nonce, new Uint8Array(0))).length, 0);
  });

  test('every single-bit flip of ciphertext or tag gives ERR_DECRYPT', () => {
    const accepted: string[] = [];
    for (let i = 0; i < sealed.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Uint8Array.from(sealed);
        bad[i] ^= 1 << bit;
        try {
          aesGcmDecrypt(key, nonce, bad, aad);
          accepted.push(`byte ${i} bit ${bit}`);
        } catch (e) {
          if (!isEnrollError(e, 'ERR_DECRYPT')) accepted.push(`byte ${i} bit ${bit}: ${String(e)}`);
        }
      }
    }
    assert.deepEqual(accepted, []);
  });

  test('wrong key, nonce or AAD, truncation and extension all give the same opaque ERR_DECRYPT', () => {
    const otherKey = Uint8Array.from(key);
    otherKey[0] ^= 1;
    const otherNonce = Uint8Array.from(nonce);
    otherNonce[11] ^= 0x80;
    const cases: [string, () => unknown][] = [
      ['wrong key', () => aesGcmDecrypt(otherKey, nonce, sealed, aad)],
      ['wrong nonce', () => aesGcmDecrypt(key, otherNonce, sealed, aad)],
      ['wrong aad', () => aesGcmDecrypt(key, nonce, sealed, utf8('headex'))],
      ['missing aad', () => aesGcmDecrypt(key, nonce, sealed)],
      ['truncated by one byte', () => aesGcmDecrypt(key, nonce, sealed.subarray(0, sealed.length - 1), aad)],
      ['tag only', () => aesGcmDecrypt(key, nonce, sealed.subarray(sealed.length - 16), aad)],
      ['shorter than a tag', () => aesGcmDecrypt(key, nonce, sealed.subarray(0, 15), aad)],
      ['empty', () => aesGcmDecrypt(key, nonce, new Uint8Array(0), aad)],
      ['extended by one byte', () => aesGcmDecrypt(key, nonce, concat(sealed, Uint8Array.of(0)), aad)],
    ];
    for (const [name, fn] of cases) {
      assert.throws(fn, (e: unknown) => isEnrollError(e, 'ERR_DECRYPT') && e.message === 'decryption failed', name);
    }
  });

  test('argument checks: wrong key or nonce length is ERR_INVALID_ARG', () => {
    throwsCode(() => aesGcmEncrypt(key.subarray(0, 16), nonce, plaintext), 'ERR_INVALID_ARG');
    throwsCode(() => aesGcmEncrypt(key, new Uint8Array(16), plaintext), 'ERR_INVALID_ARG');
    throwsCode(() => aesGcmDecrypt(key, nonce.subarray(0, 8), sealed), 'ERR_INVALID_ARG');
  });
});

describe('HKDF-SHA256 and Ed25519 argument handling', () => {
  test('hkdfSha256 refuses lengths outside 1..8160 and infos over 1024 bytes', () => {
    const ikm = new Uint8Array(32);
    const salt = new Uint8Array(0);
    for (const length of [0, -1, 1.5, HKDF_SHA256_MAX + 1, Number.NaN]) {
      throwsCode(() => hkdfSha256(ikm, salt, new Uint8Array(0), length), 'ERR_INVALID_ARG');
    }
    throwsCode(() => hkdfSha256(ikm, salt, new Uint8Array(1025), 32), 'ERR_INVALID_ARG');
    assert.equal(hkdfSha256(ikm, salt, new Uint8Array(1024), HKDF_SHA256_MAX).length, HKDF_SHA256_MAX);
  });

  test('ed25519Verify returns false for wrong-length signatures and unusable keys', () => {
    const msg = utf8('m');
    // RFC 8032 §7.1 TEST 1 key; a 64-byte zero signature does not verify.
    const pk = fromHex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    assert.equal(ed25519Verify(pk, msg, new Uint8Array(63)), false);
    assert.equal(ed25519Verify(pk, msg, new Uint8Array(64)), false);
    assert.equal(ed25519Verify(new Uint8Array(31), msg, new Uint8Array(64)), false);
    throwsCode(() => ed25519Verify(pk, 'm' as unknown as Uint8Array, new Uint8Array(64)), 'ERR_INVALID_ARG');
  });
});
