/**
 * The Enrollment Key Agreement v1: the enrollee's `initiate` and the service's `accept`
 * (design seed "Enrollment Key Agreement", X3DH-based; parameters fixed by the issue).
 *
 *   DH1 = DH(EIK_B, SPK_A)  DH2 = DH(EK_B, IK_A)  DH3 = DH(EK_B, SPK_A)  DH4 = DH(EK_B, OPK_A)
 *   KM  = DH1 ‖ DH2 ‖ DH3 ‖ DH4
 *   SK  = HKDF-SHA256(salt = 0^32, IKM = 0xFF^32 ‖ KM, info = INFO, L = 32)
 *   h   = SHA-256(INFO ‖ 0xFF^32 ‖ KM)
 *   POP = XEdDSA(IK_B, EIK_B)
 *   Header  = EK_B ‖ SHA-256(EIK_B)                      (64 bytes)
 *   AAD     = Header ‖ INFO ‖ Addr (UTF-8) ‖ h
 *   Message = Header ‖ AES-256-GCM(SK, EK_B[0..12], IK_B ‖ POP, AAD)   (176 bytes)
 *
 * DH1 and DH2 authenticate both sides (EIK_B was approved by the enroller, IK_A signed the
 * bundle); DH3 and DH4 give forward secrecy. The nonce is taken from EK_B, which is fresh
 * for each attempt, so SK (which depends on EK_B) is never used with a repeated nonce.
 * Binding Addr into the AAD means a message made for one service address does not decrypt
 * at another; binding h ties the ciphertext to the whole DH transcript.
 */
import type { KeyObject } from 'node:crypto';
import { EnrollError, isEnrollError } from '../../errors.js';
import { abytes, concat, equalBytes, wipe } from '../../crypto/bytes.js';
import { aesGcmDecrypt, aesGcmEncrypt, GCM_NONCE_LEN } from '../../crypto/aead.js';
import { sha256 } from '../../crypto/hash.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { generateX25519, importX25519Public, KeyPair, x25519PublicKey, type X25519KeyPair } from '../../crypto/x25519.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaSign, xeddsaVerify } from '../../crypto/xeddsa.js';
import type { Bundle } from '../codec/bundle.js';
import { strictUtf8 } from '../codec/writer.js';
import { ENROLLMENT_MESSAGE_LEN, HASH_LEN, HEADER_LEN, INFO, KEY_LEN, PLAINTEXT_LEN } from './constants.js';
import { deriveSessionKeys, type SessionSecrets } from './session.js';
import { x3dhInitiatorDh, x3dhKdf, x3dhResponderDh, x3dhStateHash } from './x3dh.js';

/** The enrollee id: SHA-256(EIK_B), the message id the service looks up (check 3). */
export function enrolleeId(eikB: Uint8Array): Uint8Array {
  return sha256(abytes(eikB, KEY_LEN, 'eikB'));
}

export interface InitiateInput {
  /** The bundle, already checked with verifyBundle (signatures, expiry, pinned IK_A). */
  bundle: Bundle;
  /** The enrollee's enrollment identity key pair, whose public half the enroller approved. */
  eikB: X25519KeyPair;
  /** The enrollee's new long-term identity; generated from `random` when absent. */
  ikB?: X25519KeyPair;
  /** Randomness for EK_B, IK_B and the POP's Z, drawn in that order. Default systemRandom. */
  random?: RandomSource;
  /**
   * For known-answer tests only: a fixed EK_B. Production callers must leave it out; EK_B
   * must be fresh for every attempt. Its private key is wiped like a generated one.
   */
  ekB?: X25519KeyPair;
  /** For known-answer tests only: the 64-byte XEdDSA Z for the POP. */
  popZ?: Uint8Array;
}

export interface InitiateResult {
  /** The 176-byte enrollment message, to send to the bundle's Addr. */
  message: Uint8Array;
  /** IK_B: the enrollee's long-term identity once the service accepts. Keep it. */
  ikB: KeyPair;
  enrolleeId: Uint8Array;
  /** The state hash h. */
  h: Uint8Array;
  /** Session keys for after acceptance (see enrolleeSession). */
  session: SessionSecrets;
}

/**
 * Checks a key pair's shape and that its public half belongs to its private half.
 * @internal Shared with agreement-v2.ts.
 */
export function checkPair(pair: X25519KeyPair, name: string): X25519KeyPair {
  if (pair === null || typeof pair !== 'object') {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" expected a key pair`);
  }
  abytes(pair.privateKey, KEY_LEN, `${name}.privateKey`);
  abytes(pair.publicKey, KEY_LEN, `${name}.publicKey`);
  if (!equalBytes(x25519PublicKey(pair.privateKey), pair.publicKey)) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}.publicKey" is not the public key of "${name}.privateKey"`);
  }
  return pair;
}

