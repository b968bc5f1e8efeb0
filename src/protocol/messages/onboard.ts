/**
 * Messages on the enroller ↔ enrollee channel (Noise XX, prologue
 * PROLOGUE_ENROLLER_ENROLLEE; the enrollee initiates with EIK_B as its static key), in order:
 *
 * 1. OFFER  enroller → enrollee: a bundle (binary form).
 * 2. CARD   enrollee → enroller: the enrollee's card; its EIK_B must equal the channel's
 *           remote static key and its bundle id the offered bundle.
 * 3. GO     enroller → enrollee: the service approved the card; enrollee id and the
 *           approval's expiry. (Or ERROR.)
 * 4. RESULT enrollee → enroller: the enrollment status (ENROLL_STATUS), for the operator's
 *           information only: the enroller has no part in the enrollment itself.
 */
import { messageType, reader, writer } from './common.js';

export const MSG_OFFER = 0x40;
export const MSG_CARD = 0x41;
export const MSG_GO = 0x42;
export const MSG_RESULT = 0x43;

export function encodeOffer(bundle: Uint8Array): Uint8Array {
  return writer(MSG_OFFER).bytes(bundle, undefined, 'bundle').finish();
}

export function decodeOffer(msg: Uint8Array): Uint8Array {
  messageType(msg, [MSG_OFFER], 'onboarding (waiting for the bundle)');
  return msg.slice(1);
}

export function encodeCardMsg(card: Uint8Array): Uint8Array {
  return writer(MSG_CARD).bytes(card, undefined, 'card').finish();
}

export function decodeCardMsg(msg: Uint8Array): Uint8Array {
  messageType(msg, [MSG_CARD], 'onboarding (waiting for the card)');
  return msg.slice(1);
}

export function encodeGo(enrolleeId: Uint8Array, expiresAt: number): Uint8Array {
  return writer(MSG_GO).bytes(enrolleeId, 32, 'enrollee_id').u64be(expiresAt, 'expires_at').finish();
}

export function decodeGo(msg: Uint8Array): { enrolleeId: Uint8Array; expiresAt: number } {
  messageType(msg, [MSG_GO], 'onboarding (waiting for approval)');
  const r = reader(msg, 'go');
  const enrolleeId = r.bytes(32, 'enrollee_id');
  const expiresAt = r.u64be('expires_at');
  r.end();
  return { enrolleeId, expiresAt };
}

export function encodeResult(status: number): Uint8Array {
  return writer(MSG_RESULT).u8(status, 'status').finish();
}

export function decodeResult(msg: Uint8Array): number {
  messageType(msg, [MSG_RESULT], 'onboarding (waiting for the result)');
  const r = reader(msg, 'result');
  const status = r.u8('status');
  r.end();
  return status;
}
