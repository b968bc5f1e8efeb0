/**
 * The service's prekeys as the per-message work uses them, prepared once per SPK: on the
 * main thread (enroll.ts, without a pool) and in each pool worker (worker.ts), each with
 * its own Sealer. No I/O: the sealed records come from the caller.
 */
import type { KeyObject } from 'node:crypto';
import { equalBytes } from '../crypto/bytes.js';
import { mlKem768Decapsulator, mlKem768Keygen, type MlKemDecapsulator } from '../crypto/mlkem.js';
import { importX25519Private } from '../crypto/x25519.js';
import { EnrollError } from '../errors.js';
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

