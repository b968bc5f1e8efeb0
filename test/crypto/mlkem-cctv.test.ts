/**
 * ML-KEM-768 against C2SP CCTV's ML-KEM vectors (test/vectors/third-party/c2sp-cctv-ml-kem/,
 * README there): the `strcmp` vector, a ciphertext whose re-encryption differs from it only
 * after a zero byte, so that an implementation comparing with strcmp() would accept it
 * instead of rejecting it implicitly. (CCTV's accumulated pq-crystals hashes are not run:
 * they predate FIPS 203 final's G(d ‖ k) in KeyGen, and the library implements the final
 * standard, which the NIST ACVP vectors check.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { mlKem768Decapsulate, mlKem768Decapsulator } from '../../src/crypto/mlkem.js';
import { REPO_ROOT } from '../helpers/paths.js';

const DIR = join(REPO_ROOT, 'test', 'vectors', 'third-party', 'c2sp-cctv-ml-kem');

describe('C2SP CCTV ML-KEM-768', () => {
  test('strcmp vector: Decaps gives the implicit-rejection K (one-shot and prepared)', () => {
    const fields = new Map<string, string>();
    for (const line of readFileSync(join(DIR, 'strcmp-ML-KEM-768.txt'), 'utf8').split('\n')) {
      const m = /^(\w+) = ([0-9a-f]+)$/.exec(line.trim());
      if (m) fields.set(m[1]!, m[2]!);
    }
    const dk = fromHex(fields.get('dk')!);
    const c = fromHex(fields.get('c')!);
    assert.equal(toHex(mlKem768Decapsulate(c, dk)), fields.get('K'));
    assert.equal(toHex(mlKem768Decapsulator(dk).decapsulate(c)), fields.get('K'));
  });
});
