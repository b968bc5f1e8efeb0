/**
 * SHA-256, SHA-512 and HKDF-SHA256 (RFC 5869) from node:crypto.
 */
import { createHash, hkdfSync } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { abytes } from './bytes.js';

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

export function sha512(...parts: Uint8Array[]): Uint8Array {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

/** RFC 5869 §2.3: L must not exceed 255 * HashLen. */
export const HKDF_SHA256_MAX = 255 * 32;

/**
 * HKDF-SHA256 (RFC 5869). An empty salt is treated as HashLen zero bytes, as §2.2 says.
 * Throws ERR_INVALID_ARG for lengths outside 1..8160 instead of returning short output.
 */
export function hkdfSha256(
  ikm: Uint8Array,
  salt: Uint8Array,
  info: Uint8Array,
  length: number,
): Uint8Array {
  abytes(ikm, undefined, 'ikm');
  abytes(salt, undefined, 'salt');
  abytes(info, undefined, 'info');
  if (!Number.isInteger(length) || length < 1 || length > HKDF_SHA256_MAX) {
    throw new EnrollError('ERR_INVALID_ARG', `"length" must be 1..${HKDF_SHA256_MAX}, got ${length}`);
  }
  if (info.length > 1024) {
    // node's hkdfSync caps info at 1024 bytes; RFC 5869 does not. Our infos are < 64 bytes.
    throw new EnrollError('ERR_INVALID_ARG', `"info" longer than 1024 bytes is not supported`);
  }
  return new Uint8Array(hkdfSync('sha256', ikm, salt, info, length));
}
