/**
 * An enrolled enrollee's authenticated channel: Noise XX with IK_B and IK_A as the static
 * keys. Only enrolled, unrevoked identity keys are served.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import { encodeError, messageType } from '../../protocol/messages/common.js';
import { decodeStatusRequest, encodeStatus, MSG_STATUS_REQUEST } from '../../protocol/messages/service.js';
import { subjectDigestFor } from './credentials.js';
import { LIFECYCLE_REQUESTS } from '../../protocol/messages/session.js';
import { decodePortal, MSG_PORTAL } from '../../protocol/messages/session.js';
import { servePortalSession } from '../../portal/service-outlets.js';
import { decodeDeviceOutlets, MSG_DEVICE_OUTLETS } from '../../protocol/portal/device-outlets.js';
import { serveDeviceOutletSession } from '../../portal/device-relay.js';
import type { SecureChannel } from '../../transport/channel.js';
import type { ServiceHome } from './home.js';
import { serveLifecycleRequest } from './lifecycle.js';
import type { DecisionLog } from './log.js';

export const SESSION_IDLE_MS = 60_000;

export async function serveSession(svc: ServiceHome, channel: SecureChannel, log: DecisionLog, _now: () => number): Promise<void> {
  const ikB = channel.remoteStaticKey;
  for (;;) {
    // Looked up on every request, so a revocation takes effect at the next one.
    const rec = await svc.store.getEnrolleeByIdentityKey(ikB);
    if (!rec || rec.state !== 'enrolled') {
      const code = rec?.state === 'revoked' ? 'ERR_ENROLLEE_REVOKED' : 'ERR_ENROLLEE_UNKNOWN';
      log('rejected', { reason: `${code}: session for a key that is not enrolled`, ik_b: toHex(ikB), enrollee: rec ? toHex(rec.id) : undefined });
      await channel.send(encodeError(new EnrollError(code, rec?.state === 'revoked' ? 'this enrollee has been revoked' : 'the service does not know this identity key')));
      await channel.close();
      return;
    }
    let msg: Uint8Array;
    try {
      msg = await channel.receive(SESSION_IDLE_MS);
    } catch (err) {
      if (isEnrollError(err, 'ERR_CONNECTION_CLOSED') || isEnrollError(err, 'ERR_TIMEOUT')) return;
      throw err;
    }
    let type: number;
    let outletNames: string[] | undefined;
    try {
      type = messageType(msg, [MSG_STATUS_REQUEST, MSG_PORTAL, MSG_DEVICE_OUTLETS, ...LIFECYCLE_REQUESTS], 'session');
      if (type === MSG_PORTAL) decodePortal(msg);
      if (type === MSG_DEVICE_OUTLETS) outletNames = decodeDeviceOutlets(msg);
    } catch (err) {
      if (!(err instanceof EnrollError)) throw err;
      await channel.send(encodeError(err));
      await channel.close();
      return;
    }
    // DEVICE_OUTLETS (docs/protocol.md §11.10.1): a portal link whose device serves outlets.
    if (outletNames !== undefined) {
      await serveDeviceOutletSession(svc, channel, rec, outletNames, log);
      return;
    }
    // PORTAL (docs/protocol.md §11.8): the channel becomes a portal link until it closes.
    if (type === MSG_PORTAL) {
      await servePortalSession(svc, channel, rec, log);
      return;
    }
    // ADDRESS_REQUEST and ROTATE (docs/protocol.md §7.9); true means the channel ends.
    if (type !== MSG_STATUS_REQUEST) {
      if (await serveLifecycleRequest(svc, channel, rec, msg, log, _now())) return;
      continue;
    }
    let req;
    try {
      req = decodeStatusRequest(msg);
    } catch (err) {
      if (!(err instanceof EnrollError)) throw err;
      await channel.send(encodeError(err));
      await channel.close();
      return;
    }
    // The digest of the credential the record calls for now (§7.9.4): from the record read
    // for this request, so a set-attr is seen at the next STATUS.
    await channel.send(
      encodeStatus({
        enrolleeId: rec.id,
        enrolledAt: rec.enrolledAt ?? 0,
        petName: rec.petName ?? '',
        addr: svc.settings.address,
        ...(req.wantSubjectDigest ? { subjectDigest: subjectDigestFor(svc, rec) } : {}),
      }),
    );
  }
}
