/**
 * The service's credential-signing key, CSK (docs/protocol.md §4.6): an Ed25519 key whose
 * public half IK_A certifies once per process (csk_sig), and which signs every v2 credential
 * through node:crypto (≈ 25 µs, against ≈ 150 µs for an XEdDSA signature with IK_A).
 *
 * The CSK's seed is derived from IK_A's private key (HKDF-SHA-256, info
 * "ockam-enroll/v2/csk-seed"), as the store key is (home.ts deriveStoreKey): every home has
 * one from its first start after this release, whether it was made before or after; every
 * replica of a service (`service init --from`) signs with the same CSK; nothing new is written
 * to disk; and the CSK changes with IK_A. HKDF is one-way: the CSK's seed does not give IK_A.
 */
import type { KeyObject } from 'node:crypto';
import { utf8 } from '../../crypto/bytes.js';
import { hkdfSha256 } from '../../crypto/hash.js';
import { xeddsaSigner } from '../../crypto/xeddsa.js';
import { certifyCsk, cskFromSeed, type CskCertificate } from '../../protocol/credential-v2.js';
import type { ServiceHome } from './home.js';

export interface ServiceCsk {
  privateKey: KeyObject;
  certificate: CskCertificate;
}

const csks = new WeakMap<ServiceHome, ServiceCsk>();

/** The CSK of `svc` and IK_A's certificate of it, made once per process. */
export function serviceCsk(svc: ServiceHome): ServiceCsk {
  let c = csks.get(svc);
  if (c === undefined) {
    const seed = hkdfSha256(svc.ikA.privateKey, new Uint8Array(32), utf8('ockam-enroll/v2/csk-seed'), 32);
    const { privateKey, publicKey } = cskFromSeed(seed);
    seed.fill(0);
    c = { privateKey, certificate: certifyCsk(svc.ikA.publicKey, publicKey, xeddsaSigner(svc.ikA.privateKey)) };
    csks.set(svc, c);
  }
  return c;
}
