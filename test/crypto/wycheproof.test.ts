/**
 * Wycheproof (C2SP/wycheproof @ dac1dd47, testvectors_v1, vendored in
 * test/vectors/third-party/c2sp-wycheproof) run through our own primitives, every test case
 * of every file, labelled by tcId.
 *
 * Policy for `result`:
 * - valid: our function returns exactly the vector's output (or verifies).
 * - invalid: AES-GCM decryption throws ERR_DECRYPT; HKDF throws ERR_INVALID_ARG (RFC 5869
 *   §2.3 caps L at 255·HashLen); Ed25519 verification returns false.
 * - acceptable (X25519 only: low-order, twist and non-canonical public keys): RFC 7748 §5
 *   decodes any 32 bytes (bit 255 masked, u taken mod p), so we compute the function as
 *   specified and return the vector's shared secret, except that x25519() throws
 *   ERR_DH_ZERO exactly when that shared secret is all zeros (RFC 7748 §6.1 check, which
 *   X3DH and Noise rely on for contributory behaviour).
 *
 * Documented exceptions (asserted, not skipped):
 * - aes_gcm_test.json groups outside our one profile, AES-256 with a 96-bit nonce and a
 *   128-bit tag (src/crypto/aead.ts): 128- and 192-bit keys, and nonces of 0, 8, 16, 32,
 *   48, 64, 80, 120, 128, 160, 256, 512, 1024 and 2056 bits. For each of them both
 *   aesGcmEncrypt and aesGcmDecrypt must refuse with ERR_INVALID_ARG, never compute.
 * No other exceptions.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LEN, GCM_TAG_LEN, AES_KEY_LEN } from '../../src/crypto/aead.js';
import { concat, fromHex, isAllZero, toHex } from '../../src/crypto/bytes.js';
import { ed25519Verify, importEd25519Public } from '../../src/crypto/ed25519.js';
import { hkdfSha256 } from '../../src/crypto/hash.js';
import { x25519 } from '../../src/crypto/x25519.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { readVectorJson } from '../helpers/paths.js';

type Result = 'valid' | 'invalid' | 'acceptable';

interface WycheproofFile<G> {
  algorithm: string;
  numberOfTests: number;
  testGroups: G[];
}
interface Case {
  tcId: number;
  comment: string;
  flags: string[];
  result: Result;
}
interface XdhGroup {
  curve: string;
  tests: (Case & { public: string; private: string; shared: string })[];
}
interface AeadGroup {
  keySize: number;
  ivSize: number;
  tagSize: number;
  tests: (Case & { key: string; iv: string; aad: string; msg: string; ct: string; tag: string })[];
}
interface HkdfGroup {
  tests: (Case & { ikm: string; salt: string; info: string; size: number; okm: string })[];
}
interface EddsaGroup {
  publicKey: { curve: string; pk: string };
  tests: (Case & { msg: string; sig: string })[];
}

/** Returns the code of the EnrollError `fn` throws, or a description of what it did instead. */
function codeOf(fn: () => unknown): ErrorCode | string {
  try {
    fn();
  } catch (e) {
    return isEnrollError(e) ? e.code : `non-EnrollError ${String(e)}`;
  }
  return 'no error';
}

function label(c: Case): string {
  return `tcId ${c.tcId} (${c.result}${c.comment ? `: ${c.comment}` : ''}; ${c.flags.join(',')})`;
}

/** Runs `check` on every case, then fails once, naming every failing tcId. */
function runAll<C extends Case>(cases: C[], check: (c: C) => string | undefined): number {
  const failures: string[] = [];
  for (const c of cases) {
    let problem: string | undefined;
    try {
      problem = check(c);
    } catch (e) {
      problem = `threw ${String(e)}`;
    }
    if (problem !== undefined) failures.push(`${label(c)}: ${problem}`);
  }
  assert.deepEqual(failures, [], `failing cases:\n${failures.join('\n')}`);
  return cases.length;
}

describe('Wycheproof x25519_test.json through x25519() (RFC 7748)', () => {
  const file = readVectorJson<WycheproofFile<XdhGroup>>('c2sp-wycheproof', 'x25519_test.json');

  test('every valid and acceptable case: shared secret, or ERR_DH_ZERO iff it is all zero', (t) => {
    const cases = file.testGroups.flatMap((g) => {
      assert.equal(g.curve, 'curve25519');
      return g.tests;
    });
    const ran = runAll(cases, (c) => {
      if (c.result === 'invalid') return 'x25519 vectors have no invalid cases; policy undefined';
      const priv = fromHex(c.private);
      const pub = fromHex(c.public);
      const shared = fromHex(c.shared);
      if (isAllZero(shared)) {
        const code = codeOf(() => x25519(priv, pub));
        return code === 'ERR_DH_ZERO' ? undefined : `expected ERR_DH_ZERO, got ${code}`;
      }
      const out = toHex(x25519(priv, pub));
      return out === c.shared ? undefined : `shared ${out} != ${c.shared}`;
    });
    assert.equal(ran, file.numberOfTests);
    t.diagnostic(`x25519: ${ran} cases`);
  });
});

