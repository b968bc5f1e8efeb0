/**
 * The service's fast path for PKCS#10 requests (RFC 2986): the same checks as parseCsr
 * (csr.ts, on @peculiar/x509, kept as the reference the tests compare against), made with
 * the strict DER reader (der.ts) and node:crypto. A pure function, bytes in, result out:
 * no I/O, so that it can run on a worker thread.
 *
 * Order, cheapest first, as parseCsr:
 * 1. length (≤ MAX_CSR_DER) and DER structure: definite minimal lengths, every value read to
 *    its end, nothing after the request (what the reader accepts re-encodes byte for byte);
 * 2. version 0;
 * 3. the key is ECDSA P-256 (RFC 5480 §2.1.1.1 namedCurve) or Ed25519 (RFC 8410 §3, no
 *    parameters), the signature algorithm fits it (ecdsa-with-SHA256, RFC 5758 §3.2, or
 *    Ed25519), without parameters;
 * 4. the signature over certificationRequestInfo verifies (proof of possession);
 * then the subject's attributes and the requested subjectAltName (at most one extension) are
 * collected for checkCsrIdentity.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { MAX_CSR_DER, type ParsedCsrNames } from './csr.js';
import {
  bitStringBytes,
  bytesOf,
  children,
  DerError,
  expect,
  oidText,
  rawOf,
  readDer,
  TAG_BMP,
  TAG_IA5,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_PRINTABLE,
  TAG_SEQUENCE,
  TAG_SET,
  TAG_TELETEX,
  TAG_UNIVERSAL_STRING,
  TAG_UTF8,
  type Tlv,
} from './der.js';
import { OID_ECDSA_SHA256, OID_EC_PUBLIC_KEY, OID_ED25519, OID_P256, type KeyType } from './keys.js';

const OID_CN = '2.5.4.3';
const OID_SAN = '2.5.29.17';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';

export interface ParsedCsrDer extends ParsedCsrNames {
  der: Uint8Array;
  keyType: KeyType;
  /** The SubjectPublicKeyInfo, DER, as the request holds it (copied into the certificate). */
  spki: Uint8Array;
  publicKey: KeyObject;
}

function bad(message: string, cause?: unknown): EnrollError {
  return new EnrollError('ERR_CSR_INVALID', message, {
    ...(cause === undefined ? {} : { cause }),
    hint: 'send a DER PKCS#10 request for an ECDSA P-256 or Ed25519 key, signed by that key',
  });
}

/** A directory string's text; undefined for a type a CN is not written in. */
function directoryString(buf: Uint8Array, t: Tlv): string | undefined {
  const b = Buffer.from(bytesOf(buf, t));
  switch (t.tag) {
    case TAG_UTF8:
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(b);
      } catch {
        return undefined;
      }
    case TAG_PRINTABLE:
    case TAG_TELETEX:
    case TAG_IA5:
      return b.toString('latin1');
    case TAG_BMP:
      return b.length % 2 === 0 ? b.swap16().toString('utf16le') : undefined;
    case TAG_UNIVERSAL_STRING: {
      if (b.length % 4 !== 0) return undefined;
      let s = '';
      for (let i = 0; i < b.length; i += 4) s += String.fromCodePoint(b.readUInt32BE(i) & 0x1fffff);
      return s;
    }
    default:
      return undefined;
  }
}

/** The key algorithm's OID (or curve); a decoder throws only its typed error, so a DerError becomes ERR_CSR_INVALID here. */
function keyOidText(buf: Uint8Array, t: Tlv): string {
  try {
    return oidText(buf, t);
  } catch (cause) {
    if (cause instanceof DerError) throw bad('the certificate request\'s key algorithm is not an OBJECT IDENTIFIER', cause);
    throw cause;
  }
}

