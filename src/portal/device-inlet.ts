/**
 * The inlet side of a device-to-device stream (docs/protocol.md §11.10): `enrollee inlet --to
 * DEVICE/NAME`. One TCP connection becomes one stream over the inlet's portal link to the
 * service, which relays it to the outlet device; the two devices run their own Noise XX
 * inside it (src/protocol/portal/e2e.ts), so the service relays ciphertext only.
 */
import type { Socket } from 'node:net';
import type { NoiseKeyPair } from '../protocol/noise/index.js';
import { EnrollError } from '../errors.js';
import { toHex } from '../crypto/bytes.js';
import { decodeAnswer, encodeOpen, OPEN_STATUS_NAMES, OpenStatus } from '../protocol/portal/open.js';
import { decodePeer, E2E_HEADER_LEN, E2eDeframer, E2eHandshake, E2eTransport, openVerdict, type PeerInfo } from '../protocol/portal/e2e.js';
import { OpenRefused, type StreamCounts } from './bridge.js';
import { bridgeE2e } from './e2e-bridge.js';
import type { PortalLink } from './link.js';
import { parseTarget, SERVICE_OWNER } from './target.js';

/** What a device needs to speak end to end: its identity, its credential, the service key that issued both. */
export interface DeviceIdentity {
  ikB: NoiseKeyPair;
  /** Its credential's bytes (encodeCredential). */
  credential: Uint8Array;
  /** IK_A, pinned at enrollment. */
  issuer: Uint8Array;
  /** This device's enrollee id (its credential's). */
  credentialId: Uint8Array;
  /** Unix seconds (for the peer credential's validity); default: the clock. */
  now?: () => number;
}


export interface DeviceStream {
  id: number;
  /** The outlet device as the directory named it, and its verified credential's pet name. */
  peer: PeerInfo & { petName: string };
}

/**
 * Opens a relayed stream for `socket` to `target` (DEVICE/NAME). Resolves once the outlet
 * device has verified us, evaluated its --allow, connected its target and said OK; rejects
 * with OpenRefused (ERR_REJECTED, the reason) for a refusal by the service or the device, or
 * with the handshake's error (a key or credential that does not check). The socket stays
 * paused until then.
 */
export function openDeviceStream(
  link: PortalLink,
  target: string,
  socket: Socket,
  me: DeviceIdentity,
  counts: StreamCounts,
  onDone: (how: 'closed' | 'reset', why?: string) => void,
): Promise<DeviceStream> {
  const parts = parseTarget(target);
  if (parts === undefined || parts.owner === SERVICE_OWNER) return Promise.reject(new EnrollError('ERR_USAGE', `${JSON.stringify(target)} is not DEVICE/NAME`));
  socket.pause();
  const hs = new E2eHandshake({ initiator: true, staticKeyPair: me.ikB, credential: me.credential, outletName: parts.name });
  return new Promise((resolve, reject) => {
    let pre: Buffer = Buffer.alloc(0);
    let phase: 'answer' | 'peer' | 'handshake' | 'verdict' | 'done' = 'answer';
    let peer: PeerInfo | undefined;
    let transport: E2eTransport | undefined;
    let petName = '';
    const deframer = new E2eDeframer();
    let settled = false;
    const fail = (e: EnrollError) => {
      if (settled) return;
      settled = true;
      phase = 'done';
      link.reset(id);
      reject(e);
    };
    const step = (): boolean => {
      if (phase === 'answer' || phase === 'peer') {
        if (phase === 'answer') {
          const a = decodeAnswer(pre);
          if (a === undefined) return false;
          if (a.status !== OpenStatus.OK) {
            fail(new OpenRefused('ERR_REJECTED', `${target}: ${OPEN_STATUS_NAMES[a.status]!}${a.reason ? `: ${a.reason}` : ''}`));
            return false;
          }
          link.consumed(id, a.used);
          pre = pre.subarray(a.used);
          phase = 'peer';
        }
        const p = decodePeer(pre);
        if (p === undefined) return false;
        link.consumed(id, p.used);
        peer = { enrolleeId: p.enrolleeId, ik: p.ik };
        hs.setTrust({ issuer: me.issuer, expected: peer, now: (me.now ?? (() => Math.floor(Date.now() / 1000)))() });
        deframer.push(pre.subarray(p.used));
        pre = Buffer.alloc(0);
        phase = 'handshake';
        return true;
      }
      if (phase === 'handshake') {
        const m = deframer.next();
        if (m === undefined) return false;
        link.consumed(id, E2E_HEADER_LEN + m.length);
        const r = hs.receive(m);
        link.write(id, r.send!);
        transport = new E2eTransport(r.established!.transport);
        petName = r.established!.peer.petName;
        phase = 'verdict';
        return true;
      }
      if (phase === 'verdict') {
        const m = deframer.next();
        if (m === undefined) return false;
        link.consumed(id, E2E_HEADER_LEN + m.length);
        const v = openVerdict(transport!.open(m));
        if (v.status !== OpenStatus.OK) {
          fail(new OpenRefused('ERR_REJECTED', `${target}: ${OPEN_STATUS_NAMES[v.status]!} (said the device)${v.reason ? `: ${v.reason}` : ''}`));
          return false;
        }
        phase = 'done';
        settled = true;
        bridgeE2e(link, id, socket, transport!, deframer, counts, onDone);
        resolve({ id, peer: { ...peer!, petName } });
      }
      return false;
    };
    const id = link.open({
      data(data) {
        if (phase === 'done') return;
        try {
          if (phase === 'answer' || phase === 'peer') {
            pre = pre.length === 0 ? data : Buffer.concat([pre, data]);
            if (pre.length > 512) throw new EnrollError('ERR_FRAME_MALFORMED', 'the relay sent too much before its answer');
          } else deframer.push(data);
          // Each call takes at most one message, so loop while there are more.
          while (step());
        } catch (e) {
          fail(e instanceof EnrollError ? e : new EnrollError('ERR_INTERNAL', 'device stream failed', { cause: e }));
        }
      },
      fin: () => fail(new EnrollError('ERR_PROTOCOL', `${target}: the stream ended before the device answered`)),
      reset: (remote) => {
        if (settled) return;
        settled = true;
        reject(new EnrollError(remote ? 'ERR_REJECTED' : 'ERR_CONNECTION_CLOSED', `${target}: the stream was reset${remote ? ' by the far end' : ''}`));
      },
      closed: () => undefined,
      writable: () => undefined,
    });
    // OPEN and msg 1 together: XX's msg 1 is only our ephemeral key, so it costs no round trip.
    link.write(id, Buffer.concat([encodeOpen(target), hs.start()]));
  });
}

export function describePeer(p: PeerInfo): string {
  return toHex(p.enrolleeId).slice(0, 16);
}