export interface MessageParts {
  ekB: Uint8Array;
  enrolleeId: Uint8Array;
  sk: Uint8Array;
  h: Uint8Array;
  addr: string;
  ikB: Uint8Array;
  pop: Uint8Array;
}

/** AAD = Header ‖ INFO ‖ Addr (UTF-8) ‖ h. */
export function enrollmentAad(header: Uint8Array, addr: string, h: Uint8Array): Uint8Array {
  abytes(header, HEADER_LEN, 'header');
  abytes(h, HASH_LEN, 'h');
  return concat(header, INFO, strictUtf8(addr, 'addr'), h);
}

/**
 * @internal Builds the message from its parts without any check of their meaning, so
 * tests can make a message whose only fault is, say, a bad POP. Use `initiate`.
 */
export function composeMessage(p: MessageParts): Uint8Array {
  abytes(p.ekB, KEY_LEN, 'ekB');
  abytes(p.enrolleeId, HASH_LEN, 'enrolleeId');
  abytes(p.sk, KEY_LEN, 'sk');
  abytes(p.ikB, KEY_LEN, 'ikB');
  abytes(p.pop, XEDDSA_SIGNATURE_LEN, 'pop');
  const header = concat(p.ekB, p.enrolleeId);
  const plaintext = concat(p.ikB, p.pop);
  const body = aesGcmEncrypt(p.sk, p.ekB.subarray(0, GCM_NONCE_LEN), plaintext, enrollmentAad(header, p.addr, p.h));
  return concat(header, body);
}

/**
 * The enrollee's side. Computes X3DH against the bundle, makes IK_B and the POP, and
 * returns the message and the session keys. EK_B's private key, the DH outputs, KM and SK
 * are wiped before returning (seed: "the enrollee deletes the private key for EK_B and DH
 * outputs").
 *
 * Throws ERR_DH_ZERO if a bundle key is a low-order point, ERR_INVALID_ARG for malformed
 * inputs or a key pair whose halves do not match.
 */
export function initiate(input: InitiateInput): InitiateResult {
  if (input === null || typeof input !== 'object') throw new EnrollError('ERR_INVALID_ARG', '"input" expected an object');
  const { bundle } = input;
  const random = input.random ?? systemRandom;
  if (bundle === null || typeof bundle !== 'object') throw new EnrollError('ERR_INVALID_ARG', '"bundle" expected an object');
  // No fallback: a v2 bundle is enrolled with v2 (initiateV2) or not at all (docs/protocol.md §5A.3).
  if (bundle.version !== 1) {
    throw new EnrollError('ERR_EKA_VERSION', `a version ${String(bundle.version)} bundle cannot be used with EKA v1 (use initiateV2)`);
  }
  const { eikB, givenIkB } = checkInitiateInput(input);
  const { ekB, dhs } = initiatorDhs(input, eikB, random);
  const km = concat(...dhs);
  const sk = x3dhKdf(km);
  const h = x3dhStateHash(km);
  wipe(km, ...dhs);

  try {
    const { ikB, id, pop } = enrolleeProof(givenIkB, eikB, input.popZ, random);
    const message = composeMessage({ ekB: ekB.publicKey, enrolleeId: id, sk, h, addr: bundle.addr, ikB: ikB.publicKey, pop });
    return { message, ikB, enrolleeId: id, h, session: deriveSessionKeys(sk, h) };
  } finally {
    wipe(sk);
  }
}

/**
 * @internal The checks initiate and initiateV2 share, all before any randomness is drawn:
 * the bundle's keys and Addr, EIK_B, the POP's Z, and a given IK_B (validated before EK_B
 * exists, so a bad argument wastes no ephemeral key).
 */
export function checkInitiateInput(input: Omit<InitiateInput, 'bundle'> & { bundle: Pick<Bundle, 'ikA' | 'spkA' | 'opkA' | 'addr'> }): {
  eikB: X25519KeyPair;
  givenIkB: X25519KeyPair | undefined;
} {
  const { bundle } = input;
  abytes(bundle.ikA, KEY_LEN, 'bundle.ikA');
  abytes(bundle.spkA, KEY_LEN, 'bundle.spkA');
  abytes(bundle.opkA, KEY_LEN, 'bundle.opkA');
  strictUtf8(bundle.addr, 'bundle.addr');
  const eikB = checkPair(input.eikB, 'eikB');
  if (input.popZ !== undefined) abytes(input.popZ, 64, 'popZ');
  const givenIkB = input.ikB !== undefined ? checkPair(input.ikB, 'ikB') : undefined;
  if (givenIkB !== undefined && equalBytes(givenIkB.publicKey, eikB.publicKey)) {
    throw new EnrollError('ERR_INVALID_ARG', '"ikB" must be a fresh key pair, not EIK_B');
  }
  return { eikB, givenIkB };
}

