/** The Enrollment Key Agreement v1: constants, initiate / accept, and session keys. */
export { ENROLLMENT_MESSAGE_LEN, HEADER_LEN, INFO, INFO_STRING, SESSION_INFO } from './constants.js';
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
