/**
 * Handshake patterns as data (Noise Protocol Framework rev 34 §7), and protocol names (§8).
 * Only XX is defined: it is the one pattern ockam-enroll speaks.
 */
import type { NoiseCipher } from './cipherstate.js';

/**
 * §7 tokens. `e`/`s` send a public key; a two-letter DH token names the initiator's key
 * first and the responder's second (`es` = DH(initiator e, responder s)).
 */
export type Token = 'e' | 's' | 'ee' | 'es' | 'se' | 'ss';
export type DhToken = Exclude<Token, 'e' | 's'>;
export type MessagePattern = readonly Token[];

export interface HandshakePattern {
  /** The pattern's name as it appears in the protocol name (§8). */
  readonly name: string;
  /** Message patterns in order; even indices are sent by the initiator (§7). */
  readonly messagePatterns: readonly MessagePattern[];
}

/**
 * §7.5 XX, which has no pre-messages (so §5.3 Initialize's pre-message MixHash step is empty):
 *   -> e
 *   <- e, ee, s, es
 *   -> s, se
 */
export const XX: HandshakePattern = Object.freeze({
  name: 'XX',
  messagePatterns: Object.freeze([
    Object.freeze(['e'] as const),
    Object.freeze(['e', 'ee', 's', 'es'] as const),
    Object.freeze(['s', 'se'] as const),
  ]),
});

/** §8 protocol name: Noise_<pattern>_<DH>_<cipher>_<hash>. DH is 25519 and hash SHA256 here. */
export function protocolName(pattern: HandshakePattern, cipher: NoiseCipher): string {
  return `Noise_${pattern.name}_25519_${cipher}_SHA256`;
}

/** The protocol ockam-enroll runs on every channel. */
export const NOISE_XX_AESGCM_SHA256 = 'Noise_XX_25519_AESGCM_SHA256';
