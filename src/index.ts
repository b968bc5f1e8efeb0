/**
 * ockam-enroll's library API: the protocol core. Everything exported here is pure — bytes
 * in, bytes out, keys and randomness passed in — and does no I/O. The CLI's transports,
 * keystores and store are built on top of it (docs/architecture.md).
 *
 * Byte-level specification: docs/protocol.md.
 */
export { EnrollError, ERROR_CODES, isEnrollError, isErrorCode, type ErrorCode, type EnrollErrorOptions } from './errors.js';

// Primitives: X25519, SHA-2, HKDF, AES-256-GCM and Ed25519 verification from node:crypto;
// XEdDSA on @noble/curves; ML-KEM-768 (FIPS 203) on @noble/post-quantum.
export * from './crypto/index.js';

// Noise_XX_25519_AESGCM_SHA256 (rev 34).
export {
  HandshakeState,
  NOISE_MAX_MESSAGE_LEN,
  NOISE_XX_AESGCM_SHA256,
  TransportState,
  type HandshakeOptions,
  type NoiseKeyPair,
} from './protocol/noise/index.js';

// The Enrollment Key Agreement: v1 (X3DH) and v2 (X3DH + ML-KEM-768, after PQXDH).
export * from './protocol/enrollment/index.js';

// Encodings: bundle, enrollee card, text form.
export * from './protocol/codec/index.js';

// The short authentication string shown on both ends of a Noise channel.
export { shortAuthString, SAS_INFO } from './protocol/sas.js';

// The lifecycle: the signed address announcement of a service that moves (docs/protocol.md §7.10).
export {
  ADDRESS_SIG_CONTEXT,
  announcementSignedBytes,
  decodeAnnouncement,
  encodeAnnouncement,
  signAnnouncement,
  verifyAnnouncement,
  type AddressAnnouncement,
} from './protocol/announce.js';

// The enrollee credential the service issues with each acceptance, signed by IK_A (docs/protocol.md §4.4).
export {
  CREDENTIAL_SIG_CONTEXT,
  CREDENTIAL_TEXT_PREFIX,
  credentialFromText,
  credentialSignedBytes,
  credentialToText,
  decodeCredential,
  encodeCredential,
  signCredential,
  verifyCredential,
  type Credential,
  type CredentialFields,
  type VerifyCredentialOptions,
} from './protocol/credential.js';
