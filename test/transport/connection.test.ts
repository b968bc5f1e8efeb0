/**
 * FramedConnection over real loopback sockets, with a raw net.Socket as the peer so that
 * the peer can misbehave byte by byte.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { socketPair } from '../helpers/net.js';
import { patience } from '../helpers/pace.js';
import { FramedConnection, MAX_QUEUED_FRAMES } from '../../src/transport/connection.js';
import { encodeFrame, MAX_FRAME_LEN } from '../../src/transport/frame.js';

/** A connected pair of raw sockets on 127.0.0.1; the listening server is already closed. */

function code(c: ErrorCode) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e, c), `expected ${c}, got ${String(e)}`);
    return true;
  };
}

function frameOf(i: number, len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.fill(i & 0xff);
  if (len >= 4) new DataView(f.buffer).setUint32(0, i);
  return f;
}

test('frames round-trip both ways, including empty and maximum-size frames', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  const cb = FramedConnection.fromSocket(b);
  const sent = [new Uint8Array(0), new Uint8Array([1, 2, 3]), frameOf(7, MAX_FRAME_LEN), new Uint8Array(0)];
  for (const f of sent) await ca.writeFrame(f);
  for (const f of sent) assert.deepEqual(await cb.readFrame(), f);
  await cb.writeFrame(new Uint8Array([9]));
  assert.deepEqual(await ca.readFrame(), new Uint8Array([9]));
  assert.match(ca.remoteAddress ?? '', /^127\.0\.0\.1:\d+$/);
  assert.equal(ca.remoteAddress, `127.0.0.1:${b.localPort}`);
  ca.destroy();
  cb.destroy();
  await Promise.all([ca.closed, cb.closed]);
});

test('unawaited writes arrive whole and in order; pending reads are served in order', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  const cb = FramedConnection.fromSocket(b);
  const reads = Array.from({ length: 20 }, () => cb.readFrame());
  const writes = Array.from({ length: 20 }, (_, i) => ca.writeFrame(frameOf(i, 1000 + i)));
  await Promise.all(writes);
  const got = await Promise.all(reads);
  got.forEach((f, i) => assert.deepEqual(f, frameOf(i, 1000 + i)));
  ca.destroy();
  cb.destroy();
});

test('readFrame times out with ERR_TIMEOUT and the connection stays usable', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 50 });
  const started = Date.now();
  await assert.rejects(ca.readFrame(), code('ERR_TIMEOUT'));
  assert.ok(Date.now() - started >= 45);
  // A per-call timeout overrides the default.
  await assert.rejects(ca.readFrame(20), code('ERR_TIMEOUT'));
  // Half a frame, then a timeout, then the rest: nothing is lost.
  b.write(new Uint8Array([0, 3, 1]));
  await assert.rejects(ca.readFrame(30), code('ERR_TIMEOUT'));
  b.write(new Uint8Array([2, 3]));
  assert.deepEqual(await ca.readFrame(1000), new Uint8Array([1, 2, 3]));
  ca.destroy();
  b.destroy();
});

test('readFrame validates its timeout', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  await assert.rejects(ca.readFrame(-1), code('ERR_INVALID_ARG'));
  await assert.rejects(ca.readFrame(NaN), code('ERR_INVALID_ARG'));
  assert.throws(() => FramedConnection.fromSocket(b, { maxFrameLen: 70000 }), code('ERR_INVALID_ARG'));
  ca.destroy();
  b.destroy();
});

test('peer closing mid-frame: ERR_CONNECTION_CLOSED naming the cut', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 2000 });
  b.end(new Uint8Array([0, 10, 1, 2, 3]));
  await assert.rejects(ca.readFrame(), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_CONNECTION_CLOSED'));
    assert.match(e.message, /mid-frame \(5 of 12 bytes/);
    return true;
  });
  // Later reads fail the same way instead of hanging.
  await assert.rejects(ca.readFrame(), code('ERR_CONNECTION_CLOSED'));
  await ca.closed;
});

test('peer closing mid-header: ERR_CONNECTION_CLOSED', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 2000 });
  const pending = ca.readFrame();
  b.end(new Uint8Array([0]));
  await assert.rejects(pending, (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED') && /mid-frame/.test(e.message));
  await ca.closed;
});

test('peer closing between frames: queued frames first, then ERR_CONNECTION_CLOSED', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 2000 });
  b.end(Buffer.concat([encodeFrame(new Uint8Array([1])), encodeFrame(new Uint8Array([2]))]));
  await ca.closed;
  assert.deepEqual(await ca.readFrame(), new Uint8Array([1]));
  assert.deepEqual(await ca.readFrame(), new Uint8Array([2]));
  await assert.rejects(ca.readFrame(), (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED') && !/mid-frame/.test(e.message));
});

