/**
 * An inlet (issue #19 item 2, docs/portals.md): a local listening port whose every accepted
 * TCP connection becomes one stream, over this enrollee's authenticated session to the
 * service (Noise XX, IK_B ↔ the pinned IK_A), to TARGET.
 *
 * The session is opened as `enrollee status` opens it (roles/enrollee/lifecycle.ts: the
 * admitted key, a finished interrupted rotation, the saved address or the one before a
 * move), then asks for the service's address announcement, so a signed move is followed
 * at the next reconnect, then switches to a portal link with PORTAL (docs/protocol.md §11.8).
 *
 * When the link ends (the service restarted, the network went), the inlet reconnects with
 * exponential backoff (RECONNECT_MIN_MS doubling to RECONNECT_MAX_MS, with jitter); the
 * listener stays up, and a connection accepted meanwhile waits up to `waitMs` for the link,
 * then is closed with its reason on stderr. A refusal that reconnecting cannot cure (revoked,
 * unknown to the service, a different service key, a service without portals) ends the
 * inlet with that error.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { EnrollError } from '../errors.js';
import { encodePortal, decodePortalReady } from '../protocol/messages/session.js';
import { admittedSession, learnAddress, requestAddress, REPLY_TIMEOUT_MS, serviceRecord } from '../roles/enrollee/lifecycle.js';
import type { EnrolleeHome } from '../roles/enrollee/home.js';
import { openStream, type StreamCounts } from './bridge.js';
import { PortalLink } from './link.js';
import { PORTAL_IDLE_MS, PORTAL_PING_MS } from './service-outlets.js';
import { formatHostPort, SERVICE_OWNER } from './target.js';
import { openDeviceStream } from './device-inlet.js';
import { deviceIdentityFor } from './device-identity.js';

export const RECONNECT_MIN_MS = 250;
export const RECONNECT_MAX_MS = 10_000;
/** How long a connection accepted while the service is away waits for the link. */
export const DEFAULT_WAIT_MS = 10_000;
/** Most connections waiting for the link at once; more are closed at accept. */
const MAX_WAITING = 256;

/** Failures a reconnect may cure; any other ends the inlet. */
const TRANSIENT = new Set(['ERR_UNREACHABLE', 'ERR_TIMEOUT', 'ERR_CONNECTION_CLOSED', 'ERR_UNAVAILABLE', 'ERR_RATE_LIMITED', 'ERR_FRAME_MALFORMED', 'ERR_NOISE_DECRYPT', 'ERR_SESSION_DECRYPT']);

export interface InletOptions {
  enrollee: EnrolleeHome;
  from: { host: string; port: number };
  target: string;
  /** Progress and per-connection refusals (stderr). */
  onInfo: (line: string) => void;
  /** Once: the listener is up and the first link to the service is open. */
  onReady: (r: { listen: string; target: string; service: string }) => void;
  waitMs?: number;
}

