/**
 * The enrollee-attributes certificate extension (issue #20, docs/policies.md "Certificates
 * carry the attributes"): the attributes a token-enrolled identity has when its certificate
 * is issued (`enroller token create --attr`, `service enrollee set-attr` before a renewal),
 * signed by the CA like the rest of the certificate, for TLS peers and `openssl x509 -text`.
 *
 *   extnID    1.3.6.1.4.1.32473.20.1 (ATTRIBUTES_EXT_OID). Why not a UUID OID (2.25.<UUID>,
 *             X.667), the arc anyone may take without registering: its 128-bit arc is past
 *             what RFC 5280 §4.1.2.4 asks implementations to support (2^28), and Go's
 *             crypto/x509, pyca/cryptography ≥ 38, Botan and asn1js refuse or mangle it, so a
 *             client certificate carrying one would not parse in many TLS servers. 32473 is
 *             IANA's enterprise number for documentation (RFC 5612): a stand-in that collides
 *             with no one's assignment until the project registers its own PEN (IANA assigns
 *             one free on request); then this constant changes, in one place.
 *   critical  FALSE (a relying party that does not know it may ignore it; the identity is in
 *             the CN and the URI SAN)
 *   extnValue OCTET STRING containing the DER of
 *
 *     EnrolleeAttributes ::= SEQUENCE SIZE (1..16) OF EnrolleeAttribute
 *     EnrolleeAttribute  ::= SEQUENCE { key UTF8String (SIZE (1..32)), value UTF8String (SIZE (1..64 bytes)) }
 *
 *   with the keys and values of codec/attributes.ts (lower-case identifier keys, bounded
 *   values without control characters), in ascending key order, each key once. A certificate
 *   of an identity without attributes has no such extension.
 *
 * `openssl x509 -text` prints an extension it does not know by its OID and the bytes of its
 * value, where the keys and values stand readable (`0 0...role..sensor0...site..berlin`).
 *
 * Pure: attributes in, DER out, and back.
 */
import { EnrollError, type ErrorCode } from '../errors.js';
import { checkAttributes, type Attributes } from '../protocol/codec/attributes.js';
import { children, DerError, expect, oid, readDer, rawOf, tlv, TAG_OCTET_STRING, TAG_SEQUENCE, TAG_UTF8 } from './der.js';

export const ATTRIBUTES_EXT_OID = '1.3.6.1.4.1.32473.20.1';
/** The OID's DER. */
export const ATTRIBUTES_EXT_OID_DER: Uint8Array = oid(ATTRIBUTES_EXT_OID);

/** The Extension (DER) for `attributes`, or undefined when there are none (no extension). */
export function attributesExtension(attributes: Attributes | undefined): Uint8Array | undefined {
  if (attributes === undefined) return undefined;
  const checked = checkAttributes(attributes);
  const keys = Object.keys(checked);
  if (keys.length === 0) return undefined;
  const utf8 = (s: string) => tlv(TAG_UTF8, Buffer.from(s, 'utf8'));
  const value = tlv(TAG_SEQUENCE, ...keys.map((k) => tlv(TAG_SEQUENCE, utf8(k), utf8(checked[k]!))));
  return tlv(TAG_SEQUENCE, ATTRIBUTES_EXT_OID_DER, tlv(TAG_OCTET_STRING, value));
}

/**
 * The attributes of a certificate's extension, given the Extension's DER (an `Extension` of
 * @peculiar/x509 has it as rawData); `code` on any deviation from the definition above,
 * including keys out of order or twice.
 */
export function readAttributesExtension(der: Uint8Array, code: ErrorCode = 'ERR_DECODE'): Attributes {
  try {
    const parts = expect(der, readDer(der), TAG_SEQUENCE, 'Extension');
    if (parts.length !== 2 || !Buffer.from(rawOf(der, parts[0]!)).equals(ATTRIBUTES_EXT_OID_DER)) throw new DerError('not the attributes extension (or marked critical)');
    const value = parts[1]!;
    if (value.tag !== TAG_OCTET_STRING) throw new DerError('extnValue is not an OCTET STRING');
    const inner = der.subarray(value.body, value.end);
    const list = expect(inner, readDer(inner), TAG_SEQUENCE, 'EnrolleeAttributes');
    if (list.length === 0) throw new DerError('no attribute');
    const out: Record<string, string> = {};
    let prev: string | undefined;
    for (const item of list) {
      if (item.tag !== TAG_SEQUENCE) throw new DerError('an attribute is not a SEQUENCE');
      const kv = children(inner, item);
      if (kv.length !== 2 || kv[0]!.tag !== TAG_UTF8 || kv[1]!.tag !== TAG_UTF8) throw new DerError('an attribute is not two UTF8Strings');
      const text = (t: (typeof kv)[number]) => new TextDecoder('utf-8', { fatal: true }).decode(inner.subarray(t.body, t.end));
      const k = text(kv[0]!);
      if (prev !== undefined && !(prev < k)) throw new DerError(`attribute "${k.slice(0, 40)}": keys must be unique and in ascending order`);
      out[k] = text(kv[1]!);
      prev = k;
    }
    return checkAttributes(out, code);
  } catch (cause) {
    if (cause instanceof EnrollError) throw cause;
    throw new EnrollError(code, `the certificate's attributes extension does not decode: ${(cause as Error).message}`, { cause });
  }
}

/**
 * The attributes a certificate (DER) carries: those of its attributes extension, {} when it
 * has none. Read from the certificate's own bytes, with the strict DER reader (der.ts).
 */
export function certificateAttributes(certDer: Uint8Array, code: ErrorCode = 'ERR_DECODE'): Attributes {
  let found: Uint8Array | undefined;
  try {
    const [tbs] = expect(certDer, readDer(certDer), TAG_SEQUENCE, 'Certificate', 3);
    const fields = expect(certDer, tbs!, TAG_SEQUENCE, 'tbsCertificate');
    const wrapped = fields.find((f) => f.tag === 0xa3);
    if (wrapped === undefined) return Object.freeze({});
    const [list] = children(certDer, wrapped);
    for (const e of children(certDer, list!)) {
      const [id] = children(certDer, e);
      if (id !== undefined && Buffer.from(rawOf(certDer, id)).equals(ATTRIBUTES_EXT_OID_DER)) {
        if (found !== undefined) throw new DerError('two attributes extensions');
        found = rawOf(certDer, e);
      }
    }
  } catch (cause) {
    throw new EnrollError(code, `the certificate does not parse: ${(cause as Error).message}`, { cause });
  }
  return found === undefined ? Object.freeze({}) : readAttributesExtension(found, code);
}
