/**
 * The signed revocation list, v1 (docs/protocol.md §4.7): which enrollees the service has
 * revoked, signed with IK_A, so that a verifier that is offline from the service — a device
 * checking another device's credential — can refuse a revoked one (issue #18 finding 2).
 *
 *   version u8 = 1 | IK_A 32 (issuer) | issued_at u64 | next_update u64 | count u32 |
 *   count × (enrollee_id 32 | revoked_at u64), enrollee ids strictly ascending | sig 64
 *
 *   sig = XEdDSA(IK_A, "ockam-enroll/v1/revocations" ‖ every preceding byte)
 *
 * A credential (§4.4, §4.6) names its enrollee by enrollee_id, and every credential of a
 * revoked enrollee is revoked: the list carries ids, not credential serials (credentials have
 * none). The ids are sorted and unique, so the encoding is canonical (one list, one byte
 * string) and a lookup is a binary search.
 *
 * Freshness, as a CRL's thisUpdate/nextUpdate (RFC 5280 §5.1.2.4-5): a verifier refuses a list
 * at or after next_update, or one issued more than the clock skew in its future. The label
 * keeps this signature from being valid as a bundle, credential or CSK signature (§2.4).
 *
 * Pure: bytes in, bytes out, keys and time passed in.
 */
import { EnrollError } from '../errors.js';
import { abytes, concat, equalBytes, toHex, utf8 } from '../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaVerify, type XEdDSASigner } from '../crypto/xeddsa.js';
import { ByteReader } from './codec/reader.js';
import { ByteWriter } from './codec/writer.js';

export const REVOCATIONS_VERSION = 1;
export const REVOCATIONS_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/revocations');
/** The media type of the encoded list, on the wire (`GET /revocations`) and in files. */
export const CT_REVOCATIONS = 'application/vnd.ockam-enroll.revocations';
const ID_LEN = 32;
const ENTRY_LEN = ID_LEN + 8;
/** version, IK_A, issued_at, next_update, count. */
export const REVOCATIONS_HEADER_LEN = 1 + 32 + 8 + 8 + 4;
/** At most 2^18 revoked enrollees (≈ 10 MiB): a verifier's read is bounded before it allocates. */
export const REVOCATIONS_MAX_ENTRIES = 262_144;
export const REVOCATIONS_MIN_LEN = REVOCATIONS_HEADER_LEN + XEDDSA_SIGNATURE_LEN;
export const REVOCATIONS_MAX_LEN = REVOCATIONS_MIN_LEN + REVOCATIONS_MAX_ENTRIES * ENTRY_LEN;
/** The longest freshness window a list may declare: 30 days. */
export const REVOCATIONS_MAX_VALIDITY = 30 * 86400;
/** How far in the future issued_at may be before a verifier refuses the list (clock skew, as §4.4). */
export const REVOCATIONS_CLOCK_SKEW = 300;

export interface RevokedEntry {
  /** SHA-256(EIK_B), the enrollee id (§3.2). */
  enrolleeId: Uint8Array;
  /** Unix seconds. */
  revokedAt: number;
}

export interface RevocationListFields {
  /** The issuing service's identity key IK_A. */
  issuer: Uint8Array;
  /** Unix seconds: when the list was made. */
  issuedAt: number;
  /** Unix seconds: verifiers refuse the list at and after this instant. */
  nextUpdate: number;
  /** Any order on input; the encoding sorts them by enrollee id. */
  entries: readonly RevokedEntry[];
}

export interface RevocationList extends RevocationListFields {
  version: 1;
  entries: RevokedEntry[];
  signature: Uint8Array;
}

export interface VerifyRevocationsOptions {
  /** Current time in unix seconds. */
  now: number;
  /** The service key the caller trusts; a list signed by any other is refused. */
  issuer: Uint8Array;
}

