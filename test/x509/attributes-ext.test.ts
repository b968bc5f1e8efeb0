/**
 * The enrollee-attributes certificate extension (src/x509/attributes-ext.ts): its DER, read
 * back and refused when it deviates; the fast path (cert-template.ts) and the library path
 * (ca.ts issueClientCertificate) put it into the same tbsCertificate, byte for byte; and
 * openssl, an independent implementation, shows it in `x509 -text` and verifies the
 * certificate.
 */
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate as NodeX509 } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueClientCertificate, randomSerial } from '../../src/x509/ca.js';
import { buildClientCertificate, clientCertTemplate, tbsOf, type ClientCertTemplate } from '../../src/x509/cert-template.js';
import { ATTRIBUTES_EXT_OID, ATTRIBUTES_EXT_OID_DER, attributesExtension, certificateAttributes, readAttributesExtension } from '../../src/x509/attributes-ext.js';
import { parseCsr } from '../../src/x509/csr.js';
import { parseCsrDer } from '../../src/x509/csr-der.js';
import { tlv } from '../../src/x509/der.js';
import { identityUri } from '../../src/x509/identity.js';
import { generateKeyPair, subtleExportPkcs8 } from '../../src/x509/keys.js';
import { x509 } from '../../src/x509/provider.js';
import { isCode, makeCa, NOW } from './helpers.js';

