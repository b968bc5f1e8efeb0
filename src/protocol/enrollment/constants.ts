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

// ---- EKA v2: hybrid X3DH + ML-KEM-768 after PQXDH (docs/protocol.md §5A) ----

/**
 * PQXDH rev. 3 §2.1 `info` for v2: its own string, so a v1 key can never be derived where
 * a v2 key is meant (and the reverse). Also mixed into h and the AAD, like INFO.
 */
export const INFO_V2_STRING = 'ockam-enroll/v2/PQXDH_25519_MLKEM768_AESGCM_SHA256';
export const INFO_V2: Uint8Array = utf8(INFO_V2_STRING);
/** HKDF info for the v2 session keys: INFO_V2 ‖ "/session". */
export const SESSION_INFO_V2: Uint8Array = utf8(`${INFO_V2_STRING}/session`);
/** The first byte of a v2 enrollment message (a v1 message has none: it is 176 bytes). */
export const MESSAGE_VERSION_V2 = 2;
/** ML-KEM-768 ciphertext (FIPS 203 Table 3). */
export const KEM_CIPHERTEXT_LEN = 1088;
/** ML-KEM-768 encapsulation key PQSPK_A (FIPS 203 Table 3). */
export const KEM_PUBLIC_KEY_LEN = 1184;
/** Header v2 = 0x02 ‖ EK_B ‖ SHA-256(EIK_B) ‖ CT: 1 + 32 + 32 + 1088. */
export const HEADER_V2_LEN = 1 + KEY_LEN + HASH_LEN + KEM_CIPHERTEXT_LEN;
/** Header v2 ‖ AES-256-GCM(IK_B ‖ POP) ‖ tag = 1153 + 96 + 16. */
export const ENROLLMENT_MESSAGE_V2_LEN = HEADER_V2_LEN + PLAINTEXT_LEN + 16;
