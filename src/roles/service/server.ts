/**
 * `service start`: one TCP listener for every party. The first frame of a connection names
 * its kind (protocol/messages/service.ts); each kind has its own handler. A failure on one
 * connection is logged and closes that connection only.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../errors.js';
import {
  decodeKindFrame,
  encodeEnrollResponse,
  ENROLL_STATUS,
  KIND_ENROLL,
  KIND_ENROLL_STREAM,
  KIND_ENROLLER,
  KIND_KEM_PREKEY,
  KEM_PREKEY_REQUEST_LEN,
  KIND_SESSION,
  PROLOGUE_ENROLLEE_SERVICE,
  PROLOGUE_ENROLLER_SERVICE,
} from '../../protocol/messages/service.js';
import { encodeError, UNAVAILABLE_MESSAGE } from '../../protocol/messages/common.js';
import { acceptChannel, type SecureChannel } from '../../transport/channel.js';
import type { FramedConnection } from '../../transport/connection.js';
import { listenTcp, type TcpServer } from '../../transport/tcp.js';
import { closeCommitQueue, commitQueueFor } from './commits.js';
import { handleEnrollment } from './enroll.js';
import { serveEnroller } from './enrollers.js';
import type { ServiceHome } from './home.js';
import {
  DEFAULT_FAIL_RATE_PER_IP,
  DEFAULT_MAX_FRAME_LEN,
  DEFAULT_RATE_PER_ENROLLER,
  DEFAULT_RATE_PER_IP,
  LimitLog,
  limitEnrollerRequests,
  parseRate,
  peerIpKey,
  rateText,
  TokenBuckets,
  type RateSpec,
} from './limits.js';
import type { DecisionLog } from './log.js';
import { serveSession } from './session.js';
import { endPortalLinks } from '../../portal/service-outlets.js';
import { startLifecycle, stopLifecycle } from './lifecycle.js';
import type { ServiceMetrics } from '../../ops/metrics.js';
import { enrollResult } from '../../ops/labels.js';
import { ENROLLMENT_MESSAGE_V2_LEN } from '../../protocol/enrollment/constants.js';
import { enrollLifecycleFor } from './hooks.js';

export interface ServiceServerOptions {
  host: string;
  port: number;
  log: DecisionLog;
  /** Most simultaneous connections; more are refused at accept. */
  maxConnections?: number;
  /** Per-read timeout against slow peers (slow-loris). */
  readTimeoutMs?: number;
  /** Hard cap on a frame's length, read or written. Default DEFAULT_MAX_FRAME_LEN (8192). */
  maxFrameLen?: number;
  /** Enrollment messages and Noise connections per peer IP (IPv6: per /64); null turns it off. Default DEFAULT_RATE_PER_IP. */
  ratePerIp?: RateSpec | null;
  /** Requests per enroller key; null turns it off. Default DEFAULT_RATE_PER_ENROLLER. */
  ratePerEnroller?: RateSpec | null;
  /** Enrollment messages that fail to decrypt, per peer IP (IPv6: per /64); null turns it off. Default DEFAULT_FAIL_RATE_PER_IP. */
  failRatePerIp?: RateSpec | null;
  /** Counts each enrollment message's answer and its time (src/ops/metrics.ts). */
  metrics?: ServiceMetrics;
  now?: () => number;
}

export const DEFAULT_READ_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 4096;

/** Failures that are a limit doing its job: logged as `limited` (throttled), not as `error`. */
const LIMIT_OF: Partial<Record<string, string>> = {
  ERR_FRAME_TOO_LARGE: 'max-frame',
  ERR_TIMEOUT: 'read-timeout',
  ERR_CONNECTION_LIMIT: 'max-connections',
};

