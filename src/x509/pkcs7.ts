/**
 * The bodies of EST (RFC 7030): certs-only CMS SignedData (a "degenerate" SignedData,
 * RFC 5652 §5.2: no signers, no encapsulated content, just certificates) and the base64
 * transfer encoding EST uses for it and for PKCS#10 requests (RFC 7030 §4.1.3, §4.2.1, §4.2.3).
 *
 * Decoders cap every length before parsing and throw only EnrollError.
 */
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificateChoices, CertificateSet, ContentInfo, EncapsulatedContentInfo, id_data, id_signedData, SignedData } from '@peculiar/asn1-cms';
import { Certificate } from '@peculiar/asn1-x509';
import { EnrollError, type ErrorCode } from '../errors.js';
import { MAX_CERT_DER } from './constants.js';
import { children, rawOf, readTlv, tlv } from './der.js';

/** Most certificates a certs-only response may carry (ours carry one or two). */
export const MAX_PKCS7_CERTS = 8;
export const MAX_PKCS7_DER = MAX_PKCS7_CERTS * MAX_CERT_DER;

/** A certs-only SignedData in a ContentInfo, as DER. */
export function encodeCertsOnly(certs: Uint8Array[]): Uint8Array {
  if (certs.length === 0 || certs.length > MAX_PKCS7_CERTS) {
    throw new EnrollError('ERR_INVALID_ARG', `"certs" must hold 1..${MAX_PKCS7_CERTS} certificates, got ${certs.length}`);
  }
  const signedData = new SignedData({
    // RFC 5652 §5.1: version 1 when there are no attribute certificates, no v3 signers and id-data content.
    version: 1,
    encapContentInfo: new EncapsulatedContentInfo({ eContentType: id_data }),
    certificates: new CertificateSet(
      certs.map((der) => {
        try {
          return new CertificateChoices({ certificate: AsnConvert.parse(der, Certificate) });
        } catch (cause) {
          throw new EnrollError('ERR_INVALID_ARG', '"certs" holds bytes that are not a certificate', { cause });
        }
      }),
    ),
  });
  const info = new ContentInfo({ contentType: id_signedData, content: AsnConvert.serialize(signedData) });
  return new Uint8Array(AsnConvert.serialize(info));
}

/**
 * ContentInfo { id-signedData, [0] SignedData { version 1, digestAlgorithms {}, encapContentInfo
 * { id-data }, certificates [0] … ; the part of SignedData before its certificates is fixed.
 */
const SIGNED_DATA_HEAD = Uint8Array.from(Buffer.from('020101' + '3100' + '300b06092a864886f70d010701', 'hex'));
/** signerInfos: the empty SET (RFC 5652 §5.2: no signers). */
const SIGNED_DATA_TAIL = Uint8Array.of(0x31, 0x00);
const OID_SIGNED_DATA = Uint8Array.from(Buffer.from('06092a864886f70d010702', 'hex'));

/**
 * encodeCertsOnly's bytes from the fixed prefix above and the certificates' DER as given,
 * without parsing them (the service's hot path: it made them). The tests compare the two.
 */
export function encodeCertsOnlyDer(certs: Uint8Array[]): Uint8Array {
  if (certs.length === 0 || certs.length > MAX_PKCS7_CERTS) {
    throw new EnrollError('ERR_INVALID_ARG', `"certs" must hold 1..${MAX_PKCS7_CERTS} certificates, got ${certs.length}`);
  }
  for (const c of certs) {
    if (!(c instanceof Uint8Array) || c.length === 0 || c.length > MAX_CERT_DER || c[0] !== 0x30) {
      throw new EnrollError('ERR_INVALID_ARG', '"certs" holds bytes that are not a certificate');
    }
  }
  const signedData = tlv(0x30, SIGNED_DATA_HEAD, tlv(0xa0, ...certs), SIGNED_DATA_TAIL);
  return tlv(0x30, OID_SIGNED_DATA, tlv(0xa0, signedData));
}

/**
 * The certificates of a certs-only SignedData, in order, as DER. Signers, CRLs and other
 * certificate formats are refused: an EST certs-only response carries none of them.
 */
