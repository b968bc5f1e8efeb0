/**
 * PKCS#10 requests (RFC 2986) as the service checks them: structure and DER, key and
 * signature algorithms, proof of possession, then the identity (CN and URI SAN).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { webcrypto } from 'node:crypto';
import { checkCsrIdentity, createCsr, MAX_CSR_DER, parseCsr } from '../../src/x509/csr.js';
import { identityUri } from '../../src/x509/identity.js';
import { generateKeyPair, type KeyType } from '../../src/x509/keys.js';
import { x509 } from '../../src/x509/provider.js';
import { ID, isCode } from './helpers.js';

const NAME = 'sensor-12';

async function customCsr(opts: { name?: unknown; sans?: { type: string; value: string }[] | null; keyType?: KeyType }): Promise<Uint8Array> {
  const keyType = opts.keyType ?? 'p256';
  const keys = await generateKeyPair(keyType);
  const sans = opts.sans === undefined ? [{ type: 'url', value: identityUri(ID) }] : opts.sans;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: (opts.name ?? [{ CN: [NAME] }]) as never,
    keys,
    signingAlgorithm: keyType === 'p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' },
    extensions: sans === null ? [] : [new x509.SubjectAlternativeNameExtension(sans as never)],
  });
  return new Uint8Array(csr.rawData);
}

describe('CSR: createCsr → parseCsr → checkCsrIdentity', () => {
  for (const keyType of ['p256', 'ed25519'] as const) {
    it(`accepts our own ${keyType} request for the identity`, async () => {
      const keys = await generateKeyPair(keyType);
      const der = await createCsr({ keys, keyType, name: NAME, idHex: ID });
      const csr = await parseCsr(der);
      assert.equal(csr.keyType, keyType);
      assert.deepEqual(csr.commonNames, [NAME]);
      assert.deepEqual(csr.altNames, [{ type: 'url', value: identityUri(ID) }]);
      checkCsrIdentity(csr, { name: NAME, idHex: ID });
    });
  }

  it('refuses to build a request for a bad name or id', async () => {
    const keys = await generateKeyPair('p256');
    await assert.rejects(createCsr({ keys, keyType: 'p256', name: 'a,b', idHex: ID }), isCode('ERR_INVALID_ARG'));
    await assert.rejects(createCsr({ keys, keyType: 'p256', name: NAME, idHex: 'AB'.repeat(32) }), isCode('ERR_INVALID_ARG'));
  });
});

describe('CSR: parseCsr refuses (ERR_CSR_INVALID)', () => {
  it('empty and oversized input, before parsing', async () => {
    await assert.rejects(parseCsr(new Uint8Array(0)), isCode('ERR_CSR_INVALID', 'empty'));
    await assert.rejects(parseCsr(new Uint8Array(MAX_CSR_DER + 1)), isCode('ERR_CSR_INVALID', 'more than'));
  });

  it('bytes that are not a PKCS#10 structure', async () => {
    await assert.rejects(parseCsr(Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x00)), isCode('ERR_CSR_INVALID', 'not a PKCS#10'));
    await assert.rejects(parseCsr(new TextEncoder().encode('-----BEGIN CERTIFICATE REQUEST-----')), isCode('ERR_CSR_INVALID'));
  });

  it('BER that is not DER (a non-minimal length)', async () => {
    const der = await customCsr({});
    assert.equal(der[0], 0x30);
    // Re-encode the outer length in one more byte than needed: valid BER, not DER.
    const lenBytes = der[1]! & 0x7f;
    assert.ok(der[1]! & 0x80, 'the outer length is in long form');
    const ber = new Uint8Array(der.length + 1);
    ber[0] = 0x30;
    ber[1] = 0x80 | (lenBytes + 1);
    ber[2] = 0;
    ber.set(der.subarray(2), 3);
    await assert.rejects(parseCsr(ber), isCode('ERR_CSR_INVALID'));
  });

  it('a signature that does not verify (proof of possession)', async () => {
    const der = await customCsr({});
    const bad = der.slice();
    bad[bad.length - 5] ^= 0x01;
    await assert.rejects(parseCsr(bad), isCode('ERR_CSR_INVALID', 'signature'));
  });

  it('an RSA key, and an EC key on another curve', async () => {
    for (const [alg, sign] of [
      [{ name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: Uint8Array.of(1, 0, 1), hash: 'SHA-256' }, { name: 'RSASSA-PKCS1-v1_5' }],
      [{ name: 'ECDSA', namedCurve: 'P-384' }, { name: 'ECDSA', hash: 'SHA-384' }],
    ] as const) {
      const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${NAME}`, keys: keys as never, signingAlgorithm: sign });
      await assert.rejects(parseCsr(new Uint8Array(csr.rawData)), isCode('ERR_CSR_INVALID'));
    }
  });
});

describe('CSR: checkCsrIdentity refuses (ERR_CSR_IDENTITY)', () => {
  const expect = { name: NAME, idHex: ID };
  const cases: [string, Parameters<typeof customCsr>[0], RegExp | string][] = [
    ['another CN', { name: [{ CN: ['sensor-13'] }] }, 'sensor-13'],
    ['a CN differing only in case', { name: [{ CN: ['Sensor-12'] }] }, 'Sensor-12'],
    ['an extra subject attribute', { name: [{ CN: [NAME] }, { O: ['evil'] }] }, 'exactly one CN'],
    ['two CNs', { name: [{ CN: [NAME] }, { CN: [NAME] }] }, 'exactly one CN'],
    ['no subject', { name: [] }, 'exactly one CN'],
    ['no subjectAltName', { sans: null }, 'subjectAltName'],
    ['another identity URI', { sans: [{ type: 'url', value: identityUri('cd'.repeat(32)) }] }, 'subjectAltName'],
    ['an extra DNS name', { sans: [{ type: 'url', value: identityUri(ID) }, { type: 'dns', value: 'evil.example' }] }, 'subjectAltName'],
    ['a DNS name instead of the URI', { sans: [{ type: 'dns', value: identityUri(ID) }] }, 'subjectAltName'],
  ];
  for (const [what, opts, message] of cases) {
    it(what, async () => {
      const csr = await parseCsr(await customCsr(opts));
      assert.throws(() => checkCsrIdentity(csr, expect), isCode('ERR_CSR_IDENTITY', message));
    });
  }
});
