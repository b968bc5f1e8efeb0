/**
 * The service's certificate authority: its self-signed root, the HTTPS server certificate,
 * and the client certificates it issues to token-enrolled identities. Pure functions over
 * keys and bytes; the caller passes the time and the randomness.
 *
 * Profiles (RFC 5280):
 * - root CA:  CA:TRUE pathlen:0 (critical), keyUsage keyCertSign|cRLSign (critical), SKI;
 * - server:   CA:FALSE (critical), keyUsage digitalSignature (critical), EKU serverAuth,
 *             SAN dNSName/iPAddress for each host, SKI, AKI;
 * - client:   CA:FALSE (critical), keyUsage digitalSignature (critical), EKU clientAuth,
 *             SAN URI urn:ockam-enroll:identity:<id>, subject CN = the identity name, SKI, AKI.
 * Nothing is copied from a CSR but its public key: a request cannot ask for CA:TRUE, other
 * EKUs or other names.
 *
 * Serial numbers are 16 random bytes with the top bit cleared and the next one set: always
 * positive, always 16 bytes in DER, 126 bits of randomness (CA/B Baseline Requirements
 * §7.1 ask for at least 64).
 */
import { isIP } from 'node:net';
import { createHash, X509Certificate as NodeX509Certificate } from 'node:crypto';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { toHex } from '../crypto/bytes.js';
import { EnrollError, type ErrorCode } from '../errors.js';
import { identityUri, isIdentityIdHex, isIdentityName, parseIdentityUri } from './identity.js';
import { signingAlgorithm, type CryptoKey, type CryptoKeyPair } from './keys.js';
import { x509 } from './provider.js';

import {
  BACKDATE_SECONDS,
  CA_COMMON_NAME,
  DEFAULT_CA_DAYS,
  DEFAULT_SERVER_CERT_DAYS,
  MAX_CERT_DER,
  MAX_CLIENT_CERT_DAYS,
  SERVER_CERT_LOOPBACK_HOSTS,
} from './constants.js';

export * from './constants.js';

const DAY = 86400;
const ECDSA_P256 = signingAlgorithm('p256');

export type X509Certificate = InstanceType<typeof x509.X509Certificate>;

/** Lowercase hex of the certificate's serial number, without leading zero bytes stripped. */
export function serialHex(cert: X509Certificate): string {
  return cert.serialNumber.toLowerCase();
}

/** 16 random bytes, positive and of fixed DER length (see the file comment). */
export function randomSerial(random: RandomSource = systemRandom): string {
  const b = random(16);
  b[0] = (b[0]! & 0x7f) | 0x40;
  return toHex(b);
}

/** SHA-256 over a certificate's DER, as lowercase hex: the `ca_fp` of a token. */
export function fingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** Parses a certificate's DER, capped in length; `code` is the error to throw on failure. */
export function parseCertificate(der: Uint8Array, what: string, code: ErrorCode = 'ERR_DECODE'): X509Certificate {
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > MAX_CERT_DER) {
    throw new EnrollError(code, `${what} must be 1..${MAX_CERT_DER} bytes of DER, got ${der?.length ?? 0}`);
  }
  try {
    return new x509.X509Certificate(der);
  } catch (cause) {
    throw new EnrollError(code, `${what} is not an X.509 certificate`, { cause });
  }
}

function seconds(d: Date): number {
  return Math.floor(d.getTime() / 1000);
}

function validity(now: number, days: number): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date((now - BACKDATE_SECONDS) * 1000), notAfter: new Date((now + days * DAY) * 1000) };
}

export interface CreateRootCaOptions {
  keys: CryptoKeyPair;
  now: number;
  days?: number;
  commonName?: string;
  random?: RandomSource;
}

/** The self-signed root (P-256, ECDSA with SHA-256). Returns its DER. */
export async function createRootCa(opts: CreateRootCaOptions): Promise<Uint8Array> {
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(opts.random),
    name: [{ CN: [opts.commonName ?? CA_COMMON_NAME] }],
    ...validity(opts.now, opts.days ?? DEFAULT_CA_DAYS),
    signingAlgorithm: ECDSA_P256,
    keys: opts.keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(opts.keys.publicKey),
    ],
  });
  return new Uint8Array(cert.rawData);
}

export interface IssueServerOptions {
  ca: X509Certificate;
  caKey: CryptoKey;
  publicKey: CryptoKey;
  /** DNS names or IP literals; localhost, 127.0.0.1 and ::1 are always added. */
  hosts: string[];
  now: number;
  days?: number;
  random?: RandomSource;
}


/** The HTTPS server certificate. Returns its DER. */
export async function issueServerCertificate(opts: IssueServerOptions): Promise<Uint8Array> {
  const hosts = [...new Set([...opts.hosts.map((h) => h.toLowerCase()), ...SERVER_CERT_LOOPBACK_HOSTS])];
  const names = hosts.map((h) => ({ type: isIP(h) ? ('ip' as const) : ('dns' as const), value: h }));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(opts.random),
    subject: [{ CN: [opts.hosts[0] ?? 'localhost'] }],
    issuer: opts.ca.subjectName,
    ...validity(opts.now, opts.days ?? DEFAULT_SERVER_CERT_DAYS),
    signingAlgorithm: ECDSA_P256,
    publicKey: opts.publicKey,
    signingKey: opts.caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(opts.ca.publicKey),
    ],
  });
  return new Uint8Array(cert.rawData);
}

