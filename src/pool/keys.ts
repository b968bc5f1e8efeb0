/**
 * The service's prekeys as the per-message work uses them, prepared once per SPK: on the
 * main thread (enroll.ts, without a pool) and in each pool worker (worker.ts), each with
 * its own Sealer. No I/O: the sealed records come from the caller.
 */
import type { KeyObject } from 'node:crypto';
import { equalBytes, toHex } from '../crypto/bytes.js';
import { mlKem768Decapsulator, mlKem768Keygen, type MlKemDecapsulator } from '../crypto/mlkem.js';
import { importX25519Private } from '../crypto/x25519.js';
import { EnrollError } from '../errors.js';
import { cskFromSeed, type CskCertificate } from '../protocol/credential-v2.js';
import type { Sealer } from '../store/sealing.js';
import type { SignedPrekeyRecord } from '../store/types.js';

/**
 * SPK_A private keys, unsealed and imported once per SPK rather than once per message (an
 * AES-GCM open and a ~40 µs X25519 private-key import each time). Keyed by the sealer, so
 * by service home, then by SPK id; the public key is compared on every use. SPKs are few
 * (one per rotation), so the map stays small; it is bounded anyway.
 */
const spkKeys = new WeakMap<Sealer, Map<number, { publicKey: Uint8Array; key: KeyObject }>>();
const MAX_CACHED_SPKS = 64;

export function spkKey(sealer: Sealer, spk: SignedPrekeyRecord): KeyObject {
  let bySealer = spkKeys.get(sealer);
  if (bySealer === undefined) {
    bySealer = new Map();
    spkKeys.set(sealer, bySealer);
  }
  const hit = bySealer.get(spk.id);
  if (hit !== undefined && equalBytes(hit.publicKey, spk.publicKey)) return hit.key;
  const raw = sealer.open(spk.privateSealed, 'spk', spk.publicKey);
  try {
    const key = importX25519Private(raw, 'SPK_A');
    if (bySealer.size >= MAX_CACHED_SPKS) bySealer.clear();
    bySealer.set(spk.id, { publicKey: Uint8Array.from(spk.publicKey), key });
    return key;
  } finally {
    raw.fill(0);
  }
}

/**
 * PQSPK_A decapsulation keys, expanded from their sealed seeds once per SPK (an unseal and
 * an ML-KEM-768 KeyGen, about 0.7 ms) rather than once per message, and prepared for
 * decapsulation (mlKem768Decapsulator: the public matrix expanded once); like spkKeys.
 */
const kemKeys = new WeakMap<Sealer, Map<number, { hash: Uint8Array; secretKey: Uint8Array; decapsulator: MlKemDecapsulator }>>();

export function kemSecretKey(sealer: Sealer, spk: SignedPrekeyRecord): { hash: Uint8Array; secretKey: Uint8Array; decapsulator: MlKemDecapsulator } {
  const kem = spk.kem;
  if (!kem) throw new EnrollError('ERR_STORE', `signed prekey ${spk.id} has no KEM prekey`);
  if (kem.seedSealed.length === 0) {
    // Erased by a rotation once its bundles had expired (rotation.ts): unreachable for a live bundle.
    throw new EnrollError('ERR_STORE', `the KEM prekey of signed prekey ${spk.id} was erased after its bundles expired`);
  }
  let bySealer = kemKeys.get(sealer);
  if (bySealer === undefined) {
    bySealer = new Map();
    kemKeys.set(sealer, bySealer);
  }
  const hit = bySealer.get(spk.id);
  if (hit !== undefined && equalBytes(hit.hash, kem.hash)) return hit;
  const seed = sealer.open(kem.seedSealed, 'kem', kem.hash);
  try {
    const pair = mlKem768Keygen(seed);
    if (!equalBytes(pair.publicKey, kem.publicKey)) throw new EnrollError('ERR_STORE', `the KEM prekey of signed prekey ${spk.id} does not match its seed`);
    const entry = { hash: Uint8Array.from(kem.hash), secretKey: pair.secretKey, decapsulator: mlKem768Decapsulator(pair.secretKey) };
    if (bySealer.size >= MAX_CACHED_SPKS) {
      for (const e of bySealer.values()) e.secretKey.fill(0);
      bySealer.clear();
    }
    bySealer.set(spk.id, entry);
    return entry;
  } finally {
    seed.fill(0);
  }
}


/**
 * The CSK (roles/service/csk.ts) as a worker is sent it: IK_A's certificate of it (public)
 * and its seed sealed under the store key (purpose `csk`, row id the CSK's public key).
 */
export interface PoolCsk {
  certificate: CskCertificate;
  seedSealed: Uint8Array;
}

/** A CSK prepared for signing: its certificate and its private KeyObject. */
export interface PreparedCsk {
  certificate: CskCertificate;
  privateKey: KeyObject;
}

/**
 * Unseals a sent CSK's seed and imports it (once per CSK, in each worker), checking that the
 * seed gives the certified public key, so a worker never signs a credential that cannot verify.
 */
export function loadCsk(sealer: Sealer, c: PoolCsk): PreparedCsk {
  const seed = sealer.open(c.seedSealed, 'csk', c.certificate.csk);
  try {
    const { privateKey, publicKey } = cskFromSeed(seed);
    if (!equalBytes(publicKey, c.certificate.csk)) throw new EnrollError('ERR_STORE', 'the sealed CSK seed does not give the certified CSK');
    return { certificate: { csk: Uint8Array.from(c.certificate.csk), cskSig: Uint8Array.from(c.certificate.cskSig) }, privateKey };
  } finally {
    seed.fill(0);
  }
}

/** How a pool tells CSKs apart: the public key and IK_A's signature of it. */
export function cskKey(cert: CskCertificate): string {
  return `${toHex(cert.csk)}:${toHex(cert.cskSig)}`;
}
