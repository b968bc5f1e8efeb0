/**
 * Messages to and from the service's TCP listener (docs/protocol.md §7).
 *
 * The first frame of every connection is one kind byte, so one port serves every party:
 * - KIND_ENROLL:   then one frame holding the enrollment message (176 bytes); the service
 *                  answers with one ENROLL_RESPONSE frame and closes.
 * - KIND_ENROLLER: then Noise XX (prologue PROLOGUE_ENROLLER_SERVICE) and the enroller's
 *                  requests below.
 * - KIND_SESSION:  then Noise XX (prologue PROLOGUE_ENROLLEE_SERVICE): an enrolled
 *                  enrollee's authenticated channel.
 * - KIND_ENROLL_STREAM: enrollment messages, one per frame, each answered with one
 *                  ENROLL_RESPONSE frame in order, until the peer closes (a relay for many
 *                  devices: one TCP connection instead of one per message).
 * - KIND_KEM_PREKEY: then one frame holding a KEM_hash (32 bytes); the service answers with
 *                  one frame, the 1184-byte PQSPK_A of that hash or the 1-byte status UNKNOWN
 *                  (EKA v2: a v2 bundle carries only the hash, §4.6 and §7.2).
 */
import { encodeAttributes, readAttributes, type Attributes } from '../codec/attributes.js';
import { EnrollError } from '../../errors.js';
import { utf8 } from '../../crypto/bytes.js';
import { ByteReader } from '../codec/reader.js';
import { ByteWriter } from '../codec/writer.js';
import { isIdentityName } from '../../x509/identity.js';
import { messageType, reader, unavailableError, writer } from './common.js';

export const KIND_ENROLL = 0x01;
export const KIND_ENROLLER = 0x02;
export const KIND_SESSION = 0x03;
export const KIND_ENROLL_STREAM = 0x04;
export const KIND_KEM_PREKEY = 0x05;
/** A KEM prekey request: the KEM_hash of a v2 bundle. */
export const KEM_PREKEY_REQUEST_LEN = 32;
/** A KEM prekey answer: PQSPK_A, an ML-KEM-768 encapsulation key. */
export const KEM_PREKEY_LEN = 1184;

export const PROLOGUE_ENROLLER_SERVICE = utf8('ockam-enroll/v1/enroller-service');
export const PROLOGUE_ENROLLEE_SERVICE = utf8('ockam-enroll/v1/enrollee-service');
export const PROLOGUE_ENROLLER_ENROLLEE = utf8('ockam-enroll/v1/enroller-enrollee');

// enroller → service
export const MSG_FETCH_BUNDLES = 0x10;
export const MSG_BUNDLE = 0x11;
export const MSG_BUNDLES_END = 0x12;
export const MSG_APPROVE = 0x20;
export const MSG_APPROVED = 0x21;

/** Most bundles one FETCH_BUNDLES may ask for; the enroller loops for more. */
export const MAX_BUNDLES_PER_REQUEST = 1000;
/** Longest approval TTL a request may ask for (30 days). */
export const MAX_APPROVAL_TTL = 30 * 24 * 3600;

export type ConnectionKind =
  | typeof KIND_ENROLL
  | typeof KIND_ENROLLER
  | typeof KIND_SESSION
  | typeof KIND_ENROLL_STREAM
  | typeof KIND_KEM_PREKEY;

export function kindFrame(kind: ConnectionKind): Uint8Array {
  return Uint8Array.of(kind);
}

export function decodeKindFrame(frame: Uint8Array): ConnectionKind {
  const k = frame.length === 1 ? frame[0] : undefined;
  if (k !== KIND_ENROLL && k !== KIND_ENROLLER && k !== KIND_SESSION && k !== KIND_ENROLL_STREAM && k !== KIND_KEM_PREKEY) {
    throw new EnrollError('ERR_FRAME_MALFORMED', 'the first frame is not a known connection kind');
  }
  return k;
}

// ---- enroller requests

/**
 * FETCH_BUNDLES: count u16 [‖ eka u8]. Without the eka byte the request is for v1 bundles,
 * exactly as before EKA v2, so an older enroller keeps working; with it, the byte is 2.
 */