test('peer reset: pending read rejects with ERR_CONNECTION_CLOSED, writes too, and nothing is unhandled', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 2000 });
  const pending = ca.readFrame();
  b.resetAndDestroy();
  await assert.rejects(pending, code('ERR_CONNECTION_CLOSED'));
  await ca.closed;
  await assert.rejects(ca.writeFrame(new Uint8Array([1])), code('ERR_CONNECTION_CLOSED'));
});

test('header announcing max+1: ERR_FRAME_TOO_LARGE at once, without the body, and the connection is destroyed', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { maxFrameLen: 1000, readTimeoutMs: 5000 });
  const pending = ca.readFrame();
  // Only the header: if the decoder waited for the 1001-byte body, this would time out.
  b.write(new Uint8Array([0x03, 0xe9]));
  await assert.rejects(pending, code('ERR_FRAME_TOO_LARGE'));
  await assert.rejects(ca.readFrame(), code('ERR_FRAME_TOO_LARGE'));
  await ca.closed;
  await once(b, 'close');
  await assert.rejects(ca.writeFrame(new Uint8Array(1)), code('ERR_CONNECTION_CLOSED'));
});

test('a frame of exactly maxFrameLen is accepted over the socket', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { maxFrameLen: 1000 });
  const cb = FramedConnection.fromSocket(b, { maxFrameLen: 1000 });
  await cb.writeFrame(frameOf(1, 1000));
  assert.deepEqual(await ca.readFrame(), frameOf(1, 1000));
  await assert.rejects(cb.writeFrame(new Uint8Array(1001)), code('ERR_FRAME_TOO_LARGE'));
  // A refused write leaves the connection usable.
  await cb.writeFrame(new Uint8Array(0));
  assert.deepEqual(await ca.readFrame(), new Uint8Array(0));
  ca.destroy();
  cb.destroy();
});

test('destroy() rejects pending reads and later writes with ERR_CONNECTION_CLOSED', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  const pending = ca.readFrame();
  ca.destroy();
  await assert.rejects(pending, code('ERR_CONNECTION_CLOSED'));
  await assert.rejects(ca.writeFrame(new Uint8Array(1)), code('ERR_CONNECTION_CLOSED'));
  await ca.end(); // no-op, never rejects
  await ca.closed;
  b.destroy();
});

test('end() half-closes after flushing: the peer reads everything, then ERR_CONNECTION_CLOSED', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  const cb = FramedConnection.fromSocket(b, { readTimeoutMs: 5000 });
  void ca.writeFrame(frameOf(1, 60000));
  void ca.writeFrame(frameOf(2, 60000));
  await ca.end();
  assert.deepEqual(await cb.readFrame(), frameOf(1, 60000));
  assert.deepEqual(await cb.readFrame(), frameOf(2, 60000));
  await assert.rejects(cb.readFrame(), code('ERR_CONNECTION_CLOSED'));
  await assert.rejects(ca.writeFrame(new Uint8Array(1)), code('ERR_CONNECTION_CLOSED'));
  await Promise.all([ca.closed, cb.closed]);
});

test('backpressure: a reader that does not read stalls the writer; many large frames both ways arrive intact', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 10_000 });
  const cb = FramedConnection.fromSocket(b, { readTimeoutMs: 10_000 });
  // 400 x 64 KiB = 26 MB each way: far more than the unread-frame queue (64 frames) plus the
  // kernel's socket buffers, so the writers must wait for 'drain'.
  const N = 400;
  let writtenAB = 0;
  let writtenBA = 0;
  const writerAB = (async () => {
    for (let i = 0; i < N; i++) {
      await ca.writeFrame(frameOf(i, MAX_FRAME_LEN));
      writtenAB++;
    }
  })();
  const writerBA = (async () => {
    for (let i = 0; i < N; i++) {
      await cb.writeFrame(frameOf(N + i, MAX_FRAME_LEN - (i % 7)));
      writtenBA++;
    }
  })();
  // The queue fills first (however slow the machine); then an unstalled writer would finish
  // its 400 frames in the next 300 ms, which a stalled one cannot.
  const end = Date.now() + (await patience(5000));
  while (writtenAB < MAX_QUEUED_FRAMES && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(writtenAB < N, `writer a→b should be stalled, wrote ${writtenAB}`);
  assert.ok(writtenBA < N, `writer b→a should be stalled, wrote ${writtenBA}`);
  assert.ok(writtenAB >= MAX_QUEUED_FRAMES, `at least the queue should fill, wrote ${writtenAB}`);
  const readerAB = (async () => {
    for (let i = 0; i < N; i++) {
      const f = await cb.readFrame();
      assert.equal(f.length, MAX_FRAME_LEN);
      assert.equal(new DataView(f.buffer, f.byteOffset).getUint32(0), i);
      assert.equal(f[f.length - 1], i & 0xff);
    }
  })();
  const readerBA = (async () => {
    for (let i = 0; i < N; i++) {
      const f = await ca.readFrame();
      assert.deepEqual(f, frameOf(N + i, MAX_FRAME_LEN - (i % 7)));
    }
  })();
  await Promise.all([writerAB, writerBA, readerAB, readerBA]);
  assert.equal(writtenAB, N);
  assert.equal(writtenBA, N);
  ca.destroy();
  cb.destroy();
  await Promise.all([ca.closed, cb.closed]);
});

