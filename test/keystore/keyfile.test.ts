import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { toHex } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { encodeKeyFile, KeyFile, keyFileAad, SCRYPT_N } from '../../src/keystore/keyfile.js';

/** Low scrypt cost for the many cases that do not test scrypt itself. */
const FAST = { insecureScryptNForTestingOnly: 1024 };
const FILE = '/home/u/.ockam-enroll/enrollee/ik.json';

async function rejectsCode(p: Promise<unknown>, code: ErrorCode, check?: (e: any) => void): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

function throwsCode(fn: () => unknown, code: ErrorCode, check?: (e: any) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    check?.(e);
    return true;
  });
}

describe('key file: clear', () => {
  it('round-trips and has exactly the documented fields', async () => {
    const kp = generateX25519();
    const created = new Date('2025-03-04T05:06:07.089Z');
    const text = await encodeKeyFile(kp, { purpose: 'IK_B', created });
    const json = JSON.parse(text);
    assert.deepEqual(json, {
      'ockam-enroll-key': 1,
      kind: 'x25519',
      purpose: 'IK_B',
      created: '2025-03-04T05:06:07.089Z',
      public_key: toHex(kp.publicKey),
      private_key: toHex(kp.privateKey),
    });
    assert.ok(text.endsWith('\n'));
    const kf = KeyFile.parse(text, FILE);
    assert.equal(kf.encrypted, false);
    assert.equal(kf.purpose, 'IK_B');
    assert.deepEqual(kf.publicKey, kp.publicKey);
    const back = await kf.unlock();
    assert.deepEqual(back.privateKey, kp.privateKey);
    assert.deepEqual(back.publicKey, kp.publicKey);
  });

  it('refuses a private key that does not yield public_key (ERR_KEYSTORE_CORRUPT)', async () => {
    const a = generateX25519();
    const b = generateX25519();
    const json = JSON.parse(await encodeKeyFile(a, { purpose: 'IK_B' }));
    json.public_key = toHex(b.publicKey);
    const kf = KeyFile.parse(JSON.stringify(json), FILE);
    await rejectsCode(kf.unlock(), 'ERR_KEYSTORE_CORRUPT', (e) => assert.ok(e.message.includes(FILE)));
  });

  it('refuses to encode an inconsistent key pair', async () => {
    const a = generateX25519();
    const b = generateX25519();
    await rejectsCode(
      encodeKeyFile({ publicKey: b.publicKey, privateKey: a.privateKey }, { purpose: 'IK_B' }),
      'ERR_INVALID_ARG',
    );
  });

  it('refuses a purpose that could break the AAD', async () => {
    await rejectsCode(encodeKeyFile(generateX25519(), { purpose: 'IK_B|x' }), 'ERR_INVALID_ARG');
    await rejectsCode(encodeKeyFile(generateX25519(), { purpose: '' }), 'ERR_INVALID_ARG');
  });

  it('KeyFile never shows the private key in JSON, inspect or strings', async () => {
    const kp = generateX25519();
    const kf = KeyFile.parse(await encodeKeyFile(kp, { purpose: 'IK_B' }), FILE);
    const secret = toHex(kp.privateKey);
    for (const s of [JSON.stringify(kf), inspect(kf, { showHidden: true, depth: 10 }), String(kf), `${kf}`]) {
      assert.ok(!s.includes(secret), s);
      assert.ok(s.includes(toHex(kp.publicKey)), s);
    }
  });
});