export function encodeFetchBundles(count: number, eka: 1 | 2 = 1): Uint8Array {
  const w = writer(MSG_FETCH_BUNDLES).u16be(count, 'count');
  if (eka === 2) w.u8(2, 'eka');
  else if (eka !== 1) throw new EnrollError('ERR_INVALID_ARG', `"eka" must be 1 or 2, got ${String(eka)}`);
  return w.finish();
}

export function decodeFetchBundles(msg: Uint8Array): { count: number; eka: 1 | 2 } {
  messageType(msg, [MSG_FETCH_BUNDLES], 'fetch bundles');
  const r = reader(msg, 'fetch bundles');
  const count = r.u16be('count');
  const eka = r.remaining > 0 ? r.u8('eka') : 1;
  r.end();
  if (count < 1 || count > MAX_BUNDLES_PER_REQUEST) {
    throw new EnrollError('ERR_FRAME_MALFORMED', `fetch bundles: count must be 1..${MAX_BUNDLES_PER_REQUEST}, got ${count}`);
  }
  // v1 is said by the byte's absence, so an explicit byte must be 2: one encoding per request.
  if (msg.length === 4 && eka !== 2) throw new EnrollError('ERR_FRAME_MALFORMED', `fetch bundles: eka must be 2 when present, got ${eka}`);
  return { count, eka: eka === 2 ? 2 : 1 };
}

export function encodeBundleMsg(bundle: Uint8Array): Uint8Array {
  return writer(MSG_BUNDLE).bytes(bundle, undefined, 'bundle').finish();
}

export function encodeBundlesEnd(count: number): Uint8Array {
  return writer(MSG_BUNDLES_END).u16be(count, 'count').finish();
}

/** Returns the bundle bytes of a BUNDLE, or the count of a BUNDLES_END. */
export function decodeBundleStream(msg: Uint8Array): { bundle: Uint8Array } | { end: number } {
  const t = messageType(msg, [MSG_BUNDLE, MSG_BUNDLES_END], 'bundle fetch');
  if (t === MSG_BUNDLE) return { bundle: msg.slice(1) };
  const r = reader(msg, 'bundles end');
  const end = r.u16be('count');
  r.end();
  return { end };
}

export interface ApproveRequest {
  bundleId: Uint8Array;
  /** Seconds the approval stays pending. */
  ttl: number;
  card: Uint8Array;
  /**
   * The attributes the enroller asks for (docs/protocol.md §4.6.2): an attribute list after
   * the card, absent when there are none (so an APPROVE without attributes is the same bytes
   * as before them). The service checks them against the enroller's scope.
   */
  attributes?: Attributes;
}

export function encodeApprove(req: ApproveRequest): Uint8Array {
  const w = writer(MSG_APPROVE)
    .bytes(req.bundleId, 16, 'bundle_id')
    .u64be(req.ttl, 'ttl')
    .u16be(req.card.length, 'card_len')
    .bytes(req.card, undefined, 'card');
  if (req.attributes !== undefined && Object.keys(req.attributes).length > 0) w.bytes(encodeAttributes(req.attributes), undefined, 'attributes');
  return w.finish();
}

export function decodeApprove(msg: Uint8Array): ApproveRequest {
  messageType(msg, [MSG_APPROVE], 'approve');
  const r = reader(msg, 'approve');
  const bundleId = r.bytes(16, 'bundle_id');
  const ttl = r.u64be('ttl');
  const card = r.bytes(r.u16be('card_len'), 'card');
  const attributes = r.remaining > 0 ? readAttributes(r) : undefined;
  r.end();
  if (ttl < 1 || ttl > MAX_APPROVAL_TTL) {
    throw new EnrollError('ERR_FRAME_MALFORMED', `approve: ttl must be 1..${MAX_APPROVAL_TTL} seconds, got ${ttl}`);
  }
  // An explicit empty list is not a second encoding of "none".
  if (attributes !== undefined && Object.keys(attributes).length === 0) r.fail('an empty attribute list must be left out');
  return { bundleId, ttl, card, ...(attributes ? { attributes } : {}) };
}

export interface Approved {
  enrolleeId: Uint8Array;
  expiresAt: number;
}

