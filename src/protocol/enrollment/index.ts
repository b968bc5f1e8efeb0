/** The Enrollment Key Agreement v1: constants, initiate / accept, and session keys. */
export {
  ENROLLMENT_MESSAGE_LEN,
  ENROLLMENT_MESSAGE_V2_LEN,
  HEADER_LEN,
  HEADER_V2_LEN,
  INFO,
  INFO_STRING,
  INFO_V2,
  INFO_V2_STRING,
  KEM_CIPHERTEXT_LEN,
  KEM_PUBLIC_KEY_LEN,
  MESSAGE_VERSION_V2,
  SESSION_INFO,
  SESSION_INFO_V2,
} from './constants.js';
export {
  acceptV2,
  checkKemPrekey,
  composeMessageV2,
  enrollmentAadV2,
  initiateV2,
  kemPrekeyHash,
  parseHeaderV2,
} from './agreement-v2.js';
export type { AcceptV2Context, InitiateV2Input, InitiateV2Result, MessageV2Parts, PendingEnrolleeV2 } from './agreement-v2.js';
export { accept, composeMessage, enrolleeId, enrollmentAad, initiate, parseHeader } from './agreement.js';
export type {
  AcceptContext,
  AcceptResult,
  InitiateInput,
  InitiateResult,
  MessageParts,
  PendingEnrollee,
} from './agreement.js';
export {
  SESSION_MAX_COUNTER,
  SessionCipher,
  SessionSecrets,
  deriveSessionKeys,
  enrolleeSession,
  serviceSession,
} from './session.js';
export type { SessionKeys, SessionPair } from './session.js';
export { x3dhInitiatorDh, x3dhKdf, x3dhResponderDh, x3dhStateHash } from './x3dh.js';
export type { PrivateKeyInput, PublicKeyInput, X3dhInitiatorKeys, X3dhKdfOptions, X3dhResponderKeys } from './x3dh.js';
