/**
 * The load generator: sends precomputed enrollment messages over C concurrent TCP
 * connections, one connection per message as the protocol has it (KIND_ENROLL frame, the
 * message frame, read one ENROLL_RESPONSE frame, the service closes). Raw sockets and
 * prebuilt frames, so that the generator, which shares the machine's cores with the
 * service, spends as little CPU as it can.
 */
import { connect } from 'node:net';
import { KIND_ENROLL } from '../src/protocol/messages/service.js';

/** Frame header (2) + kind (1) + frame header (2) + message (176). */
export const REQUEST_LEN = 2 + 1 + 2 + 176;

/** Prebuilds the bytes of `messages` as one buffer, REQUEST_LEN bytes per request. */
export function buildRequests(count: number, message: (i: number) => Uint8Array): Buffer {
  const out = Buffer.alloc(count * REQUEST_LEN);
  for (let i = 0; i < count; i++) {
    const o = i * REQUEST_LEN;
    const m = message(i);
    if (m.length !== 176) throw new Error(`message ${i} is ${m.length} bytes`);
    out[o] = 0;
    out[o + 1] = 1;
    out[o + 2] = KIND_ENROLL;
    out[o + 3] = 0;
    out[o + 4] = 176;
    out.set(m, o + 5);
  }
  return out;
}

export interface LoadResult {
  count: number;
  concurrency: number;
  wall_s: number;
  per_s: number;
  latency_ms: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** Responses by status byte (0 accepted, 4 unknown, …); "none" when no response came. */
  statuses: Record<string, number>;
  /** Response payloads (status ‖ sealed acceptance), when `keep` was asked for. */
  responses?: (Buffer | undefined)[];
}

export async function runLoad(opts: {
  host: string;
  port: number;
  requests: Buffer;
  concurrency: number;
  keep?: boolean;
  timeoutMs?: number;
}): Promise<LoadResult> {
  const count = opts.requests.length / REQUEST_LEN;
  const latency = new Float64Array(count);
  const status = new Int16Array(count).fill(-1);
  const responses: (Buffer | undefined)[] | undefined = opts.keep ? new Array(count) : undefined;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let next = 0;

  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const s = connect({ host: opts.host, port: opts.port, noDelay: true });
      let buf: Buffer | undefined;
      s.write(opts.requests.subarray(i * REQUEST_LEN, (i + 1) * REQUEST_LEN));
      s.on('data', (d: Buffer) => {
        if (status[i] !== -1) return;
        buf = buf ? Buffer.concat([buf, d]) : d;
        if (buf.length < 2) return;
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len || len === 0) return;
        latency[i] = performance.now() - t0;
        status[i] = buf[2]!;
        if (responses) responses[i] = Buffer.from(buf.subarray(2, 2 + len));
      });
      // The service ends its side after the response; with allowHalfOpen off ours follows,
      // so the service is the active closer and TIME_WAIT never eats our ephemeral ports.
      s.on('error', () => {});
      s.setTimeout(timeoutMs, () => s.destroy());
      s.once('close', () => resolve());
    });

  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(opts.concurrency, count) }, async () => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        await one(i);
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;

  const statuses: Record<string, number> = {};
  const lat: number[] = [];
  for (let i = 0; i < count; i++) {
    const k = status[i] === -1 ? 'none' : String(status[i]);
    statuses[k] = (statuses[k] ?? 0) + 1;
    if (status[i] !== -1) lat.push(latency[i]!);
  }
  lat.sort((a, b) => a - b);
  const pct = (p: number) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]! : NaN);
  const r2 = (x: number) => Math.round(x * 100) / 100;
  return {
    count,
    concurrency: opts.concurrency,
    wall_s: r2(wall),
    per_s: Math.round(count / wall),
    latency_ms: {
      p50: r2(pct(0.5)),
      p90: r2(pct(0.9)),
      p99: r2(pct(0.99)),
      max: r2(lat[lat.length - 1] ?? NaN),
      mean: r2(lat.reduce((a, b) => a + b, 0) / (lat.length || 1)),
    },
    statuses,
    ...(responses ? { responses } : {}),
  };
}