export function decodeCertsOnly(der: Uint8Array, code: ErrorCode = 'ERR_DECODE', what = 'the PKCS#7 certs-only body'): Uint8Array[] {
  if (!(der instanceof Uint8Array) || der.length === 0 || der.length > MAX_PKCS7_DER) {
    throw new EnrollError(code, `${what} must be 1..${MAX_PKCS7_DER} bytes, got ${der?.length ?? 0}`);
  }
  let signed: SignedData;
  try {
    const info = AsnConvert.parse(der, ContentInfo);
    if (info.contentType !== id_signedData) throw new EnrollError(code, `${what} is not a CMS SignedData (content type ${info.contentType})`);
    signed = AsnConvert.parse(info.content, SignedData);
  } catch (cause) {
    if (cause instanceof EnrollError) throw cause;
    throw new EnrollError(code, `${what} is not a CMS ContentInfo`, { cause });
  }
  if (signed.signerInfos.length !== 0) throw new EnrollError(code, `${what} has signers; a certs-only body has none`);
  if (signed.crls && signed.crls.length !== 0) throw new EnrollError(code, `${what} carries CRLs`);
  const items = signed.certificates ?? [];
  if (items.length === 0) throw new EnrollError(code, `${what} holds no certificate`);
  if (items.length > MAX_PKCS7_CERTS) throw new EnrollError(code, `${what} holds ${items.length} certificates, more than ${MAX_PKCS7_CERTS}`);
  // Array.from: mapping the ASN.1 set itself would build another CertificateSet.
  Array.from(items, (c) => {
    if (!c.certificate) throw new EnrollError(code, `${what} holds something other than an X.509 certificate`);
  });
  // Each certificate's own bytes, as the CA signed them, not the parsed value encoded again: a
  // signature covers the bytes, and asn1js does not re-encode every valid value the same
  // (an OID arc over 56 bits, for one).
  let raw: Uint8Array[];
  try {
    const [, wrapped] = children(der, readTlv(der, 0));
    const [signedTlv] = children(der, wrapped!);
    const set = children(der, signedTlv!).find((f) => f.tag === 0xa0);
    raw = set === undefined ? [] : children(der, set).map((t) => rawOf(der, t).slice());
  } catch (cause) {
    throw new EnrollError(code, `${what} is not a CMS ContentInfo`, { cause });
  }
  if (raw.length !== items.length) throw new EnrollError(code, `${what}: the certificates set does not hold what it parsed as`);
  for (const out of raw) {
    if (out.length > MAX_CERT_DER) throw new EnrollError(code, `${what} holds a certificate larger than ${MAX_CERT_DER} bytes`);
  }
  return raw;
}

const B64_RE = /^[A-Za-z0-9+/]*={0,2}$/;

/** Base64 with 64-character lines and CRLF line ends (RFC 2045 §6.8 limits lines to 76). */
export function encodeBase64Body(der: Uint8Array): string {
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.length).toString('base64');
  return `${b64.match(/.{1,64}/g)?.join('\r\n') ?? ''}\r\n`;
}

/**
 * Decodes an EST base64 body: whitespace (line breaks) ignored, anything else outside the
 * base64 alphabet refused, padding required, and the result capped at `maxBytes`.
 */
export function decodeBase64Body(text: string, maxBytes: number, code: ErrorCode, what: string): Uint8Array {
  // Every 4 characters make at most 3 bytes; allow for line breaks before decoding anything.
  if (text.length > Math.ceil(maxBytes / 3) * 4 * 1.1 + 16) throw new EnrollError(code, `${what} is larger than ${maxBytes} bytes`);
  const compact = text.replace(/[\r\n\t ]/g, '');
  if (compact.length === 0) throw new EnrollError(code, `${what} is empty`);
  if (compact.length % 4 !== 0 || !B64_RE.test(compact)) throw new EnrollError(code, `${what} is not base64`);
  const bytes = new Uint8Array(Buffer.from(compact, 'base64'));
  if (bytes.length > maxBytes) throw new EnrollError(code, `${what} is larger than ${maxBytes} bytes`);
  // Canonical: the decoder silently ignores non-zero padding bits; refuse them.
  if (Buffer.from(bytes).toString('base64') !== compact) throw new EnrollError(code, `${what} is not canonical base64`);
  return bytes;
}
