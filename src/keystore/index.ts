/** Per-role homes: key files, atomic writes, passphrases and pinned service keys. */
export {
  cleanStaleTemps,
  ensurePrivateDir,
  readPrivateFile,
  readPublicFile,
  removeFile,
  writeFileAtomic,
  MAX_FILE_BYTES,
  PRIVATE_DIR_MODE,
  PRIVATE_FILE_MODE,
  type CleanStaleTempsOptions,
  type ReadFileOptions,
  type WriteFileAtomicOptions,
} from './files.js';
export {
  encodeKeyFile,
  keyFileAad,
  KeyFile,
  KEYFILE_AAD_LABEL,
  KEYFILE_VERSION,
  SCRYPT_N,
  SCRYPT_P,
  SCRYPT_R,
  type EncodeKeyFileOptions,
  type KeyKind,
  type ScryptParams,
} from './keyfile.js';
export {
  resolvePassphrase,
  readHiddenLine,
  PASSPHRASE_ENV,
  type PassphraseSource,
  type ResolvePassphraseOptions,
} from './passphrase.js';
export {
  Keystore,
  ROLES,
  type KeystoreOptions,
  type ReadOptions,
  type Role,
  type SaveKeyPairOptions,
  type WriteOptions,
} from './keystore.js';
export { KnownServices, normaliseServiceAddress, KNOWN_SERVICES_FILE, type KnownServiceCheck } from './known-services.js';
