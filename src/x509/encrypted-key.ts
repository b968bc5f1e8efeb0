/**
 * The token flow's TLS key, passphrase-encrypted in the one format that openssl, curl and
 * node:crypto all read: a PKCS#8 EncryptedPrivateKeyInfo (RFC 5958 §3) in PEM
 * (`-----BEGIN ENCRYPTED PRIVATE KEY-----`), with PBES2 (RFC 8018 §6.2) over
 *
 *   keyDerivationFunc = scrypt (RFC 7914 §7, id-scrypt 1.3.6.1.4.1.11591.4.11):
 *                       salt 16 random bytes, N = 16384, r = 8, p = 1, keyLength 32
 *   encryptionScheme  = aes256-CBC (2.16.840.1.101.3.4.1.42), IV 16 random bytes
 *
 * Why not the keystore's own format (scrypt + AES-GCM in JSON, keyfile.ts): TLS tools cannot
 * read it, and the key exists to be used by them. Why not node's `export({ cipher })`: it
 * derives the key with PBKDF2 at 2048 iterations, far weaker than scrypt. Why N = 16384, half
 * the keystore's 32768: OpenSSL (and so openssl, curl and node) refuses scrypt parameters
 * needing 32 MiB or more when it decrypts PKCS#8; N = 16384, r = 8 (16 MiB) is the largest
 * power of two under that limit, and what `openssl pkcs8 -topk8 -scrypt` writes.
 *
 * Decryption goes through node:crypto (OpenSSL), which reads exactly this.
 */
import { createCipheriv, createPrivateKey, randomBytes, scrypt, type KeyObject } from 'node:crypto';
import { EnrollError } from '../errors.js';

export const PKCS8_SCRYPT_N = 16384;
export const PKCS8_SCRYPT_R = 8;
export const PKCS8_SCRYPT_P = 1;
const SALT_LEN = 16;
const IV_LEN = 16;
const KEY_LEN = 32;

const ENCRYPTED_PEM_LABEL = 'ENCRYPTED PRIVATE KEY';
// DER of the three OBJECT IDENTIFIERs, tag and length included.
const OID_PBES2 = Buffer.from('06092a864886f70d01050d', 'hex'); // 1.2.840.113549.1.5.13
const OID_SCRYPT = Buffer.from('06092b06010401da47040b', 'hex'); // 1.3.6.1.4.1.11591.4.11
const OID_AES256_CBC = Buffer.from('060960864801650304012a', 'hex'); // 2.16.840.1.101.3.4.1.42

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.of(n);
  if (n < 0x100) return Buffer.of(0x81, n);
  if (n < 0x10000) return Buffer.of(0x82, n >> 8, n & 0xff);
  throw new EnrollError('ERR_INVALID_ARG', `DER value of ${n} bytes is too long`);
}

function tlv(tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.of(tag), derLength(body.length), body]);
}

/** A non-negative INTEGER, minimal, with a 0x00 in front when the top bit is set. */
function derInt(n: number): Buffer {
  let hex = n.toString(16);
  if (hex.length % 2) hex = `0${hex}`;
  let b = Buffer.from(hex, 'hex');
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.of(0), b]);
  return tlv(0x02, b);
}

function scryptKey(passphrase: string, salt: Buffer): Promise<Buffer> {
  const N = PKCS8_SCRYPT_N;
  const r = PKCS8_SCRYPT_R;
  return new Promise((resolve, reject) => {
    scrypt(passphrase.normalize('NFC'), salt, KEY_LEN, { N, r, p: PKCS8_SCRYPT_P, maxmem: 2 * 128 * N * r + (1 << 20) }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** True for an `ENCRYPTED PRIVATE KEY` PEM (leading whitespace allowed). */
export function isEncryptedPem(pem: string): boolean {
  return pem.trimStart().startsWith(`-----BEGIN ${ENCRYPTED_PEM_LABEL}-----`);
}

/**
 * Encrypts `key` (any private key node:crypto holds) under `passphrase` as described above.
 * The passphrase is NFC-normalised, as the keystore does, so the same typed text opens both.
 */
export async function encryptPrivateKeyPem(key: KeyObject, passphrase: string): Promise<string> {
  if (typeof passphrase !== 'string' || passphrase.length === 0) throw new EnrollError('ERR_INVALID_ARG', '"passphrase" must be a non-empty string');
  const salt = randomBytes(SALT_LEN);
  const iv = randomBytes(IV_LEN);
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const aesKey = await scryptKey(passphrase, salt);
  let encrypted: Buffer;
  try {
    const c = createCipheriv('aes-256-cbc', aesKey, iv);
    encrypted = Buffer.concat([c.update(der), c.final()]);
  } finally {
    aesKey.fill(0);
    der.fill(0);
  }
  const algorithm = tlv(
    0x30,
    OID_PBES2,
    tlv(
      0x30,
      tlv(0x30, OID_SCRYPT, tlv(0x30, tlv(0x04, salt), derInt(PKCS8_SCRYPT_N), derInt(PKCS8_SCRYPT_R), derInt(PKCS8_SCRYPT_P), derInt(KEY_LEN))),
      tlv(0x30, OID_AES256_CBC, tlv(0x04, iv)),
    ),
  );
  const body = tlv(0x30, algorithm, tlv(0x04, encrypted)).toString('base64');
  return `-----BEGIN ${ENCRYPTED_PEM_LABEL}-----\n${body.match(/.{1,64}/g)!.join('\n')}\n-----END ${ENCRYPTED_PEM_LABEL}-----\n`;
}

/**
 * The private key of a PEM, plain (`PRIVATE KEY`) or encrypted (`ENCRYPTED PRIVATE KEY`).
 * An encrypted one without a passphrase, or one that does not open with it, is ERR_PASSPHRASE
 * naming `file` (CBC cannot tell a wrong passphrase from a damaged file; OpenSSL says which
 * only sometimes); a plain one that does not parse is ERR_KEY_INVALID.
 */
export function readPrivateKeyPem(pem: string, file: string, passphrase: string | undefined): KeyObject {
  if (isEncryptedPem(pem)) {
    if (passphrase === undefined) {
      throw new EnrollError('ERR_PASSPHRASE', `key file ${file} is encrypted and no passphrase was given`, {
        hint: 'set OCKAM_ENROLL_PASSPHRASE or use --passphrase-file',
      });
    }
    try {
      return createPrivateKey({ key: pem, format: 'pem', passphrase: passphrase.normalize('NFC') });
    } catch (cause) {
      throw new EnrollError('ERR_PASSPHRASE', `wrong passphrase for ${file}`, {
        cause,
        hint: 'check the passphrase; if it is right, the key file was modified',
      });
    }
  }
  try {
    return createPrivateKey({ key: pem, format: 'pem' });
  } catch (cause) {
    throw new EnrollError('ERR_KEY_INVALID', `${file} is not a PKCS#8 private key`, { cause });
  }
}
