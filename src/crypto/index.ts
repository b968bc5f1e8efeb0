/**
 * The crypto primitives of ockam-enroll, in one place. Names are listed one by one rather
 * than with `export *`, so that the public surface changes only on purpose.
 */
export {
  abytes,
  asBuffer,
  concat,
  concatAll,
  equalBytes,
  fromHex,
  isAllZero,
  toBase64Url,
  toHex,
  utf8,
  wipe,
} from './bytes.js';
export { systemRandom } from './random.js';
export type { RandomSource } from './random.js';
export { HKDF_SHA256_MAX, hkdfSha256, sha256, sha512 } from './hash.js';
export { AES_KEY_LEN, GCM_NONCE_LEN, GCM_TAG_LEN, aesGcmDecrypt, aesGcmDecryptParts, aesGcmEncrypt, aesGcmEncryptParts } from './aead.js';
export {
  KeyPair,
  X25519_KEY_LEN,
  generateX25519,
  importX25519Private,
  importX25519Public,
  keyPairFromPrivate,
  x25519,
  x25519PublicKey,
} from './x25519.js';
export type { X25519KeyPair } from './x25519.js';
export { ed25519Verify, importEd25519Public } from './ed25519.js';
export { XEDDSA_SIGNATURE_LEN, calculateKeyPair, xeddsaSign, xeddsaSigner, xeddsaVerify, type XEdDSASigner } from './xeddsa.js';
export {
  MLKEM768_CIPHERTEXT_LEN,
  MLKEM768_MESSAGE_LEN,
  MLKEM768_PUBLIC_KEY_LEN,
  MLKEM768_SECRET_KEY_LEN,
  MLKEM768_SEED_LEN,
  MLKEM768_SHARED_SECRET_LEN,
  mlKem768Decapsulate,
  mlKem768Decapsulator,
  mlKem768Encapsulate,
  mlKem768Keygen,
} from './mlkem.js';
export type { MlKemDecapsulator, MlKemKeyPair } from './mlkem.js';
