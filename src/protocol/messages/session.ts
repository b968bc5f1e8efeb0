/**
 * Lifecycle messages on an enrolled enrollee's session channel (KIND_SESSION, Noise XX with
 * IK_B ↔ IK_A; docs/protocol.md §7.9), beside STATUS_REQUEST / STATUS (service.ts):
 *
 *   0x32 ADDRESS_REQUEST  enrollee → service   empty
 *   0x33 ADDRESS          service → enrollee   present u8 (0 | 1) ‖ [announcement (§7.10)]
 *   0x34 ROTATE           enrollee → service   IK_B' 32 ‖ sig_old 64 ‖ sig_new 64
 *   0x35 ROTATED          service → enrollee   enrollee_id 32 ‖ IK_B' 32 ‖ rotated_at u64
 *                                              [‖ cred_len u16 ‖ credential (§4.4) for IK_B']
 *   0x36 CREDENTIAL_REQUEST enrollee → service empty
 *   0x37 CREDENTIAL       service → enrollee   cred_len u16 ‖ credential (§4.4) for the channel's IK_B
 *   0x38 PORTAL           enrollee → service   version u8 (1)
 *   0x39 PORTAL_READY     service → enrollee   version u8 (1)
 *
 * After PORTAL_READY the channel carries portal mux frames only (§11.8), in both directions,
 * until it closes: no further session message is sent or accepted on it.
 *
 * Every body has a fixed layout or explicit lengths, checked before slicing; trailing bytes
 * and u64 values above 2^53 − 1 are ERR_FRAME_MALFORMED (§7.3).
 */
import { EnrollError } from '../../errors.js';
import { abytes, concat, utf8 } from '../../crypto/bytes.js';
import { XEDDSA_SIGNATURE_LEN } from '../../crypto/xeddsa.js';
import { encodeAnnouncement, readAnnouncement, type AddressAnnouncement } from '../announce.js';
import { messageType, reader, writer } from './common.js';
import { CREDENTIAL_LENGTHS, credentialLengthOk } from './service.js';

export const MSG_ADDRESS_REQUEST = 0x32;
export const MSG_ADDRESS = 0x33;
export const MSG_ROTATE = 0x34;
export const MSG_ROTATED = 0x35;
export const MSG_CREDENTIAL_REQUEST = 0x36;
export const MSG_CREDENTIAL = 0x37;
export const MSG_PORTAL = 0x38;
export const MSG_PORTAL_READY = 0x39;
/** The portal link version PORTAL asks for and PORTAL_READY confirms (§11.8). */
export const PORTAL_VERSION = 1;

/** The session requests added by §7.9 (STATUS_REQUEST is service.ts's). */
export const LIFECYCLE_REQUESTS: readonly number[] = [MSG_ADDRESS_REQUEST, MSG_ROTATE, MSG_CREDENTIAL_REQUEST];

/** cred_len ‖ credential, with cred_len checked against the credential's bounds (178..242) before the bytes are read. */
function readCredential(r: ReturnType<typeof reader>): Uint8Array {
  const n = r.u16be('cred_len');
  if (!credentialLengthOk(n)) r.fail(`cred_len ${n} is outside ${CREDENTIAL_LENGTHS}`);
  return r.bytes(n, 'credential');
}

function credentialLength(c: Uint8Array, what: string): number {
  const n = c.length;
  if (!credentialLengthOk(n)) {
    throw new EnrollError('ERR_INVALID_ARG', `${what}: "credential" must be ${CREDENTIAL_LENGTHS} bytes, got ${n}`);
  }
  return n;
}

/**
 * The rotation proof's context label. Both signatures cover
 * ROTATE_SIG_CONTEXT ‖ IK_B ‖ IK_B' ‖ h, with h the session channel's Noise handshake hash
 * (Noise §11.2 channel binding): a proof made for one channel is useless on any other, so a
 * recorded ROTATE cannot be replayed, and the label keeps these signatures apart from every
 * other XEdDSA signature in v1 (the POP signs a bare 32-byte key, §5.2).
 */
export const ROTATE_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/rotate');
export const ROTATE_BODY_LEN = 32 + 2 * XEDDSA_SIGNATURE_LEN;

export function rotateSignedBytes(oldIkB: Uint8Array, newIkB: Uint8Array, handshakeHash: Uint8Array): Uint8Array {
  abytes(oldIkB, 32, 'oldIkB');
  abytes(newIkB, 32, 'newIkB');
  abytes(handshakeHash, 32, 'handshakeHash');
  return concat(ROTATE_SIG_CONTEXT, oldIkB, newIkB, handshakeHash);
}

// ---- ADDRESS_REQUEST / ADDRESS

export function encodeAddressRequest(): Uint8Array {
  return Uint8Array.of(MSG_ADDRESS_REQUEST);
}

/** ADDRESS_REQUEST has an empty body: anything after the type is ERR_FRAME_MALFORMED. */
export function decodeAddressRequest(msg: Uint8Array): void {
  messageType(msg, [MSG_ADDRESS_REQUEST], 'address request');
  reader(msg, 'address request').end();
}

export function encodeAddress(a: AddressAnnouncement | undefined): Uint8Array {
  if (a === undefined) return writer(MSG_ADDRESS).u8(0, 'present').finish();
  return concat(writer(MSG_ADDRESS).u8(1, 'present').finish(), encodeAnnouncement(a));
}

