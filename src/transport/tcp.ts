/**
 * TCP client and server that hand out {@link FramedConnection}s.
 *
 * The server is the network-facing part of the service: a handler that throws, a flood of
 * connections, or a peer that resets mid-write must cost at most that one connection, and
 * never the process.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { EnrollError } from '../errors.js';
import { checkHost, formatAddress, parseAddress, type TcpAddress } from './address.js';
import {
  checkConnectionOptions,
  checkTimeoutMs,
  FramedConnection,
  type FramedConnectionOptions,
} from './connection.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CONNECTIONS = 1024;
/**
 * After a handler has finished and our side is ended, how long the peer gets to close its
 * side before the socket is destroyed; a peer that never sends FIN would otherwise hold a
 * connection slot forever.
 */
export const SERVER_LINGER_MS = 5_000;

export interface ConnectTcpOptions extends FramedConnectionOptions {
  /** How long the TCP connect may take, in ms; 0 or Infinity disables it. Default 10 000. */
  connectTimeoutMs?: number;
  /** What the user should check when nobody answers (default: is the service running there?). */
  unreachableHint?: string;
}

/** Connect errors that mean "nobody is there", reported as ERR_UNREACHABLE. */
const UNREACHABLE: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  EAI_FAIL: 'host name lookup failed',
  EAI_NONAME: 'host not found',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EHOSTDOWN: 'host is down',
  ENETDOWN: 'network is down',
  ECONNRESET: 'connection reset',
  EADDRNOTAVAIL: 'address not available',
};

function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; errors?: unknown } | null;
  if (typeof e?.code === 'string') return e.code;
  // With autoSelectFamily (node 20's default) a failure on every address of a name comes as
  // an AggregateError whose own code is unset.
  if (Array.isArray(e?.errors)) {
    for (const inner of e.errors) {
      const c = errorCode(inner);
      if (c !== undefined) return c;
    }
  }
  return undefined;
}

function checkAddress(address: unknown): TcpAddress {
  if (typeof address === 'string') return parseAddress(address);
  const a = address as { host?: unknown; port?: unknown } | null;
  if (a === null || typeof a !== 'object' || typeof a.host !== 'string') {
    throw new EnrollError('ERR_ADDRESS', 'invalid address: expected "tcp://HOST:PORT" or { host, port }', {
      hint: 'expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000',
    });
  }
  const { host, port } = a;
  checkHost(host);
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new EnrollError('ERR_ADDRESS', `invalid address: port must be 1..65535, got ${String(port)}`, {
      hint: 'expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:4000',
    });
  }
  return { host, port };
}

/**
 * Opens a TCP connection (TCP_NODELAY: handshake messages are small and latency-bound).
 * Rejects with ERR_ADDRESS for a malformed address, ERR_UNREACHABLE when nobody answers
 * (refused, unknown host, no route) and ERR_TIMEOUT when the connect takes too long.
 */
export async function connectTcp(
  address: string | TcpAddress,
  opts: ConnectTcpOptions = {},
): Promise<FramedConnection> {
  const addr = checkAddress(address);
  checkConnectionOptions(opts);
  const timeoutMs = checkTimeoutMs(opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 'connectTimeoutMs');
  const where = formatAddress(addr);
  const hint = opts.unreachableHint ?? `is \`ockam-enroll service start\` running at ${where}?`;
  const connOpts: FramedConnectionOptions = {};
  if (opts.maxFrameLen !== undefined) connOpts.maxFrameLen = opts.maxFrameLen;
  if (opts.readTimeoutMs !== undefined) connOpts.readTimeoutMs = opts.readTimeoutMs;

  return new Promise<FramedConnection>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const socket = connect({ host: addr.host, port: addr.port });
    const fail = (err: EnrollError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    const onError = (cause: unknown): void => {
      const code = errorCode(cause);
      if (code === 'ETIMEDOUT') {
        fail(new EnrollError('ERR_TIMEOUT', `connecting to ${where} timed out`, { cause, hint }));
        return;
      }
      const why = (code !== undefined ? UNREACHABLE[code] : undefined) ?? `connect failed${code ? ` (${code})` : ''}`;
      fail(new EnrollError('ERR_UNREACHABLE', `cannot reach ${where}: ${why}`, { cause, hint }));
    };
    // Stays attached until FramedConnection has its own listener, so no 'error' goes unheard.
    socket.on('error', onError);
    socket.once('connect', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.setNoDelay(true);
      const conn = FramedConnection.fromSocket(socket, connOpts);
      socket.off('error', onError);
      resolve(conn);
    });
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        fail(new EnrollError('ERR_TIMEOUT', `connecting to ${where} timed out after ${timeoutMs} ms`, { hint }));
      }, timeoutMs);
    }
  });
}

