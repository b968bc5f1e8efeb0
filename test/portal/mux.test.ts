/**
 * The pure multiplexer (src/protocol/portal/mux.ts), two instances wired back to back: every
 * byte one emits is fed to the other, in arbitrary splits, with no network in between (the
 * mux does no I/O; the portal tests run it over real sessions).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { isEnrollError } from '../../src/errors.js';
import { DEFAULT_WINDOW, Mux, type MuxEvent } from '../../src/protocol/portal/mux.js';
import { decodeHeader, encodeData, encodeHeader, Flag, FrameType, GoAwayCode, MUX_HEADER_LEN } from '../../src/protocol/portal/frame.js';

/** Deterministic bytes, so a misplaced byte shows up as a mismatch. */
function pattern(n: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

interface Side {
  mux: Mux;
  events: MuxEvent[];
  /** Received bytes per stream, kept (consumed or not). */
  got: Map<number, Buffer[]>;
  /** Streams whose data this side consumes as it arrives. */
  autoConsume: boolean;
  paused: Set<number>;
}

function side(mux: Mux, autoConsume = true): Side {
  return { mux, events: [], got: new Map(), autoConsume, paused: new Set() };
}

/** Moves bytes both ways until neither side has output. `split` cuts every write into pieces of that size. */
function pump(a: Side, b: Side, split = 0): void {
  for (let round = 0; round < 100000; round++) {
    let moved = false;
    for (const [from, to] of [[a, b], [b, a]] as const) {
      for (const frame of from.mux.takeOutput()) {
        moved = true;
        if (split > 0) for (let i = 0; i < frame.length; i += split) to.mux.receive(frame.subarray(i, i + split));
        else to.mux.receive(frame);
      }
      for (const e of to.mux.takeEvents()) {
        to.events.push(e);
        if (e.type === 'data') {
          const list = to.got.get(e.id) ?? [];
          list.push(Buffer.from(e.data));
          to.got.set(e.id, list);
          if (to.autoConsume && !to.paused.has(e.id)) to.mux.consumed(e.id, e.data.length);
        }
      }
    }
    if (!moved) return;
  }
  throw new Error('pump did not settle');
}

function received(s: Side, id: number): Buffer {
  return Buffer.concat(s.got.get(id) ?? []);
}

function pair(opts: { a?: Partial<ConstructorParameters<typeof Mux>[0]>; b?: Partial<ConstructorParameters<typeof Mux>[0]> } = {}) {
  const a = side(new Mux({ role: 'client', ...opts.a }));
  const b = side(new Mux({ role: 'server', ...opts.b }));
  pump(a, b);
  return { a, b };
}

function openAccepted(a: Side, b: Side): number {
  const id = a.mux.open();
  pump(a, b);
  assert.ok(b.events.some((e) => e.type === 'open' && e.id === id));
  b.mux.accept(id);
  pump(a, b);
  assert.ok(a.events.some((e) => e.type === 'accepted' && e.id === id));
  return id;
}

const isCode = (code: string) => (e: unknown) => isEnrollError(e, code as never);

describe('mux: streams', () => {
  test('the client opens odd ids, the server even ones; bytes cross both ways intact, in any split', () => {
    for (const split of [0, 1, 5, 12, 13, 4096]) {
      const { a, b } = pair();
      const id = openAccepted(a, b);
      assert.equal(id, 1);
      const up = pattern(100_000, split + 1);
      const down = pattern(70_001, split + 2);
      a.mux.write(id, up);
      b.mux.write(id, down);
      pump(a, b, split);
      assert.equal(sha(received(b, id)), sha(up));
      assert.equal(sha(received(a, id)), sha(down));
      const sid = b.mux.open();
      assert.equal(sid, 2);
    }
  });

  test('the opener may send before the ACK (yamux); the acceptor only after accept', () => {
    const { a, b } = pair();
    const id = a.mux.open();
    a.mux.write(id, Buffer.from('early'));
    pump(a, b);
    assert.equal(received(b, id).toString(), 'early');
    b.mux.write(id, Buffer.from('reply'));
    pump(a, b);
    assert.equal(received(a, id).length, 0, 'nothing before accept');
    b.mux.accept(id);
    pump(a, b);
    assert.equal(received(a, id).toString(), 'reply');
  });

  test('half-close: after one FIN the other direction stays open until it closes too', () => {
    const { a, b } = pair();
    const id = openAccepted(a, b);
    a.mux.write(id, Buffer.from('request to EOF'));
    a.mux.close(id);
    pump(a, b);
    assert.ok(b.events.some((e) => e.type === 'fin' && e.id === id));
    assert.ok(a.mux.has(id) && b.mux.has(id));
    assert.throws(() => a.mux.write(id, Buffer.from('x')), isCode('ERR_INVALID_ARG'));
    b.mux.write(id, Buffer.from('answer after EOF'));
    pump(a, b);
    assert.equal(received(a, id).toString(), 'answer after EOF');
    b.mux.close(id);
    pump(a, b);
    assert.ok(a.events.some((e) => e.type === 'closed' && e.id === id));
    assert.ok(b.events.some((e) => e.type === 'closed' && e.id === id));
    assert.equal(a.mux.streamCount, 0);
    assert.equal(b.mux.streamCount, 0);
  });

  test('reset drops the stream at both ends; late frames for it are ignored', () => {
    const { a, b } = pair();
    const id = openAccepted(a, b);
    const other = openAccepted(a, b);
    b.mux.write(id, pattern(1000));
    b.mux.takeOutput(); // in flight when a resets
    const inflight = encodeData(id, 0, pattern(10));
    a.mux.reset(id);
    pump(a, b);
    assert.ok(b.events.some((e) => e.type === 'reset' && e.id === id && e.remote));
    assert.ok(a.events.some((e) => e.type === 'reset' && e.id === id && !e.remote));
    a.mux.receive(inflight);
    assert.equal(a.mux.closed, false);
    a.mux.write(other, Buffer.from('still fine'));
    pump(a, b);
    assert.equal(received(b, other).toString(), 'still fine');
  });

  test('200 concurrent streams, written in interleaved pieces, all arrive with their own bytes', () => {
    const { a, b } = pair();
    const ids: number[] = [];
    for (let i = 0; i < 200; i++) ids.push(a.mux.open());
    pump(a, b);
    for (const id of ids) b.mux.accept(id);
    const sent = new Map(ids.map((id) => [id, pattern(20_000 + id * 37, id)]));
    for (let off = 0; off < 60_000; off += 7_000) {
      for (const id of ids) {
        const p = sent.get(id)!;
        if (off < p.length) a.mux.write(id, p.subarray(off, off + 7_000));
      }
      pump(a, b, 1500);
    }
    for (const id of ids) {
      a.mux.close(id);
      b.mux.write(id, sent.get(id)!.subarray(0, 99));
      b.mux.close(id);
    }
    pump(a, b, 1500);
    for (const id of ids) {
      assert.equal(sha(received(b, id)), sha(sent.get(id)!), `stream ${id}`);
      assert.equal(sha(received(a, id)), sha(sent.get(id)!.subarray(0, 99)));
    }
    assert.equal(a.mux.streamCount, 0);
    assert.equal(b.mux.streamCount, 0);
  });

  test('ping is answered with its value', () => {
    const { a, b } = pair();
    const v = a.mux.ping();
    pump(a, b);
    assert.ok(a.events.some((e) => e.type === 'pong' && e.value === v));
  });

  test('a GO_AWAY ends the session and resets every stream at both ends', () => {
    const { a, b } = pair();
    const id = openAccepted(a, b);
    b.mux.goAway();
    pump(a, b);
    assert.ok(a.events.some((e) => e.type === 'goaway' && e.remote && e.code === GoAwayCode.NORMAL));
    assert.ok(a.events.some((e) => e.type === 'reset' && e.id === id && e.remote));
    assert.ok(a.mux.closed && b.mux.closed);
    assert.throws(() => a.mux.open(), isCode('ERR_CONNECTION_CLOSED'));
  });

  test('streams past maxStreams are refused with RST; the session lives', () => {
    const { a, b } = pair({ b: { maxStreams: 3 } });
    const ids = [a.mux.open(), a.mux.open(), a.mux.open(), a.mux.open()];
    pump(a, b);
    assert.equal(b.mux.streamCount, 3);
    assert.ok(a.events.some((e) => e.type === 'reset' && e.id === ids[3] && e.remote));
    assert.equal(a.mux.closed, false);
    assert.throws(() => new Mux({ role: 'client', maxStreams: 1 }).open() && new Mux({ role: 'client', maxStreams: 0 }), isCode('ERR_INVALID_ARG'));
  });
});

describe('mux: credit', () => {
  test('a receiver that does not consume holds at most one window per stream; consuming resumes the sender', () => {
    const a = side(new Mux({ role: 'client' }));
    const b = side(new Mux({ role: 'server' }), false);
    pump(a, b);
    const id = openAccepted(a, b);
    const big = pattern(3 * 1024 * 1024);
    assert.equal(a.mux.write(id, big), false, 'above sendBufferLimit: the shell must pause its source');
    pump(a, b);
    assert.equal(received(b, id).length, DEFAULT_WINDOW);
    assert.equal(a.mux.queued(id), big.length - DEFAULT_WINDOW);
    let consumedSoFar = 0;
    for (let rounds = 0; received(b, id).length < big.length; rounds++) {
      assert.ok(rounds < 1000);
      const delivered = received(b, id).length;
      b.mux.consumed(id, delivered - consumedSoFar);
      consumedSoFar = delivered;
      pump(a, b);
      assert.ok(received(b, id).length - consumedSoFar <= DEFAULT_WINDOW, 'never more than a window unconsumed');
    }
    assert.equal(sha(received(b, id)), sha(big));
    assert.ok(a.events.some((e) => e.type === 'writable' && e.id === id));
  });

  test('a slow reader on one stream does not stall another', () => {
    const { a, b } = pair();
    const slow = openAccepted(a, b);
    const fast = openAccepted(a, b);
    b.paused.add(slow);
    a.mux.write(slow, pattern(2 * 1024 * 1024, 3));
    const tenMB = pattern(10 * 1024 * 1024, 4);
    for (let off = 0; off < tenMB.length; off += 256 * 1024) {
      a.mux.write(fast, tenMB.subarray(off, off + 256 * 1024));
      pump(a, b);
    }
    assert.equal(sha(received(b, fast)), sha(tenMB));
    assert.equal(received(b, slow).length, DEFAULT_WINDOW, 'the slow stream stopped at its window');
  });

  test('the session credit bounds what many unread streams can make a receiver hold', () => {
    const sessionWindow = 1024 * 1024;
    const a = side(new Mux({ role: 'client' }));
    const b = side(new Mux({ role: 'server', sessionWindow }), false);
    pump(a, b);
    const ids = Array.from({ length: 20 }, () => a.mux.open());
    pump(a, b);
    for (const id of ids) {
      b.mux.accept(id);
      a.mux.write(id, pattern(DEFAULT_WINDOW, id));
    }
    pump(a, b);
    const total = ids.reduce((n, id) => n + received(b, id).length, 0);
    assert.equal(total, sessionWindow, 'at most the session window is held unread');
    assert.ok(ids.every((id) => received(b, id).length > 0), 'round robin: every stream got a share');
    // Reading streams frees session credit for the others, once half the session window is read.
    // Round robin spread the credit over the streams, so read as many as it takes.
    let read = 0;
    for (const id of ids) {
      if (read >= sessionWindow / 2) break;
      b.mux.consumed(id, received(b, id).length);
      read += received(b, id).length;
    }
    pump(a, b);
    const after = ids.reduce((n, id) => n + received(b, id).length, 0);
    assert.ok(after > total);
  });
});

describe('mux: a hostile peer', () => {
  function server(): { mux: Mux; peer: Mux; drain: () => MuxEvent[] } {
    const mux = new Mux({ role: 'server' });
    const peer = new Mux({ role: 'client' });
    for (const f of mux.takeOutput()) peer.receive(f);
    for (const f of peer.takeOutput()) mux.receive(f);
    return { mux, peer, drain: () => mux.takeEvents() };
  }

  function expectSessionError(bytes: Buffer[], pattern: RegExp, code = 'ERR_PROTOCOL') {
    const { mux, drain } = server();
    for (const b of bytes) mux.receive(b);
    const events = drain();
    const g = events.find((e) => e.type === 'goaway');
    assert.ok(g && g.type === 'goaway' && g.error, `expected a session error, got ${JSON.stringify(events.map((e) => e.type))}`);
    assert.equal(g.error.code, code);
    assert.match(g.error.message, pattern);
    assert.ok(mux.closed);
    const out = mux.takeOutput();
    const last = decodeHeader(out[out.length - 1]!, 0);
    assert.equal(last.type, FrameType.GO_AWAY);
    assert.notEqual(last.length, GoAwayCode.NORMAL);
    // Later bytes are ignored, and the session's other streams are gone.
    mux.receive(encodeHeader({ type: FrameType.PING, flags: Flag.SYN, streamId: 0, length: 1 }));
    assert.deepEqual(mux.takeOutput(), []);
    assert.equal(mux.streamCount, 0);
  }

  const syn = (id: number) => encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: Flag.SYN, streamId: id, length: 0 });

  test('DATA for a stream it never opened', () => {
    expectSessionError([encodeData(7, 0, pattern(3))], /never opened/);
    expectSessionError([encodeData(2, 0, pattern(3))], /never opened/);
  });
  test('more data than its credit', () => {
    const body = pattern(32 * 1024);
    const frames = [syn(1)];
    for (let i = 0; i < DEFAULT_WINDOW / body.length + 1; i++) frames.push(encodeData(1, 0, body));
    expectSessionError(frames, /exceeds stream 1's credit/);
  });
  test('an oversized DATA frame, refused on its header alone', () => {
    const h = Buffer.alloc(MUX_HEADER_LEN);
    h.set(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 1, length: 40_000 }));
    h[1] = FrameType.DATA;
    expectSessionError([syn(1), h], /exceeds the limit/, 'ERR_FRAME_TOO_LARGE');
  });
  test('a reused or wrong-parity stream id, data after FIN, a second FIN, a bad version', () => {
    expectSessionError([syn(1), syn(1)], /not above/);
    expectSessionError([syn(2)], /our parity/);
    expectSessionError([syn(1), encodeData(1, Flag.FIN, pattern(1)), encodeData(1, 0, pattern(1))], /after its FIN/);
    expectSessionError([syn(1), encodeData(1, Flag.FIN, Buffer.alloc(0)), encodeData(1, Flag.FIN, Buffer.alloc(0))], /second FIN/);
    const bad = encodeHeader({ type: FrameType.PING, flags: Flag.SYN, streamId: 0, length: 1 });
    bad[0] = 1;
    expectSessionError([bad], /version 1/, 'ERR_FRAME_MALFORMED');
    expectSessionError([encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 0, length: 0x7fffffff })], /session credit/);
  });
  test('a failed session leaves another session and its streams untouched', () => {
    const { a, b } = pair();
    const id = openAccepted(a, b);
    expectSessionError([encodeData(9, 0, pattern(3))], /never opened/);
    a.mux.write(id, Buffer.from('unaffected'));
    pump(a, b);
    assert.equal(received(b, id).toString(), 'unaffected');
  });
});
