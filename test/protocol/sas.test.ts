/**
 * The short authentication string (src/protocol/sas.ts): v = HKDF-SHA256(IKM = handshake
 * hash, salt = empty, info = "ockam-enroll/v1/sas", L = 5), 40-bit big-endian mod 10^8,
 * "1234-5678". Literal answers were computed with Python's hmac/hashlib (an independent
 * HKDF); the rest is recomputed here with @noble/hashes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { fromHex, utf8 } from '../../src/crypto/bytes.js';
import { isEnrollError } from '../../src/errors.js';
import { SAS_INFO, shortAuthString } from '../../src/protocol/sas.js';

function independentSas(hh: Uint8Array): string {
  const v = hkdf(nobleSha256, hh, new Uint8Array(0), utf8('ockam-enroll/v1/sas'), 5);
  let n = 0n;
  for (const b of v) n = (n << 8n) | BigInt(b);
  const d = (n % 100_000_000n).toString().padStart(8, '0');
  return `${d.slice(0, 4)}-${d.slice(4)}`;
}

describe('shortAuthString', () => {
  test('info is the ASCII label ockam-enroll/v1/sas', () => {
    assert.deepEqual(SAS_INFO, utf8('ockam-enroll/v1/sas'));
  });

  // HKDF output 1778896254 = 100806517332; mod 10^8 = 06517332: keeps the leading zero.
  for (const [name, hex, expected] of [
    ['32 zero bytes (leading zero kept)', '00'.repeat(32), '0651-7332'],
    ['32 0xFF bytes', 'ff'.repeat(32), '4903-8353'],
    ['bytes 0..31', Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0')).join(''), '5438-0956'],
  ] as const) {
    test(`known answer: ${name}`, () => {
      assert.equal(shortAuthString(fromHex(hex)), expected);
    });
  }

  test('matches an independent HKDF on 500 seeded hashes, always NNNN-NNNN', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 500; i++) {
      const hh = nobleSha256(utf8(`sas-${i}`));
      const s = shortAuthString(hh);
      assert.match(s, /^\d{4}-\d{4}$/);
      assert.equal(s, independentSas(hh));
      seen.add(s);
    }
    // 500 draws from 10^8 values: a collision has probability ~0.1%; all-equal would mean a bug.
    assert.ok(seen.size >= 498);
  });

  test('one flipped bit of the handshake hash changes the string', () => {
    const hh = nobleSha256(utf8('flip'));
    const base = shortAuthString(hh);
    let same = 0;
    for (let bit = 0; bit < 256; bit++) {
      const x = Uint8Array.from(hh);
      x[bit >> 3]! ^= 1 << (bit & 7);
      if (shortAuthString(x) === base) same++;
    }
    assert.equal(same, 0);
  });

  test('does not modify its input', () => {
    const hh = nobleSha256(utf8('const'));
    const copy = Uint8Array.from(hh);
    shortAuthString(hh);
    assert.deepEqual(hh, copy);
  });

  test('refuses a handshake hash that is not 32 bytes (ERR_INVALID_ARG)', () => {
    for (const bad of [new Uint8Array(0), new Uint8Array(31), new Uint8Array(64), 'abc' as unknown as Uint8Array]) {
      assert.throws(() => shortAuthString(bad), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
    }
  });
});
