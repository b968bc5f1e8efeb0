/**
 * A device-to-device path in one process over real loopback TCP and real Noise channels
 * (test/portal/relay.test.ts and the bench's profiling): a service acceptor that relays
 * DEVICE/NAME streams through src/portal/relay.ts, an outlet device serving its outlets with
 * src/portal/device-outlet.ts, an inlet device opening streams with src/portal/device-inlet.ts.
 * Identities are enrolled in a real SQLite store (ServiceHome) and carry credentials signed
 * by the service's IK_A.
 */
import { mkdtempSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { encodeCredential, signCredential } from '../../src/protocol/credential.js';
import { decodeOpen } from '../../src/protocol/portal/open.js';
import { compileAllow } from '../../src/portal/allow.js';
import type { DeviceIdentity } from '../../src/portal/device-inlet.js';
import { openDeviceStream } from '../../src/portal/device-inlet.js';
import { serveRelayedStream, type DeviceOutletRecord, type DeviceOutletSpec } from '../../src/portal/device-outlet.js';
import { PortalLink } from '../../src/portal/link.js';
import { DeviceOutletRegistry, relayDeviceStream, resolveDeviceTarget, type RelayRecord } from '../../src/portal/relay.js';
import { parseTarget } from '../../src/portal/target.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { acceptChannel, initiateChannel } from '../../src/transport/channel.js';
import { MAX_FRAME_LEN } from '../../src/transport/frame.js';
import { connectTcp, listenTcp, type TcpServer } from '../../src/transport/tcp.js';
import { approveEnrollees, initServiceHome, nowSeconds } from '../helpers/lab.js';

const PROLOGUE = Buffer.from('ockam-enroll/test/portal-e2e');

export interface Device {
  id: Uint8Array;
  name: string;
  ikB: KeyPair;
  me: DeviceIdentity;
}

export interface Harness {
  svc: ServiceHome;
  registry: DeviceOutletRegistry;
  devices: Device[];
  relayRecords: RelayRecord[];
  outletRecords: DeviceOutletRecord[];
  /** Every byte the relay copied, by direction. */
  relayed: { 'to-outlet': Buffer[]; 'to-inlet': Buffer[] };
  /** Links the inlet device opened, by device index. */
  link(i: number): Promise<PortalLink>;
  /** Makes device `i` an outlet device serving `outlets`. */
  serveOutlets(i: number, outlets: DeviceOutletSpec[]): Promise<PortalLink>;
  /** A local listener whose connections become streams from device `i` to `target`. */
  inlet(i: number, target: string, refusals?: Error[]): Promise<number>;
  close(): Promise<void>;
}

export async function makeHarness(opts: { devices: number; tap?: boolean; directoryFor?: (d: Device) => Device }): Promise<Harness> {
  const root = mkdtempSync(join(tmpdir(), 'ockam-e2e-'));
  const { svc, enroller } = await initServiceHome(root, 4999);
  const lab = await approveEnrollees(svc, enroller.publicKey, opts.devices, 'device');
  const now = nowSeconds();
  const devices: Device[] = [];
  for (const e of lab) {
    const ikB = generateX25519();
    await svc.store.commitEnrollment({ enrolleeId: e.id, bundleId: e.bundle.bundleId, ekB: new Uint8Array(randomBytes(32)), ikB: ikB.publicKey, now });
    const cred = signCredential({ issuer: svc.ikA.publicKey, enrolleeId: e.id, ikB: ikB.publicKey, petName: e.petName, issuedAt: now - 10, expiresAt: now + 86400 }, svc.ikA.privateKey);
    devices.push({ id: e.id, name: e.petName, ikB, me: { ikB, credential: encodeCredential(cred), issuer: svc.ikA.publicKey, credentialId: e.id } });
  }
  const registry = new DeviceOutletRegistry();
  const relayRecords: RelayRecord[] = [];
  const outletRecords: DeviceOutletRecord[] = [];
  const relayed = { 'to-outlet': [] as Buffer[], 'to-inlet': [] as Buffer[] };
  const pendingOutlets = new Map<string, Set<string>>();
  const serviceLinks: PortalLink[] = [];

  const server: TcpServer = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: async (conn) => {
      const channel = await acceptChannel(conn, { staticKeyPair: svc.ikA, prologue: PROLOGUE });
      conn.raiseMaxFrameLen(MAX_FRAME_LEN);
      const rec = await svc.store.getEnrolleeByIdentityKey(channel.remoteStaticKey);
      if (rec === undefined) return void conn.destroy();
      const link = new PortalLink(channel, { role: 'server' });
      serviceLinks.push(link);
      const names = pendingOutlets.get(Buffer.from(rec.id).toString('hex'));
      const unregister = names ? registry.register({ enrolleeId: rec.id, ik: rec.ikB!, petName: rec.petName, names, link }) : undefined;
      link.onOpen((id) => {
        // The service's OPEN reading, as bridge.ts serveStream does it: then the relay takes over.
        let got = Buffer.alloc(0);
        link.attach(id, {
          data(d) {
            got = Buffer.concat([got, d]);
            const o = decodeOpen(got);
            if (o === undefined) return;
            link.consumed(id, got.length);
            const early = got.length > o.used ? [{ data: Buffer.from(got.subarray(o.used)), owed: false }] : [];
            const t = parseTarget(o.target)!;
            void resolveDeviceTarget(registry, svc.store, t).then((r) => {
              if ('status' in r) throw new Error(`harness: ${r.reason}`);
              const opener = opts.directoryFor ? opts.directoryFor(devices.find((d) => Buffer.compare(d.id, rec.id) === 0)!) : undefined;
              relayDeviceStream({
                link, id, target: o.target, device: r, outletName: t.name,
                opener: opener ? { enrolleeId: opener.id, ik: opener.ikB.publicKey } : { enrolleeId: rec.id, ik: rec.ikB! },
                early, finEarly: false,
                onRecord: (x) => relayRecords.push(x),
                tap: opts.tap ? (dir, b) => relayed[dir].push(Buffer.from(b)) : undefined,
              });
            });
          },
          fin: () => undefined, reset: () => undefined, closed: () => undefined, writable: () => undefined,
        });
        link.accept(id);
      });
      await link.done;
      unregister?.();
    },
  });
  const links = new Map<number, Promise<PortalLink>>();
  const dialLink = async (i: number) => {
    const conn = await connectTcp(server.address());
    const channel = await initiateChannel(conn, { staticKeyPair: devices[i]!.ikB, prologue: PROLOGUE });
    conn.raiseMaxFrameLen(MAX_FRAME_LEN);
    return new PortalLink(channel, { role: 'client' });
  };
  const servers: Server[] = [];
  const h: Harness = {
    svc, registry, devices, relayRecords, outletRecords, relayed,
    link(i) {
      let p = links.get(i);
      if (p === undefined) links.set(i, (p = dialLink(i)));
      return p;
    },
    async serveOutlets(i, outlets) {
      pendingOutlets.set(Buffer.from(devices[i]!.id).toString('hex'), new Set(outlets.map((o) => o.name)));
      const link = await dialLink(i);
      const map = new Map(outlets.map((o) => [o.name, o]));
      link.onOpen((id) => serveRelayedStream(link, id, map, devices[i]!.me, (r) => outletRecords.push(r)));
      const until = Date.now() + 10_000;
      while (registry.size === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      return link;
    },
    async inlet(i, target, refusals = []) {
      const link = await h.link(i);
      const s = createServer({ allowHalfOpen: true }, (sock: Socket) => {
        openDeviceStream(link, target, sock, devices[i]!.me, { bytesIn: 0, bytesOut: 0 }, () => undefined).catch((e: Error) => {
          refusals.push(e);
          sock.destroy();
        });
      });
      servers.push(s);
      return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)));
    },
    async close() {
      for (const s of servers) s.close();
      for (const p of links.values()) (await p).end();
      for (const l of serviceLinks) l.end();
      await server.close();
      await svc.close?.();
    },
  };
  return h;
}

export const allowAll = compileAllow(undefined);
