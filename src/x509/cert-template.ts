/**
 * The service's fast path for client certificates: the profile of ca.ts's
 * issueClientCertificate (kept as the reference the tests compare against, byte for byte),
 * built from DER parts made once per CA, with the variable fields (serial, validity, CN,
 * key, URI SAN, SKI) patched in, and signed with node:crypto. Pure: keys and bytes in,
 * bytes out, so that it can run on a worker thread.
 *
 * Profile (RFC 5280): v3; ecdsa-with-SHA256; issuer = the CA's subject, as its bytes;
 * notBefore = now − BACKDATE_SECONDS, notAfter = now + days; subject = one CN (a
 * PrintableString when the name fits its alphabet, else a UTF8String, as @peculiar/x509
 * chooses); the request's SubjectPublicKeyInfo as it was sent; extensions in this order:
 * basicConstraints CA:FALSE (critical), keyUsage digitalSignature (critical), EKU clientAuth,
 * SAN URI urn:ockam-enroll:identity:<id>, SKI = SHA-1 of the subjectPublicKey bits
 * (§4.2.1.2 method 1), AKI = the CA's, and at most one more extension a caller adds (an
 * attribute extension of a policy), last.
 */
import { createHash, sign, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { BACKDATE_SECONDS, MAX_CLIENT_CERT_DAYS } from './constants.js';
import {
  bitStringBytes,
  DerError,
  expect,
  oid,
  rawOf,
  readDer,
  tlv,
  time,
  TAG_BIT_STRING,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_OID,
  TAG_PRINTABLE,
  TAG_SEQUENCE,
  TAG_SET,
  TAG_UTF8,
} from './der.js';
import { identityUri, isIdentityIdHex, isIdentityName } from './identity.js';
import type { IssuedCertificate } from './ca.js';

const DAY = 86400;
const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));

/** [0] EXPLICIT version v3 (2). */
const VERSION_V3 = hex('a003020102');
/** AlgorithmIdentifier ecdsa-with-SHA256, no parameters (RFC 5758 §3.2). */
const ECDSA_SHA256 = hex('300a06082a8648ce3d040302');
const OID_CN = oid('2.5.4.3');
/** basicConstraints, critical, CA:FALSE (the default, so an empty SEQUENCE in DER). */
const EXT_BASIC_CONSTRAINTS = hex('300c0603551d130101ff04023000');
/** keyUsage, critical, digitalSignature. */
const EXT_KEY_USAGE = hex('300e0603551d0f0101ff0404030207' + '80');
/** extKeyUsage clientAuth (1.3.6.1.5.5.7.3.2) only. */
const EXT_EKU_CLIENT_AUTH = hex('30130603551d25040c300a06082b06010505070302');
const OID_SAN = oid('2.5.29.17');
const OID_SKI = oid('2.5.29.14');
const OID_AKI = oid('2.5.29.35');
/** The profile's own extensions, by the hex of their OID's DER. */
const OURS_DER = new Map(['2.5.29.19', '2.5.29.15', '2.5.29.37', '2.5.29.17', '2.5.29.14', '2.5.29.35'].map((t) => [Buffer.from(oid(t)).toString('hex'), t]));
const PRINTABLE_RE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const SERIAL_RE = /^[4-7][0-9a-f]{31}$/;

/** What is made once per CA. */
export interface ClientCertTemplate {
  /** The CA's subject Name, as the CA certificate holds it. */
  issuer: Uint8Array;
  /** The authorityKeyIdentifier extension, whole. */
  aki: Uint8Array;
  caKey: KeyObject;
}

/** Reads the CA certificate's subject and key identifier; `caKey` is its private key. */
export function clientCertTemplate(caDer: Uint8Array, caKey: KeyObject): ClientCertTemplate {
  try {
    const top = readDer(caDer);
    const [tbs] = expect(caDer, top, TAG_SEQUENCE, 'Certificate', 3);
    const f = expect(caDer, tbs!, TAG_SEQUENCE, 'tbsCertificate');
    if (f[0]!.tag !== 0xa0 || f.length < 7) throw new DerError('not a v3 certificate');
    const issuer = rawOf(caDer, f[5]!).slice();
    const [, caBits] = expect(caDer, f[6]!, TAG_SEQUENCE, 'subjectPublicKeyInfo', 2);
    const keyId = createHash('sha1').update(bitStringBytes(caDer, caBits!)).digest();
    const aki = tlv(TAG_SEQUENCE, OID_AKI, tlv(TAG_OCTET_STRING, tlv(TAG_SEQUENCE, tlv(0x80, keyId))));
    return { issuer, aki, caKey };
  } catch (cause) {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', 'the CA certificate does not parse', { cause });
  }
}

