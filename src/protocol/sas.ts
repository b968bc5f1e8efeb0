/**
 * The short authentication string (SAS) both ends of a Noise channel print so that a
 * person can compare them (architecture.md, step 2: enroller ↔ enrollee).
 *
 *   v = HKDF-SHA256(IKM = handshake hash, salt = empty, info = "ockam-enroll/v1/sas", L = 5)
 *   SAS = (v as a 40-bit big-endian integer) mod 10^8, zero-padded to 8 digits, "1234-5678"
 *
 * The Noise handshake hash (Noise §11.2 channel binding) commits to both static keys and
 * both ephemerals, so a man in the middle ends up with two different hashes and, but for
 * a 10^-8 chance per attempt, two different strings. The 40-bit value reduced mod 10^8
 * has a bias below 10^-4 relative, which does not matter at this size.
 */
import { abytes, utf8 } from '../crypto/bytes.js';
import { hkdfSha256 } from '../crypto/hash.js';

export const SAS_INFO: Uint8Array = utf8('ockam-enroll/v1/sas');
const SAS_BYTES = 5;
const SAS_MODULUS = 100_000_000;

/** `handshakeHash` is the 32-byte Noise h (SHA-256) after the handshake completes. */
export function shortAuthString(handshakeHash: Uint8Array): string {
  abytes(handshakeHash, 32, 'handshakeHash');
  const v = hkdfSha256(handshakeHash, new Uint8Array(0), SAS_INFO, SAS_BYTES);
  // 40 bits exceed 32-bit bitwise operators, so combine with multiplication (exact below 2^53).
  let n = 0;
  for (const b of v) n = n * 256 + b;
  const digits = String(n % SAS_MODULUS).padStart(8, '0');
  return `${digits.slice(0, 4)}-${digits.slice(4)}`;
}
