/**
 * The service's relay for device outlets (docs/protocol.md §11.10, docs/portals.md "Device
 * outlets"). A device that runs `enrollee outlet` keeps a portal link to the service and
 * registers its outlet names (DEVICE_OUTLETS); an inlet that asks for DEVICE/NAME gets a
 * stream that this relay splices to a stream it opens on the device's link. The relay only
 * copies bytes: the two devices run Noise XX end to end inside the stream
 * (src/protocol/portal/e2e.ts), so what passes here is ciphertext.
 *
 * The registry is in-process: it knows the device-outlet sessions of this replica only. A
 * device whose session is on another replica (PostgreSQL: the store's device_outlets rows)
 * is reached over a replica link (src/replicas/, docs/protocol.md §11.11): the LiveDevice
 * resolveDeviceTarget returns then has that link as its `link` and `via` set, and the stream's
 * RELAY_OPEN goes inside a FORWARD naming the device, which the other replica relays on.
 *
 * Memory per relayed stream (§11.10.4): per direction, at most one stream window of the
 * sending side (its credit is returned only once the bytes were queued on the other link
 * within its send-buffer limit) plus that send buffer: 256 KiB + 256 KiB at the defaults.
 */
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { encodePeer, encodeRelayOpen, type PeerInfo } from '../protocol/portal/e2e.js';
import { decodeAnswer, encodeAnswer, OpenStatus } from '../protocol/portal/open.js';
import { encodeForward } from '../protocol/portal/replica-link.js';
import type { EnrolleeRecord } from '../store/types.js';
import type { StreamCounts } from './bridge.js';
import type { PortalLink, StreamHandler } from './link.js';
import type { PortalTarget } from './target.js';

/** A device-outlet session live on this replica. */
export interface LiveDevice extends PeerInfo {
  petName: string | null;
  names: ReadonlySet<string>;
  link: PortalLink;
  /** Set when `link` is a replica link to the replica `via` that holds the device's session. */
  via?: string;
}

/**
 * Where a device that has no outlet session on this replica may be (src/replicas/): another
 * replica reached over a replica link, a refusal that says why not, or undefined (nowhere).
 */
export type RemoteDevices = (rec: EnrolleeRecord, name: string) => Promise<LiveDevice | Refusal | undefined>;

/** What the relay needs of the store: enrollees by id or prefix, by identity key, and all enrolled ones (pet names). */
export interface RelayDirectory {
  findEnrollee(idOrPrefix: string): Promise<EnrolleeRecord | undefined>;
  getEnrolleeByIdentityKey(ik: Uint8Array): Promise<EnrolleeRecord | undefined>;
  listEnrollees(state?: 'enrolled'): Promise<EnrolleeRecord[]>;
}

const HEX_RE = /^[0-9a-f]+$/;
/** The shortest id prefix that names a device (as `service enrollee show` takes). */
export const MIN_ID_PREFIX = 8;

export class DeviceOutletRegistry {
  /** Live sessions by device id (hex); a device may run several `enrollee outlet` processes. */
  readonly #byId = new Map<string, LiveDevice[]>();

  /** Registers a device's live link; the returned function unregisters exactly this entry. */
  register(d: LiveDevice): () => void {
    const key = toHex(d.enrolleeId);
    const list = this.#byId.get(key) ?? [];
    list.push(d);
    this.#byId.set(key, list);
    return () => {
      const l = this.#byId.get(key);
      if (l === undefined) return;
      const i = l.indexOf(d);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.#byId.delete(key);
    };
  }

  /** Devices with at least one live session. */
  get size(): number {
    return this.#byId.size;
  }

