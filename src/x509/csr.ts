/**
 * PKCS#10 certificate requests (RFC 2986) for token enrollment: building one on the
 * enrollee, and on the service parsing one and checking it names exactly the identity the
 * token (or the current certificate) was made for.
 *
 * parseCsr runs its checks cheapest first, and only then the signature:
 * 1. length (≤ MAX_CSR_DER) and DER structure, re-encoded byte for byte (no BER leniency);
 * 2. version 0;
 * 3. the key is ECDSA P-256 or Ed25519, and the signature algorithm fits the key
 *    (ecdsa-with-SHA256 for P-256, Ed25519 for Ed25519);
 * 4. the signature verifies (proof of possession of the private key).
 * checkCsrIdentity then requires a subject of exactly one CN equal to the name, and a SAN of
 * exactly one URI equal to urn:ockam-enroll:identity:<id>.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { EnrollError } from '../errors.js';
import { identityUri, isIdentityIdHex, isIdentityName } from './identity.js';
import {
  OID_ECDSA_SHA256,
  OID_EC_PUBLIC_KEY,
  OID_ED25519,
  signingAlgorithm,
  type CryptoKeyPair,
  type KeyType,
} from './keys.js';
import { x509 } from './provider.js';

/** A P-256 CSR is about 300 bytes; anything past 4 KiB is not one of ours. */
export const MAX_CSR_DER = 4096;
const OID_CN = '2.5.4.3';
const OID_SAN = '2.5.29.17';

/** What checkCsrIdentity reads of a parsed request (from parseCsr or csr-der.ts's parseCsrDer). */
export interface ParsedCsrNames {
  /** Every CN value of the subject, and the number of attributes the subject holds in all. */
  commonNames: string[];
  subjectAttributes: number;
  /** Every SAN of the requested subjectAltName extension, as type and value. */
  altNames: { type: string; value: string }[];
}

export interface ParsedCsr extends ParsedCsrNames {
  der: Uint8Array;
  keyType: KeyType;
  publicKey: InstanceType<typeof x509.PublicKey>;
  /** Every CN value of the subject, and the number of attributes the subject holds in all. */
  commonNames: string[];
  subjectAttributes: number;
  /** Every SAN of the requested subjectAltName extension, as type and value. */
  altNames: { type: string; value: string }[];
}

function bad(message: string, cause?: unknown): EnrollError {
  return new EnrollError('ERR_CSR_INVALID', message, {
    ...(cause === undefined ? {} : { cause }),
    hint: 'send a DER PKCS#10 request for an ECDSA P-256 or Ed25519 key, signed by that key',
  });
}

