/**
 * This `service start` as one replica of a service on PostgreSQL (docs/architecture.md
 * "Device outlets across replicas", docs/protocol.md §11.11): its heartbeat in the store's
 * `replicas` table, the device outlets its sessions hold (`device_outlets`), and its replica
 * links to the other replicas.
 *
 * - Heartbeat: every HEARTBEAT_MS, `last_seen` (Unix seconds of this host's clock; replicas'
 *   clocks are assumed NTP-close). A replica not seen for STALE_S holds no device outlets as
 *   far as the others are concerned (its rows are ignored), and after PRUNE_S its rows go.
 * - Replica links: replica B, whose inlet asks for a device held by replica A, dials A's
 *   `--peer-listen` address (the `address` A's row advertises). Both sides run Noise XX with
 *   IK_A, and each refuses a peer whose static key is not IK_A (logged `replica-refused`):
 *   only a process holding the service's own private key is a replica. Then REPLICA_HELLO
 *   both ways (B checks it reached the replica the row named) and a portal mux, one stream
 *   per relayed device stream. One link per peer, reused; pinged every LINK_PING_MS and ended
 *   after LINK_IDLE_MS without a byte, so a dead peer's streams fail (reset, with a reason at
 *   the inlet) rather than hang.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { equalBytes, toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { PortalLink } from '../portal/link.js';
import { decodeReplicaHello, encodeReplicaHello, PROLOGUE_REPLICA_REPLICA } from '../protocol/portal/replica-link.js';
import type { ServiceHome } from '../roles/service/home.js';
import type { DecisionLog } from '../roles/service/log.js';
import type { DeviceOutletHolder } from '../store/types.js';
import { parseListenAddress } from '../transport/address.js';
import { acceptChannel, initiateChannel, type SecureChannel } from '../transport/channel.js';
import type { FramedConnection } from '../transport/connection.js';
import { MAX_FRAME_LEN } from '../transport/frame.js';
import { connectTcp, listenTcp, type TcpServer } from '../transport/tcp.js';

export const HEARTBEAT_MS = 3_000;
/** A replica whose heartbeat is older than this holds no device outlets for the others. */
export const STALE_S = 15;
/** Replica rows (and their outlets) not refreshed for this long are deleted. */
export const PRUNE_S = 3_600;
export const LINK_PING_MS = 5_000;
export const LINK_IDLE_MS = 15_000;
/** The handshake and the hellos of a replica link. */
export const LINK_SETUP_MS = 5_000;
/** Replica links this replica accepts at once (one per other replica is the norm). */
export const MAX_REPLICA_LINKS = 64;
/** Relayed streams on one replica link at once (the mux refuses more: DEVICE_OFFLINE with the reason). */
export const LINK_MAX_STREAMS = 1024;

