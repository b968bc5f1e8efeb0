/**
 * The enrollee credential, v1 (docs/protocol.md §4.4): what the service says about an
 * enrollee it accepted, signed with IK_A, so that anyone who knows the service key — another
 * enrolled device, offline — can check who a device is without asking the service.
 *
 *   version u8 = 1 | IK_A 32 (issuer) | enrollee_id 32 | IK_B 32 | issued_at u64 |
 *   expires_at u64 | pet_len u8 (0..64) | pet name UTF-8 | sig 64
 *
 *   sig = XEdDSA(IK_A, "ockam-enroll/v1/credential" ‖ every preceding byte)
 *
 * The context label keeps a credential signature from ever being a valid bundle signature
 * (or SPK_sig, or any other IK_A signature), and the reverse: IK_A signs several message
 * types (§2.4, §4.1) and each has its own label or fixed shape. The issuer key is inside the
 * signed bytes, so a verifier that pins the service key refuses a credential from another
 * service before any curve arithmetic.
 *
 * Pure: bytes in, bytes out, keys and time passed in. The text form is `OECR1:` + base32 with
 * the checksum of §4.3.
 */
import { EnrollError } from '../errors.js';
import { abytes, concat, equalBytes, utf8 } from '../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { x25519PublicKey } from '../crypto/x25519.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaSign, xeddsaVerify, type XEdDSASigner } from '../crypto/xeddsa.js';
import { CARD_MAX_PET_NAME_LEN } from './codec/card.js';
import { checkCommonFields, CREDENTIAL_KEY_LEN, CREDENTIAL_MAX_TTL, type CommonCredentialFields } from './credential-fields.js';
import { ByteReader } from './codec/reader.js';
import { decodeText, encodeText } from './codec/text.js';
import { ByteWriter } from './codec/writer.js';
import { CREDENTIAL_V2_TEXT_PREFIX, CREDENTIAL_V2_VERSION, decodeCredentialV2, encodeCredentialV2, verifyCredentialV2, type CredentialV2 } from './credential-v2.js';

/** A credential of either version (v2: credential-v2.ts, with attributes). */
export type AnyCredential = Credential | CredentialV2;

export const CREDENTIAL_VERSION = 1;
export { CREDENTIAL_KEY_LEN, CREDENTIAL_MAX_TTL };
/** The domain-separation label prepended to the signed bytes. */
export const CREDENTIAL_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/credential');
export const CREDENTIAL_TEXT_PREFIX = 'OECR1:';
/** Bytes of a credential with no pet name: 1 + 3·32 + 2·8 + 1 + 64. */
export const CREDENTIAL_MIN_LEN = 1 + 3 * CREDENTIAL_KEY_LEN + 8 + 8 + 1 + XEDDSA_SIGNATURE_LEN;
export const CREDENTIAL_MAX_LEN = CREDENTIAL_MIN_LEN + CARD_MAX_PET_NAME_LEN;
/** How far in the future issued_at may be before a verifier refuses it (clock skew). */
export const CREDENTIAL_CLOCK_SKEW = 300;

/** The fields of a v1 credential: the shared ones (credential-fields.ts). */
export type CredentialFields = CommonCredentialFields;

export interface Credential extends CredentialFields {
  version: 1;
  /** XEdDSA(IK_A, CREDENTIAL_SIG_CONTEXT ‖ the preceding encoding). */
  signature: Uint8Array;
}

export interface VerifyCredentialOptions {
  /** Current time in unix seconds. */
  now: number;
  /** The service key the caller trusts; a credential from any other issuer is refused. */
  issuer: Uint8Array;
}

/** Field types, lengths and ranges (credential-fields.ts); the error code is the caller's. */
function checkFields(c: CredentialFields, fail: (m: string) => never): Uint8Array {
  return checkCommonFields(c, fail);
}

/** Every byte the signature covers (all fields before sig). */
function encodeSignedPart(c: CredentialFields): Uint8Array {
  const pet = checkFields(c, (m) => {
    throw new EnrollError('ERR_INVALID_ARG', `credential: ${m}`);
  });
  return new ByteWriter()
    .u8(CREDENTIAL_VERSION, 'version')
    .bytes(c.issuer, CREDENTIAL_KEY_LEN, 'issuer')
    .bytes(c.enrolleeId, CREDENTIAL_KEY_LEN, 'enrolleeId')
    .bytes(c.ikB, CREDENTIAL_KEY_LEN, 'ikB')
    .u64be(c.issuedAt, 'issuedAt')
    .u64be(c.expiresAt, 'expiresAt')
    .u8(pet.length, 'pet_len')
    .bytes(pet, undefined, 'petName')
    .finish();
}

