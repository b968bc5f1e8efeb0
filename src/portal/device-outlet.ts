/**
 * The outlet side of a device-to-device stream (docs/protocol.md §11.10): `enrollee outlet`.
 * The service opens a stream on this device's portal link for each inlet that asks for one of
 * its outlets, and says who asks (RELAY_OPEN). This device answers, runs Noise XX with the
 * asking device inside the stream, checks the key against the service's directory entry and
 * the asking device's credential against IK_A, evaluates its own `--allow` on that
 * credential, and only then connects its target.
 */
import { connect } from 'node:net';
import { decodePortalReady } from '../protocol/messages/session.js';
import { encodeDeviceOutlets } from '../protocol/portal/device-outlets.js';
import { REPLY_TIMEOUT_MS } from '../roles/enrollee/lifecycle.js';
import type { SecureChannel } from '../transport/channel.js';
import { MAX_FRAME_LEN } from '../transport/frame.js';
import { PortalLink as Link } from './link.js';
/** As service-outlets.ts's PORTAL_PING_MS (not imported: the device need not load the service's code). */
const PORTAL_PING_MS = 30_000;
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { CREDENTIAL_V2_VERSION } from '../protocol/credential-v2.js';
import type { AnyCredential } from '../protocol/credential.js';
import {
  decodeRelayOpen, E2E_HEADER_LEN, E2eDeframer, E2eHandshake, E2eTransport, sealVerdict, type RelayOpen,
} from '../protocol/portal/e2e.js';
import { encodeAnswer, OpenStatus } from '../protocol/portal/open.js';
import type { PolicySubject } from '../policy/index.js';
import type { AllowPredicate } from './allow.js';
import type { StreamCounts } from './bridge.js';
import type { DeviceIdentity } from './device-inlet.js';
import { bridgeE2e } from './e2e-bridge.js';
import type { PortalLink } from './link.js';

export interface DeviceOutletSpec {
  name: string;
  host: string;
  port: number;
  allow: AllowPredicate;
}

/** One line of this device's own record of a relayed stream (its stderr or --json). */
export interface DeviceOutletRecord {
  outlet: string;
  /** The asking device's enrollee id (hex), once known. */
  peer?: string;
  peerName?: string;
  status: OpenStatus;
  reason: string;
  counts?: StreamCounts;
  how?: string;
}

/** The policy subject of a verified credential: what an outlet device knows of the asking device. */
export function subjectOfCredential(c: AnyCredential): PolicySubject {
  return {
    id: toHex(c.enrolleeId),
    name: c.petName,
    // A credential does not carry the approving enroller or the method: only the service's
    // directory does, and a device outlet trusts the service's signature, not its word.
    enroller: '',
    method: '',
    attributes: c.version === CREDENTIAL_V2_VERSION ? { ...c.attributes } : {},
  };
}