describe('key file: encrypted (scrypt + AES-256-GCM)', () => {
  it(`round-trips at the default cost N=${SCRYPT_N}, with no private key in the text`, async () => {
    const kp = generateX25519();
    const text = await encodeKeyFile(kp, { purpose: 'SPK_A', passphrase: 'correct horse' });
    assert.ok(!text.includes(toHex(kp.privateKey)));
    const json = JSON.parse(text);
    assert.equal('private_key' in json, false);
    assert.deepEqual(Object.keys(json.encrypted), ['kdf', 'N', 'r', 'p', 'salt', 'nonce', 'ciphertext']);
    assert.deepEqual([json.encrypted.kdf, json.encrypted.N, json.encrypted.r, json.encrypted.p], ['scrypt', 32768, 8, 1]);
    assert.equal(Buffer.from(json.encrypted.salt, 'base64').length, 16);
    assert.equal(Buffer.from(json.encrypted.nonce, 'base64').length, 12);
    assert.equal(Buffer.from(json.encrypted.ciphertext, 'base64').length, 48);
    const kf = KeyFile.parse(text, FILE);
    assert.equal(kf.encrypted, true);
    assert.deepEqual(kf.publicKey, kp.publicKey); // the header needs no passphrase
    const back = await kf.unlock('correct horse');
    assert.deepEqual(back.privateKey, kp.privateKey);
  });

  it('wrong passphrase → ERR_PASSPHRASE naming the file', async () => {
    const text = await encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'right', ...FAST });
    await rejectsCode(KeyFile.parse(text, FILE).unlock('wrong'), 'ERR_PASSPHRASE', (e) => {
      assert.equal(e.message, `wrong passphrase for ${FILE}`);
      assert.ok(e.hint);
    });
  });

  it('no passphrase for an encrypted file → ERR_PASSPHRASE', async () => {
    const text = await encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'p', ...FAST });
    await rejectsCode(KeyFile.parse(text, FILE).unlock(), 'ERR_PASSPHRASE');
  });

  it('empty passphrase → ERR_PASSPHRASE', async () => {
    await rejectsCode(encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: '', ...FAST }), 'ERR_PASSPHRASE');
  });

  it('NFC-normalises the passphrase: composed and decomposed é both open the file', async () => {
    const text = await encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'caf\u00e9', ...FAST });
    await KeyFile.parse(text, FILE).unlock('cafe\u0301');
  });

  it('uses a fresh salt and nonce each time', async () => {
    const kp = generateX25519();
    const a = JSON.parse(await encodeKeyFile(kp, { purpose: 'IK_B', passphrase: 'p', ...FAST }));
    const b = JSON.parse(await encodeKeyFile(kp, { purpose: 'IK_B', passphrase: 'p', ...FAST }));
    assert.notEqual(a.encrypted.salt, b.encrypted.salt);
    assert.notEqual(a.encrypted.nonce, b.encrypted.nonce);
  });

  it('the AAD is the documented string', () => {
    assert.equal(
      Buffer.from(keyFileAad('x25519', 'IK_B', 'ab'.repeat(32))).toString(),
      `ockam-enroll/v1/keyfile|x25519|IK_B|${'ab'.repeat(32)}`,
    );
  });

  // AES-GCM cannot tell a wrong key from a modified ciphertext or AAD, so every tampering
  // that keeps the format valid is ERR_PASSPHRASE; format breakage is ERR_KEYSTORE_CORRUPT.
  describe('tampering that keeps the format valid → ERR_PASSPHRASE', () => {
    const flipB64 = (s: string, i: number): string => {
      const b = Buffer.from(s, 'base64');
      b[i]! ^= 1;
      return b.toString('base64');
    };
    const cases: [string, (j: any, other: any) => void][] = [
      ['ciphertext bit flipped', (j) => (j.encrypted.ciphertext = flipB64(j.encrypted.ciphertext, 3))],
      ['tag bit flipped', (j) => (j.encrypted.ciphertext = flipB64(j.encrypted.ciphertext, 47))],
      ['nonce changed', (j) => (j.encrypted.nonce = flipB64(j.encrypted.nonce, 0))],
      ['salt changed', (j) => (j.encrypted.salt = flipB64(j.encrypted.salt, 0))],
      ['purpose changed (AAD)', (j) => (j.purpose = 'SPK_B')],
      ['public_key swapped for another valid key (AAD)', (j, o) => (j.public_key = o.public_key)],
      ['encrypted block swapped in from another file (AAD)', (j, o) => (j.encrypted = o.encrypted)],
    ];
    for (const [name, mutate] of cases) {
      it(name, async () => {
        const j = JSON.parse(await encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'p', ...FAST }));
        const o = JSON.parse(await encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'p', ...FAST }));
        mutate(j, o);
        await rejectsCode(KeyFile.parse(JSON.stringify(j), FILE).unlock('p'), 'ERR_PASSPHRASE');
      });
    }
  });
});

