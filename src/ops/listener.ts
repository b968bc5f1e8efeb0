/**
 * `service start --metrics-listen HOST:PORT` (docs/operations.md): a plain-HTTP listener of
 * its own, never the enrollment port, for the balancer and Prometheus:
 * - GET /healthz: 200 while the process is up (a liveness check: restart it if this fails);
 * - GET /readyz: 200 only when the store answers its readiness query within READY_BOUND_MS
 *   and the keys are loaded; else 503 with a one-line reason (e.g. PostgreSQL unreachable).
 *   A balancer (haproxy `option httpchk GET /readyz`) sends no devices to a replica that
 *   could only answer UNAVAILABLE;
 * - GET /metrics: the Prometheus text format (metrics.ts).
 * It serves nothing secret: no key, no enrollee id, the store's location only masked.
 */
import { createServer, type Server } from 'node:http';
import { EnrollError } from '../errors.js';
import type { ServiceMetrics } from './metrics.js';

/** How long /readyz waits for the store's answer before it says 503. */
export const READY_BOUND_MS = 2_000;

export interface Readiness {
  /** Runs one real query on the store (throws when it cannot). */
  query(): Promise<void>;
  /** Whether the service's keys are loaded (false while starting or stopping). */
  keysLoaded(): boolean;
  /** A reason that overrides the query, e.g. "stopping" during a drain. */
  notReady?(): string | undefined;
}

export interface MetricsListener {
  address(): { host: string; port: number };
  close(): Promise<void>;
}

/** Resolves to undefined when ready, or the one-line reason it is not. */
export async function checkReady(r: Readiness, metrics?: ServiceMetrics, boundMs = READY_BOUND_MS): Promise<string | undefined> {
  const override = r.notReady?.();
  if (override !== undefined) return override;
  if (!r.keysLoaded()) return 'the service keys are not loaded';
  const t0 = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const answered = await Promise.race([
      r.query().then(() => true),
      new Promise<false>((resolve) => {
        timer = setTimeout(() => resolve(false), boundMs);
      }),
    ]);
    if (!answered) return `the store did not answer within ${boundMs / 1000} s`;
    metrics?.storeQuery((performance.now() - t0) / 1000);
    return undefined;
  } catch (err) {
    // The store's own words name its host (masked): fine for the operator's balancer, and
    // never a password (PgDatabase.wrap scrubs it).
    return `the store cannot be queried: ${err instanceof EnrollError ? err.message : 'internal error'}`.replace(/\s+/g, ' ').slice(0, 300);
  } finally {
    clearTimeout(timer);
  }
}

export async function startMetricsListener(opts: { host: string; port: number; metrics: ServiceMetrics; readiness: Readiness }): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const reply = (status: number, type: string, body: string) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'text/plain; charset=utf-8', 'only GET and HEAD\n');
    if (path === '/healthz') return reply(200, 'text/plain; charset=utf-8', 'ok\n');
    if (path === '/readyz') {
      void checkReady(opts.readiness, opts.metrics).then((why) => (why === undefined ? reply(200, 'text/plain; charset=utf-8', 'ready\n') : reply(503, 'text/plain; charset=utf-8', `not ready: ${why}\n`)));
      return;
    }
    if (path === '/metrics') {
      void opts.metrics.text().then(
        (text) => reply(200, opts.metrics.contentType, text),
        () => reply(500, 'text/plain; charset=utf-8', 'metrics failed\n'),
      );
      return;
    }
    reply(404, 'text/plain; charset=utf-8', 'not found: /healthz, /readyz, /metrics\n');
  });
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.maxConnections = 256;
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) =>
      reject(
        new EnrollError('ERR_LISTEN', `cannot listen for metrics on ${opts.host}:${opts.port}: ${err.code ?? err.message}`, {
          cause: err,
          hint: err.code === 'EADDRINUSE' ? 'another process holds that port: choose another --metrics-listen' : 'check --metrics-listen',
        }),
      );
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  return {
    address() {
      const a = server.address();
      return typeof a === 'object' && a ? { host: a.address, port: a.port } : { host: opts.host, port: opts.port };
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
