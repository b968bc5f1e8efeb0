/**
 * The one error class of ockam-enroll.
 *
 * Every failure the library or the CLI can report is an {@link EnrollError} with a string
 * `code`. Codes are stable: tests assert them, the CLI maps them to exit statuses and the
 * wire protocol maps a subset of them to rejection codes (docs/protocol.md §8).
 *
 * Messages are lowercase, name the field or spec item that failed, and never contain key
 * material. Crypto failures that reach a peer are collapsed to an opaque code by the
 * caller; the precise code stays in the service's log.
 */

/** All error codes, grouped by layer. Add new codes to the group they belong to. */
export const ERROR_CODES = [
  // -- arguments and generic decoding
  'ERR_INVALID_ARG', // a library function got a value of the wrong type, length or range
  'ERR_DECODE', // a decoder met malformed input that no more specific code covers

  // -- crypto primitives (src/crypto)
  'ERR_DH_ZERO', // an X25519 output was all zeros (low-order or zero public key)
  'ERR_KEY_INVALID', // a public or private key could not be imported
  'ERR_DECRYPT', // AEAD authentication failed
  'ERR_SIGNATURE_INVALID', // an XEdDSA / Ed25519 signature did not verify

  // -- encodings: bundle, card, text form (src/protocol/codec)
  'ERR_TEXT_PREFIX', // text form does not start with a known versioned prefix
  'ERR_TEXT_ALPHABET', // text form holds a character outside its alphabet
  'ERR_TEXT_CHECKSUM', // text form checksum mismatch: mistyped or truncated
  'ERR_BUNDLE_MALFORMED', // bundle bytes do not parse
  'ERR_BUNDLE_VERSION', // bundle version is not supported
  'ERR_BUNDLE_SIGNATURE', // bundle signature or SPK signature does not verify
  'ERR_BUNDLE_EXPIRED', // bundle is past its expiry
  'ERR_EKA_VERSION', // the bundle or message is for another EKA version than required (a downgrade is refused)
  'ERR_KEM_PREKEY', // the ML-KEM prekey fetched for a v2 bundle does not match its IK_A-signed KEM_hash
  'ERR_BUNDLE_SERVICE_KEY', // the bundle's IK_A is not the service key the enrollee was told to expect (join --service-key, init --service-key)
  'ERR_CARD_MALFORMED', // enrollee card bytes do not parse

  // -- enrollment key agreement (src/protocol/enrollment), service checks in order
  'ERR_MESSAGE_LENGTH', // check 1: enrollment message is not 176 bytes
  'ERR_REPLAY', // check 2: EK_B was already accepted
  'ERR_ENROLLEE_UNKNOWN', // check 3: no pending, unexpired enrollee has this id
  'ERR_ENROLLMENT_DECRYPT', // check 4: SK/h recomputation + AEAD failed (wrong Addr, wrong OPK, tampering)
  'ERR_POP_INVALID', // check 5: XEdDSA(IK_B, EIK_B) proof of possession failed
  'ERR_APPROVAL_EXPIRED', // pending entry exists but is past its expiry
  'ERR_OPK_USED', // the OPK named by the approval was already consumed
  'ERR_ENROLLEE_REVOKED', // the enrollee is revoked
  'ERR_ENROLLEE_LOCKED', // too many failed attempts for this enrollee

  // -- sessions after acceptance
  'ERR_SESSION_DECRYPT', // a session message failed to authenticate
  'ERR_NONCE_EXHAUSTED', // a counter nonce would wrap: the key must not be used again

  // -- Noise (src/protocol/noise)
  'ERR_NOISE_TURN', // a party wrote or read out of turn
  'ERR_NOISE_TOO_LONG', // a Noise message exceeds 65535 bytes
  'ERR_NOISE_SHORT', // a Noise message is shorter than its pattern requires
  'ERR_NOISE_DECRYPT', // a handshake or transport message failed to authenticate
  'ERR_NOISE_POISONED', // the state failed before and must not be used again
  'ERR_NOISE_STATE', // the handshake is not finished, or already finished

  // -- transport and framing (src/transport)
  'ERR_FRAME_TOO_LARGE', // a frame announces more bytes than the limit
  'ERR_FRAME_MALFORMED', // a frame or application message does not parse
  'ERR_TIMEOUT', // a read or connect timed out
  'ERR_UNREACHABLE', // connection refused, host unknown, or the peer went away
  'ERR_CONNECTION_CLOSED', // the peer closed the connection mid-exchange
  'ERR_ADDRESS', // an address (tcp://HOST:PORT) is malformed
  'ERR_LISTEN', // cannot listen on an address (in use, not permitted, not local)
  'ERR_CONNECTION_LIMIT', // the server is at maxConnections and dropped a new connection

  // -- keystores and homes (src/keystore)
  'ERR_KEY_EXISTS', // refusing to overwrite an existing key without --force
  'ERR_KEY_MISSING', // the role's home has no such key: run init first
  'ERR_KEY_PERMISSIONS', // a key file or home directory is readable by others
  'ERR_PASSPHRASE', // passphrase missing or wrong
  'ERR_KEYSTORE_CORRUPT', // a keystore file does not parse
  'ERR_KEYSTORE_IO', // a keystore file or directory could not be read or written (disk full, read-only, no access)

  // -- store (src/store)
  'ERR_STORE', // the SQLite store failed to open or commit

  // -- service decisions reported to peers
  'ERR_ENROLLER_NOT_ALLOWED', // the enroller's static key is not on the allow list
  'ERR_SERVICE_KEY_MISMATCH', // the service's static key differs from the pinned one
  'ERR_BUNDLE_UNKNOWN', // no bundle with this id
  'ERR_BUNDLE_USED', // the bundle's OPK was already consumed or approved for another enrollee
  'ERR_REJECTED', // the service rejected the request (opaque reason)
  'ERR_RATE_LIMITED', // too many requests from this peer
  'ERR_PROTOCOL', // the peer sent an unexpected message for this step
  'ERR_SAS_NOT_CONFIRMED', // the person at one end did not confirm the short authentication string: nothing was approved
  'ERR_ENROLLEE_UNEXPECTED', // the enrollee on the onboarding channel is not the one --expect-enrollee / --card names
  'ERR_UNAVAILABLE', // the service cannot serve right now (its store is unreachable): nothing was recorded, retry

  // -- token enrollment (X.509 over EST, docs/token-enrollment.md)
  'ERR_TOKEN_INVALID', // the enrollment token does not parse, has a bad claim, or is unknown to the service
  'ERR_TOKEN_EXPIRED', // the enrollment token is past its exp
  'ERR_TOKEN_USED', // the one-time token was already used
  'ERR_TOKEN_SIGNATURE', // the token's signature does not verify with the service's HTTPS key
  'ERR_CA_MISMATCH', // the service's CA does not match the token's ca_fp, or its certificate does not chain to it
  'ERR_CSR_INVALID', // a certificate request does not parse, is too large, or its signature does not verify
  'ERR_CSR_IDENTITY', // a certificate request names another identity than the token or certificate allows
  'ERR_CERT_REQUIRED', // the endpoint needs a TLS client certificate and none was presented
  'ERR_CERT_REVOKED', // the client certificate is revoked, expired or unknown to the service
  'ERR_NAME_TAKEN', // another identity already has this name
  'ERR_HTTP', // an HTTPS exchange failed: unexpected status, content type or body

  // -- lifecycle: revoke, rotate, move (docs/protocol.md §7.9)
  'ERR_ROTATE_PROOF', // a rotation's signatures (old and new IK_B over the channel binding) do not verify
  'ERR_ROTATE_CONFLICT', // the new identity key is the old one, is enrolled or was used before, or the old key is no longer enrolled
  'ERR_ANNOUNCEMENT_INVALID', // an address announcement does not verify under the pinned IK_A, or names an unusable address
  // -- lifecycle: audit, hooks, credentials (README "Lifecycle: audit, hooks, credentials")
  'ERR_AUDIT_BROKEN', // the audit log's hash chain does not verify: an entry was edited, reordered or removed
  'ERR_HOOK_REJECTED', // the --on-enroll hook refused the enrollment (exit status not 0); local: the peer sees REJECTED
  'ERR_HOOK_TIMEOUT', // the --on-enroll hook did not finish in time and was killed; local: the peer sees REJECTED
  'ERR_HOOK_FAILED', // the --on-enroll hook could not be run; local: the peer sees REJECTED
  'ERR_CREDENTIAL_MALFORMED', // a credential's bytes do not parse (docs/protocol.md §4.4)
  'ERR_CREDENTIAL_ISSUER', // a credential was issued by another service key than the one it is checked against
  'ERR_CREDENTIAL_SIGNATURE', // a credential's XEdDSA signature does not verify under its issuer's key
  'ERR_CREDENTIAL_EXPIRED', // a credential is past its expiry (or not valid yet)
  // -- attributes and policies (src/policy, docs/policies.md)
  'ERR_POLICY', // a CEL policy expression does not parse, does not type-check, is not a bool or is over its cost bound
  'ERR_POLICY_DENIED', // a policy (credential verify --require) does not hold for this subject
  'ERR_ATTRIBUTE_SCOPE', // an enroller asked for an attribute outside its scope (service enroller allow --may-assign)

  // -- CLI
  'ERR_USAGE', // bad flags or arguments
  'ERR_INTERNAL', // a bug: please report it
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface EnrollErrorOptions {
  /** The underlying error, kept for the service's log; never shown to peers. */
  cause?: unknown;
  /** One line telling the user what to do about it, printed as `hint: …` by the CLI. */
  hint?: string;
}

export class EnrollError extends Error {
  override readonly name = 'EnrollError';
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: EnrollErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.hint = options.hint;
  }
}

export function isEnrollError(e: unknown, code?: ErrorCode): e is EnrollError {
  return e instanceof EnrollError && (code === undefined || e.code === code);
}

const CODE_SET: ReadonlySet<string> = new Set(ERROR_CODES);
export function isErrorCode(s: string): s is ErrorCode {
  return CODE_SET.has(s);
}