/** The message XEdDSA signs: CREDENTIAL_SIG_CONTEXT ‖ the signed part. */
export function credentialSignedBytes(c: CredentialFields): Uint8Array {
  return concat(CREDENTIAL_SIG_CONTEXT, encodeSignedPart(c));
}

/**
 * Signs a credential with IK_A: its private key (checked against `fields.issuer`, so the
 * service never hands out a credential that cannot verify), or a prepared signer for it
 * (xeddsaSigner, which the service keeps so that IK_A's key pair is computed once).
 */
export function signCredential(
  fields: CredentialFields,
  key: Uint8Array | XEdDSASigner,
  random: Uint8Array | RandomSource = systemRandom,
): Credential {
  const message = credentialSignedBytes(fields);
  let signature: Uint8Array;
  if (key instanceof Uint8Array) {
    abytes(key, CREDENTIAL_KEY_LEN, 'ikAPrivate');
    if (!equalBytes(x25519PublicKey(key), fields.issuer)) {
      throw new EnrollError('ERR_INVALID_ARG', 'credential: "issuer" is not the public key of "ikAPrivate"');
    }
    signature = xeddsaSign(key, message, random);
  } else if (typeof key === 'function') {
    signature = abytes(key(message, random), XEDDSA_SIGNATURE_LEN, 'signature');
  } else {
    throw new EnrollError('ERR_INVALID_ARG', `"key" expected Uint8Array or a signer, got ${typeof key}`);
  }
  return {
    version: CREDENTIAL_VERSION,
    issuer: Uint8Array.from(fields.issuer),
    enrolleeId: Uint8Array.from(fields.enrolleeId),
    ikB: Uint8Array.from(fields.ikB),
    petName: fields.petName,
    issuedAt: fields.issuedAt,
    expiresAt: fields.expiresAt,
    signature,
  };
}

export function encodeCredential(c: AnyCredential): Uint8Array {
  if (c === null || typeof c !== 'object') throw new EnrollError('ERR_INVALID_ARG', 'credential: not an object');
  if (c.version === CREDENTIAL_V2_VERSION) return encodeCredentialV2(c);
  if (c.version !== CREDENTIAL_VERSION) throw new EnrollError('ERR_INVALID_ARG', `credential: "version" must be ${CREDENTIAL_VERSION}`);
  abytes(c.signature, XEDDSA_SIGNATURE_LEN, 'signature');
  return concat(encodeSignedPart(c), c.signature);
}

/**
 * Parses a credential's structure only (no signature, issuer or expiry check: see
 * verifyCredential). Any deviation — version, length over CREDENTIAL_MAX_LEN, truncation, a
 * pet name over 64 bytes or with a control character, ill-formed UTF-8, expires_at not after
 * issued_at, a lifetime over ten years, trailing bytes — is ERR_CREDENTIAL_MALFORMED.
 */
export function decodeCredential(bytes: Uint8Array): AnyCredential {
  abytes(bytes, undefined, 'credential');
  // Version 2 (docs/protocol.md §4.5) carries attributes and a CSK signature.
  if (bytes.length > 0 && bytes[0] === CREDENTIAL_V2_VERSION) return decodeCredentialV2(bytes);
  const r = new ByteReader(bytes, 'ERR_CREDENTIAL_MALFORMED', 'credential');
  const version = r.u8('version');
  if (version !== CREDENTIAL_VERSION) r.fail(`version ${version} is not supported (expected ${CREDENTIAL_VERSION})`);
  if (bytes.length > CREDENTIAL_MAX_LEN) r.fail(`${bytes.length} bytes, at most ${CREDENTIAL_MAX_LEN}`);
  const issuer = r.bytes(CREDENTIAL_KEY_LEN, 'IK_A');
  const enrolleeId = r.bytes(CREDENTIAL_KEY_LEN, 'enrollee_id');
  const ikB = r.bytes(CREDENTIAL_KEY_LEN, 'IK_B');
  const issuedAt = r.u64be('issued_at');
  const expiresAt = r.u64be('expires_at');
  const petLen = r.u8('pet_len');
  if (petLen > CARD_MAX_PET_NAME_LEN) r.fail(`"pet_len" is ${petLen}, at most ${CARD_MAX_PET_NAME_LEN}`);
  const petName = r.utf8(petLen, 'pet name');
  const signature = r.bytes(XEDDSA_SIGNATURE_LEN, 'sig');
  r.end();
  const c: Credential = { version: CREDENTIAL_VERSION, issuer, enrolleeId, ikB, petName, issuedAt, expiresAt, signature };
  checkFields(c, (m) => r.fail(m));
  return c;
}

