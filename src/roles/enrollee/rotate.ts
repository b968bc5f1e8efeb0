/**
 * `enrollee rotate`: replace the identity key IK_B with a fresh IK_B' (docs/protocol.md
 * §7.9.2). Over the session channel authenticated by IK_B, the enrollee sends
 *   ROTATE = IK_B' ‖ XEdDSA(IK_B, signed) ‖ XEdDSA(IK_B', signed),
 *   signed = "ockam-enroll/v1/rotate" ‖ IK_B ‖ IK_B' ‖ handshake hash,
 * and the service switches the entry to IK_B' in one conditional update and answers ROTATED.
 *
 * Crash safety: the files change in this order, and every state in between is one from
 * which `enrollee status` (which tries ik_b.key, then ik_b.old.key: lifecycle.ts) and a
 * re-run of `rotate` both work:
 *   1. ik_b.old.key ← IK_B (a copy; O_EXCL)
 *   2. ik_b.key     ← IK_B' (atomic rename)               — both keys on disk, before sending
 *   3. ROTATE … ROTATED                                   — the service switches atomically
 *   4. service.json identity_key ← IK_B' (atomic), then ik_b.old.key is removed
 * If the service refuses (an ERROR: nothing was switched), step 2 is undone. If the answer
 * is lost (a crash, a dropped connection), nothing is undone: the service may have switched,
 * and the next session finds out which key it admits.
 */
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import { generateX25519, type KeyPair } from '../../crypto/x25519.js';
import { xeddsaSign } from '../../crypto/xeddsa.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { MSG_ERROR } from '../../protocol/messages/common.js';
import { decodeRotated, encodeRotate, rotateSignedBytes } from '../../protocol/messages/session.js';
import { IK_B_FILE, type EnrolleeHome } from './home.js';
import { acceptCredential } from './credential.js';
import { fetchCredential, finishRotation, IK_B_OLD_FILE, openSessionAt, REPLY_TIMEOUT_MS, requestStatus, serviceRecord } from './lifecycle.js';

export interface RotateResult {
  enrolleeId: string;
  previousKey: string;
  identityKey: string;
  rotatedAt: number | null;
  /** True when an interrupted rotation was found already done by the service, and only finished here. */
  recovered: boolean;
  /** Whether a credential for the new key is in credential.txt (from ROTATED, or asked for after a lost one). */
  credential: boolean;
}

export async function rotateIdentity(enrollee: EnrolleeHome, opts: { onInfo?: (line: string) => void } = {}): Promise<RotateResult> {
  const svc = serviceRecord(enrollee);
  const ikA = fromHex(svc.service_key, 'service_key');
  const ks = enrollee.keystore;
  if (!ks.hasKey(IK_B_FILE)) {
    throw new EnrollError('ERR_KEY_MISSING', 'this enrollee is not enrolled yet', { hint: 'run `ockam-enroll enrollee join` first' });
  }
  const current = await ks.loadKeyPair(IK_B_FILE);
  let oldKey: KeyPair;
  let newKey: KeyPair;
  const previous = ks.hasKey(IK_B_OLD_FILE) ? await ks.loadKeyPair(IK_B_OLD_FILE) : undefined;
  if (previous && !equalBytes(previous.publicKey, current.publicKey)) {
    // An earlier run got past step 2. If the service admits the new key, it switched and
    // only step 4 is left; if it does not know it, ROTATE again with the same two keys.
    opts.onInfo?.('resuming an interrupted key rotation');
    const channel = await openSessionAt(svc, current, ikA);
    let report;
    try {
      report = await requestStatus(channel);
    } catch (err) {
      if (!isEnrollError(err, 'ERR_ENROLLEE_UNKNOWN')) throw err;
    } finally {
      channel.connection.destroy();
    }
    if (report !== undefined) {
      let credential = finishRotation(enrollee, svc, current, opts.onInfo) === 'installed';
      // The ROTATED that carried the new key's credential was lost: ask for one.
      if (!credential) credential = await fetchCredential(enrollee, current, opts.onInfo);
      return { enrolleeId: toHex(report.enrolleeId), previousKey: toHex(previous.publicKey), identityKey: toHex(current.publicKey), rotatedAt: null, recovered: true, credential };
    }
    oldKey = previous;
    newKey = current;
  } else {
    // A crash inside step 1 leaves two copies of the same key: start afresh.
    if (previous) ks.remove(IK_B_OLD_FILE);
    oldKey = current;
    newKey = generateX25519();
    await ks.saveKeyPair(IK_B_OLD_FILE, oldKey, { purpose: 'IK_B', force: false, encrypt: enrollee.encrypt });
    await ks.saveKeyPair(IK_B_FILE, newKey, { purpose: 'IK_B', force: true, encrypt: enrollee.encrypt });
  }

  const channel = await openSessionAt(svc, oldKey, ikA);
  try {
    const signed = rotateSignedBytes(oldKey.publicKey, newKey.publicKey, channel.handshakeHash);
    await channel.send(encodeRotate({ newIkB: newKey.publicKey, sigOld: xeddsaSign(oldKey.privateKey, signed), sigNew: xeddsaSign(newKey.privateKey, signed) }));
    const reply = await channel.receive(REPLY_TIMEOUT_MS);
    if (reply[0] === MSG_ERROR) {
      // The service refused and switched nothing: IK_B stays the identity.
      await ks.saveKeyPair(IK_B_FILE, oldKey, { purpose: 'IK_B', force: true, encrypt: enrollee.encrypt });
      ks.remove(IK_B_OLD_FILE);
    }
    const rotated = decodeRotated(reply);
    if (!equalBytes(rotated.newIkB, newKey.publicKey) || toHex(rotated.enrolleeId) !== svc.enrollee_id) {
      throw new EnrollError('ERR_PROTOCOL', 'the service confirmed a rotation to another key or for another enrollee');
    }
    // The credential for IK_B', checked as an acceptance's is (same issuer, this id, this key).
    // A bad one is the service's fault: the rotation stands, and the next session finishes it.
    const credential =
      rotated.credential === undefined
        ? undefined
        : acceptCredential(rotated.credential, { ikA, enrolleeId: rotated.enrolleeId, ikB: newKey.publicKey });
    await channel.close();
    // Key and credential switch together (lifecycle.ts finishRotation).
    let installed = finishRotation(enrollee, svc, newKey, undefined, credential) === 'installed';
    if (!installed) {
      opts.onInfo?.('the service sent no credential with the rotation (it predates them)');
      installed = await fetchCredential(enrollee, newKey, opts.onInfo);
    }
    return { enrolleeId: svc.enrollee_id, previousKey: toHex(oldKey.publicKey), identityKey: toHex(newKey.publicKey), rotatedAt: rotated.rotatedAt, recovered: false, credential: installed };
  } finally {
    channel.connection.destroy();
    oldKey.wipe();
    newKey.wipe();
  }
}
