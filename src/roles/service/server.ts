/**
 * `service start`: one TCP listener for every party. The first frame of a connection names
 * its kind (protocol/messages/service.ts); each kind has its own handler. A failure on one
 * connection is logged and closes that connection only.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import {
  decodeKindFrame,
  encodeEnrollResponse,
  ENROLL_STATUS,
  KIND_ENROLL,
  KIND_ENROLLER,
  KIND_SESSION,
  PROLOGUE_ENROLLEE_SERVICE,
  PROLOGUE_ENROLLER_SERVICE,
} from '../../protocol/messages/service.js';
import { acceptChannel } from '../../transport/channel.js';
import type { FramedConnection } from '../../transport/connection.js';
import { listenTcp, type TcpServer } from '../../transport/tcp.js';
import { handleEnrollment } from './enroll.js';
import { serveEnroller } from './enrollers.js';
import type { ServiceHome } from './home.js';
import type { DecisionLog } from './log.js';
import { serveSession } from './session.js';

export interface ServiceServerOptions {
  host: string;
  port: number;
  log: DecisionLog;
  /** Most simultaneous connections; more are refused at accept. */
  maxConnections?: number;
  /** Per-read timeout against slow peers (slow-loris). */
  readTimeoutMs?: number;
  /** Hard cap on a frame's length. */
  maxFrameLen?: number;
  now?: () => number;
}

export const DEFAULT_READ_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 4096;

export async function startServiceServer(svc: ServiceHome, opts: ServiceServerOptions): Promise<TcpServer> {
  const now = opts.now ?? (() => Math.floor(Date.now() / 1000));
  const readTimeoutMs = opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
  const log = opts.log;

  async function onConnection(conn: FramedConnection): Promise<void> {
    const peer = conn.remoteAddress;
    const kind = decodeKindFrame(await conn.readFrame(readTimeoutMs));
    if (kind === KIND_ENROLL) {
      const message = await conn.readFrame(readTimeoutMs);
      let response: Uint8Array;
      try {
        response = (await handleEnrollment(svc, message, now(), log, peer)).response;
      } catch (err) {
        // A fault on our side (store, sealed keys): the enrollee is told to retry later,
        // with nothing recorded and nothing consumed; the precise reason stays in the log.
        const reason = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
        log('error', { peer, reason });
        response = encodeEnrollResponse(ENROLL_STATUS.UNAVAILABLE);
      }
      await conn.writeFrame(response);
      await conn.end();
      return;
    }
    if (kind === KIND_ENROLLER) {
      const channel = await acceptChannel(conn, {
        staticKeyPair: svc.ikA,
        prologue: PROLOGUE_ENROLLER_SERVICE,
        handshakeTimeoutMs: readTimeoutMs,
      });
      await serveEnroller(svc, channel, log, { now, ...(peer ? { peer } : {}) });
      return;
    }
    if (kind === KIND_SESSION) {
      const channel = await acceptChannel(conn, {
        staticKeyPair: svc.ikA,
        prologue: PROLOGUE_ENROLLEE_SERVICE,
        handshakeTimeoutMs: readTimeoutMs,
      });
      await serveSession(svc, channel, log, now);
    }
  }

  const server = await listenTcp({
    host: opts.host,
    port: opts.port,
    maxConnections: opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS,
    connection: { readTimeoutMs, ...(opts.maxFrameLen ? { maxFrameLen: opts.maxFrameLen } : {}) },
    onConnection,
    onError(err, conn) {
      const e = err instanceof EnrollError ? `${err.code}: ${err.message}` : `internal: ${(err as Error)?.message ?? String(err)}`;
      log('error', { peer: conn?.remoteAddress, reason: e });
    },
  });
  const a = server.address();
  log('listening', { address: `${a.host}:${a.port}`, service_key: toHex(svc.ikA.publicKey), enroll_address: svc.settings.address });
  return server;
}
