/**
 * The service's Prometheus metrics (docs/operations.md "Metrics"), through prom-client, on a
 * registry of the service's own (never the global one: a library user's process may have
 * its own). Every label value comes from a closed set (an enrollment status, an error code
 * of src/errors.ts, an EKA version, a method), so the number of series is bounded whatever
 * peers send: never an enrollee id, a key, an address or a name as a label.
 *
 * Callers record through the small API below (`enrollment`, `rejection`, `bundlesIssued`,
 * `storeQuery`); gauges that describe state (enrollees by state, open connections, the
 * PostgreSQL pool) are read when scraped, through `gauge sources` set by `service start`.
 * Portal streams and their bytes are counted from the decision log too, by service outlet
 * (the operator's configured name: bounded).
 *
 * Loaded only by a service with --metrics-listen: counts that are never served cannot be
 * read, and prom-client (with @opentelemetry/api) is about a tenth of a start-up (issue 24).
 * The labels that the enrollment path computes live in ./labels.ts, free of prom-client.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { codeLabel } from './labels.js';
import { OPEN_STATUS_NAMES } from '../protocol/portal/open.js';
import type { DecisionLog } from '../roles/service/log.js';

/** A stream's `outlet` label: a service outlet's name (opened ones only exist), else `device`. */
function outletLabel(fields: Record<string, unknown>): string {
  const target = typeof fields.target === 'string' ? fields.target : '';
  if (fields.relayed === true || !target.startsWith('service/')) return 'device';
  return target.slice('service/'.length);
}

/** A refused stream's `result` label: its open status (src/protocol/portal/open.ts), else `other`. */
const REFUSALS: ReadonlySet<string> = new Set(Object.values(OPEN_STATUS_NAMES).filter((n) => n !== 'ok'));
function refusalLabel(reason: unknown): string {
  const name = typeof reason === 'string' ? reason.split(':', 1)[0]!.trim() : '';
  return REFUSALS.has(name) ? name.replace(/ /g, '_') : 'other';
}

export interface GaugeSources {
  /** Enrollees by state (store.counts()). */
  enrollees?: () => Promise<Record<string, number>>;
  /** Open connections on the enrollment listener. */
  connections?: () => number;
  /** Bundles in stock at enrollers and approved ones not yet used (status.ts bundleStock). */
  bundles?: () => Promise<{ in_stock: number; approved: number }>;
  /** Open Noise channels by kind: enroller channels and enrollee sessions. */
  channels?: () => Record<string, number>;
  /** The PostgreSQL pool: connections open, idle, and queries waiting for one. */
  pgPool?: () => { total: number; idle: number; waiting: number };
}

export class ServiceMetrics {
  readonly registry = new Registry();
  readonly #enrollments: Counter<'method' | 'eka' | 'result'>;
  readonly #rejections: Counter<'code'>;
  readonly #enrollSeconds: Histogram<'method'>;
  readonly #bundles: Counter;
  readonly #storeSeconds: Histogram;
  readonly #streams: Counter<'outlet' | 'result'>;
  readonly #streamBytes: Counter<'outlet' | 'direction'>;
  #sources: GaugeSources = {};