function listenError(err: NodeJS.ErrnoException, where: string): EnrollError {
  const hint =
    err.code === 'EADDRINUSE'
      ? 'another process holds that port: choose another --from'
      : err.code === 'EACCES'
        ? 'ports below 1024 need privileges: choose another --from'
        : err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND'
          ? 'the host of --from must be an address of this machine (127.0.0.1 for local use)'
          : 'check --from';
  return new EnrollError('ERR_LISTEN', `cannot listen on ${where}: ${err.code ?? err.message}`, { hint, cause: err });
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => reject(listenError(e, formatHostPort(host, port)));
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/** Runs the inlet until `signal` aborts (resolves) or a refusal no reconnect can cure (rejects). */
export async function runInlet(opts: InletOptions, signal: AbortSignal): Promise<void> {
  const waitMs = opts.waitMs ?? DEFAULT_WAIT_MS;
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: true });
  await listen(server, opts.from.host, opts.from.port);
  const a = server.address();
  const listenAt = a !== null && typeof a === 'object' ? formatHostPort(a.address, a.port) : formatHostPort(opts.from.host, opts.from.port);

  let link: PortalLink | undefined;
  let down = 'not connected yet';
  const sockets = new Set<Socket>();
  const waiting = new Map<Socket, NodeJS.Timeout>();

  const openOn = (l: PortalLink, socket: Socket) => {
    const peer = formatHostPort(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
    const counts: StreamCounts = { bytesIn: 0, bytesOut: 0 };
    // DEVICE/NAME: end-to-end Noise with the outlet device inside the stream (device-inlet.ts, portals-b's hook).
    const opening = opts.target.startsWith(`${SERVICE_OWNER}/`)
      ? openStream(l, opts.target, socket, counts, () => socket.destroy())
      : deviceIdentityFor(l, opts.enrollee).then((me) => openDeviceStream(l, opts.target, socket, me, counts, () => socket.destroy()));
    opening.catch((e: unknown) => {
      opts.onInfo(`connection from ${peer} refused: ${e instanceof Error ? e.message : String(e)}`);
      socket.destroy();
    });
  };
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => {
      sockets.delete(socket);
      const t = waiting.get(socket);
      if (t !== undefined) clearTimeout(t);
      waiting.delete(socket);
    });
    socket.on('error', () => undefined);
    if (link !== undefined && !link.ended) {
      openOn(link, socket);
      return;
    }
    if (waiting.size >= MAX_WAITING) {
      opts.onInfo(`connection refused: ${MAX_WAITING} connections already wait for the service (${down})`);
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => {
      waiting.delete(socket);
      opts.onInfo(`connection closed after waiting ${Math.round(waitMs / 1000)} s: the service is not reachable (${down})`);
      socket.destroy();
    }, waitMs);
    waiting.set(socket, timer);
  });

  const stopped = new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const shutdown = () => {
    server.close();
    for (const t of waiting.values()) clearTimeout(t);
    waiting.clear();
    for (const s of sockets) s.destroy();
    link?.end();
  };

  let backoff = RECONNECT_MIN_MS;
  let ready = false;
  try {
    while (!signal.aborted) {
      let l: PortalLink;
      try {
        l = await connectLink(opts);
      } catch (err) {
        if (signal.aborted) break;
        if (!(err instanceof EnrollError) || !TRANSIENT.has(err.code)) throw err;
        down = err.message;
        const wait = Math.round(backoff * (0.75 + Math.random() * 0.5));
        opts.onInfo(`cannot reach the service at ${safeAddress(opts.enrollee)} (${err.message}); retrying in ${(wait / 1000).toFixed(1)} s`);
        backoff = Math.min(backoff * 2, RECONNECT_MAX_MS);
        await Promise.race([stopped, new Promise((r) => setTimeout(r, wait).unref())]);
        continue;
      }
      if (signal.aborted) {
        l.end();
        break;
      }
      link = l;
      backoff = RECONNECT_MIN_MS;
      const pinger = setInterval(() => l.ping(), PORTAL_PING_MS);
      pinger.unref();
      if (!ready) {
        ready = true;
        opts.onReady({ listen: listenAt, target: opts.target, service: safeAddress(opts.enrollee) });
      } else {
        opts.onInfo(`reconnected to the service at ${safeAddress(opts.enrollee)}`);
      }
      for (const [socket, timer] of waiting) {
        clearTimeout(timer);
        openOn(l, socket);
      }
      waiting.clear();
      const ended = await Promise.race([l.done.then((e) => ({ e })), stopped.then(() => undefined)]);
      clearInterval(pinger);
      link = undefined;
      if (ended === undefined) {
        l.end();
        break;
      }
      down = ended.e ? ended.e.message : 'the service ended the portal session';
      opts.onInfo(`the portal session with the service ended (${down}); reconnecting`);
    }
  } finally {
    shutdown();
  }
}

function safeAddress(enrollee: EnrolleeHome): string {
  try {
    return serviceRecord(enrollee).address;
  } catch {
    return 'the service';
  }
}

/**
 * One session, as `enrollee status` opens it, then ADDRESS_REQUEST (a newer signed move is
 * saved for the next session), then PORTAL → PORTAL_READY, then the link.
 */
async function connectLink(opts: InletOptions): Promise<PortalLink> {
  const s = await admittedSession(opts.enrollee, opts.onInfo);
  const channel = s.channel;
  try {
    try {
      const moved = learnAddress(opts.enrollee, await requestAddress(channel));
      if (moved !== undefined) opts.onInfo(`the service announced a new address, ${moved}: the next session goes there`);
    } catch (err) {
      // A service without §7.9 answers ERR_PROTOCOL; the portal request below says more.
      if (!(err instanceof EnrollError) || err.code !== 'ERR_PROTOCOL') throw err;
    }
    await channel.send(encodePortal());
    try {
      decodePortalReady(await channel.receive(REPLY_TIMEOUT_MS));
    } catch (err) {
      if (err instanceof EnrollError && err.code === 'ERR_PROTOCOL') {
        throw new EnrollError('ERR_PROTOCOL', 'the service does not serve portals (it refused PORTAL)', { cause: err, hint: 'upgrade the service to a version with portals' });
      }
      throw err;
    }
  } catch (err) {
    channel.connection.destroy();
    throw err;
  }
  return new PortalLink(channel, { role: 'client' }, PORTAL_IDLE_MS);
}