/**
 * @internal EK_B (fresh for every attempt, seed: "An ephemeral public key EK_B") and
 * DH1..DH4; EK_B's private key is wiped here, whatever happens: forward secrecy rests on it
 * being gone once SK exists.
 */
export function initiatorDhs(
  input: Pick<InitiateInput, 'ekB'> & { bundle: Pick<Bundle, 'ikA' | 'spkA' | 'opkA'> },
  eikB: X25519KeyPair,
  random: RandomSource,
): { ekB: X25519KeyPair; dhs: Uint8Array[] } {
  const ekB = input.ekB !== undefined ? checkPair(input.ekB, 'ekB') : generateX25519(random);
  try {
    const dhs = x3dhInitiatorDh({
      identity: eikB.privateKey,
      ephemeral: ekB.privateKey,
      peerIdentity: input.bundle.ikA,
      peerSignedPrekey: input.bundle.spkA,
      peerOneTimePrekey: input.bundle.opkA,
    });
    return { ekB, dhs };
  } finally {
    wipe(ekB.privateKey);
  }
}

/**
 * @internal IK_B, the enrollee's new long-term identity (seed: "The enrollee then generates
 * a keypair IK_B"), drawn after EK_B, and POP = XEdDSA(IK_B, EIK_B), which proves the
 * holder of IK_B also made this enrollment.
 */
export function enrolleeProof(
  givenIkB: X25519KeyPair | undefined,
  eikB: X25519KeyPair,
  popZ: Uint8Array | undefined,
  random: RandomSource,
): { ikB: KeyPair; id: Uint8Array; pop: Uint8Array } {
  let ikB: KeyPair;
  if (givenIkB === undefined) ikB = generateX25519(random);
  else ikB = givenIkB instanceof KeyPair ? givenIkB : new KeyPair(givenIkB.privateKey, givenIkB.publicKey);
  const id = enrolleeId(eikB.publicKey);
  const pop = xeddsaSign(ikB.privateKey, eikB.publicKey, popZ ?? random);
  return { ikB, id, pop };
}

/** What the service's store knows about an approved enrollee (check 3). */
export interface PendingEnrollee {
  /** EIK_B as the enroller approved it. */
  eikB: Uint8Array;
  /** SPK_A's private key (of the bundle the approval named). */
  spkA: Uint8Array | KeyObject;
  /** OPK_A's private key of the bundle the approval named. */
  opkA: Uint8Array | KeyObject;
  /** The Addr of that bundle. */
  addr: string;
}

export interface AcceptContext {
  /** Check 2: true when EK_B was already accepted. */
  isReplay(ekB: Uint8Array): boolean;
  /**
   * Check 3: the pending, unexpired enrollee with this id, or undefined. May itself throw
   * an EnrollError (ERR_APPROVAL_EXPIRED, ERR_ENROLLEE_REVOKED, …).
   */
  lookupPending(enrolleeId: Uint8Array): PendingEnrollee | undefined;
}

export interface AcceptResult {
  enrolleeId: Uint8Array;
  /** EK_B, to record so that check 2 refuses it from now on. */
  ekB: Uint8Array;
  /** IK_B: replaces EIK_B as the enrollee's identity (the caller's store does that). */
  ikB: Uint8Array;
  h: Uint8Array;
  session: SessionSecrets;
}

/**
 * Check 1 only: the length, then the header split. Cheap, no crypto; lets a caller rate
 * limit or log by enrollee id before `accept`.
 */
export function parseHeader(message: Uint8Array): { ekB: Uint8Array; enrolleeId: Uint8Array } {
  abytes(message, undefined, 'message');
  if (message.length !== ENROLLMENT_MESSAGE_LEN) {
    throw new EnrollError(
      'ERR_MESSAGE_LENGTH',
      `enrollment message is ${message.length} bytes, expected ${ENROLLMENT_MESSAGE_LEN}`,
    );
  }
  return { ekB: message.slice(0, KEY_LEN), enrolleeId: message.slice(KEY_LEN, HEADER_LEN) };
}

/** @internal Check 4's one opaque failure, shared with agreement-v2.ts. */
export function decryptFailed(cause?: unknown): EnrollError {
  return new EnrollError('ERR_ENROLLMENT_DECRYPT', 'enrollment message failed to decrypt', { cause });
}