export interface IssueClientOptions {
  ca: X509Certificate;
  caKey: CryptoKey;
  /** The requester's public key, from its verified CSR. */
  publicKey: InstanceType<typeof x509.PublicKey>;
  name: string;
  idHex: string;
  now: number;
  days: number;
  serial: string;
  /** One more Extension, DER, appended last (cert-template.ts's extraExtension: the attributes, attributes-ext.ts). */
  extraExtension?: Uint8Array;
}

export interface IssuedCertificate {
  der: Uint8Array;
  serial: string;
  notBefore: number;
  notAfter: number;
}

/** A client certificate for an identity (see the profile above). */
export async function issueClientCertificate(opts: IssueClientOptions): Promise<IssuedCertificate> {
  if (!isIdentityName(opts.name)) throw new EnrollError('ERR_INVALID_ARG', '"name" is not a valid identity name');
  if (!isIdentityIdHex(opts.idHex)) throw new EnrollError('ERR_INVALID_ARG', '"idHex" must be 64 lowercase hex characters');
  if (!Number.isInteger(opts.days) || opts.days < 1 || opts.days > MAX_CLIENT_CERT_DAYS) {
    throw new EnrollError('ERR_INVALID_ARG', `"days" must be 1..${MAX_CLIENT_CERT_DAYS}, got ${opts.days}`);
  }
  const v = validity(opts.now, opts.days);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: opts.serial,
    subject: [{ CN: [opts.name] }],
    issuer: opts.ca.subjectName,
    ...v,
    signingAlgorithm: ECDSA_P256,
    publicKey: opts.publicKey,
    signingKey: opts.caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(opts.idHex) }]),
      await x509.SubjectKeyIdentifierExtension.create(opts.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(opts.ca.publicKey),
      ...(opts.extraExtension !== undefined ? [new x509.Extension(opts.extraExtension)] : []),
    ],
  });
  return { der: new Uint8Array(cert.rawData), serial: serialHex(cert), notBefore: seconds(v.notBefore), notAfter: seconds(v.notAfter) };
}

/** Whether `ca` is a CA certificate: basicConstraints cA=TRUE and, if present, keyCertSign. */
export function isCaCertificate(ca: X509Certificate): boolean {
  const bc = ca.getExtension(x509.BasicConstraintsExtension);
  if (!bc || !bc.ca) return false;
  const ku = ca.getExtension(x509.KeyUsagesExtension);
  return !ku || (ku.usages & x509.KeyUsageFlags.keyCertSign) !== 0;
}

/**
 * Why `cert` does not chain to `ca` at time `now`, or undefined when it does: the CA must be a
 * CA certificate valid now, the issuer name must be the CA's subject, the signature must
 * verify with the CA's key, and the certificate must be valid now.
 */
export async function whyNotIssuedBy(cert: X509Certificate, ca: X509Certificate, now: number): Promise<string | undefined> {
  if (!isCaCertificate(ca)) return 'the CA certificate is not a CA (basicConstraints)';
  const at = new Date(now * 1000);
  if (ca.notBefore > at || ca.notAfter < at) return 'the CA certificate is not valid now';
  if (!Buffer.from(cert.issuerName.toArrayBuffer()).equals(Buffer.from(ca.subjectName.toArrayBuffer()))) {
    return `the certificate's issuer (${cert.issuer}) is not the CA (${ca.subject})`;
  }
  // The signature over the certificate's own tbsCertificate bytes, by node:crypto (OpenSSL,
  // as TLS checks it): @peculiar/x509's verify() encodes the parsed tbsCertificate again,
  // which is only the same bytes when every part of it round-trips through asn1js.
  let ok = false;
  try {
    ok = new NodeX509Certificate(Buffer.from(cert.rawData)).verify(new NodeX509Certificate(Buffer.from(ca.rawData)).publicKey);
  } catch {
    ok = false;
  }
  if (!ok) return 'the certificate is not signed by the CA';
  if (cert.notBefore > at || cert.notAfter < at) return 'the certificate is not valid now';
  return undefined;
}

/** The identity a client certificate names: its CN and the id of its identity URI SAN. */
export function certificateIdentity(cert: X509Certificate): { name: string; idHex: string } | undefined {
  const cn = cert.subjectName.getField('CN');
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san ? san.names.items.filter((n) => n.type === 'url').map((n) => n.value) : [];
  if (cn.length !== 1 || uris.length !== 1) return undefined;
  const idHex = parseIdentityUri(uris[0]!);
  if (!idHex || !isIdentityName(cn[0])) return undefined;
  return { name: cn[0]!, idHex };
}

export function notAfterSeconds(cert: X509Certificate): number {
  return seconds(cert.notAfter);
}
