/**
 * Key rotation on the service's side: an enrollee's identity key (ROTATE on the session
 * channel, docs/protocol.md §7.9.2) and the service's signed prekey (`service prekey
 * rotate`, §3.1).
 */
import { audit } from '../../audit/index.js';
import { equalBytes, toHex } from '../../crypto/bytes.js';
import { xeddsaVerify } from '../../crypto/xeddsa.js';
import { EnrollError } from '../../errors.js';
import { decodeRotate, encodeRotated, rotateSignedBytes } from '../../protocol/messages/session.js';
import type { LifecycleStore, RotationResult } from '../../store/lifecycle.js';
import type { EnrolleeRecord, SignedPrekeyRecord } from '../../store/types.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';

/**
 * Serves one ROTATE. The channel itself authenticates IK_B (Noise XX, §6.4) and the session
 * loop has just checked that IK_B is enrolled; ROTATE adds proof of possession of both keys,
 * bound to this channel:
 *   signed  = "ockam-enroll/v1/rotate" ‖ IK_B ‖ IK_B' ‖ h      (h: the handshake hash)
 *   sig_old = XEdDSA(IK_B, signed), sig_new = XEdDSA(IK_B', signed)
 * sig_new proves the enrollee holds IK_B' (nobody can move an enrollee onto a key it does not
 * hold, as the POP does at enrollment, §9 item 2); sig_old makes the request an explicit act of
 * the old key, beyond the channel's authentication. Checks, cheapest first: the length
 * (decodeRotate), IK_B' ≠ IK_B, the two signatures, then the store's atomic switch. The
 * store checks come after the signatures on purpose: otherwise any enrolled enrollee could
 * ask whether an arbitrary key is enrolled, without holding it.
 *
 * Returns the rotation; throws EnrollError for a refusal (the caller sends it as ERROR).
 * `issue` signs the credential for IK_B' (credentials.ts), which ROTATED carries.
 */
export async function serveRotate(
  store: LifecycleStore,
  channel: SecureChannel,
  rec: EnrolleeRecord,
  msg: Uint8Array,
  log: DecisionLog,
  now: number,
  issue: (newIkB: Uint8Array) => Promise<{ credential: Uint8Array; expiresAt: number }>,
): Promise<RotationResult & { oldIkB: Uint8Array; newIkB: Uint8Array }> {
  const req = decodeRotate(msg);
  const oldIkB = channel.remoteStaticKey;
  if (equalBytes(req.newIkB, oldIkB)) throw new EnrollError('ERR_ROTATE_CONFLICT', 'the new identity key is the current one');
  const signed = rotateSignedBytes(oldIkB, req.newIkB, channel.handshakeHash);
  // Both are checked whatever the first gives: the time taken does not say which one failed.
  const okOld = xeddsaVerify(oldIkB, signed, req.sigOld);
  const okNew = xeddsaVerify(req.newIkB, signed, req.sigNew);
  if (!okOld || !okNew) {
    throw new EnrollError('ERR_ROTATE_PROOF', 'the rotation proof does not verify for this channel (old and new identity key)');
  }
  // The credential for IK_B' rides in ROTATED (docs/protocol.md §7.9.2), so the device never
  // holds the new key without one. Signed before the switch: once the switch is committed,
  // ROTATED can always be sent; a refused switch leaves the signature unused.
  const cred = await issue(req.newIkB);
  const done = await store.rotateIdentity({ oldIkB, newIkB: req.newIkB, now });
  if (!equalBytes(done.enrolleeId, rec.id)) {
    // The session loop looked the entry up by the same key a moment ago: only a store bug gets here.
    throw new EnrollError('ERR_INTERNAL', 'the rotated entry is not the session\'s enrollee');
  }
  log('rotated', {
    enrollee: toHex(rec.id),
    name: rec.petName,
    ik_b_old: toHex(oldIkB),
    ik_b: toHex(req.newIkB),
    credential_expires_at: new Date(cred.expiresAt * 1000).toISOString(),
  });
  await channel.send(encodeRotated({ enrolleeId: rec.id, newIkB: req.newIkB, rotatedAt: done.rotatedAt, credential: cred.credential }));
  return { ...done, oldIkB, newIkB: req.newIkB };
}

export interface PrekeyRotation {
  spk: SignedPrekeyRecord;
  /** How many older SPKs were retired (normally 1). */
  retired: number;
  /** How many retired KEM prekeys had their sealed seed erased (EKA v2, §5A.6). */
  kemSeedsErased: number;
}

/**
 * A retired KEM prekey's seed is erased once every bundle naming it expired this long ago
 * (seconds): generous against clock differences between this command and a running service.
 */
export const KEM_SEED_ERASE_MARGIN = 3600;

/**
 * `service prekey rotate`: makes a new SPK_A (signed by IK_A) and retires the others for
 * new bundles only. A bundle already handed out names its own spk_id, and the enrollment
 * lookup (§5.4 check 4) follows that id, so it keeps working until it expires; bundles made
 * from now on, by this process or by a running `service start` (which reads the current
 * SPK from the store on every FETCH_BUNDLES), carry the new one.
 */
export async function rotatePrekey(svc: ServiceHome, now: number): Promise<PrekeyRotation> {
  const spk = await svc.rotateSignedPrekey(now);
  const store = await svc.lifecycleStore();
  let retired: number;
  let kemSeedsErased: number;
  try {
    retired = await store.retireOtherPrekeys(spk.id, now);
    // Rotation bounds how long a stolen store (with IK_A) exposes the ML-KEM shared secrets
    // of recorded v2 enrollments only if retired seeds do not stay forever (§5A.6).
    kemSeedsErased = await store.eraseRetiredKemSeeds(now - KEM_SEED_ERASE_MARGIN);
  } finally {
    await store.close();
  }
  // After the commit, as src/audit asks of decisions made outside `service start`.
  await audit(svc, 'prekey-rotated', { spk_id: spk.id, spk_public: toHex(spk.publicKey), retired });
  return { spk, retired, kemSeedsErased };
}
