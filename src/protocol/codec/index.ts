/** The v1 encodings: binary reader/writer, bundle, enrollee card and their text form. */
export { ByteReader } from './reader.js';
export { ByteWriter, strictUtf8 } from './writer.js';
export { BASE32_ALPHABET, base32Decode, base32Encode } from './base32.js';
export {
  BUNDLE_ID_LEN,
  BUNDLE_MAX_ADDR_LEN,
  BUNDLE_MAX_LEN,
  BUNDLE_MIN_LEN,
  BUNDLE_KEM_HASH_LEN,
  BUNDLE_SIG_CONTEXT,
  BUNDLE_SIG_CONTEXT_V2,
  BUNDLE_V2_MAX_LEN,
  BUNDLE_V2_MIN_LEN,
  BUNDLE_VERSION,
  BUNDLE_VERSION_V2,
  decodeBundle,
  encodeBundle,
  signBundle,
  bundleSigner,
  signSpk,
  verifyBundle,
} from './bundle.js';
export type { Bundle, BundleFields, BundleSigner, BundleV1, BundleV2, EkaVersion, VerifyBundleOptions } from './bundle.js';
export { CARD_MAX_LEN, CARD_MAX_PET_NAME_LEN, CARD_VERSION, decodeCard, encodeCard } from './card.js';
export type { EnrolleeCard } from './card.js';
export {
  BUNDLE_TEXT_PREFIX,
  BUNDLE_V2_TEXT_PREFIX,
  CARD_TEXT_PREFIX,
  TEXT_CHECKSUM_LEN,
  TEXT_MAX_INPUT,
  bundleFromText,
  decodeBundleText,
  bundleToText,
  cardFromText,
  cardToText,
  decodeText,
  encodeText,
} from './text.js';