/**
 * The service's side: the seed's checks, in order, stopping at the first failure.
 *   1. length ≠ 176                                  → ERR_MESSAGE_LENGTH
 *   2. EK_B already accepted                         → ERR_REPLAY
 *   3. no pending, unexpired enrollee with this id   → ERR_ENROLLEE_UNKNOWN (no DH computed:
 *      unknown ids, the cheapest thing an attacker can send, cost a hash-table lookup)
 *   4. recompute SK, h and decrypt                   → ERR_ENROLLMENT_DECRYPT (also for an
 *      all-zero DH, i.e. a low-order EK_B)
 *   5. XEdDSA(IK_B, EIK_B) does not verify           → ERR_POP_INVALID
 *
 * On success the caller records EK_B, replaces EIK_B with IK_B and consumes the OPK.
 * `ikA` is IK_A's private key, raw or pre-imported.
 */
export function accept(message: Uint8Array, ikA: Uint8Array | KeyObject, ctx: AcceptContext): AcceptResult {
  const { ekB, enrolleeId: id } = parseHeader(message); // 1
  if (ctx.isReplay(ekB)) throw new EnrollError('ERR_REPLAY', 'EK_B was already used in an accepted enrollment'); // 2
  const pending = lookupChecked(ctx.lookupPending, id); // 3
  const eikB = pending.eikB;
  const dhs = responderDhs(ikA, pending, ekB); // 4
  const km = concat(...dhs);
  const sk = x3dhKdf(km);
  const h = x3dhStateHash(km);
  wipe(km, ...dhs);
  try {
    const aad = enrollmentAad(message.subarray(0, HEADER_LEN), pending.addr, h);
    const ikB = openEnrollment(sk, ekB, message.subarray(HEADER_LEN), aad, eikB); // 4, 5
    return { enrolleeId: id, ekB, ikB, h, session: deriveSessionKeys(sk, h) };
  } finally {
    wipe(sk);
  }
}

/**
 * @internal Check 3 after the lookup, shared with acceptV2: an approval exists, and its
 * EIK_B is the one the id names (a store that hands back another enrollee's entry must not
 * make us try its keys).
 */
export function lookupChecked<P extends { eikB: Uint8Array }>(lookup: (id: Uint8Array) => P | undefined, id: Uint8Array): P {
  const pending = lookup(id);
  if (pending === undefined) throw new EnrollError('ERR_ENROLLEE_UNKNOWN', 'no pending enrollee has this id');
  const eikB = abytes(pending.eikB, KEY_LEN, 'pending.eikB');
  if (!equalBytes(sha256(eikB), id)) {
    throw new EnrollError('ERR_ENROLLEE_UNKNOWN', 'pending enrollee does not match the id');
  }
  return pending;
}

/**
 * @internal Check 4's DHs, shared with acceptV2. EK_B comes from the wire: any failure with
 * it (an import error, or an all-zero DH from a low-order point) is the same opaque
 * decryption failure. Errors with the service's own keys (ERR_KEY_INVALID) are
 * configuration faults and pass through.
 */
export function responderDhs(ikA: Uint8Array | KeyObject, pending: Pick<PendingEnrollee, 'eikB' | 'spkA' | 'opkA'>, ekB: Uint8Array): Uint8Array[] {
  let ekBKey: KeyObject;
  try {
    ekBKey = importX25519Public(ekB, 'EK_B');
  } catch (e) {
    throw decryptFailed(e);
  }
  try {
    return x3dhResponderDh({
      identity: ikA,
      signedPrekey: pending.spkA,
      oneTimePrekey: pending.opkA,
      peerIdentity: pending.eikB,
      peerEphemeral: ekBKey,
    });
  } catch (e) {
    if (isEnrollError(e, 'ERR_DH_ZERO')) throw decryptFailed(e);
    throw e;
  }
}

/**
 * @internal Checks 4 (the AEAD under SK, nonce EK_B[0..12]) and 5 (the POP), shared with
 * acceptV2: returns IK_B. The POP shows the holder of IK_B signed EIK_B, so IK_B is not
 * someone else's key replayed.
 */
export function openEnrollment(sk: Uint8Array, ekB: Uint8Array, body: Uint8Array, aad: Uint8Array, eikB: Uint8Array): Uint8Array {
  let plaintext: Uint8Array;
  try {
    plaintext = aesGcmDecrypt(sk, ekB.subarray(0, GCM_NONCE_LEN), body, aad);
  } catch (e) {
    if (isEnrollError(e, 'ERR_DECRYPT')) throw decryptFailed(e);
    throw e;
  }
  if (plaintext.length !== PLAINTEXT_LEN) throw decryptFailed();
  const ikB = plaintext.slice(0, KEY_LEN);
  const pop = plaintext.slice(KEY_LEN);
  if (!xeddsaVerify(ikB, eikB, pop)) {
    throw new EnrollError('ERR_POP_INVALID', 'proof of possession XEdDSA(IK_B, EIK_B) does not verify');
  }
  return ikB;
}
