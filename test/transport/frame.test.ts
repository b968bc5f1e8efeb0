import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { encodeFrame, FrameDecoder, MAX_FRAME_LEN } from '../../src/transport/frame.js';

/** Deterministic bytes, so a misplaced byte shows up as a mismatch. */
function pattern(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

test('encodeFrame writes a big-endian u16 length before the payload', () => {
  assert.deepEqual(encodeFrame(new Uint8Array([7, 8, 9])), new Uint8Array([0, 3, 7, 8, 9]));
  assert.deepEqual(encodeFrame(new Uint8Array(0)), new Uint8Array([0, 0]));
  const big = encodeFrame(new Uint8Array(0x1234));
  assert.deepEqual([...big.subarray(0, 2)], [0x12, 0x34]);
  const max = encodeFrame(new Uint8Array(MAX_FRAME_LEN));
  assert.deepEqual([...max.subarray(0, 2)], [0xff, 0xff]);
  assert.equal(max.length, MAX_FRAME_LEN + 2);
});

test('encodeFrame refuses max+1 and a smaller limit with ERR_FRAME_TOO_LARGE', () => {
  assert.throws(() => encodeFrame(new Uint8Array(MAX_FRAME_LEN + 1)), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));
  assert.throws(() => encodeFrame(new Uint8Array(11), 10), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));
  assert.equal(encodeFrame(new Uint8Array(10), 10).length, 12);
  assert.throws(() => encodeFrame('abc' as unknown as Uint8Array), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
});

test('FrameDecoder rejects limits outside 0..65535', () => {
  for (const bad of [-1, 65536, 1.5, NaN, '10']) {
    assert.throws(() => new FrameDecoder(bad as number), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
  }
});

test('FrameDecoder: one chunk holding many frames, including empty ones', () => {
  const a = pattern(5, 1);
  const b = pattern(300, 2);
  const stream = concat(encodeFrame(a), encodeFrame(new Uint8Array(0)), encodeFrame(b), encodeFrame(new Uint8Array(0)));
  const d = new FrameDecoder();
  const frames = d.push(stream);
  assert.deepEqual(frames, [a, new Uint8Array(0), b, new Uint8Array(0)]);
  assert.equal(d.inProgress, false);
});

test('FrameDecoder: every split point of a stream, and byte-by-byte', () => {
  const payloads = [pattern(1, 3), new Uint8Array(0), pattern(257, 4), pattern(2, 5)];
  const stream = concat(...payloads.map((p) => encodeFrame(p)));
  for (let cut = 0; cut <= stream.length; cut++) {
    const d = new FrameDecoder();
    const got = [...d.push(stream.subarray(0, cut)), ...d.push(stream.subarray(cut))];
    assert.deepEqual(got, payloads, `cut at ${cut}`);
    assert.equal(d.inProgress, false);
  }
  const d = new FrameDecoder();
  const got: Uint8Array[] = [];
  for (const byte of stream) got.push(...d.push(new Uint8Array([byte])));
  assert.deepEqual(got, payloads);
});

test('FrameDecoder: a split header (one byte per chunk) and an empty chunk', () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(new Uint8Array([0x01])), []);
  assert.equal(d.inProgress, true);
  assert.deepEqual(d.progress, { received: 1, expected: undefined });
  assert.deepEqual(d.push(new Uint8Array(0)), []);
  assert.deepEqual(d.push(new Uint8Array([0x00])), []);
  assert.deepEqual(d.progress, { received: 2, expected: 258 });
  const body = pattern(256, 9);
  assert.deepEqual(d.push(body), [body]);
  assert.equal(d.inProgress, false);
});

test('FrameDecoder: frames are copies, not views into the pushed chunk', () => {
  const d = new FrameDecoder();
  const chunk = encodeFrame(new Uint8Array([1, 2, 3]));
  const [frame] = d.push(chunk);
  chunk.fill(0xee);
  assert.deepEqual(frame, new Uint8Array([1, 2, 3]));
});

test('FrameDecoder: a frame of exactly maxFrameLen passes, at 65535 and at a lower limit', () => {
  const max = pattern(MAX_FRAME_LEN, 6);
  assert.deepEqual(new FrameDecoder().push(encodeFrame(max)), [max]);
  const ten = pattern(10, 7);
  assert.deepEqual(new FrameDecoder(10).push(encodeFrame(ten)), [ten]);
  assert.deepEqual(new FrameDecoder(0).push(new Uint8Array([0, 0, 0, 0])), [new Uint8Array(0), new Uint8Array(0)]);
});

test('FrameDecoder: max+1 fails on the header alone, before any body byte', () => {
  const d = new FrameDecoder(10);
  // Only the two header bytes: the decoder must not wait for (or buffer) the body.
  assert.throws(() => d.push(new Uint8Array([0, 11])), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));
  // Out of sync for good: later pushes keep failing, even with a well-formed frame.
  assert.throws(() => d.push(encodeFrame(new Uint8Array(1))), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));

  const split = new FrameDecoder(1000);
  assert.deepEqual(split.push(new Uint8Array([0xff])), []);
  assert.throws(() => split.push(new Uint8Array([0xff])), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));
});

test('FrameDecoder: an oversized header after good frames in the same chunk still fails', () => {
  const d = new FrameDecoder(4);
  const chunk = concat(encodeFrame(new Uint8Array([1])), new Uint8Array([0, 5, 1, 2, 3, 4, 5]));
  assert.throws(() => d.push(chunk), (e: unknown) => isEnrollError(e, 'ERR_FRAME_TOO_LARGE'));
});

test('FrameDecoder: random chunking of random frames (seeded)', () => {
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
  for (let round = 0; round < 50; round++) {
    const payloads = Array.from({ length: 1 + rnd(20) }, (_, i) => pattern(rnd(3) === 0 ? 0 : rnd(2000), round * 100 + i));
    const stream = concat(...payloads.map((p) => encodeFrame(p)));
    const d = new FrameDecoder(2000);
    const got: Uint8Array[] = [];
    for (let i = 0; i < stream.length; ) {
      const n = 1 + rnd(700);
      got.push(...d.push(stream.subarray(i, i + n)));
      i += n;
    }
    assert.deepEqual(got, payloads, `round ${round}`);
  }
});

test('FrameDecoder.pushUpTo stops after maxFrames and reports the bytes it used', () => {
  const d = new FrameDecoder();
  const chunk = concat(encodeFrame(new Uint8Array(0)), encodeFrame(new Uint8Array([1])), encodeFrame(new Uint8Array(0)), new Uint8Array([0]));
  const first = d.pushUpTo(chunk, 2);
  assert.deepEqual(first.frames, [new Uint8Array(0), new Uint8Array([1])]);
  assert.equal(first.used, 5);
  const rest = d.pushUpTo(chunk.subarray(first.used), 2);
  assert.deepEqual(rest.frames, [new Uint8Array(0)]);
  assert.equal(rest.used, 3);
  assert.equal(d.inProgress, true); // the lone header byte at the end
  assert.deepEqual(d.pushUpTo(chunk, 0), { frames: [], used: 0 });
});