/** Parses and verifies a CSR; throws ERR_CSR_INVALID (see the file comment for the order). */
export function parseCsrDer(der: Uint8Array): ParsedCsrDer {
  if (!(der instanceof Uint8Array) || der.length === 0) throw bad('the certificate request is empty');
  if (der.length > MAX_CSR_DER) throw bad(`the certificate request is ${der.length} bytes, more than ${MAX_CSR_DER}`);
  let cri: Tlv, info: Tlv[], sigAlg: string, signature: Uint8Array, keyAlg: Tlv[], spki: Tlv;
  try {
    const top = readDer(der);
    const parts = expect(der, top, TAG_SEQUENCE, 'CertificationRequest', 3);
    cri = parts[0]!;
    info = expect(der, cri, TAG_SEQUENCE, 'certificationRequestInfo', 4);
    if (info[0]!.tag !== TAG_INTEGER || info[1]!.tag !== TAG_SEQUENCE || info[3]!.tag !== 0xa0) throw new DerError('certificationRequestInfo');
    spki = info[2]!;
    const spkiParts = expect(der, spki, TAG_SEQUENCE, 'subjectPKInfo', 2);
    keyAlg = expect(der, spkiParts[0]!, TAG_SEQUENCE, 'algorithm');
    if (keyAlg.length < 1 || keyAlg.length > 2) throw new DerError('algorithm');
    bitStringBytes(der, spkiParts[1]!);
    const sa = expect(der, parts[1]!, TAG_SEQUENCE, 'signatureAlgorithm');
    if (sa.length < 1 || sa.length > 2) throw new DerError('signatureAlgorithm');
    sigAlg = oidText(der, sa[0]!);
    if (sa.length === 2) throw new DerError('signatureAlgorithm parameters');
    signature = bitStringBytes(der, parts[2]!);
  } catch (cause) {
    if (cause instanceof DerError) throw bad('the certificate request is not a PKCS#10 structure', cause);
    throw cause;
  }
  const version = bytesOf(der, info[0]!);
  if (version.length !== 1 || version[0] !== 0) {
    throw bad(`the certificate request has version ${version.length === 1 ? version[0] : 'out of range'}, expected 0`);
  }

  const keyOid = keyOidText(der, keyAlg[0]!);
  let keyType: KeyType;
  if (keyOid === OID_EC_PUBLIC_KEY) {
    if (keyAlg.length !== 2 || keyAlg[1]!.tag !== 0x06 || keyOidText(der, keyAlg[1]!) !== OID_P256) throw bad('the certificate request\'s EC key is not on P-256');
    if (sigAlg !== OID_ECDSA_SHA256) throw bad(`the certificate request is signed with ${sigAlg}, expected ecdsa-with-SHA256`);
    keyType = 'p256';
  } else if (keyOid === OID_ED25519) {
    if (keyAlg.length !== 1) throw bad('the certificate request\'s Ed25519 key has parameters (RFC 8410 §3: none)');
    if (sigAlg !== OID_ED25519) throw bad(`the certificate request is signed with ${sigAlg}, expected Ed25519`);
    keyType = 'ed25519';
  } else {
    throw bad(`the certificate request's key algorithm ${keyOid} is not ECDSA P-256 or Ed25519`);
  }

  const spkiDer = rawOf(der, spki);
  let publicKey: KeyObject;
  let verified: boolean;
  try {
    publicKey = createPublicKey({ key: Buffer.from(spkiDer.buffer, spkiDer.byteOffset, spkiDer.length), format: 'der', type: 'spki' });
    const data = rawOf(der, cri);
    verified =
      keyType === 'p256'
        ? verify('sha256', data, { key: publicKey, dsaEncoding: 'der' }, signature)
        : verify(null, data, publicKey, signature);
  } catch (cause) {
    throw bad('the certificate request\'s signature could not be checked', cause);
  }
  if (!verified) throw bad('the certificate request\'s signature does not verify');

  const commonNames: string[] = [];
  let subjectAttributes = 0;
  const altNames: { type: string; value: string }[] = [];
  try {
    for (const rdn of expect(der, info[1]!, TAG_SEQUENCE, 'subject')) {
      for (const atv of expect(der, rdn, TAG_SET, 'RelativeDistinguishedName')) {
        const [type, value] = expect(der, atv, TAG_SEQUENCE, 'AttributeTypeAndValue', 2);
        subjectAttributes++;
        if (oidText(der, type!) === OID_CN) commonNames.push(directoryString(der, value!) ?? `#${Buffer.from(rawOf(der, value!)).toString('hex')}`);
      }
    }
  } catch (cause) {
    if (cause instanceof DerError) throw bad('the certificate request\'s subject does not parse', cause);
    throw cause;
  }
  let sans: Tlv[] = [];
  try {
    let requests = 0;
    for (const attr of children(der, info[3]!)) {
      const [type, values] = expect(der, attr, TAG_SEQUENCE, 'Attribute', 2);
      if (oidText(der, type!) !== OID_EXTENSION_REQUEST) continue;
      if (++requests > 1) throw new DerError('more than one extensionRequest');
      const vs = expect(der, values!, TAG_SET, 'extensionRequest values', 1);
      for (const ext of expect(der, vs[0]!, TAG_SEQUENCE, 'Extensions')) {
        const e = expect(der, ext, TAG_SEQUENCE, 'Extension');
        if (e.length < 2 || e.length > 3 || e[e.length - 1]!.tag !== TAG_OCTET_STRING || (e.length === 3 && e[1]!.tag !== 0x01)) throw new DerError('Extension');
        if (oidText(der, e[0]!) === OID_SAN) sans.push(e[e.length - 1]!);
      }
    }
  } catch (cause) {
    if (cause instanceof DerError) throw bad('the certificate request\'s extensions do not parse', cause);
    throw cause;
  }
  if (sans.length > 1) throw bad('the certificate request holds more than one subjectAltName extension');
  for (const s of sans) {
    try {
      const inner = bytesOf(der, s);
      const names = readDer(inner);
      for (const n of expect(inner, names, TAG_SEQUENCE, 'GeneralNames')) {
        // GeneralName (RFC 5280 §4.2.1.6): context tags 0..8; [6] is uniformResourceIdentifier, an IA5String.
        const num = n.tag & 0x1f;
        if ((n.tag & 0xc0) !== 0x80 || num > 8) throw new DerError('GeneralName');
        if (n.tag === 0x86) altNames.push({ type: 'url', value: Buffer.from(bytesOf(inner, n)).toString('latin1') });
        else altNames.push({ type: `tag${num}`, value: Buffer.from(bytesOf(inner, n)).toString('hex') });
      }
    } catch (cause) {
      if (cause instanceof DerError) throw bad('the certificate request\'s subjectAltName does not parse', cause);
      throw cause;
    }
  }
  return { der, keyType, spki: spkiDer, publicKey, commonNames, subjectAttributes, altNames };
}
