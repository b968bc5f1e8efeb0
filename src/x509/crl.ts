/**
 * The CA's certificate revocation list (RFC 5280 §5): v2, signed by the CA with ECDSA
 * SHA-256, with the two extensions §5.2 requires of conforming issuers (authority key
 * identifier, CRL number) and a nextUpdate, so relying parties know when to fetch again.
 */
import { EnrollError } from '../errors.js';
import type { X509Certificate } from './ca.js';
import { signingAlgorithm, type CryptoKey } from './keys.js';
import { x509 } from './provider.js';

/** How long a CRL is fresh by default: relying parties fetch a new one after this. */
export const DEFAULT_CRL_VALIDITY_SECONDS = 86400;
const OID_CRL_NUMBER = '2.5.29.20';

export interface CrlEntry {
  /** Lowercase hex serial number. */
  serial: string;
  /** Unix seconds. */
  revokedAt: number;
}

export interface BuildCrlOptions {
  ca: X509Certificate;
  caKey: CryptoKey;
  entries: CrlEntry[];
  now: number;
  validitySeconds?: number;
  /** Monotonically increasing across the CRLs this CA issues (RFC 5280 §5.2.3). */
  crlNumber: number;
}

/** DER of an INTEGER holding a non-negative safe integer. */
function derInteger(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0) throw new EnrollError('ERR_INVALID_ARG', `"crlNumber" must be a non-negative safe integer, got ${n}`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  if (bytes[0]! & 0x80) bytes.unshift(0);
  return Uint8Array.from([0x02, bytes.length, ...bytes]);
}

export async function buildCrl(opts: BuildCrlOptions): Promise<Uint8Array> {
  const validity = opts.validitySeconds ?? DEFAULT_CRL_VALIDITY_SECONDS;
  const crl = await x509.X509CrlGenerator.create({
    issuer: opts.ca.subjectName,
    thisUpdate: new Date(opts.now * 1000),
    nextUpdate: new Date((opts.now + validity) * 1000),
    signingAlgorithm: signingAlgorithm('p256'),
    signingKey: opts.caKey,
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(opts.ca.publicKey),
      new x509.Extension(OID_CRL_NUMBER, false, derInteger(opts.crlNumber)),
    ],
    entries: opts.entries.map((e) => ({ serialNumber: e.serial, revocationDate: new Date(e.revokedAt * 1000) })),
  });
  return new Uint8Array(crl.rawData);
}