  constructor() {
    const registers = [this.registry];
    this.#enrollments = new Counter({
      name: 'ockam_enroll_enrollments_total',
      help: 'Enrollment requests answered, by method (eka: a bundle; token: HTTPS), EKA version (1, 2; none for token) and result (accepted or the refusal).',
      labelNames: ['method', 'eka', 'result'],
      registers,
    });
    this.#rejections = new Counter({
      name: 'ockam_enroll_rejections_total',
      help: 'Requests refused, by the precise error code the service logged (the peer sees an opaque one).',
      labelNames: ['code'],
      registers,
    });
    this.#enrollSeconds = new Histogram({
      name: 'ockam_enroll_enroll_seconds',
      help: 'Time from an enrollment message read to its answer written (commit included), by method.',
      labelNames: ['method'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#bundles = new Counter({ name: 'ockam_enroll_bundles_issued_total', help: 'Bundles issued to enrollers.', registers });
    // Portals (docs/portals.md): `outlet` is a service outlet's configured name (the operator's,
    // so bounded), `device` for every stream relayed to a device outlet (device and outlet
    // names are the devices', so not labels), `none` for a refusal (the name is the peer's).
    this.#streams = new Counter({
      name: 'ockam_enroll_portal_streams_total',
      help: 'Portal streams asked for, by service outlet (device: relayed to a device outlet; none: refused) and result (opened, or the refusal: unknown_outlet, not_allowed, …).',
      labelNames: ['outlet', 'result'],
      registers,
    });
    this.#streamBytes = new Counter({
      name: 'ockam_enroll_portal_bytes_total',
      help: 'Bytes carried by closed portal streams, by service outlet (device: relayed) and direction (in: inlet to target; out: back).',
      labelNames: ['outlet', 'direction'],
      registers,
    });
    this.#storeSeconds = new Histogram({
      name: 'ockam_enroll_store_query_seconds',
      help: 'Latency of the readiness query to the store (the one /readyz runs).',
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2],
      registers,
    });
    const sources = () => this.#sources;
    new Gauge({
      name: 'ockam_enroll_enrollees',
      help: 'Enrollees in the store, by state (pending: approved, not yet enrolled).',
      labelNames: ['state'],
      registers,
      async collect() {
        const f = sources().enrollees;
        if (!f) return;
        try {
          for (const [state, n] of Object.entries(await f())) this.set({ state }, n);
        } catch {
          // The store is down: the series keep their last values; /readyz says why.
        }
      },
    });
    new Gauge({
      name: 'ockam_enroll_bundles',
      help: 'Unexpired bundles holding an unused one-time prekey, by state (in_stock: issued to an enroller, not yet approved for a device; approved: approved, the device has not enrolled yet).',
      labelNames: ['state'],
      registers,
      async collect() {
        const f = sources().bundles;
        if (!f) return;
        try {
          const b = await f();
          this.set({ state: 'in_stock' }, b.in_stock);
          this.set({ state: 'approved' }, b.approved);
        } catch {
          // The store is down: the series keep their last values; /readyz says why.
        }
      },
    });
    new Gauge({
      name: 'ockam_enroll_live_channels',
      help: 'Noise channels open on the enrollment listener, by kind (enroller: an enroller fetching bundles or approving; session: an enrolled device\'s session).',
      labelNames: ['kind'],
      registers,
      collect() {
        const f = sources().channels;
        if (!f) return;
        for (const [kind, n] of Object.entries(f())) this.set({ kind }, n);
      },
    });
    new Gauge({
      name: 'ockam_enroll_open_connections',
      help: 'Connections open on the enrollment listener (enrollment messages, enroller channels, enrollee sessions).',
      registers,
      collect() {
        const f = sources().connections;
        if (f) this.set(f());
      },
    });
    new Gauge({
      name: 'ockam_enroll_pg_pool_connections',
      help: 'The PostgreSQL pool: connections open (total), idle, and queries waiting for a connection (waiting).',
      labelNames: ['state'],
      registers,
      collect() {
        const f = sources().pgPool;
        if (!f) return;
        const p = f();
        this.set({ state: 'total' }, p.total);
        this.set({ state: 'idle' }, p.idle);
        this.set({ state: 'waiting' }, p.waiting);
      },
    });
  }

  setSources(sources: GaugeSources): void {
    this.#sources = sources;
  }

  /** One enrollment message answered (EKA) or one token redeemed (token). */
  enrollment(method: 'eka' | 'token', eka: 1 | 2 | undefined, result: string, seconds?: number): void {
    this.#enrollments.inc({ method, eka: eka === undefined ? 'none' : String(eka), result });
    if (seconds !== undefined) this.#enrollSeconds.observe({ method }, seconds);
  }

  rejection(code: string): void {
    this.#rejections.inc({ code });
  }

  bundlesIssued(n: number): void {
    this.#bundles.inc(n);
  }

  storeQuery(seconds: number): void {
    this.#storeSeconds.observe(seconds);
  }

  /**
   * The decision log, counted: refusals by code, bundles issued, token enrollments. What the
   * log already says once is counted from it, so no request path needs a second hook.
   */
  tap(log: DecisionLog): DecisionLog {
    return (decision, fields) => {
      if (decision === 'rejected' || decision.endsWith('-refused')) this.rejection(codeLabel(fields.reason));
      if (decision === 'bundles' && typeof fields.count === 'number') this.bundlesIssued(fields.count);
      if (decision === 'cert-issued') this.enrollment('token', undefined, 'accepted');
      if (decision === 'cert-refused') this.enrollment('token', undefined, codeLabel(fields.reason));
      if (decision === 'stream-opened') this.#streams.inc({ outlet: outletLabel(fields), result: 'opened' });
      if (decision === 'stream-refused') this.#streams.inc({ outlet: 'none', result: refusalLabel(fields.reason) });
      if (decision === 'stream-closed') {
        const outlet = outletLabel(fields);
        if (typeof fields.bytes_in === 'number') this.#streamBytes.inc({ outlet, direction: 'in' }, fields.bytes_in);
        if (typeof fields.bytes_out === 'number') this.#streamBytes.inc({ outlet, direction: 'out' }, fields.bytes_out);
      }
      log(decision, fields);
    };
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