/** Parses and verifies a CSR; throws ERR_CSR_INVALID (see the file comment for the order). */
export async function parseCsr(der: Uint8Array): Promise<ParsedCsr> {
  if (!(der instanceof Uint8Array) || der.length === 0) throw bad('the certificate request is empty');
  if (der.length > MAX_CSR_DER) throw bad(`the certificate request is ${der.length} bytes, more than ${MAX_CSR_DER}`);
  let asn: CertificationRequest;
  try {
    asn = AsnConvert.parse(der, CertificationRequest);
  } catch (cause) {
    throw bad('the certificate request is not a PKCS#10 structure', cause);
  }
  let reencoded: Uint8Array;
  try {
    reencoded = new Uint8Array(AsnConvert.serialize(asn));
  } catch (cause) {
    throw bad('the certificate request does not re-encode', cause);
  }
  if (!Buffer.from(reencoded).equals(Buffer.from(der))) throw bad('the certificate request is not in DER (non-canonical encoding)');
  const info = asn.certificationRequestInfo;
  if (info.version !== 0) throw bad(`the certificate request has version ${info.version}, expected 0`);

  const keyAlg = info.subjectPKInfo.algorithm;
  const sigAlg = asn.signatureAlgorithm.algorithm;
  let keyType: KeyType;
  if (keyAlg.algorithm === OID_EC_PUBLIC_KEY) {
    if (!isP256Params(keyAlg.parameters)) throw bad('the certificate request\'s EC key is not on P-256');
    if (sigAlg !== OID_ECDSA_SHA256) throw bad(`the certificate request is signed with ${sigAlg}, expected ecdsa-with-SHA256`);
    keyType = 'p256';
  } else if (keyAlg.algorithm === OID_ED25519) {
    if (sigAlg !== OID_ED25519) throw bad(`the certificate request is signed with ${sigAlg}, expected Ed25519`);
    keyType = 'ed25519';
  } else {
    throw bad(`the certificate request's key algorithm ${keyAlg.algorithm} is not ECDSA P-256 or Ed25519`);
  }

  let csr: InstanceType<typeof x509.Pkcs10CertificateRequest>;
  let verified = false;
  try {
    csr = new x509.Pkcs10CertificateRequest(der);
    verified = await csr.verify();
  } catch (cause) {
    throw bad('the certificate request\'s signature could not be checked', cause);
  }
  if (!verified) throw bad('the certificate request\'s signature does not verify');

  const commonNames: string[] = [];
  let subjectAttributes = 0;
  for (const rdn of info.subject) {
    for (const atv of rdn) {
      subjectAttributes++;
      if (atv.type === OID_CN) commonNames.push(atv.value.toString());
    }
  }
  const altNames: { type: string; value: string }[] = [];
  // The extensions are parsed lazily by @peculiar/x509, which throws its own errors for a
  // malformed one: a signed request can carry any bytes there (found by test/fuzz).
  let sans: InstanceType<typeof x509.Extension>[];
  try {
    sans = csr.extensions.filter((e) => e.type === OID_SAN);
  } catch (cause) {
    throw bad('the certificate request\'s extensions do not parse', cause);
  }
  if (sans.length > 1) throw bad('the certificate request holds more than one subjectAltName extension');
  for (const e of sans) {
    try {
      const san = e instanceof x509.SubjectAlternativeNameExtension ? e : new x509.SubjectAlternativeNameExtension(e.rawData);
      for (const n of san.names.items) altNames.push({ type: n.type, value: n.value });
    } catch (cause) {
      throw bad('the certificate request\'s subjectAltName does not parse', cause);
    }
  }
  return { der, keyType, publicKey: csr.publicKey, commonNames, subjectAttributes, altNames };
}

/** namedCurve secp256r1 as DER (RFC 5480 §2.1.1.1): the only EC parameters accepted. */
const P256_PARAMS_DER = Buffer.from('06082a8648ce3d030107', 'hex');

function isP256Params(params: ArrayBuffer | null | undefined): boolean {
  return params != null && Buffer.from(params).equals(P256_PARAMS_DER);
}

/**
 * Requires the CSR to name exactly this identity: subject = one attribute, a CN equal to
 * `name`; subjectAltName = one name, the URI of `idHex`. ERR_CSR_IDENTITY otherwise.
 */
export function checkCsrIdentity(csr: ParsedCsrNames, expect: { name: string; idHex: string }): void {
  const hint = 'the request must name the identity the token was made for: CN = its name, SAN URI = urn:ockam-enroll:identity:<id>';
  if (csr.subjectAttributes !== 1 || csr.commonNames.length !== 1) {
    throw new EnrollError('ERR_CSR_IDENTITY', 'the certificate request\'s subject must be exactly one CN', { hint });
  }
  if (csr.commonNames[0] !== expect.name) {
    throw new EnrollError('ERR_CSR_IDENTITY', `the certificate request names CN ${JSON.stringify(csr.commonNames[0]!.slice(0, 64))}, not ${JSON.stringify(expect.name)}`, { hint });
  }
  const uri = identityUri(expect.idHex);
  if (csr.altNames.length !== 1 || csr.altNames[0]!.type !== 'url' || csr.altNames[0]!.value !== uri) {
    throw new EnrollError('ERR_CSR_IDENTITY', `the certificate request's subjectAltName must be exactly the URI ${uri}`, { hint });
  }
}

/** Builds a CSR for an identity, signed by `keys`. Returns its DER. */
export async function createCsr(opts: { keys: CryptoKeyPair; keyType: KeyType; name: string; idHex: string }): Promise<Uint8Array> {
  if (!isIdentityName(opts.name)) throw new EnrollError('ERR_INVALID_ARG', '"name" is not a valid identity name');
  if (!isIdentityIdHex(opts.idHex)) throw new EnrollError('ERR_INVALID_ARG', '"idHex" must be 64 lowercase hex characters');
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: [{ CN: [opts.name] }],
    keys: opts.keys,
    signingAlgorithm: signingAlgorithm(opts.keyType),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(opts.idHex) }])],
  });
  return new Uint8Array(csr.rawData);
}
