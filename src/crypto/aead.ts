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
 * Scatter-gather AES-GCM seal, for the bulk paths (portal links): the plaintext is the
 * concatenation of `parts`, and the result is the ciphertext in the same pieces followed by
 * the tag as its own 16-byte piece. GCM is a counter mode (SP 800-38D §7.1), so the pieces
 * are the ciphertext of one message, byte for byte what {@link aesGcmEncrypt} returns for the
 * joined plaintext; no byte is copied besides the encryption's own output.
 */
export function aesGcmEncryptParts(
  key: Uint8Array,
  nonce: Uint8Array,
  parts: readonly Uint8Array[],
  aad: Uint8Array = new Uint8Array(0),
): Buffer[] {
  abytes(key, AES_KEY_LEN, 'key');
  abytes(nonce, GCM_NONCE_LEN, 'nonce');
  abytes(aad, undefined, 'aad');
  for (const p of parts) abytes(p, undefined, 'plaintext');
  const c = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LEN });
  if (aad.length > 0) c.setAAD(aad);
  const out: Buffer[] = [];
  for (const p of parts) if (p.length > 0) out.push(c.update(p));
  const tail = c.final();
  if (tail.length > 0) out.push(tail);
  out.push(c.getAuthTag());
  return out;
}

/**
 * Scatter-gather AES-GCM open: `parts` joined are ciphertext ‖ tag (the tag may straddle
 * pieces; only its 16 bytes are copied). Returns the plaintext in pieces, and only once the
 * tag has verified: no unauthenticated byte ever leaves this function. Failures are the same
 * single opaque ERR_DECRYPT as {@link aesGcmDecrypt}.
 */
export function aesGcmDecryptParts(
  key: Uint8Array,
  nonce: Uint8Array,
  parts: readonly Uint8Array[],
  aad: Uint8Array = new Uint8Array(0),
): Buffer[] {
  abytes(key, AES_KEY_LEN, 'key');
  abytes(nonce, GCM_NONCE_LEN, 'nonce');
  abytes(aad, undefined, 'aad');
  let total = 0;
  for (const p of parts) total += abytes(p, undefined, 'ciphertext').length;
  if (total < GCM_TAG_LEN) throw new EnrollError('ERR_DECRYPT', 'decryption failed');
  // The ciphertext pieces (the tag cut off) and the tag, gathered from the end.
  const tag = new Uint8Array(GCM_TAG_LEN);
  let ctLeft = total - GCM_TAG_LEN;
  const ct: Uint8Array[] = [];
  let off = 0;
  for (const p of parts) {
    const inCt = Math.max(0, Math.min(p.length, ctLeft));
    if (inCt > 0) ct.push(inCt === p.length ? p : p.subarray(0, inCt));
    ctLeft -= inCt;
    if (inCt < p.length) {
      tag.set(p.subarray(inCt), off);
      off += p.length - inCt;
    }
  }
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: GCM_TAG_LEN });
    d.setAuthTag(tag);
    if (aad.length > 0) d.setAAD(aad);
    const out: Buffer[] = [];
    for (const c of ct) out.push(d.update(c));
    const tail = d.final();
    if (tail.length > 0) out.push(tail);
    return out;
  } catch (cause) {
    throw new EnrollError('ERR_DECRYPT', 'decryption failed', { cause });
  }
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
    // GCM's final() yields no bytes: the plaintext is update's output, returned as it is.
    // (A Uint8Array view, as before, not the Buffer itself.)
    if (tail.length === 0) return new Uint8Array(head.buffer, head.byteOffset, head.length);
    const out = new Uint8Array(head.length + tail.length);
    out.set(head, 0);
    out.set(tail, head.length);
    return out;
  } catch (cause) {
    throw new EnrollError('ERR_DECRYPT', 'decryption failed', { cause });
  }
}
