/**
 * Keys for token enrollment: ECDSA P-256 (the default, and always the CA's and the HTTPS
 * server's) or Ed25519 (an enrollee's choice). Keys live as WebCrypto CryptoKeys while in
 * use and as PKCS#8 PEM on disk, the form openssl, curl and node:tls all read.
 *
 * Private keys never leave these functions except as PKCS#8 for the keystore; nothing here
 * logs or prints them.
 */
import { createPrivateKey, createPublicKey, webcrypto, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';

// Node's WebCrypto directly (not through provider.ts): the key helpers stay cheap to load.
const subtle = webcrypto.subtle;

export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

export type KeyType = 'p256' | 'ed25519';
export const KEY_TYPES: readonly KeyType[] = ['p256', 'ed25519'];

/** OIDs of the two public-key algorithms accepted in CSRs (RFC 5480, RFC 8410). */
export const OID_EC_PUBLIC_KEY = '1.2.840.10045.2.1';
export const OID_P256 = '1.2.840.10045.3.1.7';
export const OID_ED25519 = '1.3.101.112';
/** ecdsa-with-SHA256 (RFC 5758 §3.2). */
export const OID_ECDSA_SHA256 = '1.2.840.10045.4.3.2';

const GEN_PARAMS = {
  p256: { name: 'ECDSA', namedCurve: 'P-256' },
  ed25519: { name: 'Ed25519' },
} as const;

/** The WebCrypto signing parameters for a key type (what @peculiar/x509 calls signingAlgorithm). */
export function signingAlgorithm(keyType: KeyType): { name: 'ECDSA'; hash: 'SHA-256' } | { name: 'Ed25519' } {
  return keyType === 'p256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' };
}

/** The JWS algorithm a key type signs with (RFC 7518 §3.4, RFC 8037 §3.1). */
export function jwsAlgorithm(keyType: KeyType): 'ES256' | 'EdDSA' {
  return keyType === 'p256' ? 'ES256' : 'EdDSA';
}

export function parseKeyType(value: string, what = '--key-type'): KeyType {
  if (value === 'p256' || value === 'ed25519') return value;
  throw new EnrollError('ERR_USAGE', `${what} must be p256 or ed25519, got ${JSON.stringify(String(value).slice(0, 40))}`);
}

/** A fresh key pair. The private key is extractable only so that it can be saved as PKCS#8. */
export async function generateKeyPair(keyType: KeyType): Promise<CryptoKeyPair> {
  const kp = await subtle.generateKey(GEN_PARAMS[keyType], true, ['sign', 'verify']);
  return kp as CryptoKeyPair;
}

/** PKCS#8 DER of a private CryptoKey. The caller wipes it once stored. */
export async function subtleExportPkcs8(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await subtle.exportKey('pkcs8', key));
}

/** PKCS#8 PEM of a private CryptoKey, for the keystore (mode 0600). */
export async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = await subtleExportPkcs8(key);
  try {
    return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' }).export({ type: 'pkcs8', format: 'pem' }) as string;
  } finally {
    der.fill(0);
  }
}

/** The key type of a Node KeyObject, or undefined for any other algorithm or curve. */
export function keyTypeOf(key: KeyObject): KeyType | undefined {
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'p256';
  return undefined;
}

export interface LoadedKeyPair {
  keyType: KeyType;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  /** The private key as a Node KeyObject, for node:tls and jose. */
  keyObject: KeyObject;
}

/**
 * Imports a PKCS#8 private key (PEM text or DER) of one of the two key types.
 * ERR_KEY_INVALID for anything else; `what` names the file in the message.
 */
export async function importPrivateKey(pkcs8: string | Uint8Array, what: string): Promise<LoadedKeyPair> {
  let keyObject: KeyObject;
  try {
    keyObject =
      typeof pkcs8 === 'string'
        ? createPrivateKey({ key: pkcs8, format: 'pem' })
        : createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', `${what} is not a PKCS#8 private key`, { cause });
  }
  const keyType = keyTypeOf(keyObject);
  if (!keyType) {
    throw new EnrollError('ERR_KEY_INVALID', `${what} holds a ${keyObject.asymmetricKeyType ?? 'unknown'} key; only ECDSA P-256 and Ed25519 are supported`);
  }
  const der = keyObject.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(keyObject).export({ type: 'spki', format: 'der' });
  try {
    const privateKey = (await subtle.importKey('pkcs8', der, GEN_PARAMS[keyType], false, ['sign'])) as CryptoKey;
    const publicKey = (await subtle.importKey('spki', spki, GEN_PARAMS[keyType], true, ['verify'])) as CryptoKey;
    return { keyType, privateKey, publicKey, keyObject };
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', `${what} could not be imported`, { cause });
  } finally {
    der.fill(0);
  }
}

/** SubjectPublicKeyInfo DER of a public CryptoKey (to compare a certificate's key with ours). */
export async function spkiOf(key: CryptoKey): Promise<Uint8Array> {
  return new Uint8Array(await subtle.exportKey('spki', key));
}
