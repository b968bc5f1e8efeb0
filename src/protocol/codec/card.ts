/**
 * The enrollee card, v1: what an enrollee shows its enroller so the enroller can approve
 * it with the service (architecture.md, step 2).
 *
 *   version u8 = 1 | EIK_B 32 | has_bundle u8 (0|1) | [bundle_id 16] | pet_len u8 (0..64) |
 *   pet name UTF-8
 *
 * EIK_B is the enrollee's enrollment identity key (Enrollment Key Agreement: "The enrollee
 * then sends a public key EIK_B to the enroller"). bundle_id, when present, names the
 * bundle the enrollee received, so the enroller can approve the right OPK. The pet name is
 * a human label only; nothing authenticates it, so it is shown but never trusted.
 */
import { EnrollError } from '../../errors.js';
import { abytes } from '../../crypto/bytes.js';
import { BUNDLE_ID_LEN } from './bundle.js';
import { ByteReader } from './reader.js';
import { ByteWriter, strictUtf8 } from './writer.js';

export const CARD_VERSION = 1;
export const CARD_KEY_LEN = 32;
export const CARD_MAX_PET_NAME_LEN = 64;
export const CARD_MAX_LEN = 1 + CARD_KEY_LEN + 1 + BUNDLE_ID_LEN + 1 + CARD_MAX_PET_NAME_LEN;

export interface EnrolleeCard {
  version: 1;
  /** EIK_B, the enrollee's X25519 enrollment identity public key. */
  eikB: Uint8Array;
  /** The bundle the enrollee holds, if any. */
  bundleId?: Uint8Array;
  /** A human label, 1..64 UTF-8 bytes; absent when empty. */
  petName?: string;
}

/**
 * Characters a pet name must not hold. The name is printed to the enroller for a decision,
 * so anything that can change how a terminal shows it is refused: C0/C1 controls and DEL
 * (\p{Cc}: escape sequences, carriage returns), line and paragraph separators (U+2028,
 * U+2029), and the bidirectional formatting characters (U+061C, U+200E, U+200F,
 * U+202A–U+202E, U+2066–U+2069) that can reorder what is displayed ("Trojan Source",
 * CVE-2021-42574).
 */
const FORBIDDEN_PET_CHARS = /[\p{Cc}\u2028\u2029\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/u;

/** Returns a reason the pet name is not acceptable, or undefined (also for credentials, protocol/credential.ts). */
export function petNameProblem(name: string, bytes: Uint8Array): string | undefined {
  if (bytes.length > CARD_MAX_PET_NAME_LEN) return `is ${bytes.length} bytes, at most ${CARD_MAX_PET_NAME_LEN}`;
  const bad = FORBIDDEN_PET_CHARS.exec(name);
  if (bad) return `holds a control character (U+${bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
  return undefined;
}

export function encodeCard(card: EnrolleeCard): Uint8Array {
  if (card === null || typeof card !== 'object') throw new EnrollError('ERR_INVALID_ARG', 'card: not an object');
  if (card.version !== CARD_VERSION) throw new EnrollError('ERR_INVALID_ARG', `card: "version" must be ${CARD_VERSION}`);
  abytes(card.eikB, CARD_KEY_LEN, 'eikB');
  if (card.bundleId !== undefined) abytes(card.bundleId, BUNDLE_ID_LEN, 'bundleId');
  const pet = strictUtf8(card.petName ?? '', 'petName');
  const problem = petNameProblem(card.petName ?? '', pet);
  if (problem !== undefined) throw new EnrollError('ERR_INVALID_ARG', `card: "petName" ${problem}`);
  const w = new ByteWriter().u8(CARD_VERSION, 'version').bytes(card.eikB, CARD_KEY_LEN, 'eikB');
  if (card.bundleId === undefined) w.u8(0, 'has_bundle');
  else w.u8(1, 'has_bundle').bytes(card.bundleId, BUNDLE_ID_LEN, 'bundleId');
  return w.u8(pet.length, 'pet_len').bytes(pet, undefined, 'petName').finish();
}

/**
 * Parses a card. Any deviation from the layout (version, has_bundle not 0 or 1, a pet
 * name over 64 bytes, ill-formed UTF-8, a control character, trailing bytes) is
 * ERR_CARD_MALFORMED. An empty pet name decodes to an absent `petName`.
 */
export function decodeCard(bytes: Uint8Array): EnrolleeCard {
  abytes(bytes, undefined, 'card');
  const r = new ByteReader(bytes, 'ERR_CARD_MALFORMED', 'card');
  const version = r.u8('version');
  if (version !== CARD_VERSION) r.fail(`version ${version} is not supported (expected ${CARD_VERSION})`);
  if (bytes.length > CARD_MAX_LEN) r.fail(`${bytes.length} bytes, at most ${CARD_MAX_LEN}`);
  const eikB = r.bytes(CARD_KEY_LEN, 'EIK_B');
  const hasBundle = r.u8('has_bundle');
  if (hasBundle !== 0 && hasBundle !== 1) r.fail(`"has_bundle" must be 0 or 1, got ${hasBundle}`);
  const bundleId = hasBundle === 1 ? r.bytes(BUNDLE_ID_LEN, 'bundle_id') : undefined;
  const petLen = r.u8('pet_len');
  if (petLen > CARD_MAX_PET_NAME_LEN) r.fail(`"pet_len" is ${petLen}, at most ${CARD_MAX_PET_NAME_LEN}`);
  const petBytesStart = r.offset;
  const petName = r.utf8(petLen, 'pet name');
  r.end();
  const problem = petNameProblem(petName, bytes.subarray(petBytesStart));
  if (problem !== undefined) r.fail(`"pet name" ${problem}`);
  const card: EnrolleeCard = { version: CARD_VERSION, eikB };
  if (bundleId !== undefined) card.bundleId = bundleId;
  if (petName.length > 0) card.petName = petName;
  return card;
}
