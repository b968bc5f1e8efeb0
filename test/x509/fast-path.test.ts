/**
 * The token flow's fast path (issue 23 item 5) against the library path it replaced, which
 * stays here as the reference: on 1,000 random requests, parseCsrDer (csr-der.ts) accepts
 * and refuses exactly what parseCsr (@peculiar/x509) does, with the same code and the same
 * names; buildClientCertificate (cert-template.ts) makes the tbsCertificate of
 * issueClientCertificate byte for byte, with a signature that verifies under the CA; the
 * certs-only PKCS#7 from the fixed prefix is encodeCertsOnly's, byte for byte; and openssl
 * verifies samples as TLS client certificates of the CA.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, randomBytes, randomInt, X509Certificate as NodeX509 } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isEnrollError } from '../../src/errors.js';
import { issueClientCertificate, randomSerial } from '../../src/x509/ca.js';
import { buildClientCertificate, clientCertTemplate, tbsOf, type ClientCertTemplate } from '../../src/x509/cert-template.js';
import { checkCsrIdentity, parseCsr } from '../../src/x509/csr.js';
import { parseCsrDer } from '../../src/x509/csr-der.js';
import { readDer, readTlv, DerError } from '../../src/x509/der.js';
import { identityUri } from '../../src/x509/identity.js';
import { generateKeyPair, subtleExportPkcs8, type CryptoKeyPair, type KeyType } from '../../src/x509/keys.js';
import { encodeCertsOnly, encodeCertsOnlyDer } from '../../src/x509/pkcs7.js';
import { x509 } from '../../src/x509/provider.js';
import { makeCa, NOW } from './helpers.js';

const RUNS = Number(process.env.OCKAM_ENROLL_FAST_PATH_RUNS ?? 1000);
const NAME_CHARS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@- ';
const pick = <T>(xs: readonly T[]): T => xs[randomInt(xs.length)]!;

function randomName(): string {
  const n = 1 + randomInt(64);
  let s = '';
  for (let i = 0; i < n; i++) s += pick([...NAME_CHARS]);
  s = s.trim();
  return s.length === 0 ? 'x' : s;
}

type Outcome = { ok: true; keyType: KeyType; spki: string; commonNames: string[]; subjectAttributes: number; altNames: { type: string; value: string }[]; identity: string } | { ok: false; code: string };

function outcomeOf(run: () => { keyType: KeyType; spki: string; commonNames: string[]; subjectAttributes: number; altNames: { type: string; value: string }[] }, expect: { name: string; idHex: string }): Outcome {
  try {
    const r = run();
    let identity = 'ok';
    try {
      checkCsrIdentity(r, expect);
    } catch (e) {
      if (!isEnrollError(e)) throw e;
      identity = e.code;
    }
    return { ok: true, ...r, identity };
  } catch (e) {
    if (!isEnrollError(e)) throw e;
    return { ok: false, code: e.code };
  }
}

async function outcomeLibrary(der: Uint8Array, expect: { name: string; idHex: string }): Promise<Outcome> {
  try {
    const csr = await parseCsr(der);
    return outcomeOf(() => ({
      keyType: csr.keyType,
      spki: Buffer.from(csr.publicKey.rawData).toString('hex'),
      commonNames: csr.commonNames,
      subjectAttributes: csr.subjectAttributes,
      altNames: csr.altNames.filter((n) => n.type === 'url'),
    }), expect);
  } catch (e) {
    if (!isEnrollError(e)) throw e;
    return { ok: false, code: e.code };
  }
}

function outcomeFast(der: Uint8Array, expect: { name: string; idHex: string }): Outcome {
  return outcomeOf(() => {
    const csr = parseCsrDer(der);
    return { keyType: csr.keyType, spki: Buffer.from(csr.spki).toString('hex'), commonNames: csr.commonNames, subjectAttributes: csr.subjectAttributes, altNames: csr.altNames.filter((n) => n.type === 'url') };
  }, expect);
}


/**
 * Whether the CSR's signature (the last field of the outer SEQUENCE, a BIT STRING) holds an
 * ECDSA-Sig-Value in DER. The outer DER check cannot see inside that BIT STRING, and the
 * library path's ECDSA check reads a malformed one leniently (a flipped length byte inside it
 * was accepted), where node's verify, which the fast path uses, refuses it: the signature is
 * DER-encoded (RFC 5480 §2.2, RFC 5758 §3.2), so the fast path is right to be stricter here.
 */
