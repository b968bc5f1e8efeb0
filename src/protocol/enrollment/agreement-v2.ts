/**
 * The Enrollment Key Agreement v2: hybrid X3DH + ML-KEM-768, after Signal's PQXDH
 * (Kret and Schmidt, "The PQXDH Key Agreement Protocol", revision 3, §3.3 and §3.4).
 * docs/protocol.md §5A specifies it byte by byte.
 *
 *   DH1..DH4 as in v1 (agreement.ts)
 *   (CT, SS) = ML-KEM-768.Encaps(PQSPK_A, m)             PQSPK_A checked against KEM_hash first
 *   KM  = DH1 ‖ DH2 ‖ DH3 ‖ DH4 ‖ SS                      160 bytes (PQXDH §3.3)
 *   SK  = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 ‖ KM, info = INFO_V2, L = 32)
 *   h   = SHA-256(INFO_V2 ‖ 0xFF^32 ‖ KM)
 *   Header  = 0x02 ‖ EK_B ‖ SHA-256(EIK_B) ‖ CT          1153 bytes
 *   AAD     = Header ‖ INFO_V2 ‖ KEM_hash ‖ Addr ‖ h
 *   Message = Header ‖ AES-256-GCM(SK, EK_B[0..12], IK_B ‖ POP, AAD)   1265 bytes
 *
 * SS alone protects SK against an attacker who records the message and later breaks
 * X25519 ("harvest now, decrypt later"); DH1..DH4 alone protect it if ML-KEM-768 falls.
 * CT sits in the header, so the AEAD authenticates it, and KEM_hash in the AAD binds the
 * KEM key the enrollee encapsulated to (PQXDH §4.10 and the KEM re-encapsulation concern
 * its revision 2 addressed): a ciphertext or key swapped in transit fails the tag. ML-KEM's
 * implicit rejection turns any ciphertext not made for PQSPK_A into an SS the sender cannot
 * know, so it ends as the same ERR_ENROLLMENT_DECRYPT as a bad tag.
 */
import type { KeyObject } from 'node:crypto';
import { EnrollError, isEnrollError } from '../../errors.js';
import { abytes, concat, equalBytes, wipe } from '../../crypto/bytes.js';
import { aesGcmEncrypt, GCM_NONCE_LEN } from '../../crypto/aead.js';
import { sha256 } from '../../crypto/hash.js';
import { mlKem768Decapsulate, mlKem768Encapsulate, type MlKemDecapsulator } from '../../crypto/mlkem.js';
import { systemRandom } from '../../crypto/random.js';
import { XEDDSA_SIGNATURE_LEN } from '../../crypto/xeddsa.js';
import type { BundleV2 } from '../codec/bundle.js';
import { strictUtf8 } from '../codec/writer.js';
import type { AcceptContext, AcceptResult, InitiateInput, InitiateResult } from './agreement.js';
import { checkInitiateInput, enrolleeProof, initiatorDhs, lookupChecked, openEnrollment, responderDhs } from './agreement.js';
import {
  ENROLLMENT_MESSAGE_V2_LEN,
  HASH_LEN,
  HEADER_V2_LEN,
  INFO_V2,
  KEM_CIPHERTEXT_LEN,
  KEM_PUBLIC_KEY_LEN,
  KEY_LEN,
  MESSAGE_VERSION_V2,
  SESSION_INFO_V2,
} from './constants.js';
import { deriveSessionKeys } from './session.js';
import { x3dhKdf, x3dhStateHash } from './x3dh.js';

/** SHA-256(PQSPK_A): the KEM_hash a v2 bundle carries under bundle_sig. */
export function kemPrekeyHash(pqspkA: Uint8Array): Uint8Array {
  return sha256(abytes(pqspkA, KEM_PUBLIC_KEY_LEN, 'pqspkA'));
}

/**
 * Checks a fetched PQSPK_A against the bundle's signed KEM_hash (ERR_KEM_PREKEY). Whoever
 * delivered the key (the service's KEM prekey answer, §7.2) is not trusted: IK_A's
 * signature over KEM_hash is what authenticates it.
 */
export function checkKemPrekey(bundle: Pick<BundleV2, 'kemHash'>, pqspkA: Uint8Array): Uint8Array {
  if (!(pqspkA instanceof Uint8Array) || pqspkA.length !== KEM_PUBLIC_KEY_LEN) {
    throw new EnrollError('ERR_KEM_PREKEY', `the ML-KEM prekey is ${pqspkA instanceof Uint8Array ? pqspkA.length : typeof pqspkA} bytes, expected ${KEM_PUBLIC_KEY_LEN}`);
  }
  if (!equalBytes(sha256(pqspkA), abytes(bundle.kemHash, HASH_LEN, 'bundle.kemHash'))) {
    throw new EnrollError('ERR_KEM_PREKEY', 'the ML-KEM prekey does not match the bundle\'s signed KEM_hash', {
      hint: 'the key came from somewhere other than the service that signed the bundle; check the bundle\'s address',
    });
  }
  return pqspkA;
}