export interface BuildClientOptions {
  /** The requester's SubjectPublicKeyInfo, DER, from its verified CSR (csr-der.ts). */
  spki: Uint8Array;
  name: string;
  idHex: string;
  now: number;
  days: number;
  /** 32 lowercase hex characters, first byte 0x40..0x7f (ca.ts randomSerial). */
  serial: string;
  /** One more Extension, DER, appended last (not one of the profile's own). */
  extraExtension?: Uint8Array;
}

function checkExtraExtension(der: Uint8Array): void {
  let type: Uint8Array;
  try {
    const e = expect(der, readDer(der), TAG_SEQUENCE, 'Extension');
    if (e.length < 2 || e.length > 3 || e[e.length - 1]!.tag !== TAG_OCTET_STRING || (e.length === 3 && e[1]!.tag !== 0x01)) throw new DerError('Extension');
    if (e[0]!.tag !== TAG_OID || e[0]!.end === e[0]!.body) throw new DerError('extnID');
    // Compared as DER bytes: one encoding per OID in DER, so no text form is needed.
    type = rawOf(der, e[0]!);
  } catch (cause) {
    throw new EnrollError('ERR_INVALID_ARG', '"extraExtension" is not a DER Extension', { cause });
  }
  const hexOf = Buffer.from(type).toString('hex');
  const own = OURS_DER.get(hexOf);
  if (own !== undefined) throw new EnrollError('ERR_INVALID_ARG', `"extraExtension" ${own} is one the profile sets itself`);
}

/** A client certificate for an identity (see the profile above). */
export function buildClientCertificate(t: ClientCertTemplate, o: BuildClientOptions): IssuedCertificate {
  if (!isIdentityName(o.name)) throw new EnrollError('ERR_INVALID_ARG', '"name" is not a valid identity name');
  if (!isIdentityIdHex(o.idHex)) throw new EnrollError('ERR_INVALID_ARG', '"idHex" must be 64 lowercase hex characters');
  if (!Number.isInteger(o.days) || o.days < 1 || o.days > MAX_CLIENT_CERT_DAYS) {
    throw new EnrollError('ERR_INVALID_ARG', `"days" must be 1..${MAX_CLIENT_CERT_DAYS}, got ${o.days}`);
  }
  if (!SERIAL_RE.test(o.serial)) throw new EnrollError('ERR_INVALID_ARG', '"serial" must be 32 lowercase hex characters, first byte 0x40..0x7f');
  let bits: Uint8Array;
  try {
    const [, b] = expect(o.spki, readDer(o.spki), TAG_SEQUENCE, 'subjectPublicKeyInfo', 2);
    bits = bitStringBytes(o.spki, b!);
  } catch (cause) {
    throw new EnrollError('ERR_INVALID_ARG', '"spki" is not a DER SubjectPublicKeyInfo', { cause });
  }
  if (o.extraExtension !== undefined) checkExtraExtension(o.extraExtension);
  const notBefore = o.now - BACKDATE_SECONDS;
  const notAfter = o.now + o.days * DAY;
  const cn = Buffer.from(o.name, 'utf8');
  const subject = tlv(TAG_SEQUENCE, tlv(TAG_SET, tlv(TAG_SEQUENCE, OID_CN, tlv(PRINTABLE_RE.test(o.name) ? TAG_PRINTABLE : TAG_UTF8, cn))));
  const san = tlv(TAG_SEQUENCE, OID_SAN, tlv(TAG_OCTET_STRING, tlv(TAG_SEQUENCE, tlv(0x86, Buffer.from(identityUri(o.idHex), 'latin1')))));
  const ski = tlv(TAG_SEQUENCE, OID_SKI, tlv(TAG_OCTET_STRING, tlv(TAG_OCTET_STRING, createHash('sha1').update(bits).digest())));
  const exts = [EXT_BASIC_CONSTRAINTS, EXT_KEY_USAGE, EXT_EKU_CLIENT_AUTH, san, ski, t.aki];
  if (o.extraExtension !== undefined) exts.push(o.extraExtension);
  const tbs = tlv(
    TAG_SEQUENCE,
    VERSION_V3,
    tlv(TAG_INTEGER, hex(o.serial)),
    ECDSA_SHA256,
    t.issuer,
    tlv(TAG_SEQUENCE, time(notBefore), time(notAfter)),
    subject,
    o.spki,
    tlv(0xa3, tlv(TAG_SEQUENCE, ...exts)),
  );
  const sig = sign('sha256', tbs, { key: t.caKey, dsaEncoding: 'der' });
  const der = tlv(TAG_SEQUENCE, tbs, ECDSA_SHA256, tlv(TAG_BIT_STRING, Uint8Array.of(0), sig));
  return { der, serial: o.serial, notBefore, notAfter };
}

/** The tbsCertificate of a certificate's DER (for the tests' byte-for-byte comparison). */
export function tbsOf(der: Uint8Array): Uint8Array {
  const [tbs] = expect(der, readDer(der), TAG_SEQUENCE, 'Certificate', 3);
  return rawOf(der, tbs!);
}