function ecdsaSignatureIsDer(der: Uint8Array): boolean {
  try {
    const top = readDer(der);
    let last = readTlv(der, top.body, top.end);
    while (last.end < top.end) last = readTlv(der, last.end, top.end);
    if (der[last.start] !== 0x03 || der[last.body] !== 0) return false;
    const sig = readDer(der.subarray(last.body + 1, last.end));
    return der[last.body + 1] === 0x30 && sig.end === last.end - last.body - 1;
  } catch {
    return false;
  }
}

let CA: Awaited<ReturnType<typeof makeCa>>;
let TEMPLATE: ClientCertTemplate;
const KEYS: Record<KeyType, CryptoKeyPair[]> = { p256: [], ed25519: [] };

before(async () => {
  CA = await makeCa();
  const pkcs8 = await subtleExportPkcs8(CA.keys.privateKey);
  TEMPLATE = clientCertTemplate(CA.der, createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' }));
  for (let i = 0; i < 16; i++) {
    KEYS.p256.push(await generateKeyPair('p256'));
    KEYS.ed25519.push(await generateKeyPair('ed25519'));
  }
});

interface Variant {
  what: string;
  name: unknown;
  sans: { type: string; value: string }[] | null;
  extra?: boolean;
  flip?: boolean;
}

function variant(name: string, idHex: string): Variant {
  const uri = { type: 'url', value: identityUri(idHex) };
  switch (randomInt(12)) {
    case 0:
      return { what: 'another CN', name: [{ CN: [randomName()] }], sans: [uri] };
    case 1:
      return { what: 'an extra attribute', name: [{ CN: [name] }, { O: ['evil'] }], sans: [uri] };
    case 2:
      return { what: 'two CNs', name: [{ CN: [name] }, { CN: [name] }], sans: [uri] };
    case 3:
      return { what: 'no SAN', name: [{ CN: [name] }], sans: null };
    case 4:
      return { what: 'an extra DNS name', name: [{ CN: [name] }], sans: [uri, { type: 'dns', value: 'evil.example' }] };
    case 5:
      return { what: 'another URI', name: [{ CN: [name] }], sans: [{ type: 'url', value: identityUri(randomBytes(32).toString('hex')) }] };
    case 6:
    case 7:
      return { what: 'a flipped byte', name: [{ CN: [name] }], sans: [uri], flip: true };
    case 8:
      return { what: 'an extra extension', name: [{ CN: [name] }], sans: [uri], extra: true };
    default:
      return { what: 'the identity', name: [{ CN: [name] }], sans: [uri] };
  }
}

describe('token fast path vs the library path (the reference)', () => {
  it(`agrees on ${RUNS} random requests, and builds the same certificates byte for byte`, async () => {
    let accepted = 0;
    let refused = 0;
    const samples: Uint8Array[] = [];
    for (let i = 0; i < RUNS; i++) {
      const keyType: KeyType = randomInt(2) === 0 ? 'p256' : 'ed25519';
      const keys = pick(KEYS[keyType]);
      const name = randomName();
      const idHex = randomBytes(32).toString('hex');
      const v = variant(name, idHex);
      const extensions: InstanceType<typeof x509.Extension>[] = [];
      if (v.sans) extensions.push(new x509.SubjectAlternativeNameExtension(v.sans as never));
      if (v.extra) extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true));
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: v.name as never,
        keys,
        signingAlgorithm: keyType === 'p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' },
        extensions,
      });
      const der = new Uint8Array(csr.rawData);
      if (v.flip) der[randomInt(der.length)] ^= 1 << randomInt(8);
      const expect = { name, idHex };
      const lib = await outcomeLibrary(der, expect);
      const fast = outcomeFast(der, expect);
      // The one place the library is laxer than the fast path on what a flip can make (above).
      const want: Outcome = lib.ok && keyType === 'p256' && !ecdsaSignatureIsDer(der) ? { ok: false, code: 'ERR_CSR_INVALID' } : lib;
      assert.deepEqual(fast, want, `${v.what} (${keyType}, ${JSON.stringify(name)}): ${Buffer.from(der).toString('hex')}`);
      if (!want.ok || want.identity !== 'ok') {
        refused++;
        continue;
      }
      accepted++;
      const serial = randomSerial();
      const days = 1 + randomInt(3650);
      const now = NOW + randomInt(86400 * 365 * 20);
      const ref = await issueClientCertificate({ ca: CA.ca, caKey: CA.keys.privateKey, publicKey: (await parseCsr(der)).publicKey, name, idHex, now, days, serial });
      const got = buildClientCertificate(TEMPLATE, { spki: parseCsrDer(der).spki, name, idHex, now, days, serial });
      assert.equal(Buffer.from(tbsOf(got.der)).toString('hex'), Buffer.from(tbsOf(ref.der)).toString('hex'), `tbsCertificate for ${JSON.stringify(name)}`);
      assert.deepEqual({ serial: got.serial, notBefore: got.notBefore, notAfter: got.notAfter }, { serial: ref.serial, notBefore: ref.notBefore, notAfter: ref.notAfter });
      // The whole certificate is strict DER, and its signature verifies under the CA.
      readDer(got.der);
      const nodeCert = new NodeX509(Buffer.from(got.der));
      assert.ok(nodeCert.verify(createPublicKey(CA.ca.publicKey.toString('pem'))), 'signed by the CA');
      assert.equal(Buffer.from(encodeCertsOnlyDer([got.der])).toString('hex'), Buffer.from(encodeCertsOnly([got.der])).toString('hex'), 'certs-only PKCS#7');
      if (samples.length < 8 && (samples.length < 4 ? keyType === 'p256' : keyType === 'ed25519')) {
        // Within the CA's own validity (the random ones above may start up to 20 years on).
        samples.push(buildClientCertificate(TEMPLATE, { spki: parseCsrDer(der).spki, name, idHex, now: NOW, days: 90, serial: randomSerial() }).der);
      }
    }
    assert.ok(accepted > RUNS / 4, `accepted ${accepted}`);
    assert.ok(refused > RUNS / 4, `refused ${refused}`);
    // openssl verify on samples: a TLS client certificate of the CA, by an independent implementation.
    const dir = mkdtempSync(join(tmpdir(), 'fast-path-'));
    try {
      const pem = (der: Uint8Array, label: string) => `-----BEGIN ${label}-----\n${Buffer.from(der).toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END ${label}-----\n`;
      writeFileSync(join(dir, 'ca.pem'), pem(CA.der, 'CERTIFICATE'));
      for (const [i, s] of samples.entries()) {
        writeFileSync(join(dir, `c${i}.pem`), pem(s, 'CERTIFICATE'));
        const out = execFileSync('openssl', ['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', join(dir, 'ca.pem'), join(dir, `c${i}.pem`)], { encoding: 'utf8' });
        assert.match(out, /: OK/);
      }
      assert.ok(samples.length >= 4, `openssl checked ${samples.length} samples`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an ECDSA signature whose own SEQUENCE length is wrong is refused by the fast path (the library read it leniently)', async () => {
    // Found by the random run above: one flipped bit made the ECDSA-Sig-Value's length 0x41
    // where its two INTEGERs take 0x45. The same request with the length restored verifies.
    const bad = new Uint8Array(Buffer.from('3082015f30820105020100302b31293027060355040313205946674763734a64646a66317a774d6739336c4641416331757466352e3855323059301306072a8648ce3d020106082a8648ce3d030107034200044eecad872d44c71b1ff9652b8982484336d3a7351b3980b2fcb44f5ffd6ee760a92ef234fde4a1024f0ba6fa012f84f8da8b1d3d29154fd4e6002ffc18c2be7ea078307606092a864886f70d01090e3169306730650603551d11045e305c865a75726e3a6f636b616d2d656e726f6c6c3a6964656e746974793a36633362306136306131376431336237646163613939326566396532393366313537306535313832373131313339353730366264323739343962323462393861300a06082a8648ce3d0403020348003041022007e3d1fa7dac95725c7c07a778e5d247f9d57e466c7cef16f177e480b5dff591022100be9b180209a31929e5f1f9eb8fea8594a47c821d51f8d826a80199bccc4be85b', 'hex'));
    const expect = { name: 'YFgGcsJddjf1zwMg93lFAAc1utf5.8U2', idHex: '6c3b0a60a17d13b7daca992ef9e293f1570e51827111395706bd27949b24b98a' };
    assert.equal(ecdsaSignatureIsDer(bad), false);
    assert.deepEqual(outcomeFast(bad, expect), { ok: false, code: 'ERR_CSR_INVALID' });
    const good = bad.slice();
    const at = good.length - 0x45 - 2 + 1;
    assert.equal(good[at], 0x41);
    good[at] = 0x45;
    assert.equal(ecdsaSignatureIsDer(good), true);
    const ok = outcomeFast(good, expect);
    assert.ok(ok.ok && ok.identity === 'ok', JSON.stringify(ok));
    assert.deepEqual(await outcomeLibrary(good, expect), ok);
  });

  it('the extra extension goes last, and one of the profile\'s own is refused', async () => {
    const keys = KEYS.p256[0]!;
    const idHex = 'ab'.repeat(32);
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: ['n'] }] as never, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' }, extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(idHex) }])] });
    const spki = parseCsrDer(new Uint8Array(csr.rawData)).spki;
    const extra = new Uint8Array(new x509.Extension('1.3.6.1.4.1.99999.1', false, Uint8Array.of(0x0c, 0x01, 0x61)).rawData);
    const got = buildClientCertificate(TEMPLATE, { spki, name: 'n', idHex, now: NOW, days: 1, serial: randomSerial(), extraExtension: extra });
    const cert = new x509.X509Certificate(got.der);
    assert.equal(cert.extensions.at(-1)!.type, '1.3.6.1.4.1.99999.1');
    assert.equal(cert.extensions.length, 7);
    const bc = new Uint8Array(new x509.BasicConstraintsExtension(true, 0, true).rawData);
    assert.throws(() => buildClientCertificate(TEMPLATE, { spki, name: 'n', idHex, now: NOW, days: 1, serial: randomSerial(), extraExtension: bc }), (e: unknown) => isEnrollError(e) && e.code === 'ERR_INVALID_ARG');
  });
});