/** A fresh replica id: this host's name (lower-cased, cut) and 6 random bytes. */
export function newReplicaId(): string {
  const host = hostname().toLowerCase().replace(/[^0-9a-z-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 40) || 'replica';
  return `${host}-${randomBytes(6).toString('hex')}`;
}

const now = (): number => Math.floor(Date.now() / 1000);

export interface ReplicaOptions {
  id?: string;
  /** Where this replica's replica link listens (--peer-listen), and the address it advertises (--peer-address, default the listen address). */
  listen?: { host: string; port: number };
  advertise?: string;
  /** Serves a stream another replica opened on a replica link (src/portal/device-relay.ts). */
  onStream: (link: PortalLink, id: number, from: string) => void;
}

export class Replica {
  readonly id: string;
  readonly startedAt = now();
  #address: string | null = null;
  readonly #svc: ServiceHome;
  readonly #log: DecisionLog;
  readonly #opts: ReplicaOptions;
  #server: TcpServer | undefined;
  #timer: NodeJS.Timeout | undefined;
  #session = 0;
  #closed = false;
  /** Outbound links by peer replica id. */
  readonly #out = new Map<string, Promise<PortalLink>>();
  readonly #links = new Set<PortalLink>();

  constructor(svc: ServiceHome, log: DecisionLog, opts: ReplicaOptions) {
    this.#svc = svc;
    this.#log = log;
    this.#opts = opts;
    this.id = opts.id ?? newReplicaId();
  }

  get address(): string | null {
    return this.#address;
  }

  /** Listens (if asked), writes the first heartbeat, and keeps beating. */
  async start(): Promise<void> {
    const l = this.#opts.listen;
    if (l !== undefined) {
      this.#server = await listenTcp({
        host: l.host,
        port: l.port,
        maxConnections: MAX_REPLICA_LINKS,
        connection: { readTimeoutMs: LINK_SETUP_MS },
        onConnection: (conn) => this.#accept(conn),
        onError: (err, conn) => {
          const e = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
          this.#log('replica-refused', { peer: conn?.remoteAddress, reason: e });
        },
      });
      const a = this.#server.address();
      this.#address = this.#opts.advertise ?? `${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
      this.#log('replica-listening', { replica: this.id, address: `${a.host}:${a.port}`, advertised: this.#address });
    }
    await this.#beat();
    this.#timer = setInterval(() => void this.#beat(), HEARTBEAT_MS);
    this.#timer.unref();
  }

  async #beat(): Promise<void> {
    if (this.#closed) return;
    try {
      const t = now();
      await this.#svc.store.replicaHeartbeat({ id: this.id, address: this.#address, startedAt: this.startedAt, lastSeen: t });
      await this.#svc.store.pruneReplicas(t - PRUNE_S);
    } catch (err) {
      // The store's own health line says it is unreachable; this one says what it costs.
      this.#log('error', { replica: this.id, reason: `replica heartbeat: ${err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err)}` });
    }
  }

  /** A new session number for putDeviceOutlets / removeDeviceOutlets. */
  nextSession(): number {
    return ++this.#session;
  }

  async registerOutlets(session: number, enrolleeId: Uint8Array, names: readonly string[]): Promise<void> {
    await this.#svc.store.putDeviceOutlets({ replicaId: this.id, session, enrolleeId, names, since: now() });
  }

  async unregisterOutlets(session: number): Promise<void> {
    if (this.#closed) return;
    await this.#svc.store.removeDeviceOutlets(this.id, session);
  }

  /** The device outlets of `enrolleeId` on other replicas with a fresh heartbeat. */
  async holders(enrolleeId: Uint8Array): Promise<DeviceOutletHolder[]> {
    return (await this.#svc.store.findDeviceOutlets(enrolleeId, now() - STALE_S)).filter((h) => h.replicaId !== this.id);
  }

  /** The key check of both sides of a replica link: the peer's static key must be IK_A itself. */
  #checkPeerKey = (remote: Uint8Array): void => {
    if (!equalBytes(remote, this.#svc.ikA.publicKey)) {
      throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `the peer's static key ${toHex(remote).slice(0, 16)}… is not this service's IK_A: not a replica of this service`);
    }
  };

  /** The link to replica `peerId` at `address`, dialled (once) if there is none. */
  linkTo(peerId: string, address: string): Promise<PortalLink> {
    if (this.#closed) return Promise.reject(new EnrollError('ERR_CONNECTION_CLOSED', 'this replica is stopping'));
    let p = this.#out.get(peerId);
    if (p === undefined) {
      p = this.#dial(peerId, address);
      this.#out.set(peerId, p);
      p.then(
        (link) => void link.done.then(() => this.#out.get(peerId) === p && this.#out.delete(peerId)),
        () => this.#out.get(peerId) === p && this.#out.delete(peerId),
      );
    }
    return p;
  }

  async #dial(peerId: string, address: string): Promise<PortalLink> {
    const conn = await connectTcp(parseListenAddress(address), { connectTimeoutMs: LINK_SETUP_MS, readTimeoutMs: LINK_SETUP_MS, unreachableHint: `is replica ${peerId} running, with --peer-listen ${address}?` });
    let channel: SecureChannel;
    try {
      channel = await initiateChannel(conn, { staticKeyPair: this.#svc.ikA, prologue: PROLOGUE_REPLICA_REPLICA, handshakeTimeoutMs: LINK_SETUP_MS, verifyRemote: this.#checkPeerKey });
    } catch (err) {
      if (err instanceof EnrollError && err.code === 'ERR_SERVICE_KEY_MISMATCH') this.#log('replica-refused', { peer: address, replica: peerId, reason: `${err.code}: ${err.message}` });
      throw err;
    }
    try {
      await channel.send(encodeReplicaHello(this.id));
      const theirs = decodeReplicaHello(await channel.receive(LINK_SETUP_MS));
      if (theirs !== peerId) throw new EnrollError('ERR_PROTOCOL', `the replica at ${address} is ${theirs}, not ${peerId} (its address was reused)`);
    } catch (err) {
      conn.destroy();
      throw err;
    }
    return this.#run(channel, 'client', peerId, address);
  }

  async #accept(conn: FramedConnection): Promise<void> {
    const peer = conn.remoteAddress;
    let channel: SecureChannel;
    try {
      channel = await acceptChannel(conn, { staticKeyPair: this.#svc.ikA, prologue: PROLOGUE_REPLICA_REPLICA, handshakeTimeoutMs: LINK_SETUP_MS, verifyRemote: this.#checkPeerKey });
    } catch (err) {
      this.#log('replica-refused', { peer, reason: err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err) });
      conn.destroy();
      return;
    }
    let theirs: string;
    try {
      theirs = decodeReplicaHello(await channel.receive(LINK_SETUP_MS));
      await channel.send(encodeReplicaHello(this.id));
    } catch (err) {
      this.#log('replica-refused', { peer, reason: err instanceof EnrollError ? `${err.code}: ${err.message}` : String(err) });
      conn.destroy();
      return;
    }
    const link = await this.#run(channel, 'server', theirs, peer ?? '');
    await link.done;
  }

  async #run(channel: SecureChannel, role: 'client' | 'server', peerId: string, address: string): Promise<PortalLink> {
    channel.connection.raiseMaxFrameLen(MAX_FRAME_LEN);
    const link = new PortalLink(channel, { role, maxStreams: LINK_MAX_STREAMS }, LINK_IDLE_MS);
    this.#links.add(link);
    link.onOpen((id) => {
      // Only the dialer relays through a link; the listener serves (one direction per link).
      if (role === 'client') link.reset(id);
      else this.#opts.onStream(link, id, peerId);
    });
    const ping = setInterval(() => link.ping(), LINK_PING_MS);
    this.#log('replica-link-opened', { replica: peerId, peer: address, dialled: role === 'client' });
    void link.done.then((err) => {
      clearInterval(ping);
      this.#links.delete(link);
      this.#log('replica-link-closed', { replica: peerId, peer: address, ...(err ? { reason: `${err.code}: ${err.message}` } : {}) });
    });
    if (this.#closed) link.end();
    return link;
  }

  /** Stops beating and listening, ends every link, and removes this replica's rows. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const l of this.#links) l.end();
    await this.#server?.close();
    await this.#svc.store.removeReplica(this.id).catch(() => undefined);
  }
}