describe('Wycheproof aes_gcm_test.json through aesGcmEncrypt/aesGcmDecrypt (SP 800-38D)', () => {
  const file = readVectorJson<WycheproofFile<AeadGroup>>('c2sp-wycheproof', 'aes_gcm_test.json');
  const inProfile = (g: AeadGroup): boolean =>
    g.keySize === AES_KEY_LEN * 8 && g.ivSize === GCM_NONCE_LEN * 8 && g.tagSize === GCM_TAG_LEN * 8;
  const profile = file.testGroups.filter(inProfile).flatMap((g) => g.tests);
  const outside = file.testGroups.filter((g) => !inProfile(g));

  test('AES-256-GCM, 96-bit nonce, 128-bit tag: valid cases seal and open, invalid cases give ERR_DECRYPT', (t) => {
    const ran = runAll(profile, (c) => {
      const key = fromHex(c.key);
      const nonce = fromHex(c.iv);
      const aad = fromHex(c.aad);
      const msg = fromHex(c.msg);
      const sealed = concat(fromHex(c.ct), fromHex(c.tag));
      const ours = toHex(aesGcmEncrypt(key, nonce, msg, aad));
      if (c.result === 'valid') {
        if (ours !== toHex(sealed)) return `encrypt gave ${ours}`;
        const opened = toHex(aesGcmDecrypt(key, nonce, sealed, aad));
        return opened === c.msg ? undefined : `decrypt gave ${opened}`;
      }
      if (c.result === 'invalid') {
        if (ours === toHex(sealed)) return 'encrypt reproduced the invalid ciphertext';
        const code = codeOf(() => aesGcmDecrypt(key, nonce, sealed, aad));
        return code === 'ERR_DECRYPT' ? undefined : `expected ERR_DECRYPT, got ${code}`;
      }
      return 'aes-gcm vectors have no acceptable cases; policy undefined';
    });
    assert.ok(ran > 0);
    t.diagnostic(`aes-gcm in profile: ${ran} cases`);
  });

  test('exception: groups outside the profile (128/192-bit keys, nonces other than 96 bits) are refused with ERR_INVALID_ARG', (t) => {
    let ran = 0;
    for (const g of outside) {
      ran += runAll(g.tests, (c) => {
        const key = fromHex(c.key);
        const nonce = fromHex(c.iv);
        const aad = fromHex(c.aad);
        const enc = codeOf(() => aesGcmEncrypt(key, nonce, fromHex(c.msg), aad));
        const dec = codeOf(() => aesGcmDecrypt(key, nonce, concat(fromHex(c.ct), fromHex(c.tag)), aad));
        const where = `key ${g.keySize} / iv ${g.ivSize} / tag ${g.tagSize}`;
        if (enc !== 'ERR_INVALID_ARG') return `${where}: encrypt gave ${enc}`;
        if (dec !== 'ERR_INVALID_ARG') return `${where}: decrypt gave ${dec}`;
        return undefined;
      });
    }
    assert.equal(ran + profile.length, file.numberOfTests);
    t.diagnostic(`aes-gcm outside profile (refused): ${ran} cases`);
  });
});

describe('Wycheproof hkdf_sha256_test.json through hkdfSha256() (RFC 5869)', () => {
  const file = readVectorJson<WycheproofFile<HkdfGroup>>('c2sp-wycheproof', 'hkdf_sha256_test.json');

  test('valid cases give the OKM; invalid (size > 255·32) give ERR_INVALID_ARG', (t) => {
    const cases = file.testGroups.flatMap((g) => g.tests);
    const ran = runAll(cases, (c) => {
      const run = (): Uint8Array => hkdfSha256(fromHex(c.ikm), fromHex(c.salt), fromHex(c.info), c.size);
      if (c.result === 'valid') {
        const okm = toHex(run());
        return okm === c.okm ? undefined : `okm ${okm}`;
      }
      if (c.result === 'invalid') {
        const code = codeOf(run);
        return code === 'ERR_INVALID_ARG' ? undefined : `expected ERR_INVALID_ARG, got ${code}`;
      }
      return 'hkdf vectors have no acceptable cases; policy undefined';
    });
    assert.equal(ran, file.numberOfTests);
    t.diagnostic(`hkdf-sha256: ${ran} cases`);
  });
});

describe('Wycheproof ed25519_test.json through ed25519Verify() (RFC 8032 §5.1.7)', () => {
  const file = readVectorJson<WycheproofFile<EddsaGroup>>('c2sp-wycheproof', 'ed25519_test.json');

  test('valid cases verify, invalid cases return false (raw key and imported KeyObject)', (t) => {
    let ran = 0;
    for (const g of file.testGroups) {
      assert.equal(g.publicKey.curve, 'edwards25519');
      const pk = fromHex(g.publicKey.pk);
      const keyObject = importEd25519Public(pk);
      ran += runAll(g.tests, (c) => {
        if (c.result === 'acceptable') return 'ed25519 vectors have no acceptable cases; policy undefined';
        const expected = c.result === 'valid';
        const msg = fromHex(c.msg);
        const sig = fromHex(c.sig);
        const raw = ed25519Verify(pk, msg, sig);
        const imported = ed25519Verify(keyObject, msg, sig);
        if (raw !== expected) return `verify(raw key) returned ${raw}`;
        if (imported !== expected) return `verify(KeyObject) returned ${imported}`;
        return undefined;
      });
    }
    assert.equal(ran, file.numberOfTests);
    t.diagnostic(`ed25519: ${ran} cases`);
  });
});