/** Serves stream `id`, which the service opened on this device's link. */
export function serveRelayedStream(
  link: PortalLink,
  id: number,
  outlets: ReadonlyMap<string, DeviceOutletSpec>,
  me: DeviceIdentity,
  onRecord: (r: DeviceOutletRecord) => void,
): void {
  let pre: Buffer = Buffer.alloc(0);
  let phase: 'open' | 'msg1' | 'msg3' | 'connecting' | 'done' = 'open';
  let open: RelayOpen | undefined;
  let spec: DeviceOutletSpec | undefined;
  let hs: E2eHandshake | undefined;
  let transport: E2eTransport | undefined;
  let peerId: string | undefined;
  let peerName: string | undefined;
  const deframer = new E2eDeframer();
  const now = me.now ?? (() => Math.floor(Date.now() / 1000));

  const abort = (reason: string) => {
    phase = 'done';
    link.reset(id);
    onRecord({ outlet: open?.name ?? '', peer: peerId, peerName, status: OpenStatus.INTERNAL, reason });
  };
  /** The verdict inside the E2E channel: only the asking device can read it. */
  const verdict = (status: OpenStatus, reason: string) => {
    for (const b of sealVerdict(transport!, status, reason)) link.write(id, b);
    if (status !== OpenStatus.OK) {
      link.write(id, transport!.sealFin());
      link.close(id);
      phase = 'done';
      onRecord({ outlet: spec!.name, peer: peerId, peerName, status, reason });
    }
  };
  const step = (): boolean => {
    if (phase === 'open') {
      const o = decodeRelayOpen(pre);
      if (o === undefined) return false;
      link.consumed(id, o.used);
      open = o;
      spec = outlets.get(o.name);
      if (spec === undefined) {
        link.write(id, encodeAnswer(OpenStatus.UNKNOWN_OUTLET, `this device has no outlet named ${JSON.stringify(o.name)}`));
        link.close(id);
        phase = 'done';
        onRecord({ outlet: o.name, peer: toHex(o.enrolleeId), status: OpenStatus.UNKNOWN_OUTLET, reason: 'no such outlet' });
        return false;
      }
      hs = new E2eHandshake({ initiator: false, staticKeyPair: me.ikB, credential: me.credential, outletName: o.name });
      hs.setTrust({ issuer: me.issuer, expected: { enrolleeId: o.enrolleeId, ik: o.ik }, now: now() });
      link.write(id, encodeAnswer(OpenStatus.OK));
      deframer.push(pre.subarray(o.used));
      pre = Buffer.alloc(0);
      phase = 'msg1';
      return true;
    }
    if (phase === 'msg1' || phase === 'msg3') {
      const m = deframer.next();
      if (m === undefined) return false;
      link.consumed(id, E2E_HEADER_LEN + m.length);
      const r = hs!.receive(m);
      if (phase === 'msg1') {
        link.write(id, r.send!);
        phase = 'msg3';
        return true;
      }
      const est = r.established!;
      hs = undefined; // done: its keys and transcript need not live as long as the stream
      transport = new E2eTransport(est.transport);
      peerId = toHex(est.peer.enrolleeId);
      peerName = est.peer.petName || undefined;
      if (!spec!.allow(subjectOfCredential(est.peer), { name: spec!.name, owner: 'device' })) {
        verdict(OpenStatus.NOT_ALLOWED, `this device's --allow for ${JSON.stringify(spec!.name)} does not admit ${peerName ?? peerId}`);
        return false;
      }
      phase = 'connecting';
      connectTarget();
      return false;
    }
    return false;
  };
  const connectTarget = () => {
    const s = spec!;
    const socket = connect({ host: s.host, port: s.port, allowHalfOpen: true });
    socket.pause();
    let connected = false;
    socket.once('error', (e: NodeJS.ErrnoException) => {
      if (!connected && phase === 'connecting') verdict(OpenStatus.TARGET_UNREACHABLE, `${s.host}:${s.port}: ${e.code ?? e.message}`);
    });
    socket.once('connect', () => {
      connected = true;
      if (phase !== 'connecting' || !link.mux.has(id)) {
        socket.destroy();
        return;
      }
      phase = 'done';
      verdict(OpenStatus.OK, '');
      onRecord({ outlet: s.name, peer: peerId, peerName, status: OpenStatus.OK, reason: '' });
      const counts: StreamCounts = { bytesIn: 0, bytesOut: 0 };
      bridgeE2e(link, id, socket, transport!, deframer, counts, (how, why) =>
        onRecord({ outlet: s.name, peer: peerId, peerName, status: OpenStatus.OK, reason: why ?? 'closed', counts, how }),
      );
    });
  };
  link.attach(id, {
    data(data) {
      if (phase === 'done') return;
      try {
        if (phase === 'open') {
          pre = pre.length === 0 ? data : Buffer.concat([pre, data]);
          if (pre.length > 2 + 255 + 64 + 2 * 65537) throw new EnrollError('ERR_FRAME_MALFORMED', 'too much before the relay open');
        } else deframer.push(data);
        while (step());
      } catch (e) {
        abort((e as Error).message);
      }
    },
    fin() {
      if (phase !== 'done') abort('the stream ended during the handshake');
    },
    reset() {
      if (phase !== 'done') {
        phase = 'done';
        onRecord({ outlet: open?.name ?? '', peer: peerId, peerName, status: OpenStatus.INTERNAL, reason: 'reset before it opened' });
      }
    },
    closed: () => undefined,
    writable: () => undefined,
  });
  link.accept(id);
}

