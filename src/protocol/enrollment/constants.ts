/**
 * Constants of the Enrollment Key Agreement v1 (the design seed "Enrollment Key
 * Agreement", fixed for v1 by the issue).
 */
import { utf8 } from '../../crypto/bytes.js';

/** X3DH §2.1 `info`: the protocol name, ASCII. Also mixed into h and the AAD. */
export const INFO_STRING = 'ockam-enroll/v1/X3DH_25519_AESGCM_SHA256';
export const INFO: Uint8Array = utf8(INFO_STRING);

/** Raw X25519 keys and DH outputs. */
export const KEY_LEN = 32;
/** SHA-256 output: the enrollee id, h. */
export const HASH_LEN = 32;
/** Header = EK_B ‖ SHA-256(EIK_B). */
export const HEADER_LEN = KEY_LEN + HASH_LEN;
/** Plaintext = IK_B ‖ POP (XEdDSA signature). */
export const PLAINTEXT_LEN = KEY_LEN + 64;
/** Header ‖ AES-256-GCM(plaintext) ‖ tag = 64 + 96 + 16. */
export const ENROLLMENT_MESSAGE_LEN = HEADER_LEN + PLAINTEXT_LEN + 16;

/** X3DH §2.2 KDF: F = 32 0xFF bytes prepended to the IKM (for X25519). */
export const KDF_PREFIX: Uint8Array = new Uint8Array(32).fill(0xff);
/** X3DH §2.2 KDF: the HKDF salt is a zero-filled byte sequence of the hash's length. */
export const KDF_SALT: Uint8Array = new Uint8Array(32);
/** HKDF info for the session keys: INFO ‖ "/session". */
export const SESSION_INFO: Uint8Array = utf8(`${INFO_STRING}/session`);
