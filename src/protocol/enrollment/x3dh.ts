/**
 * The X3DH computation (Marlinspike and Perrin, "The X3DH Key Agreement Protocol", rev. 1,
 * §2.2 and §3.3) as the Enrollment Key Agreement uses it, separate from the message format
 * so that the same code also reproduces libsignal's X3DH known answer (test/protocol/
 * kat.test.ts), which has no one-time prekey and other HKDF parameters.
 *
 * Roles: the initiator is the enrollee (identity EIK_B, ephemeral EK_B), the responder is
 * the service (IK_A, SPK_A, OPK_A). The DH order is X3DH's:
 *   DH1 = DH(IK_init, SPK_resp)  DH2 = DH(EK_init, IK_resp)
 *   DH3 = DH(EK_init, SPK_resp)  DH4 = DH(EK_init, OPK_resp)
 */
import type { KeyObject } from 'node:crypto';
import { concat, wipe } from '../../crypto/bytes.js';
import { hkdfSha256, sha256 } from '../../crypto/hash.js';
import { importX25519Private, x25519 } from '../../crypto/x25519.js';
import { INFO, KDF_PREFIX, KDF_SALT, KEY_LEN } from './constants.js';

export type PrivateKeyInput = Uint8Array | KeyObject;
export type PublicKeyInput = Uint8Array | KeyObject;

export interface X3dhInitiatorKeys {
  /** The initiator's identity private key (EIK_B). */
  identity: PrivateKeyInput;
  /** The initiator's ephemeral private key (EK_B). */
  ephemeral: PrivateKeyInput;
  /** The responder's identity public key (IK_A). */
  peerIdentity: PublicKeyInput;
  /** The responder's signed prekey (SPK_A). */
  peerSignedPrekey: PublicKeyInput;
  /** The responder's one-time prekey (OPK_A); always present in this protocol. */
  peerOneTimePrekey?: PublicKeyInput;
}

export interface X3dhResponderKeys {
  /** The responder's identity private key (IK_A). */
  identity: PrivateKeyInput;
  /** The responder's signed prekey private key (SPK_A). */
  signedPrekey: PrivateKeyInput;
  /** The responder's one-time prekey private key (OPK_A). */
  oneTimePrekey?: PrivateKeyInput;
  /** The initiator's identity public key (EIK_B). */
  peerIdentity: PublicKeyInput;
  /** The initiator's ephemeral public key (EK_B). */
  peerEphemeral: PublicKeyInput;
}

function asPrivate(k: PrivateKeyInput, name: string): KeyObject {
  return k instanceof Uint8Array ? importX25519Private(k, name) : k;
}

/** [DH1, DH2, DH3, DH4?] as the initiator computes them. Throws ERR_DH_ZERO. */
export function x3dhInitiatorDh(k: X3dhInitiatorKeys): Uint8Array[] {
  // EK is used three times: import it once (src/crypto/x25519.ts on import cost).
  const ek = asPrivate(k.ephemeral, 'EK');
  const out: Uint8Array[] = [];
  try {
    out.push(x25519(k.identity, k.peerSignedPrekey));
    out.push(x25519(ek, k.peerIdentity));
    out.push(x25519(ek, k.peerSignedPrekey));
    if (k.peerOneTimePrekey !== undefined) out.push(x25519(ek, k.peerOneTimePrekey));
  } catch (e) {
    wipe(...out);
    throw e;
  }
  return out;
}

/** [DH1, DH2, DH3, DH4?] as the responder computes them: the same values, mirrored. */
export function x3dhResponderDh(k: X3dhResponderKeys): Uint8Array[] {
  const out: Uint8Array[] = [];
  try {
    const spk = asPrivate(k.signedPrekey, 'SPK');
    out.push(x25519(spk, k.peerIdentity));
    out.push(x25519(k.identity, k.peerEphemeral));
    out.push(x25519(spk, k.peerEphemeral));
    if (k.oneTimePrekey !== undefined) out.push(x25519(k.oneTimePrekey, k.peerEphemeral));
  } catch (e) {
    wipe(...out);
    throw e;
  }
  return out;
}

export interface X3dhKdfOptions {
  /** HKDF info; default INFO. */
  info?: Uint8Array;
  /** HKDF salt; default 32 zero bytes (X3DH §2.2). */
  salt?: Uint8Array;
  /** Output length; default 32 (SK). */
  length?: number;
}

/**
 * X3DH §2.2 KDF(KM) = HKDF(salt = zeros, IKM = F ‖ KM, info), F = 32 0xFF bytes. The F
 * prefix makes the IKM never a valid X25519 output sequence on its own, for
 * cryptographic domain separation with XEdDSA (§2.2). KM = DH1 ‖ DH2 ‖ DH3 [‖ DH4].
 */
export function x3dhKdf(km: Uint8Array, options: X3dhKdfOptions = {}): Uint8Array {
  const ikm = concat(KDF_PREFIX, km);
  try {
    return hkdfSha256(ikm, options.salt ?? KDF_SALT, options.info ?? INFO, options.length ?? KEY_LEN);
  } finally {
    wipe(ikm);
  }
}

/**
 * The state hash (seed: "h = hash(info ‖ [0xFF; 32] ‖ DH1 ‖ DH2 ‖ DH3 ‖ DH4)"). It binds
 * the AEAD to the full key agreement transcript and salts the session keys.
 */
export function x3dhStateHash(km: Uint8Array, info: Uint8Array = INFO): Uint8Array {
  return sha256(info, KDF_PREFIX, km);
}
