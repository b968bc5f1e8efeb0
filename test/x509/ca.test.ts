/**
 * The CA profiles (RFC 5280 §4.2): root, HTTPS server and client certificates; chain checks;
 * serial numbers; the CRL (§5).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  certificateIdentity,
  fingerprint,
  isCaCertificate,
  issueClientCertificate,
  issueServerCertificate,
  parseCertificate,
  randomSerial,
  whyNotIssuedBy,
} from '../../src/x509/ca.js';
import { buildCrl } from '../../src/x509/crl.js';
import { createCsr, parseCsr } from '../../src/x509/csr.js';
import { identityUri } from '../../src/x509/identity.js';
import { generateKeyPair } from '../../src/x509/keys.js';
import { x509 } from '../../src/x509/provider.js';
import { ID, isCode, makeCa, NOW } from './helpers.js';

async function clientCert(ca: Awaited<ReturnType<typeof makeCa>>, days = 90) {
  const keys = await generateKeyPair('ed25519');
  const csr = await parseCsr(await createCsr({ keys, keyType: 'ed25519', name: 'sensor-12', idHex: ID }));
  return issueClientCertificate({ ca: ca.ca, caKey: ca.keys.privateKey, publicKey: csr.publicKey, name: 'sensor-12', idHex: ID, now: NOW, days, serial: randomSerial() });
}

describe('CA profiles', () => {
  it('root: self-signed, CA:TRUE pathlen 0, keyCertSign|cRLSign, 10 years', async () => {
    const { ca } = await makeCa();
    assert.ok(await ca.isSelfSigned());
    assert.ok(isCaCertificate(ca));
    const bc = ca.getExtension(x509.BasicConstraintsExtension)!;
    assert.equal(bc.critical, true);
    assert.equal(bc.pathLength, 0);
    const ku = ca.getExtension(x509.KeyUsagesExtension)!;
    assert.equal(ku.usages, x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const years = (ca.notAfter.getTime() - ca.notBefore.getTime()) / (365.25 * 86400e3);
    assert.ok(years > 9.9 && years < 10.1, String(years));
  });

  it('server: serverAuth, SANs for the host plus localhost and loopback', async () => {
    const ca = await makeCa();
    const keys = await generateKeyPair('p256');
    const der = await issueServerCertificate({ ca: ca.ca, caKey: ca.keys.privateKey, publicKey: keys.publicKey, hosts: ['enroll.example.com'], now: NOW });
    const cert = parseCertificate(der, 'server');
    assert.equal(await whyNotIssuedBy(cert, ca.ca, NOW), undefined);
    assert.deepEqual([...cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [x509.ExtendedKeyUsage.serverAuth]);
    const names = cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.items.map((n) => `${n.type}:${n.value}`);
    assert.deepEqual(names.sort(), ['dns:enroll.example.com', 'dns:localhost', 'ip:127.0.0.1', 'ip:::1'].sort());
    assert.equal(isCaCertificate(cert), false);
  });

  it('client: clientAuth, CN = name, the identity URI, CA:FALSE, the CSR\'s key', async () => {
    const ca = await makeCa();
    const issued = await clientCert(ca);
    const cert = parseCertificate(issued.der, 'client');
    assert.equal(await whyNotIssuedBy(cert, ca.ca, NOW), undefined);
    assert.deepEqual([...cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages], [x509.ExtendedKeyUsage.clientAuth]);
    assert.deepEqual(certificateIdentity(cert), { name: 'sensor-12', idHex: ID });
    assert.equal(cert.getExtension(x509.SubjectAlternativeNameExtension)!.names.items[0]!.value, identityUri(ID));
    assert.equal(cert.getExtension(x509.BasicConstraintsExtension)!.ca, false);
    assert.equal(issued.notAfter - NOW, 90 * 86400);
    assert.equal(issued.serial, cert.serialNumber.toLowerCase());
  });

  it('refuses client certificate lifetimes out of range', async () => {
    const ca = await makeCa();
    await assert.rejects(clientCert(ca, 0), isCode('ERR_INVALID_ARG'));
    await assert.rejects(clientCert(ca, 3651), isCode('ERR_INVALID_ARG'));
  });

  it('whyNotIssuedBy names another CA, a leaf used as CA, and expiry', async () => {
    const ca = await makeCa('A');
    const other = await makeCa('B');
    const cert = parseCertificate((await clientCert(ca)).der, 'client');
    assert.match((await whyNotIssuedBy(cert, other.ca, NOW))!, /issuer/);
    assert.match((await whyNotIssuedBy(cert, cert, NOW))!, /not a CA/);
    assert.match((await whyNotIssuedBy(cert, ca.ca, NOW + 91 * 86400))!, /not valid now/);
    // Same name, other key: the signature check catches it.
    const twin = await makeCa('ockam-enroll root CA');
    const real = await makeCa('ockam-enroll root CA');
    const c2 = parseCertificate((await clientCert(real)).der, 'client');
    assert.match((await whyNotIssuedBy(c2, twin.ca, NOW))!, /not signed by the CA/);
  });

  it('serials: 16 bytes, positive, top bits 01, distinct', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const s = randomSerial();
      assert.match(s, /^[4-7][0-9a-f]{31}$/);
      seen.add(s);
    }
    assert.equal(seen.size, 200);
  });

  it('fingerprint is SHA-256 over the DER, lowercase hex', async () => {
    const { der } = await makeCa();
    assert.match(fingerprint(der), /^[0-9a-f]{64}$/);
    assert.equal(fingerprint(der), Buffer.from(await (await makeCaThumb(der))).toString('hex'));
  });
});

async function makeCaThumb(der: Uint8Array): Promise<ArrayBuffer> {
  return new x509.X509Certificate(der).getThumbprint('SHA-256');
}

describe('CRL (RFC 5280 §5)', () => {
  it('lists the serials, verifies with the CA key, has nextUpdate, CRL number and AKI', async () => {
    const ca = await makeCa();
    const a = await clientCert(ca);
    const b = await clientCert(ca);
    const der = await buildCrl({ ca: ca.ca, caKey: ca.keys.privateKey, entries: [{ serial: a.serial, revokedAt: NOW - 10 }, { serial: b.serial, revokedAt: NOW }], now: NOW, crlNumber: 300 });
    const crl = new x509.X509Crl(der);
    assert.ok(await crl.verify({ publicKey: ca.ca }));
    assert.equal(crl.nextUpdate!.getTime() / 1000, NOW + 86400);
    assert.ok(crl.findRevoked(a.serial));
    assert.ok(crl.findRevoked(b.serial));
    assert.equal(crl.entries.length, 2);
    const number = crl.getExtension('2.5.29.20')!;
    // INTEGER 300 = 02 02 01 2c
    assert.equal(Buffer.from(number.value).toString('hex'), '0202012c');
    assert.ok(crl.getExtension('2.5.29.35'));
  });

  it('an empty CRL is still a signed CRL', async () => {
    const ca = await makeCa();
    const crl = new x509.X509Crl(await buildCrl({ ca: ca.ca, caKey: ca.keys.privateKey, entries: [], now: NOW, crlNumber: 1 }));
    assert.equal(crl.entries.length, 0);
    assert.ok(await crl.verify({ publicKey: ca.ca }));
  });
});