/**
 * Checks a decoded credential and returns it, in this order (docs/protocol.md §4.4):
 * 1. the issuer is the trusted service key → else ERR_CREDENTIAL_ISSUER (no curve arithmetic);
 * 2. the signature verifies under it → else ERR_CREDENTIAL_SIGNATURE;
 * 3. now < expires_at, and issued_at ≤ now + CREDENTIAL_CLOCK_SKEW → else ERR_CREDENTIAL_EXPIRED.
 * Authenticity comes before time, so a forged credential is called forged even when it is
 * also expired, and an "expired" verdict is about a credential the service really issued.
 */
export function verifyCredential<C extends AnyCredential>(c: C, options: VerifyCredentialOptions): C {
  if (c !== null && typeof c === 'object' && c.version === CREDENTIAL_V2_VERSION) return verifyCredentialV2(c, options) as C;
  const { now, issuer } = options ?? ({} as VerifyCredentialOptions);
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new EnrollError('ERR_INVALID_ARG', '"now" must be a finite number of unix seconds');
  }
  abytes(issuer, CREDENTIAL_KEY_LEN, 'issuer');
  if (c === null || typeof c !== 'object' || c.version !== CREDENTIAL_VERSION) {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', 'credential: not a version 1 credential');
  }
  checkFields(c, (m) => {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `credential: ${m}`);
  });
  if (!(c.signature instanceof Uint8Array) || c.signature.length !== XEDDSA_SIGNATURE_LEN) {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `credential: "signature" must be ${XEDDSA_SIGNATURE_LEN} bytes`);
  }
  if (!equalBytes(c.issuer, issuer)) {
    throw new EnrollError('ERR_CREDENTIAL_ISSUER', 'the credential was issued by another service key', {
      hint: 'check --service-key: it must be the key of the service the device enrolled with',
    });
  }
  if (!xeddsaVerify(c.issuer, credentialSignedBytes(c), c.signature)) {
    throw new EnrollError('ERR_CREDENTIAL_SIGNATURE', 'the credential\'s signature does not verify: it was altered or forged', {
      hint: 'ask the device for its credential again (`enrollee status --json`, or its credential.txt)',
    });
  }
  if (now >= c.expiresAt) {
    throw new EnrollError('ERR_CREDENTIAL_EXPIRED', `the credential expired at ${new Date(c.expiresAt * 1000).toISOString()}`, {
      hint: 'the device must enroll again to get a new credential',
    });
  }
  if (c.issuedAt > now + CREDENTIAL_CLOCK_SKEW) {
    throw new EnrollError('ERR_CREDENTIAL_EXPIRED', `the credential is not valid until ${new Date(c.issuedAt * 1000).toISOString()}`, {
      hint: 'check this machine\'s clock',
    });
  }
  return c;
}

export function credentialToText(c: AnyCredential): string {
  return encodeText(c?.version === CREDENTIAL_V2_VERSION ? CREDENTIAL_V2_TEXT_PREFIX : CREDENTIAL_TEXT_PREFIX, encodeCredential(c));
}

/**
 * Decodes a credential's text form (checksum, then structure); verify it with verifyCredential.
 * `OECR2:` holds a version 2 credential, `OECR1:` a version 1: a version byte that does not
 * match its prefix is refused.
 */
export function credentialFromText(text: string): AnyCredential {
  const v2 = typeof text === 'string' && text.trimStart().toUpperCase().startsWith(CREDENTIAL_V2_TEXT_PREFIX);
  const bytes = decodeText(v2 ? CREDENTIAL_V2_TEXT_PREFIX : CREDENTIAL_TEXT_PREFIX, text);
  if ((bytes[0] === CREDENTIAL_V2_VERSION) !== v2) {
    throw new EnrollError('ERR_CREDENTIAL_MALFORMED', `credential: version ${bytes[0]} under the prefix ${v2 ? CREDENTIAL_V2_TEXT_PREFIX : CREDENTIAL_TEXT_PREFIX}`);
  }
  return decodeCredential(bytes);
}