export interface ListenTcpOptions {
  /** Interface to bind, e.g. "127.0.0.1", "0.0.0.0" or "::". */
  host: string;
  /** Port to bind; 0 lets the OS pick (see `address()`). */
  port: number;
  /** Open connections allowed at once; more are destroyed on arrival. Default 1024. */
  maxConnections?: number;
  /** Options for every accepted connection. */
  connection?: FramedConnectionOptions;
  /**
   * Serves one connection. The connection lives as long as the returned promise: once it
   * resolves the connection is ended gracefully (then destroyed if the peer has not closed
   * within {@link SERVER_LINGER_MS}); if it throws or rejects, the error goes to `onError`
   * and the connection is destroyed. Either way the server keeps serving. A handler must
   * therefore return (or await) its work rather than start it and return.
   */
  onConnection: (conn: FramedConnection) => void | Promise<void>;
  /**
   * Told about every failure that is not the caller's to handle: handler errors (with their
   * connection), connections dropped over `maxConnections` (ERR_CONNECTION_LIMIT) and server
   * errors. Exceptions thrown from here are ignored. Default: ignore.
   */
  onError?: (err: unknown, conn?: FramedConnection) => void;
}

export interface TcpServer {
  /** The bound address (the real port when listening on port 0). */
  address(): TcpAddress;
  /** Connections currently open. */
  readonly connections: number;
  /** Stops accepting, destroys open connections, and resolves once all are closed. Idempotent. */
  close(): Promise<void>;
  /**
   * A graceful stop: stops accepting at once, lets the handlers in flight finish (their
   * answers written) for at most `timeoutMs`, then closes as close() does.
   */
  drain(timeoutMs: number): Promise<void>;
}

class TcpServerImpl implements TcpServer {
  readonly #server: Server;
  readonly #conns = new Set<FramedConnection>();
  readonly #max: number;
  readonly #connOpts: FramedConnectionOptions;
  readonly #onConnection: ListenTcpOptions['onConnection'];
  readonly #onError: ListenTcpOptions['onError'];
  #address: TcpAddress | undefined;
  #closing: Promise<void> | undefined;
  #draining = false;
  /** Handlers that have not returned yet. */
  readonly #inFlight = new Set<Promise<void>>();