test('a flood of tiny frames is queued, paused at the bound, and all delivered', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a, { readTimeoutMs: 5000 });
  const N = 20_000;
  const flood = Buffer.concat(Array.from({ length: N }, (_, i) => encodeFrame(new Uint8Array([i & 0xff, i >> 8]))));
  b.end(flood);
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < N; i++) {
    const f = await ca.readFrame();
    assert.equal(f[0]! | (f[1]! << 8), i);
  }
  await assert.rejects(ca.readFrame(), code('ERR_CONNECTION_CLOSED'));
  await ca.closed;
});

test('fromStreams over pipes: round trip, end of stream, stream errors are not unhandled', async () => {
  const up = new PassThrough();
  const down = new PassThrough();
  const left = FramedConnection.fromStreams(up, down, { readTimeoutMs: 2000 });
  const right = FramedConnection.fromStreams(down, up, { readTimeoutMs: 2000 });
  await left.writeFrame(new Uint8Array([1, 2]));
  assert.deepEqual(await right.readFrame(), new Uint8Array([1, 2]));
  await right.writeFrame(new Uint8Array(0));
  assert.deepEqual(await left.readFrame(), new Uint8Array(0));
  const pending = left.readFrame();
  up.destroy(new Error('boom'));
  await assert.rejects(pending, code('ERR_CONNECTION_CLOSED'));
  await left.end();
  await assert.rejects(right.readFrame(), code('ERR_CONNECTION_CLOSED'));
  right.destroy();
  left.destroy();
  await Promise.all([left.closed, right.closed]);
});

test('a stream switched to text mode is refused with ERR_FRAME_MALFORMED', async () => {
  const r = new PassThrough();
  r.setEncoding('utf8');
  const w = new PassThrough();
  const c = FramedConnection.fromStreams(r, w, { readTimeoutMs: 2000 });
  const pending = c.readFrame();
  r.write(Buffer.from([0, 1, 65]));
  await assert.rejects(pending, code('ERR_FRAME_MALFORMED'));
  await c.closed;
});

test('one chunk of 30 000 empty frames then end: all delivered in order, then ERR_CONNECTION_CLOSED', async () => {
  const r = new PassThrough();
  const w = new PassThrough();
  const c = FramedConnection.fromStreams(r, w, { readTimeoutMs: 2000 });
  const N = 30_000;
  // Empty frames with a marker frame every 1000, all in a single write.
  const parts: Uint8Array[] = [];
  for (let i = 0; i < N; i++) parts.push(i % 1000 === 0 ? encodeFrame(new Uint8Array([i / 1000])) : new Uint8Array(2));
  r.end(Buffer.concat(parts));
  await new Promise((resolve) => setTimeout(resolve, 20));
  for (let i = 0; i < N; i++) {
    const f = await c.readFrame();
    if (i % 1000 === 0) assert.deepEqual(f, new Uint8Array([i / 1000]));
    else assert.equal(f.length, 0);
  }
  await assert.rejects(c.readFrame(), code('ERR_CONNECTION_CLOSED'));
  c.destroy();
});

test('streams that already ended or were destroyed settle reads at once', async () => {
  const ended = new PassThrough();
  ended.end(Buffer.from([0, 1, 7]));
  ended.resume();
  await once(ended, 'end');
  const c1 = FramedConnection.fromStreams(ended, new PassThrough(), { readTimeoutMs: 5000 });
  await assert.rejects(c1.readFrame(), code('ERR_CONNECTION_CLOSED'));
  const dead = new PassThrough();
  dead.destroy();
  const c2 = FramedConnection.fromStreams(dead, new PassThrough(), { readTimeoutMs: 5000 });
  await assert.rejects(c2.readFrame(), code('ERR_CONNECTION_CLOSED'));
  c1.destroy();
  c2.destroy();
});

test('a write waiting for drain rejects when the peer goes away', async () => {
  const { a, b } = await socketPair();
  const ca = FramedConnection.fromSocket(a);
  b.pause(); // the peer reads nothing
  b.on('error', () => {});
  let pending: Promise<void> | undefined;
  for (let i = 0; i < 2000 && pending === undefined; i++) {
    const p = ca.writeFrame(new Uint8Array(MAX_FRAME_LEN));
    const settled = await Promise.race([p.then(() => true), new Promise((r) => setImmediate(() => r(false)))]);
    if (!settled) pending = p;
  }
  assert.ok(pending, 'the writer should have hit backpressure');
  b.destroy();
  await assert.rejects(pending, code('ERR_CONNECTION_CLOSED'));
  await ca.closed;
});