export function encodeApproved(a: Approved): Uint8Array {
  return writer(MSG_APPROVED).bytes(a.enrolleeId, 32, 'enrollee_id').u64be(a.expiresAt, 'expires_at').finish();
}

export function decodeApproved(msg: Uint8Array): Approved {
  messageType(msg, [MSG_APPROVED], 'approve');
  const r = reader(msg, 'approved');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const expiresAt = r.u64be('expires_at');
  r.end();
  return { enrolleeId, expiresAt };
}

// ---- the enrollment response

/**
 * ENROLL_RESPONSE: `status u8 ‖ …`. Status 0 is followed by the acceptance sealed with
 * k_s2e at counter 0; any other status is a rejection and the frame ends there.
 * Crypto failures (decryption, POP) share the opaque status REJECTED: the enrollee learns
 * nothing about which check failed; the service logs the precise reason.
 */
export const ENROLL_STATUS = {
  ACCEPTED: 0,
  REJECTED: 1,
  MALFORMED: 2,
  REPLAY: 3,
  UNKNOWN: 4,
  EXPIRED: 5,
  REVOKED: 6,
  USED: 7,
  RATE_LIMITED: 8,
  LOCKED: 9,
  UNAVAILABLE: 10,
} as const;
export type EnrollStatus = (typeof ENROLL_STATUS)[keyof typeof ENROLL_STATUS];

const STATUS_ERRORS: Record<number, [EnrollError['code'], string, string?]> = {
  [ENROLL_STATUS.REJECTED]: ['ERR_REJECTED', 'the service rejected the enrollment message', 'the bundle may not match this enrollee\'s approval, or the service\'s operator refused this device (an --on-enroll hook); ask the enroller'],
  [ENROLL_STATUS.MALFORMED]: ['ERR_MESSAGE_LENGTH', 'the service could not parse the enrollment message'],
  [ENROLL_STATUS.REPLAY]: ['ERR_REPLAY', 'the service already accepted this enrollment message (replay)', 'run `ockam-enroll enrollee join` again to make a fresh message'],
  [ENROLL_STATUS.UNKNOWN]: ['ERR_ENROLLEE_UNKNOWN', 'the service has no pending approval for this enrollee', 'ask the enroller to approve this enrollee\'s card (`ockam-enroll enroller approve`)'],
  [ENROLL_STATUS.EXPIRED]: ['ERR_APPROVAL_EXPIRED', 'this enrollee\'s approval has expired', 'ask the enroller to approve it again'],
  [ENROLL_STATUS.REVOKED]: ['ERR_ENROLLEE_REVOKED', 'this enrollee has been revoked by the service'],
  [ENROLL_STATUS.USED]: ['ERR_BUNDLE_USED', 'this bundle or enrollee was already used for an enrollment', 'ask the enroller for a new bundle and approval'],
  [ENROLL_STATUS.RATE_LIMITED]: ['ERR_RATE_LIMITED', 'the service is rate-limiting this peer', 'wait and try again'],
  [ENROLL_STATUS.LOCKED]: ['ERR_ENROLLEE_LOCKED', 'this enrollee is locked out after too many failed attempts', 'ask the enroller to approve it again'],
};

export function enrollStatusError(status: number): EnrollError {
  if (status === ENROLL_STATUS.UNAVAILABLE) return unavailableError();
  const e = STATUS_ERRORS[status];
  if (!e) return new EnrollError('ERR_REJECTED', `the service rejected the enrollment (status ${status})`);
  return new EnrollError(e[0], e[1], e[2] ? { hint: e[2] } : {});
}

export function encodeEnrollResponse(status: EnrollStatus, sealedAcceptance?: Uint8Array): Uint8Array {
  if (status === ENROLL_STATUS.ACCEPTED) {
    if (!sealedAcceptance) throw new EnrollError('ERR_INVALID_ARG', 'an acceptance needs its sealed body');
    const out = new Uint8Array(1 + sealedAcceptance.length);
    out.set(sealedAcceptance, 1);
    return out;
  }
  return Uint8Array.of(status);
}

