/**
 * The token flow's encrypted TLS key (src/x509/encrypted-key.ts): a PKCS#8
 * EncryptedPrivateKeyInfo (RFC 5958) with PBES2 (RFC 8018) over scrypt (RFC 7914) and
 * AES-256-CBC, read back by node:crypto (OpenSSL). openssl and curl read it in
 * test/cli/token.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { isEnrollError } from '../../src/errors.js';
import { encryptPrivateKeyPem, isEncryptedPem, PKCS8_SCRYPT_N, readPrivateKeyPem } from '../../src/x509/encrypted-key.js';

const der = (pem: string): Buffer => Buffer.from(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64');

describe('encrypted PKCS#8 (PBES2, scrypt, AES-256-CBC)', () => {
  for (const type of ['ec', 'ed25519'] as const) {
    it(`${type}: round-trips under the passphrase; the PEM is ENCRYPTED PRIVATE KEY`, async () => {
      const { privateKey } = type === 'ec' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519');
      const pem = await encryptPrivateKeyPem(privateKey, 'correct horse');
      assert.match(pem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END ENCRYPTED PRIVATE KEY-----\n$/);
      assert.equal(isEncryptedPem(pem), true);
      const back = readPrivateKeyPem(pem, 'k.pem', 'correct horse');
      assert.ok(back.export({ type: 'pkcs8', format: 'der' }).equals(privateKey.export({ type: 'pkcs8', format: 'der' })));
      // Any other OpenSSL-based reader gets the same key.
      assert.ok(createPrivateKey({ key: pem, format: 'pem', passphrase: 'correct horse' }).equals(privateKey));
    });
  }

  it('names PBES2, id-scrypt with salt 16, N = 16384, r = 8, p = 1, keyLength 32, and aes256-CBC with a 16-byte IV', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const a = der(await encryptPrivateKeyPem(privateKey, 'pw'));
    const b = der(await encryptPrivateKeyPem(privateKey, 'pw'));
    const hex = a.toString('hex');
    assert.ok(hex.includes('06092a864886f70d01050d'), 'PBES2');
    assert.ok(hex.includes('06092b06010401da47040b301f' + '0410'), 'id-scrypt, params: a 16-byte salt first');
    assert.ok(hex.includes('02024000' + '020108' + '020101' + '020120'), 'N = 16384, r = 8, p = 1, keyLength 32');
    assert.equal(PKCS8_SCRYPT_N, 16384);
    assert.ok(hex.includes('060960864801650304012a0410'), 'aes256-CBC with a 16-byte IV');
    assert.notDeepEqual(a, b, 'a fresh salt and IV each time');
  });

  it('an encrypted key without a passphrase, or with a wrong one, is ERR_PASSPHRASE naming the file; a plain PEM reads without one', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pem = await encryptPrivateKeyPem(privateKey, 'right');
    assert.throws(() => readPrivateKeyPem(pem, '/x/tls-key.pem', undefined), (e: unknown) => isEnrollError(e, 'ERR_PASSPHRASE') && /\/x\/tls-key\.pem is encrypted and no passphrase was given/.test((e as Error).message));
    assert.throws(() => readPrivateKeyPem(pem, '/x/tls-key.pem', 'wrong'), (e: unknown) => isEnrollError(e, 'ERR_PASSPHRASE') && /wrong passphrase for \/x\/tls-key\.pem/.test((e as Error).message));
    const plain = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.equal(isEncryptedPem(plain), false);
    assert.ok(readPrivateKeyPem(plain, 'p.pem', undefined).equals(privateKey));
    assert.throws(() => readPrivateKeyPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n', 'p.pem', undefined), (e: unknown) => isEnrollError(e, 'ERR_KEY_INVALID'));
    await assert.rejects(encryptPrivateKeyPem(privateKey, ''), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
  });

  it('the passphrase is NFC-normalised, as for key files: composed and decomposed spellings open the same key', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    const pem = await encryptPrivateKeyPem(privateKey, 'caf\u00e9');
    assert.ok(readPrivateKeyPem(pem, 'k.pem', 'cafe\u0301').equals(privateKey));
  });
});