export interface InitiateV2Input extends Omit<InitiateInput, 'bundle'> {
  /** A v2 bundle, already checked with verifyBundle. */
  bundle: BundleV2;
  /** PQSPK_A, the 1184-byte ML-KEM-768 key whose SHA-256 is bundle.kemHash. */
  kemPrekey: Uint8Array;
  /** For known-answer tests only: ML-KEM's 32-byte m. Production callers leave it out. */
  kemM?: Uint8Array;
}

export interface InitiateV2Result extends InitiateResult {
  /** The KEM ciphertext CT, also in the message (bytes 65..1153). */
  kemCiphertext: Uint8Array;
}

export interface MessageV2Parts {
  ekB: Uint8Array;
  enrolleeId: Uint8Array;
  kemCiphertext: Uint8Array;
  kemHash: Uint8Array;
  sk: Uint8Array;
  h: Uint8Array;
  addr: string;
  ikB: Uint8Array;
  pop: Uint8Array;
}

/** AAD v2 = Header v2 ‖ INFO_V2 ‖ KEM_hash ‖ Addr (UTF-8) ‖ h. */
export function enrollmentAadV2(header: Uint8Array, kemHash: Uint8Array, addr: string, h: Uint8Array): Uint8Array {
  abytes(header, HEADER_V2_LEN, 'header');
  abytes(kemHash, HASH_LEN, 'kemHash');
  abytes(h, HASH_LEN, 'h');
  return concat(header, INFO_V2, kemHash, strictUtf8(addr, 'addr'), h);
}

/**
 * @internal Builds a v2 message from its parts without any check of their meaning, for
 * tests that need a message with exactly one fault. Use `initiateV2`.
 */
export function composeMessageV2(p: MessageV2Parts): Uint8Array {
  abytes(p.ekB, KEY_LEN, 'ekB');
  abytes(p.enrolleeId, HASH_LEN, 'enrolleeId');
  abytes(p.kemCiphertext, KEM_CIPHERTEXT_LEN, 'kemCiphertext');
  abytes(p.sk, KEY_LEN, 'sk');
  abytes(p.ikB, KEY_LEN, 'ikB');
  abytes(p.pop, XEDDSA_SIGNATURE_LEN, 'pop');
  const header = concat(Uint8Array.of(MESSAGE_VERSION_V2), p.ekB, p.enrolleeId, p.kemCiphertext);
  const body = aesGcmEncrypt(
    p.sk,
    p.ekB.subarray(0, GCM_NONCE_LEN),
    concat(p.ikB, p.pop),
    enrollmentAadV2(header, p.kemHash, p.addr, p.h),
  );
  return concat(header, body);
}

/**
 * The enrollee's side of v2. Checks PQSPK_A against KEM_hash before drawing any randomness,
 * then as v1 (agreement.ts initiate) with the KEM added. Randomness is drawn in the order
 * EK_B (32), m (32), IK_B (32, if new), Z (64). EK_B's private key, the DH outputs, SS, KM
 * and SK are wiped before returning.
 */
export function initiateV2(input: InitiateV2Input): InitiateV2Result {
  if (input === null || typeof input !== 'object') throw new EnrollError('ERR_INVALID_ARG', '"input" expected an object');
  const { bundle } = input;
  const random = input.random ?? systemRandom;
  if (bundle === null || typeof bundle !== 'object' || bundle.version !== 2) {
    throw new EnrollError('ERR_EKA_VERSION', 'initiateV2 needs a version 2 bundle');
  }
  abytes(bundle.kemHash, HASH_LEN, 'bundle.kemHash');
  const pqspkA = checkKemPrekey(bundle, input.kemPrekey);
  if (input.kemM !== undefined) abytes(input.kemM, 32, 'kemM');
  const { eikB, givenIkB } = checkInitiateInput(input);
  const { ekB, dhs } = initiatorDhs(input, eikB, random);
  // PQXDH §3.3: (CT, SS) = PQKEM-ENC(PQPK_B), after the DHs.
  let kem: { cipherText: Uint8Array; sharedSecret: Uint8Array };
  try {
    kem = mlKem768Encapsulate(pqspkA, input.kemM ?? random);
  } catch (e) {
    wipe(...dhs);
    // The key matched the IK_A-signed hash, yet fails FIPS 203's modulus check: the
    // service signed a bad key. Refused as a KEM prekey fault.
    if (isEnrollError(e, 'ERR_KEY_INVALID')) {
      throw new EnrollError('ERR_KEM_PREKEY', 'the ML-KEM prekey is not a valid ML-KEM-768 key (FIPS 203 modulus check), though IK_A signed its hash', {
        cause: e,
        hint: 'the service made a bad KEM prekey: its operator should run `ockam-enroll service prekey rotate`; meanwhile enroll with a v1 bundle (--eka v1)',
      });
    }
    throw e;
  }
  const km = concat(...dhs, kem.sharedSecret);
  const sk = x3dhKdf(km, { info: INFO_V2 });
  const h = x3dhStateHash(km, INFO_V2);
  wipe(km, kem.sharedSecret, ...dhs);

  try {
    const { ikB, id, pop } = enrolleeProof(givenIkB, eikB, input.popZ, random);
    const message = composeMessageV2({
      ekB: ekB.publicKey,
      enrolleeId: id,
      kemCiphertext: kem.cipherText,
      kemHash: bundle.kemHash,
      sk,
      h,
      addr: bundle.addr,
      ikB: ikB.publicKey,
      pop,
    });
    return { message, ikB, enrolleeId: id, h, session: deriveSessionKeys(sk, h, SESSION_INFO_V2), kemCiphertext: kem.cipherText };
  } finally {
    wipe(sk);
  }
}