/** Returns the sealed acceptance, or throws the rejection as an EnrollError. */
export function decodeEnrollResponse(frame: Uint8Array): Uint8Array {
  if (frame.length === 0) throw new EnrollError('ERR_FRAME_MALFORMED', 'empty enrollment response');
  const status = frame[0]!;
  if (status !== ENROLL_STATUS.ACCEPTED) {
    if (frame.length !== 1) throw new EnrollError('ERR_FRAME_MALFORMED', 'malformed rejection');
    throw enrollStatusError(status);
  }
  if (frame.length < 1 + 16) throw new EnrollError('ERR_FRAME_MALFORMED', 'truncated acceptance');
  return frame.slice(1);
}

/**
 * The acceptance, sealed under k_s2e with AAD = ACCEPT_AAD ‖ enrollee id (docs/protocol.md §5.7):
 * `version u8 ‖ enrollee_id 32 ‖ enrolled_at u64 ‖ pet_len u8 ‖ pet name ‖ addr_len u16 ‖ Addr`,
 * and in version 2 `‖ cred_len u16 ‖ credential` (protocol/credential.ts; cred_len is
 * ACCEPT_CREDENTIAL_MIN_LEN..ACCEPT_CREDENTIAL_MAX_LEN: the credential is mandatory in v2).
 * Addr is the service's current address, so a moved service is learnt at once. The service
 * sends version 2; an enrollee accepts 1 (a service from before credentials) and 2. This
 * layer checks only the credential's length; the enrollee decodes and verifies it.
 */
export const ACCEPT_AAD = utf8('ockam-enroll/v1/accept');
/** A credential's length bounds (protocol/credential.ts CREDENTIAL_MIN_LEN / _MAX_LEN), restated to keep this layer free of it. */
export const ACCEPT_CREDENTIAL_MIN_LEN = 178;
/** The longest v2 credential (credential-v2.ts CREDENTIAL_V2_MAX_LEN: 274 + 64 + 1569); v1's is 242. */
export const ACCEPT_CREDENTIAL_MAX_LEN = 1907;
/** v1's longest credential (§4.4) and v2's shortest (§4.6): lengths between them are neither. */
const V1_CREDENTIAL_MAX_LEN = 242;
const V2_CREDENTIAL_MIN_LEN = 275;

/** A length a credential of either version can have: 178..242 (v1) or 275..1907 (v2). */
export function credentialLengthOk(n: number): boolean {
  return (n >= ACCEPT_CREDENTIAL_MIN_LEN && n <= V1_CREDENTIAL_MAX_LEN) || (n >= V2_CREDENTIAL_MIN_LEN && n <= ACCEPT_CREDENTIAL_MAX_LEN);
}
/** How credentialLengthOk's ranges read in messages. */
export const CREDENTIAL_LENGTHS = `${ACCEPT_CREDENTIAL_MIN_LEN}..${V1_CREDENTIAL_MAX_LEN} or ${V2_CREDENTIAL_MIN_LEN}..${ACCEPT_CREDENTIAL_MAX_LEN}`;

export interface Acceptance {
  enrolleeId: Uint8Array;
  enrolledAt: number;
  petName: string;
  addr: string;
  /** The encoded credential (version 2); absent in version 1. */
  credential?: Uint8Array;
}

export function encodeAcceptance(a: Acceptance): Uint8Array {
  const w = new ByteWriter()
    .u8(a.credential === undefined ? 1 : 2, 'version')
    .bytes(a.enrolleeId, 32, 'enrollee_id')
    .u64be(a.enrolledAt, 'enrolled_at')
    .u8(Buffer.byteLength(a.petName), 'pet_len')
    .utf8(a.petName, 'pet_name')
    .u16be(Buffer.byteLength(a.addr), 'addr_len')
    .utf8(a.addr, 'addr');
  if (a.credential !== undefined) {
    const n = a.credential.length;
    if (!credentialLengthOk(n)) {
      throw new EnrollError('ERR_INVALID_ARG', `acceptance: "credential" must be ${CREDENTIAL_LENGTHS} bytes, got ${n}`);
    }
    w.u16be(n, 'cred_len').bytes(a.credential, n, 'credential');
  }
  return w.finish();
}

