/**
 * The fields both credential versions share (docs/protocol.md §4.4, §4.6) and their checks,
 * in one place so that v1 (credential.ts) and v2 (credential-v2.ts) refuse exactly the same
 * keys, times and pet names. Pure.
 */
import { sha256 } from '../crypto/hash.js';
import { utf8 } from '../crypto/bytes.js';
import { encodeAttributes, type Attributes } from './codec/attributes.js';
import { petNameProblem } from './codec/card.js';
import { ByteWriter, strictUtf8 } from './codec/writer.js';

export const CREDENTIAL_KEY_LEN = 32;
/** The longest lifetime a credential may have: ten years. */
export const CREDENTIAL_MAX_TTL = 3650 * 86400;

export interface CommonCredentialFields {
  /** The issuing service's identity key IK_A. */
  issuer: Uint8Array;
  /** SHA-256(EIK_B), the enrollee id (§3.2). */
  enrolleeId: Uint8Array;
  /** The enrollee's long-term identity key IK_B. */
  ikB: Uint8Array;
  /** The enrollee's pet name as the service recorded it ('' for none). */
  petName: string;
  /** Unix seconds. */
  issuedAt: number;
  /** Unix seconds; the credential is refused at and after this instant. */
  expiresAt: number;
}

/**
 * Field types, lengths and ranges of the shared fields; returns the pet name's UTF-8. The
 * error is the caller's (`fail`). A credential that is never valid, or valid for longer than
 * any service issues, is refused by the codec itself: no verifier has to remember to check it.
 */
export function checkCommonFields(c: CommonCredentialFields, fail: (m: string) => never): Uint8Array {
  for (const [name, v] of [['issuer', c.issuer], ['enrolleeId', c.enrolleeId], ['ikB', c.ikB]] as const) {
    if (!(v instanceof Uint8Array) || v.length !== CREDENTIAL_KEY_LEN) fail(`"${name}" must be ${CREDENTIAL_KEY_LEN} bytes`);
  }
  for (const [name, v] of [['issuedAt', c.issuedAt], ['expiresAt', c.expiresAt]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) fail(`"${name}" must be an integer in 0..2^53-1`);
  }
  if (c.expiresAt <= c.issuedAt) fail('"expiresAt" must be after "issuedAt"');
  if (c.expiresAt - c.issuedAt > CREDENTIAL_MAX_TTL) fail(`lifetime is over ${CREDENTIAL_MAX_TTL} seconds`);
  if (typeof c.petName !== 'string') fail('"petName" must be a string');
  let pet: Uint8Array;
  try {
    pet = strictUtf8(c.petName, 'petName');
  } catch {
    return fail('"petName" holds a lone surrogate');
  }
  const problem = petNameProblem(c.petName, pet);
  if (problem !== undefined) fail(`"petName" ${problem}`);
  return pet;
}

export const SUBJECT_DIGEST_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/credential-subject');

/**
 * The subject digest of a credential (docs/protocol.md §7.9.4): SHA-256 over
 * `"ockam-enroll/v1/credential-subject" ‖ pet_len u8 ‖ pet name ‖ attributes (§4.6.1)`, what
 * a credential says about its enrollee beyond its id and key. A v1 credential says no
 * attributes (the empty list). The service sends the digest of the credential it would issue
 * now in STATUS; a device whose credential has another digest asks for a new one, so a
 * `set-attr` reaches the device at its next `enrollee status`.
 */
export function credentialSubjectDigest(petName: string, attributes: Attributes): Uint8Array {
  const pet = strictUtf8(petName, 'petName');
  return sha256(SUBJECT_DIGEST_CONTEXT, new ByteWriter().u8(pet.length, 'pet_len').bytes(pet, undefined, 'petName').finish(), encodeAttributes(attributes));
}