/** What the service's store knows about an approved enrollee of a v2 bundle (check 3). */
export interface PendingEnrolleeV2 {
  eikB: Uint8Array;
  spkA: Uint8Array | KeyObject;
  opkA: Uint8Array | KeyObject;
  addr: string;
  /** The bundle's KEM_hash = SHA-256(PQSPK_A). */
  kemHash: Uint8Array;
  /**
   * PQSPK_A's ML-KEM-768 decapsulation key (2400 bytes), or a decapsulator prepared from it
   * once (mlKem768Decapsulator: the service's, cached per SPK).
   */
  kemSecretKey: Uint8Array | MlKemDecapsulator;
}

export interface AcceptV2Context extends Omit<AcceptContext, 'lookupPending'> {
  lookupPending(enrolleeId: Uint8Array): PendingEnrolleeV2 | undefined;
}

/**
 * Check 1 for v2, no crypto: the length (ERR_MESSAGE_LENGTH), then the version byte (also
 * ERR_MESSAGE_LENGTH: a message that is not a v2 message), then the header split.
 */
export function parseHeaderV2(message: Uint8Array): { ekB: Uint8Array; enrolleeId: Uint8Array; kemCiphertext: Uint8Array } {
  abytes(message, undefined, 'message');
  if (message.length !== ENROLLMENT_MESSAGE_V2_LEN) {
    throw new EnrollError('ERR_MESSAGE_LENGTH', `enrollment message is ${message.length} bytes, expected ${ENROLLMENT_MESSAGE_V2_LEN}`);
  }
  if (message[0] !== MESSAGE_VERSION_V2) {
    throw new EnrollError('ERR_MESSAGE_LENGTH', `enrollment message v2 starts with ${message[0]}, expected ${MESSAGE_VERSION_V2}`);
  }
  return {
    ekB: message.slice(1, 1 + KEY_LEN),
    enrolleeId: message.slice(1 + KEY_LEN, 1 + KEY_LEN + HASH_LEN),
    kemCiphertext: message.slice(1 + KEY_LEN + HASH_LEN, HEADER_V2_LEN),
  };
}

/**
 * The service's side of v2, checks in order (docs/protocol.md §5A.5):
 *   1. length ≠ 1265 or first byte ≠ 2             → ERR_MESSAGE_LENGTH
 *   2. EK_B already accepted                        → ERR_REPLAY
 *   3. no pending v2 approval for this id           → ERR_ENROLLEE_UNKNOWN
 *   4. ML-KEM decapsulation (never fails: implicit rejection), the four DHs, SK, h, the AEAD
 *                                                   → ERR_ENROLLMENT_DECRYPT
 *   5. the POP                                      → ERR_POP_INVALID
 */
export function acceptV2(message: Uint8Array, ikA: Uint8Array | KeyObject, ctx: AcceptV2Context): AcceptResult {
  const { ekB, enrolleeId: id, kemCiphertext } = parseHeaderV2(message); // 1
  if (ctx.isReplay(ekB)) throw new EnrollError('ERR_REPLAY', 'EK_B was already used in an accepted enrollment'); // 2
  const pending = lookupChecked(ctx.lookupPending, id); // 3
  abytes(pending.kemHash, HASH_LEN, 'pending.kemHash');

  // 4a. KEM first (the brief's order: decapsulation, then DH, AEAD, POP). A wrong ciphertext
  // gives an SS the sender cannot know, so the AEAD below fails: no separate error exists.
  const dk = pending.kemSecretKey;
  const ss = dk instanceof Uint8Array ? mlKem768Decapsulate(kemCiphertext, dk) : dk.decapsulate(kemCiphertext);
  let dhs: Uint8Array[];
  try {
    dhs = responderDhs(ikA, pending, ekB);
  } catch (e) {
    wipe(ss);
    throw e;
  }
  const km = concat(...dhs, ss);
  const sk = x3dhKdf(km, { info: INFO_V2 });
  const h = x3dhStateHash(km, INFO_V2);
  wipe(km, ss, ...dhs);
  try {
    const aad = enrollmentAadV2(message.subarray(0, HEADER_V2_LEN), pending.kemHash, pending.addr, h);
    const ikB = openEnrollment(sk, ekB, message.subarray(HEADER_V2_LEN), aad, pending.eikB); // 4, 5
    return { enrolleeId: id, ekB, ikB, h, session: deriveSessionKeys(sk, h, SESSION_INFO_V2) };
  } finally {
    wipe(sk);
  }
}
