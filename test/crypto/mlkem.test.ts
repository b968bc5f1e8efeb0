/**
 * ML-KEM-768 (FIPS 203) through src/crypto/mlkem.ts, against NIST's ACVP known answers
 * (test/vectors/third-party/nist-acvp-ml-kem/, README there): every ML-KEM-768 case of the
 * keyGen and encapDecap files, labelled with its tcId. The ML-KEM-512 and ML-KEM-1024
 * groups are skipped (the project uses ML-KEM-768 only). Then the wrapper's argument checks.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import { join } from 'node:path';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import {
  MLKEM768_CIPHERTEXT_LEN,
  MLKEM768_PUBLIC_KEY_LEN,
  mlKem768Decapsulate,
  mlKem768Decapsulator,
  mlKem768Encapsulate,
  mlKem768Keygen,
} from '../../src/crypto/mlkem.js';
import { isEnrollError } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/paths.js';

const DIR = join(REPO_ROOT, 'test', 'vectors', 'third-party', 'nist-acvp-ml-kem');
const read = (name: string): any => JSON.parse(readFileSync(join(DIR, name), 'utf8'));
const hex = (s: string): Uint8Array => fromHex(s.toLowerCase());

describe('FIPS 203 ML-KEM-768: NIST ACVP keyGen (internalProjection)', () => {
  const file = read('key-gen.json');
  const groups = file.testGroups.filter((g: any) => g.parameterSet === 'ML-KEM-768');
  assert.equal(groups.length, 1);
  assert.equal(groups[0].tests.length, 25);
  for (const t of groups[0].tests) {
    test(`tcId ${t.tcId}: KeyGen_internal(d, z) gives ek and dk`, () => {
      const kp = mlKem768Keygen(new Uint8Array([...hex(t.d), ...hex(t.z)]));
      assert.equal(toHex(kp.publicKey), t.ek.toLowerCase());
      assert.equal(toHex(kp.secretKey), t.dk.toLowerCase());
    });
  }
});

describe('FIPS 203 ML-KEM-768: NIST ACVP encapDecap (internalProjection)', () => {
  const file = read('encap-decap.json');
  const enc = file.testGroups.filter((g: any) => g.parameterSet === 'ML-KEM-768' && g.function === 'encapsulation');
  const dec = file.testGroups.filter((g: any) => g.parameterSet === 'ML-KEM-768' && g.function === 'decapsulation');
  assert.equal(enc.length, 1);
  assert.equal(dec.length, 1);
  assert.equal(enc[0].tests.length, 25);
  assert.equal(dec[0].tests.length, 10);
  for (const t of enc[0].tests) {
    test(`tcId ${t.tcId}: Encaps_internal(ek, m) gives c and K, and Decaps(dk, c) gives K`, () => {
      const { cipherText, sharedSecret } = mlKem768Encapsulate(hex(t.ek), hex(t.m));
      assert.equal(toHex(cipherText), t.c.toLowerCase());
      assert.equal(toHex(sharedSecret), t.k.toLowerCase());
      assert.equal(toHex(mlKem768Decapsulate(cipherText, hex(t.dk))), t.k.toLowerCase());
      assert.equal(toHex(mlKem768Decapsulator(hex(t.dk)).decapsulate(cipherText)), t.k.toLowerCase());
    });
  }
  const g = dec[0];
  let rejections = 0;
  for (const t of g.tests) {
    if (t.reason === 'modify ciphertext') rejections++;
    test(`tcId ${t.tcId}: Decaps(dk, c) gives K (${t.reason}), one-shot and through a prepared decapsulator`, () => {
      assert.equal(toHex(mlKem768Decapsulate(hex(t.c), hex(g.dk))), t.k.toLowerCase());
      assert.equal(toHex(mlKem768Decapsulator(hex(g.dk)).decapsulate(hex(t.c))), t.k.toLowerCase());
    });
  }
  test('the decapsulation group holds implicit-rejection cases', () => assert.equal(rejections, 5));
});

describe('src/crypto/mlkem.ts argument checks', () => {
  const kp = mlKem768Keygen(new Uint8Array(64).fill(7));
  const isCode = (code: string) => (e: unknown) => isEnrollError(e, code as any);
  test('wrong lengths are ERR_INVALID_ARG naming the argument', () => {
    assert.throws(() => mlKem768Keygen(new Uint8Array(63)), (e: any) => isCode('ERR_INVALID_ARG')(e) && /"seed"/.test(e.message));
    assert.throws(() => mlKem768Encapsulate(new Uint8Array(MLKEM768_PUBLIC_KEY_LEN - 1)), (e: any) => /"publicKey"/.test(e.message));
    assert.throws(() => mlKem768Encapsulate(kp.publicKey, new Uint8Array(31)), (e: any) => isCode('ERR_INVALID_ARG')(e) && /"m"/.test(e.message));
    assert.throws(() => mlKem768Decapsulate(new Uint8Array(MLKEM768_CIPHERTEXT_LEN + 1), kp.secretKey), (e: any) => /"cipherText"/.test(e.message));
    assert.throws(() => mlKem768Decapsulate(new Uint8Array(MLKEM768_CIPHERTEXT_LEN), kp.secretKey.subarray(1)), (e: any) => /"secretKey"/.test(e.message));
    assert.throws(() => mlKem768Encapsulate('x' as any), isCode('ERR_INVALID_ARG'));
  });
  test('an encapsulation key with a coefficient ≥ q is ERR_KEY_INVALID (FIPS 203 §7.2)', () => {
    const bad = Uint8Array.from(kp.publicKey);
    bad.fill(0xff, 0, 3); // the first two 12-bit coefficients become 4095 ≥ 3329
    assert.throws(() => mlKem768Encapsulate(bad), isCode('ERR_KEY_INVALID'));
  });
  test('a corrupted decapsulation key is ERR_KEY_INVALID (FIPS 203 §7.3 hash check)', () => {
    const bad = Uint8Array.from(kp.secretKey);
    bad[1152 + 5]! ^= 1; // inside the embedded ek, so H(ek) no longer matches
    assert.throws(() => mlKem768Decapsulate(new Uint8Array(MLKEM768_CIPHERTEXT_LEN), bad), isCode('ERR_KEY_INVALID'));
    assert.throws(() => mlKem768Decapsulator(bad), isCode('ERR_KEY_INVALID'));
    assert.throws(() => mlKem768Decapsulator(kp.secretKey).decapsulate(new Uint8Array(5)), isCode('ERR_INVALID_ARG'));
  });
  test('an m drawn from the randomness source is wiped after encapsulation (it is the preimage of K); a given m is the caller\'s', () => {
    let drawn: Uint8Array | undefined;
    const { sharedSecret } = mlKem768Encapsulate(kp.publicKey, (n) => (drawn = new Uint8Array(n).fill(0x5a)));
    assert.equal(sharedSecret.length, 32);
    assert.ok(drawn !== undefined && drawn.every((b) => b === 0), 'the drawn m is zero-filled');
    const given = new Uint8Array(32).fill(0x5a);
    mlKem768Encapsulate(kp.publicKey, given);
    assert.ok(given.every((b) => b === 0x5a), 'a given m is left as it was');
  });
  test('a prepared decapsulator whose dk was wiped (or changed) under it is ERR_KEY_INVALID, never a bare Error', () => {
    const own = mlKem768Keygen(new Uint8Array(64).fill(9));
    const d = mlKem768Decapsulator(own.secretKey);
    own.secretKey.fill(0); // the caller wipes dk (the service's cache does on eviction)
    assert.throws(() => d.decapsulate(new Uint8Array(MLKEM768_CIPHERTEXT_LEN)), isCode('ERR_KEY_INVALID'));
  });
  test('a key pair never shows dk through JSON.stringify, util.inspect or a template string (STYLE)', () => {
    const own = mlKem768Keygen(new Uint8Array(64).fill(10));
    const dkHex = toHex(own.secretKey.subarray(0, 16));
    const zHex = toHex(own.secretKey.subarray(2400 - 32));
    for (const shown of [JSON.stringify(own), inspect(own, { depth: 5, maxArrayLength: Infinity }), `${own as unknown as string}`]) {
      assert.ok(!shown.includes(dkHex) && !shown.includes(zHex), 'no dk hex');
      assert.ok(!shown.includes('secretKey'), `no dk field: ${shown.slice(0, 80)}`);
    }
    assert.equal(JSON.parse(JSON.stringify(own)).secretKey, undefined);
    assert.equal(own.secretKey.length, 2400, 'the secret stays reachable by its getter');
    own.wipe();
    assert.ok(own.secretKey.every((b) => b === 0), 'wipe() zero-fills dk');
  });
  test('a ciphertext for another key decapsulates to an unrelated secret (implicit rejection), never throws', () => {
    const other = mlKem768Keygen(new Uint8Array(64).fill(8));
    const { cipherText, sharedSecret } = mlKem768Encapsulate(other.publicKey, new Uint8Array(32).fill(1));
    const k = mlKem768Decapsulate(cipherText, kp.secretKey);
    assert.equal(k.length, 32);
    assert.notEqual(toHex(k), toHex(sharedSecret));
    assert.equal(toHex(mlKem768Decapsulate(cipherText, other.secretKey)), toHex(sharedSecret));
  });
});
