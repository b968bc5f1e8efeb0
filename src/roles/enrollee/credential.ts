/**
 * The enrollee's credential (docs/protocol.md §4.4), kept as `credential.txt` (its text form,
 * `OECR1:…`) in the enrollee's home. It is not secret: it says who the device is, signed by
 * the service, for the device to show to others (`credential verify`).
 *
 * The enrollee accepts the credential from the sealed acceptance (§5.7) only if it verifies
 * under the bundle's IK_A and names exactly this enrollee: its id and its new IK_B.
 */
import { equalBytes, toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import { credentialFromText, credentialToText, decodeCredential, verifyCredential, type AnyCredential as Credential } from '../../protocol/credential.js';
import type { EnrolleeHome } from './home.js';

export const CREDENTIAL_FILE = 'credential.txt';
/** The credential of a rotation, staged until service.json names its key (lifecycle.ts finishRotation). */
export const CREDENTIAL_NEXT_FILE = 'credential.next.txt';

/**
 * Checks the credential of an acceptance against what this enrollee just enrolled as, and
 * returns its text form. A credential that fails is the service's fault, not the network's
 * (the acceptance it came in is authenticated): ERR_PROTOCOL.
 */
export function acceptCredential(
  bytes: Uint8Array,
  expect: { ikA: Uint8Array; enrolleeId: Uint8Array; ikB: Uint8Array },
): string {
  let c: Credential;
  try {
    // Checked at its own issue time: the device does not judge the service's clock (a device
    // without a real-time clock may be years off); verifiers check the expiry when they use it.
    const decoded = decodeCredential(bytes);
    c = verifyCredential(decoded, { now: decoded.issuedAt, issuer: expect.ikA });
  } catch (err) {
    if (!(err instanceof EnrollError)) throw err;
    throw new EnrollError('ERR_PROTOCOL', `the service's credential for this enrollee does not verify: ${err.message}`, { cause: err });
  }
  if (!equalBytes(c.enrolleeId, expect.enrolleeId) || !equalBytes(c.ikB, expect.ikB)) {
    throw new EnrollError('ERR_PROTOCOL', 'the service\'s credential names another enrollee or identity key');
  }
  return credentialToText(c);
}

/** Saves (or, with undefined, removes) the credential file. */
export function saveCredential(enrollee: EnrolleeHome, text: string | undefined): void {
  if (text === undefined) enrollee.keystore.remove(CREDENTIAL_FILE);
  else enrollee.keystore.writeBytes(CREDENTIAL_FILE, `${text}\n`, { overwrite: true });
}

/** The stored credential, decoded (not verified: see describeCredential), or undefined. */
export function storedCredential(enrollee: EnrolleeHome): { text: string; credential: Credential } | undefined {
  const b = enrollee.keystore.readBytes(CREDENTIAL_FILE);
  if (b === undefined) return undefined;
  const text = Buffer.from(b).toString('utf8').trim();
  try {
    return { text, credential: credentialFromText(text) };
  } catch (err) {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${enrollee.keystore.path(CREDENTIAL_FILE)} does not hold a credential: ${(err as Error).message}`, {
      hint: 'remove it; `enrollee join` writes it again at the next enrollment',
    });
  }
}

/** The JSON view of a credential (`enrollee status --json`, `enrollee join --json`, `credential verify --json`). */
export function credentialView(c: Credential, text: string, now: number) {
  return {
    text,
    enrollee_id: toHex(c.enrolleeId),
    name: c.petName || null,
    identity_key: toHex(c.ikB),
    service_key: toHex(c.issuer),
    issued_at: new Date(c.issuedAt * 1000).toISOString(),
    expires_at: new Date(c.expiresAt * 1000).toISOString(),
    expired: now >= c.expiresAt,
    version: c.version,
    // A version 1 credential carries none (docs/protocol.md §4.4).
    attributes: c.version === 2 ? c.attributes : {},
  };
}

/**
 * The stored credential as `enrollee status --json` shows it, or null: `stale` when it no
 * longer names this enrollee's current enrollment (another id, or an identity key that was
 * rotated since: only a new enrollment brings a new credential).
 */
export function credentialStatus(enrollee: EnrolleeHome, now: number): (ReturnType<typeof credentialView> & { stale: boolean }) | null {
  const kept = storedCredential(enrollee);
  if (kept === undefined) return null;
  const svc = enrollee.enrolled();
  const c = kept.credential;
  const stale = svc === undefined || toHex(c.enrolleeId) !== svc.enrollee_id || toHex(c.ikB) !== svc.identity_key || toHex(c.issuer) !== svc.service_key;
  return { ...credentialView(c, kept.text, now), stale };
}
