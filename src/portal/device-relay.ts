/**
 * The service's wiring of device outlets (docs/portals.md "Device outlets"): a device's
 * DEVICE_OUTLETS session becomes a portal link registered with this process's relay
 * registry, and `DEVICE/NAME` targets of every portal link resolve through it
 * (service-outlets.ts's setDeviceTargets hook) to a relayed stream (relay.ts).
 *
 * The registry lives in this process: a replica relays to the device-outlet sessions it
 * holds itself. Cross-replica forwarding (issue #19 item 6) is not built.
 */
import { toHex } from '../crypto/bytes.js';
import { OPEN_STATUS_NAMES, OpenStatus } from '../protocol/portal/open.js';
import type { ServiceHome } from '../roles/service/home.js';
import type { DecisionLog } from '../roles/service/log.js';
import type { EnrolleeRecord } from '../store/types.js';
import type { SecureChannel } from '../transport/channel.js';
import { DeviceOutletRegistry, relayDeviceStream, resolveDeviceTarget, type RelayRecord } from './relay.js';
import { servePortalSession, setDeviceTargets } from './service-outlets.js';

/** This process's device-outlet sessions (one registry per `service start`). */
export const deviceOutlets = new DeviceOutletRegistry();

/** Logs a relayed stream's open, refusal and close (byte counts, never payloads). */
function recordRelay(log: DecisionLog, who: { enrollee: string; name: string | null }, id: number) {
  return (r: RelayRecord) => {
    const base = { ...who, stream: id, target: r.target, ...(r.device !== undefined ? { device: r.device } : {}) };
    if (r.counts !== undefined) log('stream-closed', { ...base, how: r.how, relayed: true, bytes_in: r.counts.bytesIn, bytes_out: r.counts.bytesOut });
    else if (r.status === OpenStatus.OK) log('stream-opened', { ...base, relayed: true });
    else log('stream-refused', { ...base, reason: `${OPEN_STATUS_NAMES[r.status] ?? 'refused'}: ${r.reason}` });
  };
}

setDeviceTargets(async (target, ctx) => {
  const r = await resolveDeviceTarget(deviceOutlets, ctx.svc.store, target);
  if ('status' in r) return { refuse: r.status, reason: r.reason };
  const opener = ctx.enrollee;
  return {
    relay: (early, finEarly) =>
      relayDeviceStream({
        link: ctx.link,
        id: ctx.streamId,
        target: `${target.owner}/${target.name}`,
        device: r,
        outletName: target.name,
        opener: { enrolleeId: opener.id, ik: opener.ikB! },
        early,
        finEarly,
        onRecord: recordRelay(ctx.log, { enrollee: toHex(opener.id), name: opener.petName }, ctx.streamId),
      }),
  };
});

/**
 * Serves a device's DEVICE_OUTLETS session: a portal link (servePortalSession: PORTAL_READY,
 * revocation, logs) whose device is registered, under `names`, for as long as it runs.
 */
export async function serveDeviceOutletSession(svc: ServiceHome, channel: SecureChannel, rec: EnrolleeRecord, names: readonly string[], log: DecisionLog): Promise<void> {
  let unregister: (() => void) | undefined;
  try {
    await servePortalSession(svc, channel, rec, log, (link) => {
      unregister = deviceOutlets.register({ enrolleeId: rec.id, ik: channel.remoteStaticKey, petName: rec.petName, names: new Set(names), link });
      log('device-outlets', { enrollee: toHex(rec.id), name: rec.petName, outlets: names.join(',') });
    });
  } finally {
    unregister?.();
  }
}