  constructor(server: Server, opts: ListenTcpOptions, max: number) {
    this.#server = server;
    this.#max = max;
    this.#connOpts = { ...opts.connection };
    this.#onConnection = opts.onConnection;
    this.#onError = opts.onError;
    server.on('connection', (socket: Socket) => this.#accept(socket));
    // Errors after listen() succeeded (rare: e.g. accept failing under fd exhaustion).
    // (Errors from listen() itself reject listenTcp instead.)
    server.on('error', (err: unknown) => {
      if (server.listening) this.#report(err);
    });
  }

  setAddress(): void {
    const info = this.#server.address() as AddressInfo;
    this.#address = { host: info.address, port: info.port };
  }

  address(): TcpAddress {
    return { ...this.#address! };
  }

  get connections(): number {
    return this.#conns.size;
  }

  async drain(timeoutMs: number): Promise<void> {
    if (!this.#draining && this.#closing === undefined) {
      this.#draining = true;
      this.#server.close(); // no new connections; close() below waits for the callback
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        (async () => {
          while (this.#inFlight.size > 0) await Promise.allSettled([...this.#inFlight]);
        })(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    return this.close();
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      const stopped = this.#server.listening ? new Promise<void>((resolve) => this.#server.close(() => resolve())) : Promise.resolve();
      const open = [...this.#conns];
      for (const conn of open) conn.destroy();
      await Promise.all([stopped, ...open.map((c) => c.closed)]);
    })();
    return this.#closing;
  }

  #report(err: unknown, conn?: FramedConnection): void {
    try {
      this.#onError?.(err, conn);
    } catch {
      // A failing error callback must not take the server down with it.
    }
  }

  #accept(socket: Socket): void {
    // Until FramedConnection attaches its own, a reset would otherwise be an unheard 'error'.
    socket.on('error', () => {});
    if (this.#closing !== undefined || this.#draining) {
      socket.destroy();
      return;
    }
    if (this.#conns.size >= this.#max) {
      const from = socket.remoteAddress ?? 'unknown peer';
      socket.destroy();
      this.#report(
        new EnrollError(
          'ERR_CONNECTION_LIMIT',
          `dropped a connection from ${from}: ${this.#max} connections already open`,
          { hint: 'raise maxConnections, or look for a client that does not close its connections' },
        ),
      );
      return;
    }
    socket.setNoDelay(true);
    let conn: FramedConnection;
    try {
      conn = FramedConnection.fromSocket(socket, this.#connOpts);
    } catch (err) {
      socket.destroy();
      this.#report(err);
      return;
    }
    this.#conns.add(conn);
    void conn.closed.then(() => this.#conns.delete(conn));
    // Promise.resolve().then: a synchronous throw becomes a rejection too.
    const handled: Promise<void> = Promise.resolve()
      .then(() => this.#onConnection(conn))
      .then(
        () => this.#finish(conn),
        (err: unknown) => {
          this.#report(err, conn);
          conn.destroy();
        },
      )
      .finally(() => this.#inFlight.delete(handled));
    this.#inFlight.add(handled);
  }

  #finish(conn: FramedConnection): void {
    void conn.end().then(() => {
      if (conn.destroyed) return;
      const timer = setTimeout(() => conn.destroy(), SERVER_LINGER_MS);
      timer.unref();
      void conn.closed.then(() => clearTimeout(timer));
    });
  }
}

/**
 * Listens for TCP connections and passes each, framed, to `onConnection`. Rejects with
 * ERR_LISTEN when the address cannot be bound (in use, not permitted, not local).
 */
export async function listenTcp(opts: ListenTcpOptions): Promise<TcpServer> {
  if (opts === null || typeof opts !== 'object') {
    throw new EnrollError('ERR_INVALID_ARG', '"options" expected an object');
  }
  checkHost(opts.host);
  const { port } = opts;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new EnrollError('ERR_ADDRESS', `invalid listen port: must be 0..65535, got ${String(port)}`);
  }
  const max = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1) {
    throw new EnrollError('ERR_INVALID_ARG', `"maxConnections" must be an integer >= 1, got ${String(max)}`);
  }
  if (typeof opts.onConnection !== 'function') {
    throw new EnrollError('ERR_INVALID_ARG', '"onConnection" expected a function');
  }
  if (opts.onError !== undefined && typeof opts.onError !== 'function') {
    throw new EnrollError('ERR_INVALID_ARG', '"onError" expected a function');
  }
  checkConnectionOptions(opts.connection, 'connection');

  const server = createServer();
  // Built before listen() so that no connection can arrive without its handler.
  const tcp = new TcpServerImpl(server, opts, max);
  const where = formatAddress({ host: opts.host, port });
  await new Promise<void>((resolve, reject) => {
    const onListenError = (cause: unknown): void => {
      const code = errorCode(cause);
      const hint =
        code === 'EADDRINUSE'
          ? 'is another service already listening there? pick another port'
          : code === 'EACCES'
            ? 'ports below 1024 need privileges; pick a higher port'
            : code === 'EADDRNOTAVAIL'
              ? 'the host must be an address of this machine, e.g. 127.0.0.1 or 0.0.0.0'
              : undefined;
      reject(
        new EnrollError('ERR_LISTEN', `cannot listen on ${where}${code ? ` (${code})` : ''}`, {
          cause,
          ...(hint !== undefined ? { hint } : {}),
        }),
      );
    };
    server.once('error', onListenError);
    server.listen({ host: opts.host, port }, () => {
      server.off('error', onListenError);
      resolve();
    });
  });
  tcp.setAddress();
  return tcp;
}