describe('token fast path: every single-bit flip of a request', () => {
  // A flip anywhere is refused, and only as ERR_CSR_INVALID: the decoder's own DerError must
  // never escape (the random run above once hit a flipped tag on the key algorithm's OID).
  for (const keyType of ['p256', 'ed25519'] as const) {
    it(`of a ${keyType} request is refused as ERR_CSR_INVALID`, async () => {
      const idHex = 'cd'.repeat(32);
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: [{ CN: ['sensor-1'] }] as never,
        keys: KEYS[keyType][0]!,
        signingAlgorithm: keyType === 'p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' },
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(idHex) }])],
      });
      const good = new Uint8Array(csr.rawData);
      assert.equal(parseCsrDer(good).keyType, keyType);
      let flips = 0;
      for (let i = 0; i < good.length; i++) {
        for (let bit = 0; bit < 8; bit++) {
          const der = Uint8Array.from(good);
          der[i] ^= 1 << bit;
          assert.throws(() => parseCsrDer(der), (e: unknown) => isEnrollError(e) && e.code === 'ERR_CSR_INVALID', `byte ${i} bit ${bit}`);
          flips++;
        }
      }
      assert.equal(flips, good.length * 8);
    });
  }
});

describe('DER reader: BER that is not DER is refused', () => {
  const cases: [string, string][] = [
    ['indefinite length', '3080020100' + '0000'],
    ['a long-form length for a short value', '30810302' + '0100'],
    ['a length with a leading zero byte', '3082000302' + '0100'],
    ['a length past the end', '300502010'],
    ['bytes after the value', '3003020100' + '00'],
    ['BOOLEAN 0x01', '30030101' + '01'],
    ['a non-minimal INTEGER', '30040202' + '0001'],
    ['a non-minimal OID arc', '30050603' + '808001'],
    ['a high tag number', '3003' + '1f2100'],
    ['BIT STRING with set unused bits', '30040302' + '0101'],
  ];
  for (const [what, hex] of cases) {
    it(what, () => {
      assert.throws(() => readDer(Uint8Array.from(Buffer.from(hex.length % 2 ? `${hex}0` : hex, 'hex'))), DerError);
    });
  }
});