describe('key file: parse errors → ERR_KEYSTORE_CORRUPT naming the file', async () => {
  const kp = generateX25519();
  const clear = JSON.parse(await encodeKeyFile(kp, { purpose: 'IK_B' }));
  const enc = JSON.parse(await encodeKeyFile(kp, { purpose: 'IK_B', passphrase: 'p', ...FAST }));
  const mutants: [string, unknown][] = [
    ['not JSON', '{"ockam-enroll-key": 1,'],
    ['an array', [clear]],
    ['null', null],
    ['no magic', { ...clear, 'ockam-enroll-key': undefined }],
    ['version 2', { ...clear, 'ockam-enroll-key': 2 }],
    ['version as string', { ...clear, 'ockam-enroll-key': '1' }],
    ['kind ed25519', { ...clear, kind: 'ed25519' }],
    ['purpose with |', { ...clear, purpose: 'IK|B' }],
    ['purpose a number', { ...clear, purpose: 7 }],
    ['created not a date', { ...clear, created: 'yesterday' }],
    ['created impossible', { ...clear, created: '2025-13-40T25:61:61Z' }],
    ['public_key upper case', { ...clear, public_key: clear.public_key.toUpperCase() }],
    ['public_key short', { ...clear, public_key: clear.public_key.slice(2) }],
    ['public_key bytes array', { ...clear, public_key: [...kp.publicKey] }],
    ['private_key short', { ...clear, private_key: clear.private_key.slice(2) }],
    ['private_key not hex', { ...clear, private_key: 'zz' + clear.private_key.slice(2) }],
    ['both private_key and encrypted', { ...enc, private_key: clear.private_key }],
    ['neither private_key nor encrypted', { ...clear, private_key: undefined }],
    ['unknown field', { ...clear, comment: 'hi' }],
    ['encrypted not an object', { ...enc, encrypted: 'x' }],
    ['encrypted.kdf argon2', { ...enc, encrypted: { ...enc.encrypted, kdf: 'argon2id' } }],
    ['encrypted.N not a power of two', { ...enc, encrypted: { ...enc.encrypted, N: 30000 } }],
    ['encrypted.N huge (memory exhaustion)', { ...enc, encrypted: { ...enc.encrypted, N: 2 ** 30 } }],
    ['encrypted.N as string', { ...enc, encrypted: { ...enc.encrypted, N: '32768' } }],
    ['encrypted.r zero', { ...enc, encrypted: { ...enc.encrypted, r: 0 } }],
    ['encrypted.p huge', { ...enc, encrypted: { ...enc.encrypted, p: 1000 } }],
    ['encrypted.salt 15 bytes', { ...enc, encrypted: { ...enc.encrypted, salt: Buffer.alloc(15).toString('base64') } }],
    ['encrypted.nonce not base64', { ...enc, encrypted: { ...enc.encrypted, nonce: '!!!!!!!!!!!!!!!!' } }],
    ['encrypted.nonce unpadded', { ...enc, encrypted: { ...enc.encrypted, nonce: enc.encrypted.nonce.replace(/=+$/, '') + 'A' } }],
    ['encrypted.ciphertext truncated', { ...enc, encrypted: { ...enc.encrypted, ciphertext: Buffer.alloc(47).toString('base64') } }],
    ['encrypted unknown field', { ...enc, encrypted: { ...enc.encrypted, iv: 'x' } }],
  ];
  for (const [name, value] of mutants) {
    it(name, () => {
      const text = typeof value === 'string' ? value : JSON.stringify(value);
      throwsCode(() => KeyFile.parse(text, FILE), 'ERR_KEYSTORE_CORRUPT', (e) => {
        assert.ok(e.message.startsWith(`key file ${FILE}: `), e.message);
        assert.ok(!e.message.includes(clear.private_key));
      });
    });
  }

  it('invalid UTF-8 bytes', () => {
    throwsCode(() => KeyFile.parse(new Uint8Array([0x7b, 0xff, 0x7d]), FILE), 'ERR_KEYSTORE_CORRUPT');
  });

  it('parses from UTF-8 bytes', () => {
    assert.equal(KeyFile.parse(new TextEncoder().encode(JSON.stringify(clear)), FILE).purpose, 'IK_B');
  });
});

describe('key file: test-only scrypt cost', () => {
  it('must still be a power of two', async () => {
    await rejectsCode(
      encodeKeyFile(generateX25519(), { purpose: 'IK_B', passphrase: 'p', insecureScryptNForTestingOnly: 1000 }),
      'ERR_INVALID_ARG',
    );
  });
});