  list(): LiveDevice[] {
    return [...this.#byId.values()].flat();
  }

  /**
   * The live sessions of the device named by full id, unique id prefix (≥ 8 hex digits) or
   * pet name; 'ambiguous' when that names more than one device.
   */
  lookup(device: string): LiveDevice[] | 'ambiguous' | undefined {
    const d = device.toLowerCase();
    if (HEX_RE.test(d) && d.length >= MIN_ID_PREFIX) {
      const exact = this.#byId.get(d);
      if (exact !== undefined) return exact;
      const hits = [...this.#byId.entries()].filter(([k]) => k.startsWith(d));
      if (hits.length === 1) return hits[0]![1];
      if (hits.length > 1) return 'ambiguous';
    }
    const named = [...this.#byId.values()].filter((v) => v[0]!.petName === device);
    if (named.length === 1) return named[0];
    return named.length > 1 ? 'ambiguous' : undefined;
  }
}

export type Refusal = { status: OpenStatus; reason: string };

/**
 * Where DEVICE/NAME leads: a live device that registered NAME, or the refusal the inlet gets
 * (§11.6 statuses): unknown device, device offline (enrolled, but no outlet session here),
 * revoked, or no such outlet on it.
 */
export async function resolveDeviceTarget(registry: DeviceOutletRegistry, dir: RelayDirectory, target: PortalTarget, remote?: RemoteDevices): Promise<LiveDevice | Refusal> {
  const { owner: device, name } = target;
  const live = registry.lookup(device);
  if (live === 'ambiguous') return { status: OpenStatus.UNKNOWN_DEVICE, reason: `more than one device matches ${JSON.stringify(device)}: give more of its id` };
  if (live !== undefined) {
    // The newest session that serves NAME (a device may run several outlet processes).
    const serving = live.filter((l) => l.names.has(name) && !l.link.ended).at(-1);
    if (serving === undefined) return { status: OpenStatus.UNKNOWN_OUTLET, reason: `device ${JSON.stringify(device)} has no outlet named ${JSON.stringify(name)}` };
    // The device's own record, on every open: a revoked device stops serving at once.
    const rec = await dir.getEnrolleeByIdentityKey(serving.ik);
    if (rec === undefined || rec.state !== 'enrolled') {
      for (const l of live) l.link.end(new EnrollError('ERR_ENROLLEE_REVOKED', 'this device is no longer enrolled'));
      return { status: OpenStatus.REVOKED, reason: `device ${JSON.stringify(device)} has been revoked` };
    }
    return serving;
  }
  let rec: EnrolleeRecord | undefined;
  const d = device.toLowerCase();
  if (HEX_RE.test(d) && d.length >= MIN_ID_PREFIX) rec = await dir.findEnrollee(d).catch(() => undefined);
  if (rec === undefined) {
    const named = (await dir.listEnrollees('enrolled')).filter((r) => r.petName === device);
    if (named.length > 1) return { status: OpenStatus.UNKNOWN_DEVICE, reason: `more than one device is called ${JSON.stringify(device)}: give its id` };
    rec = named[0];
  }
  if (rec === undefined) return { status: OpenStatus.UNKNOWN_DEVICE, reason: `no enrolled device is called or has the id ${JSON.stringify(device)}` };
  if (rec.state === 'revoked') return { status: OpenStatus.REVOKED, reason: `device ${JSON.stringify(device)} has been revoked` };
  if (rec.state !== 'enrolled') return { status: OpenStatus.UNKNOWN_DEVICE, reason: `device ${JSON.stringify(device)} is not enrolled` };
  const elsewhere = remote === undefined ? undefined : await remote(rec, name);
  if (elsewhere !== undefined) return elsewhere;
  return { status: OpenStatus.DEVICE_OFFLINE, reason: `device ${JSON.stringify(device)} has no outlet session open${rec.petName ? ` (${rec.petName})` : ''}` };
}

export interface RelayRecord {
  target: string;
  status: OpenStatus;
  reason: string;
  /** The outlet device, once resolved. */
  device?: string;
  counts?: StreamCounts;
  how?: string;
}

export interface RelayOptions {
  /** The inlet's link and stream, whose OPEN named `target`. */
  link: PortalLink;
  id: number;
  target: string;
  /** The device outlet `target` resolved to (resolveDeviceTarget), and the outlet's name. */
  device: LiveDevice;
  outletName: string;
  /** The opening device, as the service's session authenticated it. */
  opener: PeerInfo;
  /** Bytes the opener sent after its OPEN so far; `owed` ones still hold credit the relay returns. */
  early: { data: Buffer; owed: boolean }[];
  /** The opener already sent FIN. */
  finEarly: boolean;
  onRecord: (r: RelayRecord) => void;
  /**
   * false on a replica that relays a FORWARD from another replica: that replica answers its
   * inlet with PEER itself (from the same directory), so this one sends only the ANSWER.
   */
  sendPeer?: boolean;
  /** Sees every byte relayed, in each direction (tests check that it is ciphertext). */
  tap?: (direction: 'to-outlet' | 'to-inlet', bytes: Buffer) => void;
}

/**
 * Relays the inlet's stream `id` (its OPEN already read) to the device outlet it names:
 * RELAY_OPEN on a new stream of the device's link, then the two streams spliced, with the
 * device's ANSWER passed back (and PEER after an OK).
 */
export function relayDeviceStream(o: RelayOptions): void {
  const { link: xl, id: xId } = o;
  const early = o.early;
  let finEarly = o.finEarly;
  let over = false;
  let y: { link: PortalLink; id: number; device: LiveDevice } | undefined;
  const counts: StreamCounts = { bytesIn: 0, bytesOut: 0 };
  let answered = false;
  let yPre: Buffer = Buffer.alloc(0);
  /** Bytes received on one side and queued on the other while its send buffer was full: their credit is owed. */
  let owedToX = 0;
  let owedToY = 0;
  let closedSides = 0;

  const refuseX = (status: OpenStatus, reason: string) => {
    if (over) return;
    over = true;
    xl.write(xId, encodeAnswer(status, reason));
    xl.close(xId);
    o.onRecord({ target: o.target, status, reason, device: y ? toHex(y.device.enrolleeId) : undefined });
  };
  const finished = (how: 'closed' | 'reset') => {
    if (over) return;
    over = true;
    o.onRecord({ target: o.target, status: OpenStatus.OK, reason: 'closed', device: y ? toHex(y.device.enrolleeId) : undefined, counts, how });
  };
  /** X → Y: queue on Y's stream, and return X's credit now or once Y's send buffer drains. */
  const toY = (data: Buffer, owed: boolean) => {
    counts.bytesIn += data.length;
    o.tap?.('to-outlet', data);
    const ok = y!.link.write(y!.id, data);
    if (!owed) return;
    if (ok) xl.consumed(xId, data.length);
    else owedToX += data.length;
  };
  const toX = (data: Buffer) => {
    counts.bytesOut += data.length;
    o.tap?.('to-inlet', data);
    if (xl.write(xId, data)) y!.link.consumed(y!.id, data.length);
    else owedToY += data.length;
  };

  const xHandler: StreamHandler = {
    data(data) {
      if (over) return;
      if (y === undefined) early.push({ data, owed: true });
      else toY(data, true);
    },
    fin() {
      if (y === undefined) finEarly = true;
      else y.link.close(y.id);
    },
    reset() {
      if (y !== undefined) y.link.reset(y.id);
      if (!over) {
        over = true;
        o.onRecord({ target: o.target, status: answered ? OpenStatus.OK : OpenStatus.INTERNAL, reason: 'the inlet reset the stream', counts, how: 'reset' });
      }
    },
    closed() {
      if (++closedSides === 2) finished('closed');
    },
    writable() {
      if (owedToY > 0 && y !== undefined) {
        const n = owedToY;
        owedToY = 0;
        y.link.consumed(y.id, n);
      }
    },
  };
  xl.attach(xId, xHandler);

  const start = (dev: LiveDevice) => {
    if (over || !xl.mux.has(xId)) return;
    const yHandler: StreamHandler = {
      data(data) {
        if (over) return;
        if (answered) {
          toX(data);
          return;
        }
        yPre = yPre.length === 0 ? data : Buffer.concat([yPre, data]);
        let a;
        try {
          a = decodeAnswer(yPre);
        } catch {
          refuseX(OpenStatus.INTERNAL, 'the device answered with a malformed frame');
          y!.link.reset(y!.id);
          return;
        }
        if (a === undefined) {
          if (yPre.length > 257) {
            refuseX(OpenStatus.INTERNAL, 'the device did not answer');
            y!.link.reset(y!.id);
          }
          return;
        }
        if (a.status !== OpenStatus.OK) {
          // Refused first: resetting Y's stream reports a local reset, which must not speak for the device.
          refuseX(a.status, a.reason);
          y!.link.reset(y!.id);
          return;
        }
        answered = true;
        y!.link.consumed(y!.id, a.used);
        // The device's key as the directory holds it, for the inlet's check in the handshake.
        const head = o.sendPeer === false ? encodeAnswer(OpenStatus.OK) : Buffer.concat([encodeAnswer(OpenStatus.OK), encodePeer(dev)]);
        xl.write(xId, head);
        o.onRecord({ target: o.target, status: OpenStatus.OK, reason: 'relayed', device: toHex(dev.enrolleeId) });
        const rest = yPre.subarray(a.used);
        yPre = Buffer.alloc(0);
        if (rest.length > 0) toX(rest);
      },
      fin() {
        if (!answered) {
          refuseX(OpenStatus.INTERNAL, 'the device closed the stream without an answer');
          return;
        }
        xl.close(xId);
      },
      reset(remote) {
        if (!answered) {
          const lost = dev.via === undefined ? 'the device\'s session ended' : `the link to replica ${dev.via}, which holds the device's session, ended`;
          refuseX(remote ? OpenStatus.INTERNAL : OpenStatus.DEVICE_OFFLINE, remote ? 'the device reset the stream' : lost);
        }
        else xl.reset(xId);
      },
      closed() {
        if (++closedSides === 2) finished('closed');
      },
      writable() {
        if (owedToX > 0) {
          const n = owedToX;
          owedToX = 0;
          xl.consumed(xId, n);
        }
      },
    };
    let yId: number;
    try {
      yId = dev.link.open(yHandler);
    } catch {
      refuseX(OpenStatus.DEVICE_OFFLINE, dev.via === undefined ? 'the device\'s session is closing' : `the link to replica ${dev.via}, which holds the device's session, is closing or full`);
      return;
    }
    y = { link: dev.link, id: yId, device: dev };
    const relayOpen = encodeRelayOpen({ name: o.outletName, enrolleeId: o.opener.enrolleeId, ik: o.opener.ik });
    // Over a replica link, the RELAY_OPEN rides in a FORWARD naming the device (§11.11).
    dev.link.write(yId, dev.via === undefined ? relayOpen : encodeForward(dev.enrolleeId, relayOpen));
    for (const e of early) toY(e.data, e.owed);
    early.length = 0;
    if (finEarly) dev.link.close(yId);
  };

  start(o.device);
}
