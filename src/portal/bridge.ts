/**
 * Streams to TCP sockets and back, with backpressure both ways: a socket is paused while its
 * stream's send queue is full (the mux's `write` returned false) and resumed on `writable`;
 * received bytes return credit only once the socket has taken them (`write` callback), so a
 * slow TCP reader holds at most one stream window in memory (docs/protocol.md §11.4).
 */
import { connect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { EnrollError } from '../errors.js';
import { decodeAnswer, decodeOpen, encodeAnswer, encodeOpen, OPEN_STATUS_NAMES, OpenStatus } from '../protocol/portal/open.js';
import type { PortalLink, StreamHandler } from './link.js';

export interface StreamCounts {
  bytesIn: number;
  bytesOut: number;
}

/** Copies bytes both ways between stream `id` and `socket` until both directions are closed. */
export function bridge(link: PortalLink, id: number, socket: Duplex, leftover: Buffer | undefined, counts: StreamCounts, onDone: (how: 'closed' | 'reset') => void): void {
  let done = false;
  const finish = (how: 'closed' | 'reset') => {
    if (done) return;
    done = true;
    onDone(how);
  };
  const deliver = (data: Buffer) => {
    counts.bytesIn += data.length;
    socket.write(data, () => link.consumed(id, data.length));
  };
  const handler: StreamHandler = {
    data: deliver,
    fin: () => socket.end(),
    reset: () => {
      socket.destroy();
      finish('reset');
    },
    closed: () => finish('closed'),
    writable: () => socket.resume(),
  };
  link.attach(id, handler);
  if (leftover !== undefined && leftover.length > 0) deliver(leftover);
  socket.on('data', (chunk: Buffer) => {
    counts.bytesOut += chunk.length;
    if (!link.write(id, chunk)) socket.pause();
  });
  // Half-close: the socket's FIN becomes the stream's FIN; the other direction stays open.
  socket.on('end', () => link.close(id));
  socket.on('error', () => {
    link.reset(id);
    finish('reset');
  });
  socket.on('close', () => {
    if (!done && socket.readableEnded && socket.writableFinished) return; // FINs both ways: 'closed' follows from the mux
    if (!done) {
      link.reset(id);
      finish('reset');
    }
  });
  socket.resume();
}

/** A stream the far end refused, with the reason it gave (docs/protocol.md §11.6). */
export class OpenRefused extends EnrollError {}

/**
 * Inlet side: opens a stream for `socket` to `target` and waits for the far end's answer.
 * Resolves once the bytes flow; rejects with the refusal (ERR_REJECTED naming the reason) or
 * when the link ends. The socket stays paused until the answer.
 */
export function openStream(link: PortalLink, target: string, socket: Socket, counts: StreamCounts, onDone: (how: 'closed' | 'reset') => void): Promise<number> {
  socket.pause();
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    let answered = false;
    const fail = (e: EnrollError) => {
      if (answered) return;
      answered = true;
      reject(e);
    };
    const id = link.open({
      data(data) {
        got = Buffer.concat([got, data]);
        link.consumed(id, data.length);
        let a;
        try {
          a = decodeAnswer(got);
        } catch (e) {
          link.reset(id);
          fail(e as EnrollError);
          return;
        }
        if (a === undefined) return;
        answered = true;
        if (a.status !== OpenStatus.OK) {
          link.reset(id);
          const why = OPEN_STATUS_NAMES[a.status]!;
          reject(new OpenRefused('ERR_REJECTED', `${target}: ${why}${a.reason ? `: ${a.reason}` : ''}`));
          return;
        }
        bridge(link, id, socket, got.subarray(a.used), counts, onDone);
        resolve(id);
      },
      fin: () => fail(new EnrollError('ERR_PROTOCOL', `${target}: the far end closed the stream without an answer`)),
      reset: (remote) => fail(new EnrollError(remote ? 'ERR_REJECTED' : 'ERR_CONNECTION_CLOSED', `${target}: the stream was reset${remote ? ' by the far end' : ''}`)),
      closed: () => undefined,
      writable: () => undefined,
    });
    link.write(id, encodeOpen(target));
  });
}

/**
 * What a target means for the peer that opened the stream: a TCP address to connect to, a
 * refusal, or (for targets that are not a TCP address here, such as a device outlet reached
 * through a relay) a function that yields the byte stream to bridge to. `connect` may reject
 * with a StreamRefusal to answer with its status and reason.
 */