// ---------------------------------------------------------------- the device's session

/** Backoff between reconnects: doubling from the first to the last, reset after a session that came up. */
export const RECONNECT_FIRST_MS = 500;
export const RECONNECT_MAX_MS = 30_000;

export interface RunDeviceOutletOptions {
  /** Opens an admitted session and returns it with this device's identity (roles/enrollee). */
  connect: () => Promise<{ channel: SecureChannel; me: DeviceIdentity }>;
  outlets: ReadonlyMap<string, DeviceOutletSpec>;
  onReady: (info: { enrolleeId: string; outlets: string[]; reconnects: number }) => void;
  onInfo: (line: string) => void;
  onRecord: (r: DeviceOutletRecord) => void;
  /** Aborted on SIGINT/SIGTERM: the link ends and the promise resolves. */
  signal: AbortSignal;
  /** Test and bench hook: the link as soon as it runs. */
  onLink?: (link: PortalLink) => void;
}

/**
 * Keeps this device's outlets registered: a session (KIND_SESSION), DEVICE_OUTLETS, then a
 * portal link on which the service opens the relayed streams; when the link ends, reconnects
 * with backoff. A refusal that will not change by retrying (revoked, unknown key, a bad
 * outlet list) ends it with that error.
 */
export async function runDeviceOutlet(o: RunDeviceOutletOptions): Promise<void> {
  let delay = RECONNECT_FIRST_MS;
  let reconnects = 0;
  const names = [...o.outlets.keys()];
  while (!o.signal.aborted) {
    let link: PortalLink | undefined;
    try {
      const { channel, me } = await o.connect();
      try {
        await channel.send(encodeDeviceOutlets(names));
        decodePortalReady(await channel.receive(REPLY_TIMEOUT_MS));
      } catch (err) {
        channel.connection.destroy();
        throw err;
      }
      channel.connection.raiseMaxFrameLen(MAX_FRAME_LEN);
      link = new Link(channel, { role: 'client' }, 0);
      const l = link;
      link.onOpen((id) => serveRelayedStream(l, id, o.outlets, me, o.onRecord));
      o.onLink?.(link);
      const ping = setInterval(() => l.ping(), PORTAL_PING_MS);
      const stop = () => l.end();
      o.signal.addEventListener('abort', stop, { once: true });
      o.onReady({ enrolleeId: toHex(me.credentialId), outlets: names, reconnects });
      delay = RECONNECT_FIRST_MS;
      const err = await link.done;
      clearInterval(ping);
      o.signal.removeEventListener('abort', stop);
      if (o.signal.aborted) return;
      if (err !== undefined && (err.code === 'ERR_ENROLLEE_REVOKED' || err.code === 'ERR_ENROLLEE_UNKNOWN')) throw err;
      o.onInfo(`the session to the service ended${err ? ` (${err.message})` : ''}; reconnecting`);
    } catch (err) {
      if (!(err instanceof EnrollError)) throw err;
      if (PERMANENT.has(err.code)) throw err;
      o.onInfo(`cannot reach the service (${err.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
    }
    reconnects++;
    await sleep(delay, o.signal);
    delay = Math.min(RECONNECT_MAX_MS, delay * 2);
  }
}

/** Refusals that retrying does not change. */
const PERMANENT = new Set(['ERR_ENROLLEE_REVOKED', 'ERR_ENROLLEE_UNKNOWN', 'ERR_SERVICE_KEY_MISMATCH', 'ERR_FRAME_MALFORMED', 'ERR_KEY_MISSING', 'ERR_PASSPHRASE', 'ERR_KEYSTORE_CORRUPT', 'ERR_INVALID_ARG']);

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