/** The service's latest announcement, or undefined when it has never moved. */
export function decodeAddress(msg: Uint8Array): AddressAnnouncement | undefined {
  messageType(msg, [MSG_ADDRESS], 'address');
  const r = reader(msg, 'address');
  const present = r.u8('present');
  if (present === 0) {
    r.end();
    return undefined;
  }
  if (present !== 1) r.fail(`"present" must be 0 or 1, got ${present}`);
  const a = readAnnouncement(r);
  r.end();
  return a;
}

// ---- ROTATE / ROTATED

export interface RotateRequest {
  /** IK_B', the new identity key. */
  newIkB: Uint8Array;
  /** XEdDSA(IK_B, ROTATE_SIG_CONTEXT ‖ IK_B ‖ IK_B' ‖ h). */
  sigOld: Uint8Array;
  /** XEdDSA(IK_B', same bytes). */
  sigNew: Uint8Array;
}

export function encodeRotate(req: RotateRequest): Uint8Array {
  return writer(MSG_ROTATE)
    .bytes(req.newIkB, 32, 'new_ik_b')
    .bytes(req.sigOld, XEDDSA_SIGNATURE_LEN, 'sig_old')
    .bytes(req.sigNew, XEDDSA_SIGNATURE_LEN, 'sig_new')
    .finish();
}

export function decodeRotate(msg: Uint8Array): RotateRequest {
  messageType(msg, [MSG_ROTATE], 'rotate');
  // The whole length first: a short or long ROTATE costs no further parsing.
  if (msg.length !== 1 + ROTATE_BODY_LEN) {
    throw new EnrollError('ERR_FRAME_MALFORMED', `rotate: the body must be ${ROTATE_BODY_LEN} bytes, got ${msg.length - 1}`);
  }
  const r = reader(msg, 'rotate');
  const newIkB = r.bytes(32, 'new_ik_b');
  const sigOld = r.bytes(XEDDSA_SIGNATURE_LEN, 'sig_old');
  const sigNew = r.bytes(XEDDSA_SIGNATURE_LEN, 'sig_new');
  r.end();
  return { newIkB, sigOld, sigNew };
}

export interface Rotated {
  enrolleeId: Uint8Array;
  newIkB: Uint8Array;
  rotatedAt: number;
  /** The credential (§4.4) for IK_B', reissued within the rotation; absent from a service of before it. */
  credential?: Uint8Array;
}

export function encodeRotated(r: Rotated): Uint8Array {
  const w = writer(MSG_ROTATED)
    .bytes(r.enrolleeId, 32, 'enrollee_id')
    .bytes(r.newIkB, 32, 'new_ik_b')
    .u64be(r.rotatedAt, 'rotated_at');
  if (r.credential !== undefined) {
    const n = credentialLength(r.credential, 'rotated');
    w.u16be(n, 'cred_len').bytes(r.credential, n, 'credential');
  }
  return w.finish();
}

export function decodeRotated(msg: Uint8Array): Rotated {
  messageType(msg, [MSG_ROTATED], 'rotate');
  const r = reader(msg, 'rotated');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const newIkB = r.bytes(32, 'new_ik_b');
  const rotatedAt = r.u64be('rotated_at');
  const credential = r.remaining > 0 ? readCredential(r) : undefined;
  r.end();
  return { enrolleeId, newIkB, rotatedAt, ...(credential !== undefined ? { credential } : {}) };
}

// ---- CREDENTIAL_REQUEST / CREDENTIAL

export function encodeCredentialRequest(): Uint8Array {
  return Uint8Array.of(MSG_CREDENTIAL_REQUEST);
}

export function decodeCredentialRequest(msg: Uint8Array): void {
  messageType(msg, [MSG_CREDENTIAL_REQUEST], 'credential request');
  if (msg.length !== 1) throw new EnrollError('ERR_FRAME_MALFORMED', `credential request: ${msg.length - 1} trailing bytes`);
}

export function encodeCredentialMsg(credential: Uint8Array): Uint8Array {
  const n = credentialLength(credential, 'credential message');
  return writer(MSG_CREDENTIAL).u16be(n, 'cred_len').bytes(credential, n, 'credential').finish();
}

export function decodeCredentialMsg(msg: Uint8Array): Uint8Array {
  messageType(msg, [MSG_CREDENTIAL], 'credential request');
  const r = reader(msg, 'credential');
  const credential = readCredential(r);
  r.end();
  return credential;
}

// ---- PORTAL / PORTAL_READY (§11.8)

export function encodePortal(): Uint8Array {
  return Uint8Array.of(MSG_PORTAL, PORTAL_VERSION);
}

function portalVersion(msg: Uint8Array, type: number, what: string): void {
  messageType(msg, [type], what);
  const r = reader(msg, what);
  const v = r.u8('version');
  if (v !== PORTAL_VERSION) r.fail(`portal version ${v} is not ${PORTAL_VERSION}`);
  r.end();
}

/** PORTAL: exactly the version byte (1); anything else is ERR_FRAME_MALFORMED. */
export function decodePortal(msg: Uint8Array): void {
  portalVersion(msg, MSG_PORTAL, 'portal');
}

export function encodePortalReady(): Uint8Array {
  return Uint8Array.of(MSG_PORTAL_READY, PORTAL_VERSION);
}

/** PORTAL_READY, or the service's ERROR (thrown by messageType as its EnrollError). */
export function decodePortalReady(msg: Uint8Array): void {
  portalVersion(msg, MSG_PORTAL_READY, 'portal ready');
}