export type OutletDecision =
  | { host: string; port: number }
  | { refuse: OpenStatus; reason: string }
  | { connect: () => Promise<Duplex> }
  /**
   * Hands the stream over (a device outlet's relay, src/portal/relay.ts): `relay` attaches its
   * own handler, answers the opener and records the stream itself. `early` are the bytes after
   * the OPEN so far (`owed` ones still hold credit), `finEarly` whether the opener already sent FIN.
   */
  | { relay: (early: { data: Buffer; owed: boolean }[], finEarly: boolean) => void };

/** Thrown by an OutletDecision's `connect`: the stream is answered with this status and reason. */
export class StreamRefusal extends Error {
  readonly status: OpenStatus;
  readonly reason: string;
  constructor(status: OpenStatus, reason: string) {
    super(`${OPEN_STATUS_NAMES[status] ?? 'refused'}: ${reason}`);
    this.status = status;
    this.reason = reason;
  }
}

/**
 * Outlet side: accepts stream `id`, reads its OPEN, asks `decide` what the target means for
 * this peer, connects, answers, and bridges. A refusal is answered with its status and the
 * stream closed; `onRecord` sees every decision (for the decision log) and the byte counts
 * at close.
 */
export function serveStream(
  link: PortalLink,
  id: number,
  decide: (target: string) => Promise<OutletDecision> | OutletDecision,
  onRecord: (r: { target: string; status: OpenStatus; reason: string; counts?: StreamCounts; how?: string }) => void,
): void {
  let got = Buffer.alloc(0);
  let parsed = false;
  let finEarly = false;
  /** Bytes after the OPEN, before the target is connected; `owed` ones still hold credit. */
  const early: { data: Buffer; owed: boolean }[] = [];
  const pending: StreamHandler = {
    data(data) {
      if (parsed) {
        early.push({ data, owed: true });
        return;
      }
      got = Buffer.concat([got, data]);
      link.consumed(id, data.length);
      let o;
      try {
        o = decodeOpen(got);
      } catch (e) {
        link.reset(id);
        onRecord({ target: '', status: OpenStatus.INTERNAL, reason: (e as Error).message });
        return;
      }
      if (o === undefined) {
        if (got.length > 257) link.reset(id);
        return;
      }
      parsed = true;
      const rest = got.subarray(o.used);
      if (rest.length > 0) early.push({ data: Buffer.from(rest), owed: false });
      void run(o.target);
    },
    fin: () => (finEarly = true),
    reset: () => (parsed = true),
    closed: () => undefined,
    writable: () => undefined,
  };
  const refuse = (target: string, status: OpenStatus, reason: string) => {
    link.write(id, encodeAnswer(status, reason));
    link.close(id);
    onRecord({ target, status, reason });
  };
  const run = async (target: string) => {
    let d: OutletDecision;
    try {
      d = await decide(target);
    } catch (e) {
      refuse(target, OpenStatus.INTERNAL, 'the outlet could not decide');
      void e;
      return;
    }
    if ('refuse' in d) {
      refuse(target, d.refuse, d.reason);
      return;
    }
    if ('relay' in d) {
      if (link.mux.has(id)) d.relay(early.splice(0), finEarly);
      return;
    }
    const start = (socket: Duplex) => {
      if (!link.mux.has(id)) {
        socket.destroy();
        return;
      }
      const counts: StreamCounts = { bytesIn: 0, bytesOut: 0 };
      link.write(id, encodeAnswer(OpenStatus.OK));
      onRecord({ target, status: OpenStatus.OK, reason: '' });
      // Bytes the opener sent before the answer were consumed into `early`; they go first.
      for (const { data, owed } of early) {
        counts.bytesIn += data.length;
        socket.write(data, owed ? () => link.consumed(id, data.length) : undefined);
      }
      early.length = 0;
      bridge(link, id, socket, undefined, counts, (how) => onRecord({ target, status: OpenStatus.OK, reason: 'closed', counts, how }));
      if (finEarly) socket.end();
    };
    if ('connect' in d) {
      let socket: Duplex;
      try {
        socket = await d.connect();
      } catch (e) {
        if (e instanceof StreamRefusal) refuse(target, e.status, e.reason);
        else refuse(target, OpenStatus.TARGET_UNREACHABLE, (e as Error)?.message ?? String(e));
        return;
      }
      socket.pause();
      start(socket);
      return;
    }
    const socket = connect({ host: d.host, port: d.port, allowHalfOpen: true });
    socket.pause();
    let connected = false;
    socket.once('error', (e: NodeJS.ErrnoException) => {
      if (!connected) refuse(target, OpenStatus.TARGET_UNREACHABLE, `${d.host}:${d.port}: ${e.code ?? e.message}`);
    });
    socket.once('connect', () => {
      connected = true;
      start(socket);
    });
  };
  link.attach(id, pending);
  link.accept(id);
}
