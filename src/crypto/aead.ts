/**
 * AES-256-GCM (NIST SP 800-38D) with a 96-bit nonce and a 128-bit tag, from node:crypto.
 * The profile is fixed on purpose: every use in ockam-enroll (enrollment message, session,
 * Noise AESGCM, keystore) is exactly this one.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { abytes } from './bytes.js';

export const AES_KEY_LEN = 32;
export const GCM_NONCE_LEN = 12;
export const GCM_TAG_LEN = 16;

/** Returns ciphertext ‖ tag. */
export function aesGcmEncrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  abytes(key, AES_KEY_LEN, 'key');
  abytes(nonce, GCM_NONCE_LEN, 'nonce');
  abytes(plaintext, undefined, 'plaintext');
  abytes(aad, undefined, 'aad');
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LEN });
  if (aad.length > 0) c.setAAD(aad);
  const head = c.update(plaintext);
  const tail = c.final();
  const tag = c.getAuthTag();
  const out = new Uint8Array(head.length + tail.length + GCM_TAG_LEN);
  out.set(head, 0);
  out.set(tail, head.length);
  out.set(tag, head.length + tail.length);
  return out;
}

/**
 * Opens ciphertext ‖ tag. Any failure, including a too-short input, is the single opaque
 * ERR_DECRYPT: callers must not learn why authentication failed.
 */
export function aesGcmDecrypt(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array = new Uint8Array(0),
): Uint8Array {
  abytes(key, AES_KEY_LEN, 'key');
  abytes(nonce, GCM_NONCE_LEN, 'nonce');
  abytes(sealed, undefined, 'ciphertext');
  abytes(aad, undefined, 'aad');
  if (sealed.length < GCM_TAG_LEN) throw new EnrollError('ERR_DECRYPT', 'decryption failed');
  const ctLen = sealed.length - GCM_TAG_LEN;
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LEN });
    d.setAuthTag(sealed.subarray(ctLen));
    if (aad.length > 0) d.setAAD(aad);
    const head = d.update(sealed.subarray(0, ctLen));
    const tail = d.final();
    const out = new Uint8Array(head.length + tail.length);
    out.set(head, 0);
    out.set(tail, head.length);
    return out;
  } catch (cause) {
    throw new EnrollError('ERR_DECRYPT', 'decryption failed', { cause });
  }
}