const pem = (der: Uint8Array, label: string) => `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;

describe('attributes extension: encoding', () => {
  it('has its documented OID, every arc under 2^28 (RFC 5280 §4.1.2.4)', () => {
    assert.equal(ATTRIBUTES_EXT_OID, '1.3.6.1.4.1.32473.20.1');
    assert.ok(ATTRIBUTES_EXT_OID.split('.').every((a) => Number(a) < 2 ** 28));
    // The DER of the OID, checked against openssl's own encoder.
    const dir = mkdtempSync(join(tmpdir(), 'attrs-oid-'));
    let out: Buffer;
    try {
      execFileSync('openssl', ['asn1parse', '-genstr', `OID:${ATTRIBUTES_EXT_OID}`, '-noout', '-out', join(dir, 'oid.der')]);
      out = readFileSync(join(dir, 'oid.der'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    assert.equal(Buffer.from(ATTRIBUTES_EXT_OID_DER).toString('hex'), out.toString('hex'));
  });

  it('encodes sorted key/value UTF8String pairs and reads them back', () => {
    const der = attributesExtension({ site: 'berlin', role: 'sensor' })!;
    const pair = (k: string, v: string) => tlv(0x30, tlv(0x0c, Buffer.from(k)), tlv(0x0c, Buffer.from(v)));
    const expected = tlv(0x30, ATTRIBUTES_EXT_OID_DER, tlv(0x04, tlv(0x30, pair('role', 'sensor'), pair('site', 'berlin'))));
    assert.equal(Buffer.from(der).toString('hex'), Buffer.from(expected).toString('hex'));
    assert.deepEqual(readAttributesExtension(der), { role: 'sensor', site: 'berlin' });
    assert.deepEqual(readAttributesExtension(attributesExtension({ ort: 'Köln' })!), { ort: 'Köln' });
    assert.equal(attributesExtension({}), undefined);
    assert.equal(attributesExtension(undefined), undefined);
  });

  it('refuses what deviates: order, duplicates, bad keys, empty lists, other OIDs', () => {
    const pair = (k: string, v: string) => tlv(0x30, tlv(0x0c, Buffer.from(k)), tlv(0x0c, Buffer.from(v)));
    const ext = (...pairs: Uint8Array[]) => tlv(0x30, ATTRIBUTES_EXT_OID_DER, tlv(0x04, tlv(0x30, ...pairs)));
    assert.throws(() => readAttributesExtension(ext(pair('site', 'x'), pair('role', 'y'))), isCode('ERR_DECODE', /ascending/));
    assert.throws(() => readAttributesExtension(ext(pair('role', 'x'), pair('role', 'y'))), isCode('ERR_DECODE', /ascending/));
    assert.throws(() => readAttributesExtension(ext(pair('Role', 'x'))), isCode('ERR_DECODE', /lower-case/));
    assert.throws(() => readAttributesExtension(ext(pair('role', 'x'.repeat(65)))), isCode('ERR_DECODE', /65 bytes/));
    assert.throws(() => readAttributesExtension(ext()), isCode('ERR_DECODE', /no attribute/));
    assert.throws(() => readAttributesExtension(tlv(0x30, tlv(0x06, Uint8Array.of(0x2a, 0x03)), tlv(0x04, tlv(0x30, pair('a', 'b'))))), isCode('ERR_DECODE', /not the attributes extension/));
    assert.throws(() => attributesExtension({ role: 'a\u0007' }), isCode('ERR_INVALID_ARG', /control character/));
  });
});

describe('attributes extension in a client certificate', () => {
  let CA: Awaited<ReturnType<typeof makeCa>>;
  let TEMPLATE: ClientCertTemplate;
  before(async () => {
    CA = await makeCa();
    TEMPLATE = clientCertTemplate(CA.der, createPrivateKey({ key: Buffer.from(await subtleExportPkcs8(CA.keys.privateKey)), format: 'der', type: 'pkcs8' }));
  });

  it('fast path and library path make the same tbsCertificate; openssl shows the extension and verifies the certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'attrs-ext-'));
    try {
      writeFileSync(join(dir, 'ca.pem'), pem(CA.der, 'CERTIFICATE'));
      for (const [i, keyType] of (['p256', 'ed25519'] as const).entries()) {
        const keys = await generateKeyPair(keyType);
        const idHex = (i === 0 ? 'ab' : 'cd').repeat(32);
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({
          name: [{ CN: ['sensor-12'] }] as never,
          keys,
          signingAlgorithm: keyType === 'p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' },
          extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(idHex) }])],
        });
        const der = new Uint8Array(csr.rawData);
        const extraExtension = attributesExtension({ role: 'sensor', site: 'berlin' })!;
        const serial = randomSerial();
        const o = { name: 'sensor-12', idHex, now: NOW, days: 90, serial, extraExtension };
        const ref = await issueClientCertificate({ ca: CA.ca, caKey: CA.keys.privateKey, publicKey: (await parseCsr(der)).publicKey, ...o });
        const got = buildClientCertificate(TEMPLATE, { spki: parseCsrDer(der).spki, ...o });
        assert.equal(Buffer.from(tbsOf(got.der)).toString('hex'), Buffer.from(tbsOf(ref.der)).toString('hex'), `tbsCertificate (${keyType})`);
        assert.ok(new NodeX509(Buffer.from(got.der)).verify(createPublicKey(CA.ca.publicKey.toString('pem'))), 'signed by the CA');
        // Read back from the certificate: the last of its seven extensions.
        assert.equal(new x509.X509Certificate(got.der).extensions.length, 7);
        assert.deepEqual(certificateAttributes(got.der), { role: 'sensor', site: 'berlin' });
        assert.deepEqual(certificateAttributes(buildClientCertificate(TEMPLATE, { spki: parseCsrDer(der).spki, name: 'sensor-12', idHex, now: NOW, days: 90, serial }).der), {});
        const file = join(dir, `c${i}.pem`);
        writeFileSync(file, pem(got.der, 'CERTIFICATE'));
        const text = execFileSync('openssl', ['x509', '-in', file, '-noout', '-text'], { encoding: 'utf8' });
        // Unknown to openssl: shown by its OID, then the value's bytes with the strings readable.
        const at = text.indexOf(`${ATTRIBUTES_EXT_OID}:`);
        assert.ok(at > 0, `openssl x509 -text names ${ATTRIBUTES_EXT_OID}:\n${text}`);
        assert.match(text.slice(at), /^[^\n]*\n\s+[^\n]*role\.\.sensor[^\n]*site\.\.berlin/, text.slice(at, at + 200));
        assert.doesNotMatch(text.slice(at).split('\n')[0]!, /critical/, 'not critical');
        assert.match(execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dir, 'ca.pem'), file], { encoding: 'utf8' }), /: OK/);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
