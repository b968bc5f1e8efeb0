/**
 * A device's end-to-end identity for device-to-device streams (docs/protocol.md §11.10): its
 * IK_B pair, its credential (credential.txt, signed by the service) and the pinned IK_A.
 * Loaded once per portal link, so a credential renewed by `enrollee status` is used from the
 * next reconnect on.
 */
import { equalBytes, fromHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { encodeCredential } from '../protocol/credential.js';
import { storedCredential } from '../roles/enrollee/credential.js';
import { IK_B_FILE, type EnrolleeHome } from '../roles/enrollee/home.js';
import { serviceRecord } from '../roles/enrollee/lifecycle.js';
import type { KeyPair } from '../crypto/x25519.js';
import type { DeviceIdentity } from './device-inlet.js';
import type { PortalLink } from './link.js';

/** The identity for `ikB` (default: ik_b.key): ERR_KEY_MISSING when no credential names that key. */
export async function loadDeviceIdentity(enrollee: EnrolleeHome, ikB?: KeyPair): Promise<DeviceIdentity> {
  const svc = serviceRecord(enrollee);
  const key = ikB ?? (await enrollee.keystore.loadKeyPair(IK_B_FILE));
  const stored = storedCredential(enrollee);
  if (stored === undefined || !equalBytes(stored.credential.ikB, key.publicKey)) {
    throw new EnrollError('ERR_KEY_MISSING', 'this device has no credential for its identity key, which device-to-device portals present to the other device', {
      hint: 'run `ockam-enroll enrollee status`: it asks the service for a fresh credential',
    });
  }
  return { ikB: key, credential: encodeCredential(stored.credential), issuer: fromHex(svc.service_key, 'service_key'), credentialId: stored.credential.enrolleeId };
}

const perLink = new WeakMap<PortalLink, Promise<DeviceIdentity>>();

/** loadDeviceIdentity, once per link. */
export function deviceIdentityFor(link: PortalLink, enrollee: EnrolleeHome): Promise<DeviceIdentity> {
  let p = perLink.get(link);
  if (p === undefined) {
    p = loadDeviceIdentity(enrollee);
    perLink.set(link, p);
  }
  return p;
}
