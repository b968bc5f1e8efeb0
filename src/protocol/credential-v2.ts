/**
 * The enrollee credential, v2 (docs/protocol.md §4.6): v1's statement plus the enrollee's
 * attributes, signed by a credential-signing key (CSK, Ed25519) that IK_A certified once.
 *
 *   version u8 = 2 | IK_A 32 | CSK 32 | csk_sig 64 | enrollee_id 32 | IK_B 32 | issued_at u64 |
 *   expires_at u64 | pet_len u8 (0..64) | pet name UTF-8 | attributes (§4.6.1) | sig 64
 *
 *   csk_sig = XEdDSA(IK_A, "ockam-enroll/v2/csk" ‖ IK_A ‖ CSK)
 *   sig     = Ed25519(CSK, "ockam-enroll/v2/credential" ‖ every byte before sig)
 *
 * Why a CSK (issue #23 item 2): an XEdDSA signature costs two X25519 base-point
 * multiplications (≈ 150 µs, crypto/base-mult.ts), while node:crypto signs Ed25519 with a
 * prepared key in ≈ 25 µs. The certificate is made once per service process; verifiers
 * still anchor at IK_A (step 2 below), and cache a certificate they checked, so a verifier
 * that sees many credentials of one service pays the XEdDSA verification once.
 *
 * The CSK is derived from IK_A's private key (roles/service/csk.ts), so a service home of
 * any age has one, every replica has the same, and no new secret sits on disk.
 *
 * Pure: bytes in, bytes out, keys passed in.
 */
import { createPrivateKey, createPublicKey, sign as nodeSign, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { abytes, concat, equalBytes, toHex, utf8 } from '../crypto/bytes.js';
import { ed25519Verify, importEd25519Public } from '../crypto/ed25519.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaVerify, type XEdDSASigner } from '../crypto/xeddsa.js';
import { ATTR_MAX_ENCODED_LEN, encodeAttributes, readAttributes, type Attributes } from './codec/attributes.js';
import { CARD_MAX_PET_NAME_LEN } from './codec/card.js';
import { checkCommonFields, type CommonCredentialFields } from './credential-fields.js';
import { ByteReader } from './codec/reader.js';
import { ByteWriter } from './codec/writer.js';

export const CREDENTIAL_V2_VERSION = 2;
export const CREDENTIAL_V2_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v2/credential');
export const CSK_CERT_CONTEXT: Uint8Array = utf8('ockam-enroll/v2/csk');
export const CREDENTIAL_V2_TEXT_PREFIX = 'OECR2:';
/** A v2 credential with no pet name and no attribute: 1 + 32 + 32 + 64 + 2·32 + 2·8 + 1 + 1 + 64. */
export const CREDENTIAL_V2_MIN_LEN = 1 + 32 + 32 + 64 + 32 + 32 + 8 + 8 + 1 + 1 + 64;
export const CREDENTIAL_V2_MAX_LEN = CREDENTIAL_V2_MIN_LEN - 1 + CARD_MAX_PET_NAME_LEN + ATTR_MAX_ENCODED_LEN;
const ED25519_SIG_LEN = 64;
const CLOCK_SKEW = 300;

/** v1's fields (credential-fields.ts) and the attributes. */
export interface CredentialV2Fields extends CommonCredentialFields {
  attributes: Attributes;
}

/** IK_A's certificate of a CSK: the CSK's public key and csk_sig. */
export interface CskCertificate {
  csk: Uint8Array;
  cskSig: Uint8Array;
}

export interface CredentialV2 extends CredentialV2Fields, CskCertificate {
  version: 2;
  /** Ed25519(CSK, CREDENTIAL_V2_SIG_CONTEXT ‖ the preceding encoding). */
  signature: Uint8Array;
}

/** The bytes IK_A signs to certify `csk`. */
export function cskCertifiedBytes(ikA: Uint8Array, csk: Uint8Array): Uint8Array {
  return concat(CSK_CERT_CONTEXT, abytes(ikA, 32, 'IK_A'), abytes(csk, 32, 'CSK'));
}

/** Certifies `csk` with IK_A's prepared signer (once per service process). */
export function certifyCsk(ikA: Uint8Array, csk: Uint8Array, signer: XEdDSASigner, random: Uint8Array | RandomSource = systemRandom): CskCertificate {
  const cskSig = abytes(signer(cskCertifiedBytes(ikA, csk), random), XEDDSA_SIGNATURE_LEN, 'csk_sig');
  return { csk: Uint8Array.from(csk), cskSig };
}

/** A CSK's private KeyObject from its 32-byte seed (RFC 8032 §5.1.5), and its public key. */
export function cskFromSeed(seed: Uint8Array): { privateKey: KeyObject; publicKey: Uint8Array } {
  abytes(seed, 32, 'CSK seed');
  // PKCS#8 of an Ed25519 seed (RFC 8410 §7): a fixed 16-byte prefix, then the seed.
  const der = concat(Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]), seed);
  const privateKey = createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as { x?: string };
  return { privateKey, publicKey: new Uint8Array(Buffer.from(String(jwk.x), 'base64url')) };
}