export async function startServiceServer(svc: ServiceHome, opts: ServiceServerOptions): Promise<TcpServer> {
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const readTimeoutMs = opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const log = opts.log;
  const maxFrameLen = opts.maxFrameLen ?? DEFAULT_MAX_FRAME_LEN;
  const ratePerIp = opts.ratePerIp === undefined ? parseRate(DEFAULT_RATE_PER_IP, 'ratePerIp') : opts.ratePerIp;
  const ratePerEnroller = opts.ratePerEnroller === undefined ? parseRate(DEFAULT_RATE_PER_ENROLLER, 'ratePerEnroller') : opts.ratePerEnroller;
  const failRatePerIp = opts.failRatePerIp === undefined ? parseRate(DEFAULT_FAIL_RATE_PER_IP, 'failRatePerIp') : opts.failRatePerIp;
  const ipBuckets = ratePerIp ? new TokenBuckets(ratePerIp) : undefined;
  const failureBuckets = failRatePerIp ? new TokenBuckets(failRatePerIp) : null;
  // Replicas on one PostgreSQL store share the per-enroller buckets (store/pg/limits.ts).
  const enrollerBuckets = ratePerEnroller
    ? svc.pg
      ? new (await import('../../store/pg/limits.js')).PgTokenBuckets(svc.pg, 'enroller', ratePerEnroller)
      : new TokenBuckets(ratePerEnroller)
    : undefined;
  const limits = new LimitLog(log);

  /**
   * KIND_ENROLL and KIND_ENROLL_STREAM (docs/protocol.md §7.2): one enrollment message, or
   * (stream) many, each answered with its ENROLL_RESPONSE before the next is read, until the
   * peer closes or sends nothing for the read timeout. A device sends one; a relay for many
   * devices skips a TCP handshake and teardown per message with a stream.
   */
  async function serveEnrollments(conn: FramedConnection, peer: string | undefined, stream: boolean): Promise<void> {
    let message: Uint8Array | undefined = await conn.readFrame(readTimeoutMs);
    while (message !== undefined) {
      // A peer that ended its side (our sockets are not half-open, so ours ended too) can no
      // longer be answered: a message still queued from it is not processed, so nothing is
      // committed that its sender would never hear of.
      if (!conn.writable) return;
      // Per-IP rate, per message, before any store access or crypto. The connection ends
      // after RATE_LIMITED: the peer is told to back off, not to keep this line busy.
      const ipWait = ipBuckets?.take(peerIpKey(peer)) ?? 0;
      if (ipWait > 0) {
        limits.limited('rate-per-ip', { peer, reason: `ERR_RATE_LIMITED: over ${ratePerIp!.text} enrollment messages from this address`, retry_ms: ipWait });
        await conn.writeFrame(encodeEnrollResponse(ENROLL_STATUS.RATE_LIMITED));
        return;
      }
      let response: Uint8Array;
      const t0 = performance.now();
      try {
        response = (
          await handleEnrollment(svc, message, now(), log, peer, {
            canAnswer: () => conn.writable,
            failuresPerSource: failureBuckets,
            onSourceLimited: (fields) => limits.limited('fail-rate-per-ip', fields),
          })
        ).response;
      } catch (err) {
        // A fault on our side (store, sealed keys): the enrollee is told to retry later,
        // with nothing recorded and nothing consumed; the precise reason stays in the log.
        const reason = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
        log('error', { peer, reason });
        response = encodeEnrollResponse(ENROLL_STATUS.UNAVAILABLE);
      }
      await conn.writeFrame(response);
      opts.metrics?.enrollment('eka', message.length === ENROLLMENT_MESSAGE_V2_LEN ? 2 : 1, enrollResult(response.length === 1 ? response[0]! : ENROLL_STATUS.ACCEPTED), (performance.now() - t0) / 1000);
      // Over --fail-rate-per-ip, as over --rate-per-ip: the connection ends.
      if (response.length === 1 && response[0] === ENROLL_STATUS.RATE_LIMITED) return;
      message = stream ? await conn.readFrameOrEnd(readTimeoutMs) : undefined;
    }
  }

  /**
   * KIND_KEM_PREKEY (docs/protocol.md §7.2): the PQSPK_A of a KEM_hash, for an enrollee
   * holding a v2 bundle. Public data, counted by the per-IP rate like an enrollment message;
   * an indexed lookup, no crypto. The enrollee checks the key against the signed hash.
   */
  async function serveKemPrekey(conn: FramedConnection, peer: string | undefined): Promise<void> {
    const request = await conn.readFrame(readTimeoutMs);
    const ipWait = ipBuckets?.take(peerIpKey(peer)) ?? 0;
    if (ipWait > 0) {
      limits.limited('rate-per-ip', { peer, reason: `ERR_RATE_LIMITED: over ${ratePerIp!.text} requests from this address`, retry_ms: ipWait });
      await conn.writeFrame(encodeEnrollResponse(ENROLL_STATUS.RATE_LIMITED));
      return;
    }
    if (request.length !== KEM_PREKEY_REQUEST_LEN) {
      log('rejected', { peer, reason: `ERR_FRAME_MALFORMED: a KEM prekey request of ${request.length} bytes, expected ${KEM_PREKEY_REQUEST_LEN}` });
      await conn.writeFrame(encodeEnrollResponse(ENROLL_STATUS.MALFORMED));
      return;
    }
    let kem;
    try {
      kem = await svc.store.getKemPrekey(request);
    } catch (err) {
      // The store is unreachable: UNAVAILABLE (retry), as for an enrollment message, never a
      // closed connection the enrollee cannot tell from a dead service.
      if (!isEnrollError(err, 'ERR_STORE')) throw err;
      log('error', { peer, reason: `${err.code}: ${err.message}` });
      await conn.writeFrame(encodeEnrollResponse(ENROLL_STATUS.UNAVAILABLE));
      return;
    }
    if (kem === undefined) {
      log('rejected', { peer, reason: `ERR_KEM_PREKEY: no KEM prekey has the hash ${toHex(request)}` });
      await conn.writeFrame(encodeEnrollResponse(ENROLL_STATUS.UNKNOWN));
      return;
    }
    await conn.writeFrame(kem.publicKey);
  }

  /**
   * A store fault on a Noise channel (enroller requests, enrollee sessions): the peer is
   * answered ERR_UNAVAILABLE (nothing was recorded; retry), never the store's own words (they
   * name its host); the precise reason goes to the log, as for an enrollment message.
   */
  async function unavailableOnStoreFault(channel: SecureChannel, peer: string | undefined, serve: () => Promise<void>): Promise<void> {
    try {
      await serve();
    } catch (err) {
      if (!isEnrollError(err, 'ERR_STORE')) throw err;
      log('error', { peer, reason: `${err.code}: ${err.message}` });
      await channel.send(encodeError(new EnrollError('ERR_UNAVAILABLE', UNAVAILABLE_MESSAGE))).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
  }

  async function onConnection(conn: FramedConnection): Promise<void> {
    const peer = conn.remoteAddress;
    const kind = decodeKindFrame(await conn.readFrame(readTimeoutMs));
    if (kind === KIND_ENROLL || kind === KIND_ENROLL_STREAM) {
      await serveEnrollments(conn, peer, kind === KIND_ENROLL_STREAM);
      return;
    }
    if (kind === KIND_KEM_PREKEY) {
      await serveKemPrekey(conn, peer);
      return;
    }
    // Per-IP rate for a Noise kind, per connection: dropped before the handshake (there is
    // no channel to carry an ERROR yet).
    const ipWait = ipBuckets?.take(peerIpKey(peer)) ?? 0;
    if (ipWait > 0) {
      limits.limited('rate-per-ip', { peer, reason: `ERR_RATE_LIMITED: over ${ratePerIp!.text} connections from this address`, retry_ms: ipWait });
      conn.destroy();
      return;
    }
    if (kind === KIND_ENROLLER) {
      const channel = await acceptChannel(conn, {
        staticKeyPair: svc.ikA,
        prologue: PROLOGUE_ENROLLER_SERVICE,
        handshakeTimeoutMs: readTimeoutMs,
      });
      const limited = enrollerBuckets
        ? limitEnrollerRequests(channel, enrollerBuckets, (enroller, waitMs) =>
            limits.limited('rate-per-enroller', { peer, enroller, reason: `ERR_RATE_LIMITED: over ${ratePerEnroller!.text} requests from this enroller`, retry_ms: waitMs }),
          )
        : channel;
      // Tracked by key, so that a revocation closes it at once (lifecycle.ts).
      await lifecycle.track('enroller', channel, () => unavailableOnStoreFault(channel, peer, () => serveEnroller(svc, limited, log, { now, ...(peer ? { peer } : {}) })));
      return;
    }
    if (kind === KIND_SESSION) {
      const channel = await acceptChannel(conn, {
        staticKeyPair: svc.ikA,
        prologue: PROLOGUE_ENROLLEE_SERVICE,
        handshakeTimeoutMs: readTimeoutMs,
      });
      await lifecycle.track('session', channel, () => unavailableOnStoreFault(channel, peer, () => serveSession(svc, channel, log, now)));
    }
  }

  // Revocations, rotations and announcements made by other processes (docs/protocol.md §7.9).
  const lifecycle = await startLifecycle(svc, log);
  // The commit thread opens its connection while the listener comes up (commits.ts).
  commitQueueFor(svc.store).start();
  const listening = listenTcp({
    host: opts.host,
    port: opts.port,
    maxConnections: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    connection: { readTimeoutMs, maxFrameLen },
    onConnection,
    onError(err, conn) {
      const limit = err instanceof EnrollError ? LIMIT_OF[err.code] : undefined;
      if (limit !== undefined) {
        limits.limited(limit, { peer: conn?.remoteAddress, reason: `${(err as EnrollError).code}: ${(err as EnrollError).message}` });
        return;
      }
      const e = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
      log('error', { peer: conn?.remoteAddress, reason: e });
    },
  });
  let server: TcpServer;
  try {
    server = await listening;
  } catch (err) {
    stopLifecycle(svc);
    await closeCommitQueue(svc.store);
    throw err;
  }
  const a = server.address();
  log('listening', {
    address: `${a.host}:${a.port}`,
    service_key: toHex(svc.ikA.publicKey),
    enroll_address: svc.settings.address,
    max_frame: maxFrameLen,
    read_timeout_ms: readTimeoutMs,
    max_connections: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    rate_per_ip: rateText(ratePerIp),
    rate_per_enroller: rateText(ratePerEnroller),
    fail_rate_per_ip: rateText(failRatePerIp),
    max_failed_attempts: svc.settings.maxFailedAttempts,
    workers: enrollLifecycleFor(svc)?.pool?.size ?? 0,
    store: svc.location.masked,
  });
  return {
    address: () => server.address(),
    get connections() {
      return server.connections;
    },
    // Then the enrollments still being committed finish, and the commit thread stops.
    close: async () => {
      endPortalLinks(svc);
      await server.close();
      stopLifecycle(svc);
      await closeCommitQueue(svc.store);
    },
    // SIGTERM (README "Graceful shutdown"): answers in flight are written, their commits
    // durable, before the commit thread stops.
    drain: async (timeoutMs: number) => {
      endPortalLinks(svc);
      await server.drain(timeoutMs);
      stopLifecycle(svc);
      await closeCommitQueue(svc.store);
    },
  };
}