export function decodeAcceptance(plain: Uint8Array): Acceptance {
  const r = new ByteReader(plain, 'ERR_FRAME_MALFORMED', 'acceptance');
  const version = r.u8('version');
  if (version !== 1 && version !== 2) r.fail('unsupported version');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const enrolledAt = r.u64be('enrolled_at');
  const petName = r.utf8(r.u8('pet_len'), 'pet_name');
  const addr = r.utf8(r.u16be('addr_len'), 'addr');
  let credential: Uint8Array | undefined;
  if (version === 2) {
    const n = r.u16be('cred_len');
    if (!credentialLengthOk(n)) r.fail(`"cred_len" is ${n}, expected ${CREDENTIAL_LENGTHS}`);
    credential = r.bytes(n, 'credential');
  }
  r.end();
  return { enrolleeId, enrolledAt, petName, addr, ...(credential !== undefined ? { credential } : {}) };
}

// ---- an enrolled enrollee's session (KIND_SESSION)

export const MSG_STATUS_REQUEST = 0x30;
export const MSG_STATUS = 0x31;

/**
 * STATUS_REQUEST: `0x30 [‖ flags u8]`. Flag bit 0 (STATUS_WANT_SUBJECT_DIGEST) asks the
 * service to end its STATUS with the subject digest of the credential it would issue now
 * (§7.9.4): how a device learns, at its next `enrollee status`, that a `set-attr` made its
 * credential stale. A service from before the flag ignores the byte and answers the short
 * STATUS; an enrollee from before it sends no flag and gets the short STATUS: either way the
 * exchange is what it was.
 */
export const STATUS_WANT_SUBJECT_DIGEST = 0x01;
/** A subject digest: SHA-256 (credential.ts credentialSubjectDigest). */
export const SUBJECT_DIGEST_LEN = 32;

export interface StatusRequest {
  wantSubjectDigest: boolean;
}

/**
 * STATUS: `enrollee_id 32 ‖ enrolled_at u64 ‖ pet_len u8 ‖ pet ‖ addr_len u16 ‖ Addr
 * [‖ subject_digest 32]` (state is "enrolled": only enrolled keys are admitted; the digest
 * only when the request asked for it).
 */
export interface StatusReport {
  enrolleeId: Uint8Array;
  enrolledAt: number;
  petName: string;
  addr: string;
  subjectDigest?: Uint8Array;
}

export function encodeStatusRequest(req: StatusRequest = { wantSubjectDigest: false }): Uint8Array {
  return req.wantSubjectDigest ? Uint8Array.of(MSG_STATUS_REQUEST, STATUS_WANT_SUBJECT_DIGEST) : Uint8Array.of(MSG_STATUS_REQUEST);
}

export function decodeStatusRequest(msg: Uint8Array): StatusRequest {
  messageType(msg, [MSG_STATUS_REQUEST], 'status request');
  const r = reader(msg, 'status request');
  if (r.remaining === 0) return { wantSubjectDigest: false };
  const flags = r.u8('flags');
  r.end();
  if ((flags & ~STATUS_WANT_SUBJECT_DIGEST) !== 0) r.fail(`unknown flags 0x${flags.toString(16).padStart(2, '0')}`);
  return { wantSubjectDigest: (flags & STATUS_WANT_SUBJECT_DIGEST) !== 0 };
}

export function encodeStatus(s: StatusReport): Uint8Array {
  const w = writer(MSG_STATUS)
    .bytes(s.enrolleeId, 32, 'enrollee_id')
    .u64be(s.enrolledAt, 'enrolled_at')
    .u8(Buffer.byteLength(s.petName), 'pet_len')
    .utf8(s.petName, 'pet_name')
    .u16be(Buffer.byteLength(s.addr), 'addr_len')
    .utf8(s.addr, 'addr');
  if (s.subjectDigest !== undefined) w.bytes(s.subjectDigest, SUBJECT_DIGEST_LEN, 'subject_digest');
  return w.finish();
}

export function decodeStatus(msg: Uint8Array): StatusReport {
  messageType(msg, [MSG_STATUS], 'status');
  const r = reader(msg, 'status');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const enrolledAt = r.u64be('enrolled_at');
  const petName = r.utf8(r.u8('pet_len'), 'pet_name');
  const addr = r.utf8(r.u16be('addr_len'), 'addr');
  const subjectDigest = r.remaining > 0 ? r.bytes(SUBJECT_DIGEST_LEN, 'subject_digest') : undefined;
  r.end();
  return { enrolleeId, enrolledAt, petName, addr, ...(subjectDigest !== undefined ? { subjectDigest } : {}) };
}