function checkFields(c: CredentialV2Fields, fail: (m: string) => never): { pet: Uint8Array; attrs: Uint8Array } {
  const pet = checkCommonFields(c, fail);
  let attrs: Uint8Array;
  try {
    attrs = encodeAttributes(c.attributes);
  } catch (err) {
    return fail((err as Error).message);
  }
  return { pet, attrs };
}

function encodeSignedPart(c: CredentialV2Fields & CskCertificate): Uint8Array {
  const { pet, attrs } = checkFields(c, (m) => {
    throw new EnrollError('ERR_INVALID_ARG', `credential: ${m}`);
  });
  return new ByteWriter()
    .u8(CREDENTIAL_V2_VERSION, 'version')
    .bytes(c.issuer, 32, 'issuer')
    .bytes(c.csk, 32, 'csk')
    .bytes(c.cskSig, XEDDSA_SIGNATURE_LEN, 'cskSig')
    .bytes(c.enrolleeId, 32, 'enrolleeId')
    .bytes(c.ikB, 32, 'ikB')
    .u64be(c.issuedAt, 'issuedAt')
    .u64be(c.expiresAt, 'expiresAt')
    .u8(pet.length, 'pet_len')
    .bytes(pet, undefined, 'petName')
    .bytes(attrs, undefined, 'attributes')
    .finish();
}

/** The message the CSK signs: CREDENTIAL_V2_SIG_CONTEXT ‖ the signed part. */
export function credentialV2SignedBytes(c: CredentialV2Fields & CskCertificate): Uint8Array {
  return concat(CREDENTIAL_V2_SIG_CONTEXT, encodeSignedPart(c));
}

/** Signs a v2 credential with the CSK (node:crypto Ed25519; deterministic, RFC 8032 §5.1.6). */
export function signCredentialV2(fields: CredentialV2Fields, cert: CskCertificate, cskPrivate: KeyObject): CredentialV2 {
  const message = credentialV2SignedBytes({ ...fields, ...cert });
  const signature = new Uint8Array(nodeSign(null, message, cskPrivate));
  return assembleCredentialV2(fields, cert, signature);
}

/** A credential from its fields, certificate and a signature made elsewhere (a signing thread). */
export function assembleCredentialV2(fields: CredentialV2Fields, cert: CskCertificate, signature: Uint8Array): CredentialV2 {
  return {
    version: CREDENTIAL_V2_VERSION,
    issuer: Uint8Array.from(fields.issuer),
    csk: Uint8Array.from(cert.csk),
    cskSig: Uint8Array.from(cert.cskSig),
    enrolleeId: Uint8Array.from(fields.enrolleeId),
    ikB: Uint8Array.from(fields.ikB),
    petName: fields.petName,
    issuedAt: fields.issuedAt,
    expiresAt: fields.expiresAt,
    attributes: fields.attributes,
    signature: abytes(signature, ED25519_SIG_LEN, 'signature'),
  };
}

export function encodeCredentialV2(c: CredentialV2): Uint8Array {
  if (c === null || typeof c !== 'object' || c.version !== CREDENTIAL_V2_VERSION) throw new EnrollError('ERR_INVALID_ARG', 'credential: not a version 2 credential');
  abytes(c.signature, ED25519_SIG_LEN, 'signature');
  return concat(encodeSignedPart(c), c.signature);
}

/**
 * Parses a v2 credential's structure (no signature, issuer or expiry check). Any deviation
 * is ERR_CREDENTIAL_MALFORMED: the version, a length outside
 * CREDENTIAL_V2_MIN_LEN..CREDENTIAL_V2_MAX_LEN (checked first, before any field), truncation,
 * the pet name's rules, the attribute list's (§4.6.1), the lifetime, trailing bytes.
 */
