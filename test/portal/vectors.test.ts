/**
 * test/vectors/portal-mux.json (made by test/vectors/generate-portal-mux.ts): the file is what
 * the generator writes, every frame re-encodes from its fields with an independent DataView
 * writer and decodes back to them, every invalid header fails with its code, and the
 * transcript replays through a fresh pair of muxes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isEnrollError } from '../../src/errors.js';
import { decodeHeader, MUX_HEADER_LEN } from '../../src/protocol/portal/frame.js';
import { Mux, type MuxEvent } from '../../src/protocol/portal/mux.js';
import { renderPortalMux, VECTOR_FILE, type BadVector, type FrameVector } from '../vectors/generate-portal-mux.js';

const raw = readFileSync(VECTOR_FILE, 'utf8');
const file = JSON.parse(raw) as { frames: FrameVector[]; invalid: BadVector[]; transcript: { steps: { from: string; frame: string }[] } };

/** docs/protocol.md §11.2, written out with DataView: not the library's encoder. */
function independentEncode(v: FrameVector): string {
  const body = Buffer.from(v.body, 'hex');
  const out = new Uint8Array(12 + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint8(0, 0);
  dv.setUint8(1, v.type);
  dv.setUint16(2, v.flags, false);
  dv.setUint32(4, v.stream_id, false);
  dv.setUint32(8, v.length, false);
  out.set(body, 12);
  return Buffer.from(out).toString('hex');
}

describe('portal-mux.json', () => {
  test('is byte for byte what the generator produces', () => {
    assert.equal(renderPortalMux(), raw);
  });

  test('covers every type and flag', () => {
    assert.deepEqual([...new Set(file.frames.map((v) => v.type))].sort(), [0, 1, 2, 3]);
    for (const f of [1, 2, 4, 8]) assert.ok(file.frames.some((v) => v.flags & f), `flag ${f}`);
    assert.ok(file.invalid.length >= 4);
  });

  for (const v of file.frames) {
    test(`frame: ${v.comment}`, () => {
      assert.equal(independentEncode(v), v.frame);
      const bytes = Buffer.from(v.frame, 'hex');
      assert.deepEqual(decodeHeader(bytes, 0, 0xffff), { type: v.type, flags: v.flags, streamId: v.stream_id, length: v.length });
      assert.equal(bytes.length, MUX_HEADER_LEN + v.body.length / 2);
    });
  }

  for (const v of file.invalid) {
    test(`invalid: ${v.comment}`, () => {
      assert.notEqual(v.error, 'none');
      assert.throws(() => decodeHeader(Buffer.from(v.frame, 'hex'), 0), (e: unknown) => isEnrollError(e, v.error as never));
    });
  }

  test('the transcript replays: each side, fed the other side\'s frames, emits exactly its own', () => {
    const c = new Mux({ role: 'client', sessionWindow: 256 * 1024 });
    const s = new Mux({ role: 'server', sessionWindow: 256 * 1024 });
    const steps = file.transcript.steps;
    const expect = (from: string) => steps.filter((x) => x.from === from).map((x) => x.frame);
    const id = c.open();
    c.write(id, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
    c.close(id);
    const cOut = c.takeOutput().map((b) => b.toString('hex'));
    for (const f of cOut) s.receive(Buffer.from(f, 'hex'));
    s.accept(id);
    s.write(id, Buffer.from('HTTP/1.0 200 OK\r\n\r\nhi'));
    s.close(id);
    const sOut = s.takeOutput().map((b) => b.toString('hex'));
    assert.deepEqual(cOut, expect('client'));
    assert.deepEqual(sOut, expect('server'));
    for (const f of sOut) c.receive(Buffer.from(f, 'hex'));
    const ev: MuxEvent[] = c.takeEvents();
    const data = Buffer.concat(ev.flatMap((e) => (e.type === 'data' ? [e.data] : []))).toString();
    assert.equal(data, 'HTTP/1.0 200 OK\r\n\r\nhi');
    assert.ok(ev.some((e) => e.type === 'fin'));
    assert.ok(!ev.some((e) => e.type === 'closed'), 'not closed while bytes are unconsumed');
    c.consumed(id, data.length);
    assert.ok(c.takeEvents().some((e) => e.type === 'closed' && e.id === id));
    assert.equal(c.streamCount, 0);
  });
});
