/**
 * Sealed prekey private keys (src/store/sealing.ts): AES-256-GCM under the store key, the AAD
 * binding each value to its purpose and row. Anything that does not open is ERR_STORE, and
 * the Sealer never shows its key.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { format, inspect } from 'node:util';
import { GCM_NONCE_LEN } from '../../src/crypto/aead.js';
import { toHex } from '../../src/crypto/bytes.js';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { Sealer } from '../../src/store/sealing.js';

function rand(n: number): Uint8Array {
  return new Uint8Array(randomBytes(n));
}

function throwsCode(fn: () => unknown, code: ErrorCode, label = ''): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `${label}: expected EnrollError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `${label}: ${e.message}`);
    return true;
  });
}

describe('Sealer', () => {
  const key = rand(32);
  const sealer = new Sealer(key);
  const secret = rand(32);
  const row = rand(16);

  it('round-trips, with a fresh nonce each time and 12 + 32 + 16 bytes per key', () => {
    const a = sealer.seal(secret, 'opk', row);
    const b = sealer.seal(secret, 'opk', row);
    assert.equal(a.length, GCM_NONCE_LEN + 32 + 16);
    assert.notDeepEqual(a, b, 'nonces differ');
    assert.deepEqual(sealer.open(a, 'opk', row), secret);
    assert.deepEqual(sealer.open(b, 'opk', row), secret);
    assert.ok(!Buffer.from(a).includes(Buffer.from(secret)), 'the secret is not in the sealed bytes');
    // Another Sealer on the same key (the service restarted) opens it too.
    assert.deepEqual(new Sealer(Uint8Array.from(key)).open(a, 'opk', row), secret);
  });

  it('a deterministic random source gives the documented layout: nonce ‖ ciphertext ‖ tag', () => {
    const nonce = rand(GCM_NONCE_LEN);
    const s = new Sealer(key, (n) => {
      assert.equal(n, GCM_NONCE_LEN);
      return Uint8Array.from(nonce);
    });
    const sealed = s.seal(secret, 'spk', row);
    assert.deepEqual(sealed.subarray(0, GCM_NONCE_LEN), nonce);
    assert.deepEqual(sealer.open(sealed, 'spk', row), secret);
  });

  it('refuses another purpose, another row id, another key, or a flipped bit (ERR_STORE)', () => {
    const sealed = sealer.seal(secret, 'opk', row);
    throwsCode(() => sealer.open(sealed, 'spk', row), 'ERR_STORE', 'purpose');
    throwsCode(() => sealer.open(sealed, 'opk', rand(16)), 'ERR_STORE', 'row id');
    throwsCode(() => sealer.open(sealed, 'opk', row.subarray(0, 15)), 'ERR_STORE', 'row id prefix');
    throwsCode(() => new Sealer(rand(32)).open(sealed, 'opk', row), 'ERR_STORE', 'key');
    for (const i of [0, GCM_NONCE_LEN, GCM_NONCE_LEN + 31, sealed.length - 1]) {
      const t = Uint8Array.from(sealed);
      t[i] ^= 0x01;
      throwsCode(() => sealer.open(t, 'opk', row), 'ERR_STORE', `bit flip at ${i}`);
    }
    // The purpose and row are separated in the AAD: "op"+"k…" is not "opk"+"…".
    const joined = sealer.seal(secret, 'op', Uint8Array.from([0x6b, ...row]));
    throwsCode(() => sealer.open(joined, 'opk', row), 'ERR_STORE', 'purpose/row boundary');
  });

  it('refuses truncated input (ERR_STORE), down to nothing', () => {
    const sealed = sealer.seal(secret, 'opk', row);
    for (const n of [0, 1, GCM_NONCE_LEN, GCM_NONCE_LEN + 15, GCM_NONCE_LEN + 16, sealed.length - 1]) {
      throwsCode(() => sealer.open(sealed.subarray(0, n), 'opk', row), 'ERR_STORE', `${n} bytes`);
    }
    throwsCode(() => sealer.open(new Uint8Array(0), 'spk', row), 'ERR_STORE');
  });

  it('the error names the purpose and gives a hint, never the key or the secret', () => {
    const sealed = sealer.seal(secret, 'spk', row);
    try {
      new Sealer(rand(32)).open(sealed, 'spk', row);
      assert.fail('expected ERR_STORE');
    } catch (e) {
      assert.ok(isEnrollError(e, 'ERR_STORE'));
      assert.match(e.message, /spk/);
      assert.ok(e.hint);
      const text = inspect(e, { depth: 5 }) + JSON.stringify(e);
      for (const s of [key, secret]) {
        assert.ok(!text.includes(toHex(s)), 'no hex of key material');
        assert.ok(!text.includes(Buffer.from(s).toString('base64')), 'no base64 of key material');
      }
    }
  });

  it('refuses a store key that is not 32 bytes', () => {
    for (const bad of [new Uint8Array(0), rand(16), rand(31), rand(33)]) {
      throwsCode(() => new Sealer(bad), 'ERR_KEYSTORE_CORRUPT', `${bad.length} bytes`);
    }
    throwsCode(() => new Sealer('k'.repeat(32) as unknown as Uint8Array), 'ERR_KEYSTORE_CORRUPT', 'a string');
  });

  it('shows no key material through JSON.stringify, util.inspect, format or its own keys', () => {
    const outputs = [
      JSON.stringify(sealer),
      JSON.stringify({ sealer }),
      inspect(sealer),
      inspect(sealer, { showHidden: true, depth: Infinity }),
      inspect({ nested: { sealer } }, { depth: Infinity }),
      format('%o %O %s %j', sealer, sealer, sealer, sealer),
      String(Object.keys(sealer)),
      String(Object.getOwnPropertyNames(sealer)),
    ];
    const keyHex = toHex(key);
    const keyB64 = Buffer.from(key).toString('base64');
    const keyBytes = Array.from(key).join(', ');
    for (const out of outputs) {
      assert.ok(!out.includes(keyHex), out);
      assert.ok(!out.includes(keyB64), out);
      assert.ok(!out.includes(keyBytes), out);
    }
    assert.equal(JSON.stringify(sealer), '"[Sealer]"');
    assert.equal(inspect(sealer), '[Sealer]');
    assert.deepEqual(Object.keys(sealer), []);
  });
});