export function decodeCredentialV2(bytes: Uint8Array): CredentialV2 {
  abytes(bytes, undefined, 'credential');
  const r = new ByteReader(bytes, 'ERR_CREDENTIAL_MALFORMED', 'credential');
  const version = r.u8('version');
  if (version !== CREDENTIAL_V2_VERSION) r.fail(`version ${version} is not 2`);
  if (bytes.length < CREDENTIAL_V2_MIN_LEN || bytes.length > CREDENTIAL_V2_MAX_LEN) {
    r.fail(`${bytes.length} bytes, expected ${CREDENTIAL_V2_MIN_LEN}..${CREDENTIAL_V2_MAX_LEN}`);
  }
  const issuer = r.bytes(32, 'IK_A');
  const csk = r.bytes(32, 'CSK');
  const cskSig = r.bytes(XEDDSA_SIGNATURE_LEN, 'csk_sig');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const ikB = r.bytes(32, 'IK_B');
  const issuedAt = r.u64be('issued_at');
  const expiresAt = r.u64be('expires_at');
  const petLen = r.u8('pet_len');
  if (petLen > CARD_MAX_PET_NAME_LEN) r.fail(`"pet_len" is ${petLen}, at most ${CARD_MAX_PET_NAME_LEN}`);
  const petName = r.utf8(petLen, 'pet name');
  const attributes = readAttributes(r);
  const signature = r.bytes(ED25519_SIG_LEN, 'sig');
  r.end();
  const c: CredentialV2 = { version: 2, issuer, csk, cskSig, enrolleeId, ikB, petName, issuedAt, expiresAt, attributes, signature };
  checkFields(c, (m) => r.fail(m));
  return c;
}

/** CSK certificates that verified, by IK_A ‖ CSK ‖ csk_sig (bounded: a verifier sees few services). */
const verifiedCerts = new Set<string>();
const VERIFIED_CERTS_MAX = 64;

/** Step 2 of §4.6's verification: IK_A certified this CSK. */
export function verifyCskCertificate(ikA: Uint8Array, cert: CskCertificate): boolean {
  const key = toHex(concat(ikA, cert.csk, cert.cskSig));
  if (verifiedCerts.has(key)) return true;
  if (!xeddsaVerify(ikA, cskCertifiedBytes(ikA, cert.csk), cert.cskSig)) return false;
  if (verifiedCerts.size >= VERIFIED_CERTS_MAX) verifiedCerts.clear();
  verifiedCerts.add(key);
  return true;
}

/**
 * Checks a decoded v2 credential, in this order (docs/protocol.md §4.6):
 * 1. the issuer is the trusted service key → else ERR_CREDENTIAL_ISSUER (no curve arithmetic);
 * 2. csk_sig verifies under IK_A → else ERR_CREDENTIAL_SIGNATURE;
 * 3. sig verifies under the CSK → else ERR_CREDENTIAL_SIGNATURE;
 * 4. now < expires_at, and issued_at ≤ now + 300 → else ERR_CREDENTIAL_EXPIRED.
 */
export function verifyCredentialV2(c: CredentialV2, options: { now: number; issuer: Uint8Array }): CredentialV2 {
  const { now, issuer } = options ?? ({} as { now: number; issuer: Uint8Array });
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new EnrollError('ERR_INVALID_ARG', '"now" must be a finite number of unix seconds');
  abytes(issuer, 32, 'issuer');
  if (c === null || typeof c !== 'object' || c.version !== CREDENTIAL_V2_VERSION) throw new EnrollError('ERR_CREDENTIAL_MALFORMED', 'credential: not a version 2 credential');
  checkFields(c, (m) => {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `credential: ${m}`);
  });
  for (const [name, v, n] of [['csk', c.csk, 32], ['cskSig', c.cskSig, XEDDSA_SIGNATURE_LEN], ['signature', c.signature, ED25519_SIG_LEN]] as const) {
    if (!(v instanceof Uint8Array) || v.length !== n) throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `credential: "${name}" must be ${n} bytes`);
  }
  if (!equalBytes(c.issuer, issuer)) {
    throw new EnrollError('ERR_CREDENTIAL_ISSUER', 'the credential was issued by another service key', {
      hint: 'check --service-key: it must be the key of the service the device enrolled with',
    });
  }
  const forged = () =>
    new EnrollError('ERR_CREDENTIAL_SIGNATURE', 'the credential\'s signature does not verify: it was altered or forged', {
      hint: 'ask the device for its credential again (`enrollee status --json`, or its credential.txt)',
    });
  if (!verifyCskCertificate(c.issuer, c)) throw forged();
  let cskKey: KeyObject;
  try {
    cskKey = importEd25519Public(c.csk, 'CSK');
  } catch {
    throw forged();
  }
  if (!ed25519Verify(cskKey, credentialV2SignedBytes(c), c.signature)) throw forged();
  if (now >= c.expiresAt) {
    throw new EnrollError('ERR_CREDENTIAL_EXPIRED', `the credential expired at ${new Date(c.expiresAt * 1000).toISOString()}`, {
      hint: 'the device must enroll again to get a new credential',
    });
  }
  if (c.issuedAt > now + CLOCK_SKEW) {
    throw new EnrollError('ERR_CREDENTIAL_EXPIRED', `the credential is not valid until ${new Date(c.issuedAt * 1000).toISOString()}`, {
      hint: 'check this machine\'s clock',
    });
  }
  return c;
}
