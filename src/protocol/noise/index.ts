/**
 * Noise_XX_25519_AESGCM_SHA256 (Noise Protocol Framework rev 34), one file per spec object
 * as in snow: cipherstate (§5.1), symmetricstate (§5.2), handshakestate (§5.3),
 * transportstate (the Split() pair in use), patterns (§7, as data).
 */
export { NOISE_MAX_MESSAGE_LEN, type NoiseCipher } from './cipherstate.js';
export { NOISE_XX_AESGCM_SHA256 } from './patterns.js';
export { HandshakeState, type HandshakeOptions, type NoiseKeyPair } from './handshakestate.js';
export { TransportState } from './transportstate.js';
