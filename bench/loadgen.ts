/**
 * The load generator: sends precomputed enrollment messages over C concurrent TCP
 * connections. Two ways, as docs/protocol.md §7.2 allows:
 * - `stream` (the default): C KIND_ENROLL_STREAM connections, each carrying its share of the
 *   messages one after another (the next once the last is answered), as a relay for many
 *   devices would;
 * - `per-message`: one KIND_ENROLL connection per message, as each device's own `enrollee
 *   join` does (kind frame, message frame, one ENROLL_RESPONSE frame, the service closes).
 * Raw sockets and prebuilt frames, so that the generator, which shares the machine's cores
 * with the service, spends as little CPU as it can.
 */
import { connect, type Socket } from 'node:net';
import { ENROLL_STATUS, KIND_ENROLL, KIND_ENROLL_STREAM } from '../src/protocol/messages/service.js';

export type ConnectionMode = 'stream' | 'per-message';

const RATE_LIMITED = ENROLL_STATUS.RATE_LIMITED;

/** A message frame: header (2) + message (176). */
export const MESSAGE_FRAME_LEN = 2 + 176;

/** Prebuilds the message frames of `messages` as one buffer, all of one length (2 + 176 or 2 + 1265 bytes each). */
export function buildRequests(count: number, message: (i: number) => Uint8Array): Buffer {
  // Every message of one buffer has the length of the first: 176 (EKA v1) or 1265 (v2).
  const len = count > 0 ? message(0).length : 176;
  if (len !== 176 && len !== 1265) throw new Error(`message 0 is ${len} bytes`);
  const frameLen = 2 + len;
  const out = Buffer.alloc(count * frameLen);
  for (let i = 0; i < count; i++) {
    const o = i * frameLen;
    const m = message(i);
    if (m.length !== len) throw new Error(`message ${i} is ${m.length} bytes, message 0 ${len}`);
    out.writeUInt16BE(len, o);
    out.set(m, o + 2);
  }
  return out;
}

/** The frame length of a buffer of buildRequests: its first frame's. */
function frameLenOf(requests: Buffer): number {
  return requests.length === 0 ? MESSAGE_FRAME_LEN : 2 + requests.readUInt16BE(0);
}

/** A kind frame: header (2) + kind (1). */
function kindFrameBytes(kind: number): Buffer {
  return Buffer.from([0, 1, kind]);
}

/**
 * Reads ENROLL_RESPONSE frames off a socket as they complete, handing each to `onFrame`.
 * Responses are small (1 or ~100 bytes), so a chunk rarely splits one.
 */
function frameReader(onFrame: (payload: Buffer) => void): (d: Buffer) => void {
  let buf: Buffer | undefined;
  return (d) => {
    buf = buf && buf.length > 0 ? Buffer.concat([buf, d]) : d;
    let o = 0;
    while (buf.length - o >= 2) {
      const len = buf.readUInt16BE(o);
      if (buf.length - o < 2 + len) break;
      onFrame(buf.subarray(o + 2, o + 2 + len));
      o += 2 + len;
    }
    buf = buf.subarray(o);
  };
}

export interface LoadResult {
  count: number;
  concurrency: number;
  wall_s: number;
  per_s: number;
  latency_ms: { p50: number; p90: number; p99: number; max: number; mean: number };
  /** Responses by status byte (0 accepted, 4 unknown, …); "none" when no response came. */
  statuses: Record<string, number>;
  /** How the messages travelled: C streams, or one connection per message. */
  mode: ConnectionMode;
  /** Response payloads (status ‖ sealed acceptance), when `keep` was asked for. */
  responses?: (Buffer | undefined)[];
}

export async function runLoad(opts: {
  host: string;
  port: number;
  requests: Buffer;
  concurrency: number;
  mode?: ConnectionMode;
  keep?: boolean;
  timeoutMs?: number;
}): Promise<LoadResult> {
  const frameLen = frameLenOf(opts.requests);
  const count = opts.requests.length / frameLen;
  const mode = opts.mode ?? 'stream';
  const latency = new Float64Array(count);
  const status = new Int16Array(count).fill(-1);
  const responses: (Buffer | undefined)[] | undefined = opts.keep ? new Array(count) : undefined;
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const frame = (i: number) => opts.requests.subarray(i * frameLen, (i + 1) * frameLen);
  const record = (i: number, t0: number, payload: Buffer) => {
    latency[i] = performance.now() - t0;
    status[i] = payload.length > 0 ? payload[0]! : -1;
    if (responses) responses[i] = Buffer.from(payload);
  };
  let next = 0;

  // per-message: one connection per message. The service ends its side after the response;
  // with allowHalfOpen off ours follows, so the service is the active closer and TIME_WAIT
  // never eats our ephemeral ports.
  const kindEnroll = kindFrameBytes(KIND_ENROLL);
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const s = connect({ host: opts.host, port: opts.port, noDelay: true });
      s.write(Buffer.concat([kindEnroll, frame(i)]));
      s.on(
        'data',
        frameReader((payload) => {
          if (status[i] === -1) record(i, t0, payload);
        }),
      );
      s.on('error', () => {});
      s.setTimeout(timeoutMs, () => s.destroy());
      s.once('close', () => resolve());
    });

  // stream: one connection per worker; the next message goes once the last is answered.
  const streamWorker = (): Promise<void> =>
    new Promise((resolve) => {
      const s: Socket = connect({ host: opts.host, port: opts.port, noDelay: true });
      let i = -1;
      let t0 = 0;
      const send = (first: boolean) => {
        i = next++;
        if (i >= count) {
          s.end();
          return;
        }
        t0 = performance.now();
        s.write(first ? Buffer.concat([kindFrameBytes(KIND_ENROLL_STREAM), frame(i)]) : frame(i));
      };
      s.on(
        'data',
        frameReader((payload) => {
          if (i >= 0 && i < count && status[i] === -1) record(i, t0, payload);
          // After RATE_LIMITED the service ends the stream (docs/protocol.md §7.2): the next
          // message goes on a new one.
          if (payload[0] === RATE_LIMITED) s.end();
          else send(false);
        }),
      );
      s.on('error', () => {});
      s.setTimeout(timeoutMs, () => s.destroy());
      s.once('close', () => resolve());
      send(true);
    });

  const t0 = performance.now();
  const workers = Math.min(opts.concurrency, count);
  await Promise.all(
    Array.from({ length: workers }, async () => {
      if (mode === 'stream') {
        // A stream that dies early (a reset, a RATE_LIMITED) leaves the rest to a new one.
        while (next < count) await streamWorker();
        return;
      }
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
    mode,
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
