/**
 * The service's wiring of device outlets (docs/portals.md "Device outlets"): a device's
 * DEVICE_OUTLETS session becomes a portal link registered with this process's relay
 * registry, and `DEVICE/NAME` targets of every portal link resolve through it
 * (service-outlets.ts's setDeviceTargets hook) to a relayed stream (relay.ts).
 *
 * The registry lives in this process. With a PostgreSQL store this replica also records each
 * device-outlet session in the store (device_outlets, schema step 5), and a DEVICE/NAME whose
 * device has no session here is looked up there and relayed over a replica link to the
 * replica that holds it (src/replicas/replica.ts, docs/protocol.md §11.11); that replica
 * serves the FORWARDed stream with serveForwardedStream.
 */
import { toHex } from '../crypto/bytes.js';
import { OPEN_STATUS_NAMES, OpenStatus } from '../protocol/portal/open.js';
import type { ServiceHome } from '../roles/service/home.js';
import type { DecisionLog } from '../roles/service/log.js';
import type { EnrolleeRecord } from '../store/types.js';
import type { SecureChannel } from '../transport/channel.js';
import { EnrollError } from '../errors.js';
import { decodeForward, MAX_FORWARD_LEN } from '../protocol/portal/replica-link.js';
import { encodeAnswer } from '../protocol/portal/open.js';
import type { Replica } from '../replicas/replica.js';
import type { PortalLink, StreamHandler } from './link.js';
import { DeviceOutletRegistry, relayDeviceStream, resolveDeviceTarget, type LiveDevice, type RelayRecord, type RemoteDevices } from './relay.js';
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

/** This process as a replica (PostgreSQL stores; `service start` sets it), or undefined. */
let replica: Replica | undefined;
export function setReplica(r: Replica | undefined): void {
  replica = r;
}

/**
 * A device with no outlet session here, looked up in the store: held by another replica with
 * a fresh heartbeat, reached over a link to it; else a refusal that says why not.
 */
const remoteDevices: RemoteDevices = async (rec, name) => {
  const r = replica;
  if (r === undefined || rec.ikB === null) return undefined;
  const holders = await r.holders(rec.id);
  if (holders.length === 0) return undefined;
  const device = rec.petName ? `${rec.petName} (${toHex(rec.id).slice(0, 16)})` : toHex(rec.id).slice(0, 16);
  const serving = holders.filter((h) => h.name === name);
  if (serving.length === 0) return { status: OpenStatus.UNKNOWN_OUTLET, reason: `device ${device} has no outlet named ${JSON.stringify(name)}` };
  const reachable = serving.find((h) => h.address !== null);
  if (reachable === undefined) {
    return { status: OpenStatus.DEVICE_OFFLINE, reason: `device ${device}: its session is on replica ${serving[0]!.replicaId}, which has no peer listener (service start --peer-listen)` };
  }
  let link: PortalLink;
  try {
    link = await r.linkTo(reachable.replicaId, reachable.address!);
  } catch (err) {
    const why = err instanceof EnrollError ? err.message : String(err);
    return { status: OpenStatus.DEVICE_OFFLINE, reason: `device ${device}: its session is on replica ${reachable.replicaId} at ${reachable.address}, which this replica cannot reach (${why})` };
  }
  const live: LiveDevice = { enrolleeId: rec.id, ik: rec.ikB, petName: rec.petName, names: new Set([name]), link, via: reachable.replicaId };
  return live;
};

setDeviceTargets(async (target, ctx) => {
  const r = await resolveDeviceTarget(deviceOutlets, ctx.svc.store, target, remoteDevices);
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
  const r = replica;
  const session = r?.nextSession();
  let registered: Promise<void> | undefined;
  try {
    await servePortalSession(svc, channel, rec, log, (link) => {
      unregister = deviceOutlets.register({ enrolleeId: rec.id, ik: channel.remoteStaticKey, petName: rec.petName, names: new Set(names), link });
      log('device-outlets', { enrollee: toHex(rec.id), name: rec.petName, outlets: names.join(','), ...(r ? { replica: r.id } : {}) });
      // The other replicas find the device through this row (removed when the session goes).
      if (r !== undefined && session !== undefined) {
        registered = r.registerOutlets(session, rec.id, names).catch((err: unknown) => {
          log('error', { enrollee: toHex(rec.id), name: rec.petName, reason: `device outlets not recorded for the other replicas: ${err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err)}` });
        });
      }
    });
  } finally {
    unregister?.();
    if (r !== undefined && session !== undefined) {
      await registered;
      await r.unregisterOutlets(session).catch(() => undefined);
    }
  }
}

/**
 * Serves a stream another replica opened on its replica link to this one (§11.11): its
 * FORWARD names a device whose outlet session is on this replica, and the RELAY_OPEN for it;
 * the stream is then relayed to that device as an inlet's own would be, except that PEER is
 * the other replica's to send. A device no longer here is refused DEVICE_OFFLINE.
 */
export function serveForwardedStream(svc: ServiceHome, link: PortalLink, id: number, from: string, log: DecisionLog): void {
  let got: Buffer = Buffer.alloc(0);
  let parsed = false;
  let finEarly = false;
  const early: { data: Buffer; owed: boolean }[] = [];
  const refuse = (target: string, status: OpenStatus, reason: string) => {
    link.write(id, encodeAnswer(status, reason));
    link.close(id);
    log('stream-refused', { replica: from, stream: id, target, relayed: true, reason: `${OPEN_STATUS_NAMES[status] ?? 'refused'}: ${reason}` });
  };
  const run = async (f: { deviceId: Uint8Array; name: string; enrolleeId: Uint8Array; ik: Uint8Array }) => {
    const target = `${toHex(f.deviceId)}/${f.name}`;
    let r: LiveDevice | { status: OpenStatus; reason: string };
    try {
      // This replica's own sessions only: a FORWARD is never forwarded again.
      r = await resolveDeviceTarget(deviceOutlets, svc.store, { owner: toHex(f.deviceId), name: f.name });
    } catch (err) {
      refuse(target, OpenStatus.INTERNAL, 'the replica holding the device cannot decide now; retry');
      void err;
      return;
    }
    if (!link.mux.has(id)) return;
    if ('status' in r) {
      refuse(target, r.status, r.status === OpenStatus.DEVICE_OFFLINE ? 'the device\'s session is no longer on this replica' : r.reason);
      return;
    }
    relayDeviceStream({
      link,
      id,
      target,
      device: r,
      outletName: f.name,
      opener: { enrolleeId: f.enrolleeId, ik: f.ik },
      early: early.splice(0),
      finEarly,
      sendPeer: false,
      onRecord: recordRelay(log, { enrollee: toHex(f.enrolleeId), name: null }, id),
    });
  };
  const pending: StreamHandler = {
    data(data) {
      if (parsed) {
        early.push({ data, owed: true });
        return;
      }
      got = Buffer.concat([got, data]);
      link.consumed(id, data.length);
      let f;
      try {
        f = decodeForward(got);
      } catch (e) {
        link.reset(id);
        log('stream-refused', { replica: from, stream: id, relayed: true, reason: `internal error: ${(e as Error).message}` });
        return;
      }
      if (f === undefined) {
        if (got.length > MAX_FORWARD_LEN) link.reset(id);
        return;
      }
      parsed = true;
      const rest = got.subarray(f.used);
      if (rest.length > 0) early.push({ data: Buffer.from(rest), owed: false });
      void run(f);
    },
    fin: () => (finEarly = true),
    reset: () => (parsed = true),
    closed: () => undefined,
    writable: () => undefined,
  };
  link.attach(id, pending);
  link.accept(id);
}
