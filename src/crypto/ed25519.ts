/**
 * Ed25519 verification (RFC 8032 §5.1.7) from node:crypto. OpenSSL rejects S >= L and
 * non-canonical encodings, which the Wycheproof suite checks.
 */
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';
import { abytes, toBase64Url } from './bytes.js';

export function importEd25519Public(publicKey: Uint8Array, name = 'publicKey'): KeyObject {
  abytes(publicKey, 32, name);
  try {
    return createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(publicKey) },
      format: 'jwk',
    });
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', `"${name}" is not a valid Ed25519 public key`, { cause });
  }
}

/** Returns true only for a valid signature; malformed keys and signatures return false. */
export function ed25519Verify(
  publicKey: Uint8Array | KeyObject,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  abytes(message, undefined, 'message');
  abytes(signature, undefined, 'signature');
  if (signature.length !== 64) return false;
  let key: KeyObject;
  try {
    key = publicKey instanceof Uint8Array ? importEd25519Public(publicKey) : publicKey;
  } catch {
    return false;
  }
  try {
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}
