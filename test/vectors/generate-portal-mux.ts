/**
 * Writes test/vectors/portal-mux.json: known answers for the portal stream frames
 * (src/protocol/portal/frame.ts, docs/protocol.md §11.2) and one short session transcript of
 * the multiplexer (src/protocol/portal/mux.ts, §11.3).
 *
 * Run with `npm run vectors`. No randomness: re-running reproduces the file byte for byte,
 * and the vector test (test/portal/vectors.test.ts) checks that, then re-encodes every frame
 * from its fields with a DataView of its own, so the file pins the layout rather than
 * echoing the code.
 */
import { join } from 'node:path';
import { isEnrollError } from '../../src/errors.js';
import { decodeHeader, encodeData, encodeHeader, Flag, FrameType, GoAwayCode, MAX_DATA_LEN, type FrameHeader } from '../../src/protocol/portal/frame.js';
import { Mux } from '../../src/protocol/portal/mux.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';
import { hex, writeVectors } from './kit.js';

export const VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'portal-mux.json');

export interface FrameVector {
  comment: string;
  type: number;
  flags: number;
  stream_id: number;
  length: number;
  /** DATA body, hex ('' for the header-only types). */
  body: string;
  frame: string;
}

export interface BadVector {
  comment: string;
  frame: string;
  error: string;
}

function frame(comment: string, h: FrameHeader, body?: Buffer): FrameVector {
  const bytes = h.type === FrameType.DATA ? encodeData(h.streamId, h.flags, body ?? Buffer.alloc(0)) : encodeHeader(h);
  return { comment, type: h.type, flags: h.flags, stream_id: h.streamId, length: h.length, body: body === undefined ? '' : hex(body), frame: hex(bytes) };
}

function frames(): FrameVector[] {
  const hello = Buffer.from('hello, outlet');
  return [
    frame('SYN: open stream 1 with the default window (WINDOW_UPDATE, delta 0)', { type: FrameType.WINDOW_UPDATE, flags: Flag.SYN, streamId: 1, length: 0 }),
    frame('ACK: accept stream 1, growing its window to 1 MiB', { type: FrameType.WINDOW_UPDATE, flags: Flag.ACK, streamId: 1, length: 1024 * 1024 - 256 * 1024 }),
    frame('DATA on stream 1', { type: FrameType.DATA, flags: 0, streamId: 1, length: hello.length }, hello),
    frame('DATA with FIN: the last bytes and the half-close in one frame', { type: FrameType.DATA, flags: Flag.FIN, streamId: 2, length: 3 }, Buffer.from('bye')),
    frame('FIN alone: an empty DATA frame', { type: FrameType.DATA, flags: Flag.FIN, streamId: 3, length: 0 }, Buffer.alloc(0)),
    frame('RST on stream 5', { type: FrameType.WINDOW_UPDATE, flags: Flag.RST, streamId: 5, length: 0 }),
    frame('credit back: 128 KiB for stream 1', { type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 1, length: 128 * 1024 }),
    frame('session credit (stream 0): 16 MiB less the initial 256 KiB', { type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 0, length: 16 * 1024 * 1024 - 256 * 1024 }),
    frame('PING request, opaque value 0xdeadbeef', { type: FrameType.PING, flags: Flag.SYN, streamId: 0, length: 0xdeadbeef }),
    frame('PING answer', { type: FrameType.PING, flags: Flag.ACK, streamId: 0, length: 0xdeadbeef }),
    frame('GO_AWAY, protocol error', { type: FrameType.GO_AWAY, flags: 0, streamId: 0, length: GoAwayCode.PROTOCOL_ERROR }),
    frame('the highest stream id and all four flags', { type: FrameType.WINDOW_UPDATE, flags: 0xf, streamId: 0xffffffff, length: 0xffffffff }),
  ];
}

function bad(comment: string, frameHex: string): BadVector {
  let error = 'none';
  try {
    decodeHeader(Buffer.from(frameHex, 'hex'), 0);
  } catch (e) {
    if (!isEnrollError(e)) throw e;
    error = e.code;
  }
  return { comment, frame: frameHex, error };
}

function bads(): BadVector[] {
  const maxPlus1 = (MAX_DATA_LEN + 1).toString(16).padStart(8, '0');
  return [
    bad('version 1', '01020001' + '00000000' + '00000001'),
    bad('unknown type 4', '00040000' + '00000000' + '00000000'),
    bad('an unknown flag bit (0x10)', '00010010' + '00000001' + '00000000'),
    bad(`DATA longer than ${MAX_DATA_LEN} bytes, refused on the header`, '00000000' + '00000001' + maxPlus1),
    bad('a header cut short', '0001000100000001000000'),
  ];
}

/** A client and a server mux, back to back: one request with half-close, one answer. */
function transcript(): { comment: string; steps: { from: 'client' | 'server'; frame: string }[] } {
  const c = new Mux({ role: 'client', sessionWindow: 256 * 1024 });
  const s = new Mux({ role: 'server', sessionWindow: 256 * 1024 });
  const steps: { from: 'client' | 'server'; frame: string }[] = [];
  const flush = () => {
    for (const f of c.takeOutput()) {
      steps.push({ from: 'client', frame: hex(f) });
      s.receive(f);
    }
    for (const f of s.takeOutput()) {
      steps.push({ from: 'server', frame: hex(f) });
      c.receive(f);
    }
  };
  const id = c.open();
  c.write(id, Buffer.from('GET / HTTP/1.0\r\n\r\n'));
  c.close(id);
  flush();
  s.accept(id);
  s.write(id, Buffer.from('HTTP/1.0 200 OK\r\n\r\nhi'));
  s.close(id);
  flush();
  return { comment: 'client opens stream 1, sends a request and FIN before the ACK (yamux allows it); the server accepts, answers and FINs', steps };
}

export function renderPortalMux(): string {
  return (
    JSON.stringify(
      {
        description: 'ockam-enroll portal stream frames: yamux header u8 version=0 | u8 type | u16 flags | u32 stream id | u32 length, big-endian (docs/protocol.md §11)',
        frames: frames(),
        invalid: bads(),
        transcript: transcript(),
      },
      null,
      2,
    ) + '\n'
  );
}

if (isMain(import.meta.url)) {
  writeVectors(VECTOR_FILE, renderPortalMux());
}
