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
 *
 * Rotation: the CSK changes only with IK_A, and a running service never changes IK_A
 * (ServiceHome.ikA is fixed for the process), so within one process the CSK and its
 * certificate are fixed; a restart certifies the same CSK again (a new csk_sig, XEdDSA being
 * randomised). The pool (src/pool) is nonetheless told the CSK per job by its public key and
 * sends a CSK a worker has not seen before that job, as it does SPKs, so a CSK that did change
 * would reach every worker before the first message that needs it.
 *
 * The pool's workers get the CSK as `seedSealed`: its seed sealed under the store key
 * (purpose `csk`, row id the CSK's public key), as SPK and OPK private keys are; nothing secret
 * travels in the clear in a message.
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
  /** The seed, sealed under the store key (purpose `csk`, row id the CSK's public key): what a pool worker is sent. */
  seedSealed: Uint8Array;
}

const csks = new WeakMap<ServiceHome, ServiceCsk>();

/** The CSK of `svc` and IK_A's certificate of it, made once per process. */
export function serviceCsk(svc: ServiceHome): ServiceCsk {
  let c = csks.get(svc);
  if (c === undefined) {
    const seed = hkdfSha256(svc.ikA.privateKey, new Uint8Array(32), utf8('ockam-enroll/v2/csk-seed'), 32);
    const { privateKey, publicKey } = cskFromSeed(seed);
    const seedSealed = svc.sealer.seal(seed, 'csk', publicKey);
    seed.fill(0);
    c = { privateKey, certificate: certifyCsk(svc.ikA.publicKey, publicKey, xeddsaSigner(svc.ikA.privateKey)), seedSealed };
    csks.set(svc, c);
  }
  return c;
}