// ---- token enrollment (enroller → service, docs/token-enrollment.md)

export const MSG_TOKEN_CREATE = 0x50;
export const MSG_TOKEN = 0x51;

/** Longest token lifetime an enroller may ask for (30 days), as for approvals. */
export const MAX_TOKEN_CREATE_TTL = 30 * 24 * 3600;
/** Longest token the service may answer with (protocol/token/claims.ts MAX_TOKEN_LEN). */
const MAX_TOKEN_MSG_LEN = 4096;

/**
 * TOKEN_CREATE: `0x50 ‖ ttl u64 ‖ name_len u8 ‖ name [‖ attributes]` (name: see
 * x509/identity.ts). The attribute list (codec/attributes.ts) is absent when there are none,
 * as in APPROVE, so a request without attributes is the same bytes as before them; a service
 * from before them refuses one that has them (its decoder wants the frame to end after the
 * name) rather than dropping them. The service checks them against the enroller's scope.
 */
export interface TokenCreateRequest {
  ttl: number;
  name: string;
  attributes?: Attributes;
}

export function encodeTokenCreate(req: TokenCreateRequest): Uint8Array {
  const w = writer(MSG_TOKEN_CREATE)
    .u64be(req.ttl, 'ttl')
    .u8(Buffer.byteLength(req.name), 'name_len')
    .utf8(req.name, 'name');
  if (req.attributes !== undefined && Object.keys(req.attributes).length > 0) w.bytes(encodeAttributes(req.attributes), undefined, 'attributes');
  return w.finish();
}

export function decodeTokenCreate(msg: Uint8Array): TokenCreateRequest {
  messageType(msg, [MSG_TOKEN_CREATE], 'token create');
  const r = reader(msg, 'token create');
  const ttl = r.u64be('ttl');
  const name = r.utf8(r.u8('name_len'), 'name');
  const attributes = r.remaining > 0 ? readAttributes(r) : undefined;
  r.end();
  if (ttl < 1 || ttl > MAX_TOKEN_CREATE_TTL) {
    throw new EnrollError('ERR_FRAME_MALFORMED', `token create: ttl must be 1..${MAX_TOKEN_CREATE_TTL} seconds, got ${ttl}`);
  }
  if (!isIdentityName(name)) throw new EnrollError('ERR_FRAME_MALFORMED', 'token create: the name is not a valid identity name');
  // An explicit empty list is not a second encoding of "none".
  if (attributes !== undefined && Object.keys(attributes).length === 0) r.fail('an empty attribute list must be left out');
  return { ttl, name, ...(attributes ? { attributes } : {}) };
}

/** TOKEN: `0x51 ‖ identity_id 32 ‖ expires_at u64 ‖ jwt_len u16 ‖ jwt ASCII`. */
export interface TokenCreated {
  identityId: Uint8Array;
  expiresAt: number;
  jwt: string;
}

export function encodeTokenCreated(t: TokenCreated): Uint8Array {
  return writer(MSG_TOKEN)
    .bytes(t.identityId, 32, 'identity_id')
    .u64be(t.expiresAt, 'expires_at')
    .u16be(Buffer.byteLength(t.jwt), 'jwt_len')
    .utf8(t.jwt, 'jwt')
    .finish();
}

export function decodeTokenCreated(msg: Uint8Array): TokenCreated {
  messageType(msg, [MSG_TOKEN], 'token create');
  const r = reader(msg, 'token');
  const identityId = r.bytes(32, 'identity_id');
  const expiresAt = r.u64be('expires_at');
  const len = r.u16be('jwt_len');
  if (len === 0 || len > MAX_TOKEN_MSG_LEN) r.fail(`jwt_len must be 1..${MAX_TOKEN_MSG_LEN}`);
  const jwt = r.utf8(len, 'jwt');
  r.end();
  if (!/^[A-Za-z0-9_.-]+$/.test(jwt)) throw new EnrollError('ERR_FRAME_MALFORMED', 'token: the jwt is not a compact JWS');
  return { identityId, expiresAt, jwt };
}