/** Lexicographic order of two byte strings (the order of the list's ids). */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function checkFields(f: RevocationListFields, fail: (m: string) => never): RevokedEntry[] {
  if (!(f.issuer instanceof Uint8Array) || f.issuer.length !== 32) fail('"issuer" must be 32 bytes');
  for (const [name, v] of [['issuedAt', f.issuedAt], ['nextUpdate', f.nextUpdate]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) fail(`"${name}" must be an integer in 0..2^53-1`);
  }
  if (f.nextUpdate <= f.issuedAt) fail('"nextUpdate" must be after "issuedAt"');
  if (f.nextUpdate - f.issuedAt > REVOCATIONS_MAX_VALIDITY) fail(`the freshness window is over ${REVOCATIONS_MAX_VALIDITY} seconds`);
  if (!Array.isArray(f.entries)) fail('"entries" must be an array');
  if (f.entries.length > REVOCATIONS_MAX_ENTRIES) fail(`${f.entries.length} entries, at most ${REVOCATIONS_MAX_ENTRIES}`);
  for (const e of f.entries) {
    if (!(e?.enrolleeId instanceof Uint8Array) || e.enrolleeId.length !== ID_LEN) fail(`an entry's "enrolleeId" must be ${ID_LEN} bytes`);
    if (!Number.isSafeInteger(e.revokedAt) || e.revokedAt < 0) fail('an entry\'s "revokedAt" must be an integer in 0..2^53-1');
  }
  const sorted = [...f.entries].sort((a, b) => compareBytes(a.enrolleeId, b.enrolleeId));
  for (let i = 1; i < sorted.length; i++) {
    if (equalBytes(sorted[i - 1]!.enrolleeId, sorted[i]!.enrolleeId)) fail(`enrollee ${toHex(sorted[i]!.enrolleeId)} is listed twice`);
  }
  return sorted;
}

function encodeSignedPart(f: RevocationListFields): Uint8Array {
  const sorted = checkFields(f, (m) => {
    throw new EnrollError('ERR_INVALID_ARG', `revocation list: ${m}`);
  });
  const w = new ByteWriter()
    .u8(REVOCATIONS_VERSION, 'version')
    .bytes(f.issuer, 32, 'issuer')
    .u64be(f.issuedAt, 'issuedAt')
    .u64be(f.nextUpdate, 'nextUpdate')
    .u32be(sorted.length, 'count');
  for (const e of sorted) w.bytes(e.enrolleeId, ID_LEN, 'enrolleeId').u64be(e.revokedAt, 'revokedAt');
  return w.finish();
}

/** The message XEdDSA signs: REVOCATIONS_SIG_CONTEXT ‖ the signed part. */
export function revocationsSignedBytes(f: RevocationListFields): Uint8Array {
  return concat(REVOCATIONS_SIG_CONTEXT, encodeSignedPart(f));
}

/**
 * Signs and encodes a list with IK_A's prepared signer (xeddsaSigner). The caller passes
 * `fields.issuer` = IK_A's public key; a verifier checks the signature under it.
 */
export function signRevocationList(fields: RevocationListFields, sign: XEdDSASigner, random: Uint8Array | RandomSource = systemRandom): Uint8Array {
  if (typeof sign !== 'function') throw new EnrollError('ERR_INVALID_ARG', '"sign" must be an XEdDSA signer');
  const signed = encodeSignedPart(fields);
  const signature = abytes(sign(concat(REVOCATIONS_SIG_CONTEXT, signed), random), XEDDSA_SIGNATURE_LEN, 'signature');
  return concat(signed, signature);
}

/**
 * Parses a list's structure only (no issuer, signature or freshness check: see
 * verifyRevocationList). The length is checked against the count before any entry is read;
 * any deviation — version, truncation, trailing bytes, ids out of order or repeated, a
 * window that is empty or over 30 days — is ERR_REVOCATIONS_MALFORMED.
 */
