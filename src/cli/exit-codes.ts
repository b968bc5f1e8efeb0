/**
 * Exit statuses, documented in README §"Exit codes". Scripts rely on them: keep them stable.
 */
import type { ErrorCode } from '../errors.js';

export const EXIT = {
  OK: 0,
  /** Anything else went wrong: bad input file, keystore problem, a bug. */
  FAILURE: 1,
  /** Bad flags or arguments. */
  USAGE: 2,
  /** The service (or the enroller, relaying it) refused the request. */
  REJECTED: 3,
  /** The peer could not be reached, or went silent. */
  UNREACHABLE: 4,
  /** The peer could not be authenticated: pinned key mismatch, bad bundle signature, channel tampering. */
  AUTH: 5,
  /** The service is temporarily unavailable (its store cannot be reached): retry later. sysexits.h EX_TEMPFAIL. */
  UNAVAILABLE: 75,
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  ERR_USAGE: EXIT.USAGE,
  ERR_ADDRESS: EXIT.USAGE,
  ERR_REJECTED: EXIT.REJECTED,
  ERR_REPLAY: EXIT.REJECTED,
  ERR_ENROLLEE_UNKNOWN: EXIT.REJECTED,
  ERR_APPROVAL_EXPIRED: EXIT.REJECTED,
  ERR_ENROLLEE_REVOKED: EXIT.REJECTED,
  ERR_ENROLLEE_LOCKED: EXIT.REJECTED,
  ERR_BUNDLE_USED: EXIT.REJECTED,
  ERR_BUNDLE_UNKNOWN: EXIT.REJECTED,
  ERR_OPK_USED: EXIT.REJECTED,
  ERR_ENROLLER_NOT_ALLOWED: EXIT.REJECTED,
  ERR_RATE_LIMITED: EXIT.REJECTED,
  ERR_MESSAGE_LENGTH: EXIT.REJECTED,
  ERR_TOKEN_INVALID: EXIT.REJECTED,
  ERR_TOKEN_EXPIRED: EXIT.REJECTED,
  ERR_TOKEN_USED: EXIT.REJECTED,
  ERR_CSR_INVALID: EXIT.REJECTED,
  ERR_CSR_IDENTITY: EXIT.REJECTED,
  ERR_CERT_REQUIRED: EXIT.REJECTED,
  ERR_CERT_REVOKED: EXIT.REJECTED,
  ERR_NAME_TAKEN: EXIT.REJECTED,
  ERR_HTTP: EXIT.REJECTED,
  ERR_ROTATE_PROOF: EXIT.REJECTED,
  ERR_ROTATE_CONFLICT: EXIT.REJECTED,
  ERR_UNREACHABLE: EXIT.UNREACHABLE,
  ERR_TIMEOUT: EXIT.UNREACHABLE,
  ERR_CONNECTION_CLOSED: EXIT.UNREACHABLE,
  ERR_SERVICE_KEY_MISMATCH: EXIT.AUTH,
  ERR_BUNDLE_SIGNATURE: EXIT.AUTH,
  ERR_KEM_PREKEY: EXIT.AUTH,
  ERR_BUNDLE_SERVICE_KEY: EXIT.AUTH,
  ERR_NOISE_DECRYPT: EXIT.AUTH,
  ERR_SESSION_DECRYPT: EXIT.AUTH,
  ERR_TOKEN_SIGNATURE: EXIT.AUTH,
  ERR_CA_MISMATCH: EXIT.AUTH,
  ERR_ANNOUNCEMENT_INVALID: EXIT.AUTH,
  ERR_SAS_NOT_CONFIRMED: EXIT.AUTH,
  ERR_ENROLLEE_UNEXPECTED: EXIT.AUTH,
  // A forged credential or one from another service; an expired one is FAILURE (1).
  ERR_CREDENTIAL_SIGNATURE: EXIT.AUTH,
  ERR_CREDENTIAL_ISSUER: EXIT.AUTH,
  // A credential on a valid revocation list is refused (3); a list that is forged or from
  // another service is AUTH (5); a stale or unreadable list is FAILURE (1), like an expired credential.
  ERR_CREDENTIAL_REVOKED: EXIT.REJECTED,
  ERR_REVOCATIONS_ISSUER: EXIT.AUTH,
  ERR_REVOCATIONS_SIGNATURE: EXIT.AUTH,
  ERR_REVOCATIONS_FETCH: EXIT.UNREACHABLE,
  ERR_UNAVAILABLE: EXIT.UNAVAILABLE,
  ERR_POLICY: EXIT.USAGE,
  ERR_POLICY_DENIED: EXIT.REJECTED,
  ERR_ATTRIBUTE_SCOPE: EXIT.REJECTED,
};

export function exitCodeFor(code: ErrorCode): number {
  return BY_CODE[code] ?? EXIT.FAILURE;
}