export function decodeRevocationList(bytes: Uint8Array): RevocationList {
  abytes(bytes, undefined, 'revocation list');
  const r = new ByteReader(bytes, 'ERR_REVOCATIONS_MALFORMED', 'revocation list');
  const version = r.u8('version');
  if (version !== REVOCATIONS_VERSION) r.fail(`version ${version} is not supported (expected ${REVOCATIONS_VERSION})`);
  if (bytes.length > REVOCATIONS_MAX_LEN) r.fail(`${bytes.length} bytes, at most ${REVOCATIONS_MAX_LEN}`);
  const issuer = r.bytes(32, 'IK_A');
  const issuedAt = r.u64be('issued_at');
  const nextUpdate = r.u64be('next_update');
  const count = r.u32be('count');
  if (count > REVOCATIONS_MAX_ENTRIES) r.fail(`"count" is ${count}, at most ${REVOCATIONS_MAX_ENTRIES}`);
  // Cheap before the loop: the count must match the length exactly.
  if (bytes.length !== REVOCATIONS_MIN_LEN + count * ENTRY_LEN) {
    r.fail(`"count" ${count} needs ${REVOCATIONS_MIN_LEN + count * ENTRY_LEN} bytes, the list has ${bytes.length}`);
  }
  const entries: RevokedEntry[] = [];
  let prev: Uint8Array | undefined;
  for (let i = 0; i < count; i++) {
    const enrolleeId = r.bytes(ID_LEN, 'enrollee_id');
    if (prev !== undefined && compareBytes(prev, enrolleeId) >= 0) r.fail(`entry ${i}: enrollee ids must be strictly ascending`);
    prev = enrolleeId;
    entries.push({ enrolleeId, revokedAt: r.u64be('revoked_at') });
  }
  const signature = r.bytes(XEDDSA_SIGNATURE_LEN, 'sig');
  r.end();
  const list: RevocationList = { version: REVOCATIONS_VERSION, issuer, issuedAt, nextUpdate, entries, signature };
  checkFields(list, (m) => r.fail(m));
  return list;
}

/**
 * Checks a decoded list and returns it, in this order (docs/protocol.md §4.7):
 * 1. the issuer is the trusted service key → else ERR_REVOCATIONS_ISSUER (no curve arithmetic);
 * 2. the signature verifies under it → else ERR_REVOCATIONS_SIGNATURE;
 * 3. now < next_update, and issued_at ≤ now + REVOCATIONS_CLOCK_SKEW → else ERR_REVOCATIONS_STALE.
 */
export function verifyRevocationList(list: RevocationList, options: VerifyRevocationsOptions): RevocationList {
  const { now, issuer } = options ?? ({} as VerifyRevocationsOptions);
  if (typeof now !== 'number' || !Number.isFinite(now)) throw new EnrollError('ERR_INVALID_ARG', '"now" must be a finite number of unix seconds');
  abytes(issuer, 32, 'issuer');
  if (list === null || typeof list !== 'object' || list.version !== REVOCATIONS_VERSION) {
    throw new EnrollError('ERR_REVOCATIONS_MALFORMED', 'revocation list: not a version 1 list');
  }
  checkFields(list, (m) => {
    throw new EnrollError('ERR_REVOCATIONS_MALFORMED', `revocation list: ${m}`);
  });
  if (!(list.signature instanceof Uint8Array) || list.signature.length !== XEDDSA_SIGNATURE_LEN) {
    throw new EnrollError('ERR_REVOCATIONS_MALFORMED', `revocation list: "signature" must be ${XEDDSA_SIGNATURE_LEN} bytes`);
  }
  if (!equalBytes(list.issuer, issuer)) {
    throw new EnrollError('ERR_REVOCATIONS_ISSUER', 'the revocation list was signed by another service key', {
      hint: 'fetch the list from the service that issued the credential (its /revocations, or `service revocations --out`)',
    });
  }
  if (!xeddsaVerify(list.issuer, revocationsSignedBytes(list), list.signature)) {
    throw new EnrollError('ERR_REVOCATIONS_SIGNATURE', 'the revocation list\'s signature does not verify: it was altered or forged', {
      hint: 'fetch the list again from the service',
    });
  }
  if (now >= list.nextUpdate) {
    throw new EnrollError('ERR_REVOCATIONS_STALE', `the revocation list is stale: its next update was due at ${new Date(list.nextUpdate * 1000).toISOString()}`, {
      hint: 'fetch a current list from the service (GET /revocations, or `service revocations --out`)',
    });
  }
  if (list.issuedAt > now + REVOCATIONS_CLOCK_SKEW) {
    throw new EnrollError('ERR_REVOCATIONS_STALE', `the revocation list is not valid until ${new Date(list.issuedAt * 1000).toISOString()}`, {
      hint: 'check this machine\'s clock',
    });
  }
  return list;
}

/** The entry for `enrolleeId`, if the list revokes it (binary search over the sorted ids). */
export function findRevoked(list: RevocationList, enrolleeId: Uint8Array): RevokedEntry | undefined {
  abytes(enrolleeId, ID_LEN, 'enrolleeId');
  let lo = 0;
  let hi = list.entries.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareBytes(list.entries[mid]!.enrolleeId, enrolleeId);
    if (c === 0) return list.entries[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}
