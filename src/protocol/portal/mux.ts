/**
 * The portal stream multiplexer: a pure state machine (no I/O, no timers) that carries many
 * byte streams over one ordered, reliable, authenticated byte stream (the enrollee's session,
 * docs/protocol.md §11). It follows yamux (hashicorp/yamux spec.md): SYN/ACK/FIN/RST flags,
 * WINDOW_UPDATE credit per stream, half-close, reset; and adds one thing from HTTP/2
 * (RFC 9113 §6.9) and QUIC (RFC 9000 §4.1): a session-level credit, carried by WINDOW_UPDATE
 * on stream 0, so the bytes a peer can make us hold are bounded per session, not only per
 * stream (§11.4).
 *
 * The shell feeds received bytes to `receive`, writes what `takeOutput` returns, and acts on
 * `takeEvents`. Memory bounds (§11.4): a stream buffers at most `window` received bytes the
 * application has not consumed and `sendBufferLimit` bytes (plus one write) not yet sent; a
 * session at most `sessionWindow` received bytes over all streams, `maxStreams` streams.
 */
import { EnrollError } from '../../errors.js';
import {
  decodeHeader, encodeHeader, Flag, FrameType, GoAwayCode, MAX_DATA_LEN, MUX_HEADER_LEN,
  type FrameHeader,
} from './frame.js';

/** yamux's initial stream window (spec.md "Flow Control"): 256 KiB. */
export const DEFAULT_WINDOW = 256 * 1024;
export const DEFAULT_SESSION_WINDOW = 16 * 1024 * 1024;
export const DEFAULT_MAX_STREAMS = 1024;
export const DEFAULT_MAX_FRAME_DATA = 32 * 1024;
export const DEFAULT_SEND_BUFFER = 256 * 1024;
/** The largest window a WINDOW_UPDATE may grow a credit to (yamux's u32; we keep 2^31 - 1 like HTTP/2). */
export const MAX_CREDIT = 0x7fffffff;

export interface MuxOptions {
  /** The dialer of the session opens odd stream ids, the listener even ones (yamux spec.md "Stream ID"). */
  role: 'client' | 'server';
  window?: number;
  sessionWindow?: number;
  maxStreams?: number;
  maxFrameData?: number;
  sendBufferLimit?: number;
}

export type MuxEvent =
  /** The peer opened a stream (SYN): `accept` or `reset` it. */
  | { type: 'open'; id: number }
  /** The peer accepted a stream we opened (ACK). */
  | { type: 'accepted'; id: number }
  /** Bytes for a stream (a slice of the received chunk, not a copy): call `consumed(id, n)` once they are delivered, which returns credit. */
  | { type: 'data'; id: number; data: Buffer }
  /** The peer half-closed its direction (FIN). */
  | { type: 'fin'; id: number }
  /** The stream was reset (by the peer when `remote`, else by us). Its state is gone. */
  | { type: 'reset'; id: number; remote: boolean }
  /** Both directions are closed and every received byte consumed: the stream's state is gone. */
  | { type: 'closed'; id: number }
  /** A stream whose send buffer was full can take writes again. */
  | { type: 'writable'; id: number }
  /** A PING the peer answered (`ping` returned `value`). */
  | { type: 'pong'; value: number }
  /** The session is over: the peer sent GO_AWAY, or broke the protocol (`error` set; we sent GO_AWAY). Every stream got a `reset` event before it. */
  | { type: 'goaway'; code: number; remote: boolean; error?: EnrollError };

interface Stream {
  id: number;
  /** We have sent (or queued) SYN (our stream) / ACK (theirs). */
  acked: boolean;
  /** Their stream not accepted yet: we may not send DATA. */
  pendingAccept: boolean;
  /** Credit we may still send on this stream. */
  sendCredit: number;
  /** Bytes the peer may still send us before a WINDOW_UPDATE. */
  recvWindow: number;
  /** Bytes delivered to the application and not returned as credit yet. */
  unacked: number;
  /** Bytes delivered to the application and not consumed yet. */
  unconsumed: number;
  sendQueue: Buffer[];
  queued: number;
  wantWritable: boolean;
  /** FIN requested by the application; sent once the queue drains. */
  finQueued: boolean;
  finSent: boolean;
  finReceived: boolean;
}

function checkInt(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be an integer ${min}..${max}, got ${String(v)}`);
  }
  return v;
}

function protocolError(message: string): EnrollError {
  return new EnrollError('ERR_PROTOCOL', message);
}

export class Mux {
  readonly window: number;
  readonly sessionWindow: number;
  readonly maxStreams: number;
  readonly maxFrameData: number;
  readonly sendBufferLimit: number;
  readonly #streams = new Map<number, Stream>();
  /** Streams with queued bytes (or a FIN) waiting for credit or for `takeOutput`; insertion order = round robin. */
  readonly #ready = new Set<Stream>();
  /** Streams with stream credit that wait for session credit; a session WINDOW_UPDATE wakes them. */
  readonly #blockedOnSession = new Set<Stream>();
  #nextId: number;
  /** Highest stream id the peer opened; a SYN must exceed it (yamux: ids are not reused). */
  #peerHighest = 0;
  /** Frames to send, in order: a header alone, or a DATA header and its body's slices. */
  #out: (Buffer | Buffer[])[] = [];
  #events: MuxEvent[] = [];
  /** Received bytes not yet parsed: chunks, and the offset into the first. */
  #in: Buffer[] = [];
  #inLen = 0;
  #inOff = 0;
  #header: FrameHeader | undefined;
  /** Body bytes of the DATA frame being received that have not arrived yet. */
  #bodyLeft = 0;
  /** The stream that frame is for; undefined when it is gone (its bytes are dropped). */
  #bodyStream: Stream | undefined;
  #sessionSendCredit: number;
  #sessionRecvWindow: number;
  #sessionUnacked = 0;
  #nextPing = 1;
  #dead: EnrollError | undefined;
  #goneAway = false;

  constructor(options: MuxOptions) {
    if (options.role !== 'client' && options.role !== 'server') throw new EnrollError('ERR_INVALID_ARG', '"role" must be client or server');
    this.window = checkInt(options.window ?? DEFAULT_WINDOW, 'window', DEFAULT_WINDOW, MAX_CREDIT);
    this.sessionWindow = checkInt(options.sessionWindow ?? DEFAULT_SESSION_WINDOW, 'sessionWindow', this.window, MAX_CREDIT);
    this.maxStreams = checkInt(options.maxStreams ?? DEFAULT_MAX_STREAMS, 'maxStreams', 1, 1 << 20);
    this.maxFrameData = checkInt(options.maxFrameData ?? DEFAULT_MAX_FRAME_DATA, 'maxFrameData', 1, MAX_DATA_LEN);
    this.sendBufferLimit = checkInt(options.sendBufferLimit ?? DEFAULT_SEND_BUFFER, 'sendBufferLimit', 1, MAX_CREDIT);
    this.#nextId = options.role === 'client' ? 1 : 2;
    // Both ends start from the yamux initial window (spec.md: 256 KiB); a larger one is
    // announced by WINDOW_UPDATE with SYN/ACK, so the peer needs no out-of-band setting.
    this.#sessionSendCredit = DEFAULT_WINDOW;
    this.#sessionRecvWindow = this.sessionWindow;
    if (this.sessionWindow > DEFAULT_WINDOW) {
      this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 0, length: this.sessionWindow - DEFAULT_WINDOW }));
    }
  }

  get streamCount(): number {
    return this.#streams.size;
  }

  get closed(): boolean {
    return this.#goneAway || this.#dead !== undefined;
  }

  /** Bytes waiting in the stream's send queue (for the shell's backpressure). */
  queued(id: number): number {
    return this.#streams.get(id)?.queued ?? 0;
  }

  has(id: number): boolean {
    return this.#streams.has(id);
  }

  // ---------------------------------------------------------------- application calls

  /** Opens a stream: SYN (on a WINDOW_UPDATE carrying the extra window, yamux spec.md). */
  open(): number {
    this.#alive();
    if (this.#streams.size >= this.maxStreams) throw new EnrollError('ERR_CONNECTION_LIMIT', `at most ${this.maxStreams} streams per session`);
    const id = this.#nextId;
    if (id > 0xffffffff - 2) throw new EnrollError('ERR_CONNECTION_LIMIT', 'stream ids of this session are exhausted');
    this.#nextId += 2;
    const s = this.#newStream(id);
    s.acked = true;
    this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: Flag.SYN, streamId: id, length: this.window - DEFAULT_WINDOW }));
    return id;
  }

  /** Accepts a stream the peer opened: ACK. */
  accept(id: number): void {
    this.#alive();
    const s = this.#get(id);
    if (!s.pendingAccept) throw new EnrollError('ERR_INVALID_ARG', `stream ${id} is not waiting to be accepted`);
    s.pendingAccept = false;
    s.acked = true;
    this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: Flag.ACK, streamId: id, length: this.window - DEFAULT_WINDOW }));
    if (s.queued > 0 || s.finQueued) this.#ready.add(s);
  }

  /**
   * Queues bytes for a stream. Returns false when the queue is at or above `sendBufferLimit`:
   * the shell stops reading its source until a `writable` event (node's stream contract).
   */
  write(id: number, data: Uint8Array): boolean {
    this.#alive();
    const s = this.#get(id);
    if (s.finQueued) throw new EnrollError('ERR_INVALID_ARG', `stream ${id} is closed for writing`);
    if (data.length > 0) {
      s.sendQueue.push(Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.length));
      s.queued += data.length;
      if (!s.pendingAccept) this.#ready.add(s);
    }
    if (s.queued >= this.sendBufferLimit) {
      s.wantWritable = true;
      return false;
    }
    return true;
  }

  /** Half-close: FIN after the queued bytes. The other direction stays open (yamux spec.md "Closing"). */
  close(id: number): void {
    this.#alive();
    const s = this.#streams.get(id);
    if (s === undefined || s.finQueued) return;
    s.finQueued = true;
    if (!s.pendingAccept) this.#ready.add(s);
  }

  /** Abortive close: RST, and the stream's state is dropped at once. */
  reset(id: number): void {
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (this.#dead === undefined && !this.#goneAway) this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: Flag.RST, streamId: id, length: 0 }));
    this.#drop(s);
    this.#events.push({ type: 'reset', id, remote: false });
  }

  /**
   * The application delivered `n` bytes of this stream's data: they stop counting against our
   * memory, and credit goes back to the peer once half a window has been consumed (yamux's rule,
   * which keeps WINDOW_UPDATE frames rare without stalling a fast sender).
   */
  consumed(id: number, n: number): void {
    checkInt(n, 'n', 0, MAX_CREDIT);
    const s = this.#streams.get(id);
    if (s === undefined) return; // reset meanwhile; its session credit was returned at the drop
    if (n > s.unconsumed) throw new EnrollError('ERR_INVALID_ARG', `stream ${id} has ${s.unconsumed} unconsumed bytes, not ${n}`);
    s.unconsumed -= n;
    s.unacked += n;
    this.#sessionConsumed(n);
    if (s.finReceived) {
      this.#maybeClosed(s);
      return;
    }
    if (s.unacked >= this.window / 2 && !this.closed) {
      this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: 0, streamId: id, length: s.unacked }));
      s.recvWindow += s.unacked;
      s.unacked = 0;
    }
  }

  /** Sends a PING; the `pong` event carries the returned value. */
  ping(): number {
    this.#alive();
    const value = this.#nextPing;
    this.#nextPing = (this.#nextPing + 1) >>> 0 || 1;
    this.#out.push(encodeHeader({ type: FrameType.PING, flags: Flag.SYN, streamId: 0, length: value }));
    return value;
  }

  /** Ends the session: GO_AWAY (normal), and every stream is reset locally. */
  goAway(code: number = GoAwayCode.NORMAL): void {
    if (this.closed) return;
    this.#out.push(encodeHeader({ type: FrameType.GO_AWAY, flags: 0, streamId: 0, length: code }));
    this.#goneAway = true;
    this.#dropAll(false);
  }

  /** Frames to write, in order, one buffer each. Streams with credit take turns, one frame each (round robin). */
  takeOutput(): Buffer[] {
    this.#flush();
    const out = this.#out;
    this.#out = [];
    return out.map((f) => (Array.isArray(f) ? Buffer.concat(f) : f));
  }

  /**
   * The same bytes as takeOutput, but a DATA frame comes as its 12-byte header followed by
   * its body as slices of the buffers given to `write` (no copy): for a shell that writes
   * pieces (PortalLink encrypts them piece by piece into one channel message).
   */
  takeOutputParts(): Buffer[] {
    this.#flush();
    const out = this.#out;
    this.#out = [];
    const parts: Buffer[] = [];
    for (const f of out) {
      if (Array.isArray(f)) for (const p of f) parts.push(p);
      else parts.push(f);
    }
    return parts;
  }

  takeEvents(): MuxEvent[] {
    const ev = this.#events;
    this.#events = [];
    return ev;
  }

  // ---------------------------------------------------------------- received bytes

  /**
   * Feeds bytes as the session delivered them (any split). A peer that breaks the protocol
   * ends the session: GO_AWAY(PROTOCOL_ERROR) is queued, a `goaway` event carries the error,
   * every stream is dropped, and later bytes are ignored. Never throws for peer input.
   */
  receive(chunk: Uint8Array): void {
    if (this.closed || chunk.length === 0) return;
    this.#in.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.#inLen += chunk.length;
    try {
      this.#parse();
    } catch (e) {
      const err = e instanceof EnrollError ? e : new EnrollError('ERR_INTERNAL', 'mux failed', { cause: e });
      this.#dead = err;
      this.#in = [];
      this.#inLen = 0;
      this.#out.push(encodeHeader({ type: FrameType.GO_AWAY, flags: 0, streamId: 0, length: err.code === 'ERR_INTERNAL' ? GoAwayCode.INTERNAL_ERROR : GoAwayCode.PROTOCOL_ERROR }));
      this.#dropAll(false);
      this.#events.push({ type: 'goaway', code: GoAwayCode.PROTOCOL_ERROR, remote: false, error: err });
    }
  }

  #available(): number {
    return this.#inLen - this.#inOff;
  }

  /** Takes `n` bytes off the input: a slice of one chunk when it fits (no copy), else one concat. */
  #take(n: number): Buffer {
    const first = this.#in[0]!;
    if (first.length - this.#inOff >= n) {
      const out = first.subarray(this.#inOff, this.#inOff + n);
      this.#inOff += n;
      if (this.#inOff === first.length) this.#shift();
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#in[0]!;
      const k = Math.min(n - filled, c.length - this.#inOff);
      c.copy(out, filled, this.#inOff, this.#inOff + k);
      filled += k;
      this.#inOff += k;
      if (this.#inOff === c.length) this.#shift();
    }
    return out;
  }

  #shift(): void {
    const c = this.#in.shift()!;
    this.#inLen -= c.length;
    this.#inOff = 0;
  }

  /**
   * Parses what has arrived. A DATA body is handed on as it arrives, in the slices it came
   * in, rather than gathered into one buffer first: the credit checks need only the header
   * (the whole announced length is charged there), and the bytes are the peer's either way.
   */
  #parse(): void {
    for (;;) {
      if (this.#header === undefined) {
        if (this.#available() < MUX_HEADER_LEN) return;
        // The DATA length is checked here, before any of its body is waited for.
        const h = decodeHeader(this.#take(MUX_HEADER_LEN), 0, this.maxFrameData);
        if (h.type !== FrameType.DATA) {
          this.#onControl(h);
          if (this.closed) return;
          continue;
        }
        this.#bodyStream = this.#onDataHeader(h);
        this.#header = h;
        this.#bodyLeft = h.length;
      }
      while (this.#bodyLeft > 0 && this.#available() > 0) {
        const piece = this.#takeUpTo(this.#bodyLeft);
        this.#bodyLeft -= piece.length;
        this.#onDataPiece(piece);
      }
      if (this.#bodyLeft > 0) return;
      const h = this.#header;
      const s = this.#bodyStream;
      this.#header = undefined;
      this.#bodyStream = undefined;
      // Flags act once the whole body is delivered: a FIN or RST comes after the bytes.
      if (s !== undefined && this.#streams.get(s.id) === s) this.#flags(s, h.flags);
      if (this.closed) return;
    }
  }

  /** Up to `n` bytes off the input, as a slice of its first chunk. */
  #takeUpTo(n: number): Buffer {
    const first = this.#in[0]!;
    const k = Math.min(n, first.length - this.#inOff);
    const out = k === first.length ? first : first.subarray(this.#inOff, this.#inOff + k);
    this.#inOff += k;
    if (this.#inOff === first.length) this.#shift();
    return out;
  }

  /** The checks a DATA frame's header allows, before any of its body is taken; its stream, or undefined (gone). */
  #onDataHeader(h: FrameHeader): Stream | undefined {
    if (h.streamId === 0) throw protocolError('DATA on stream 0');
    // Session credit is charged for every DATA byte, even on a stream already gone (the
    // sender charged it too); bytes for a gone stream are returned at once.
    if (h.length > this.#sessionRecvWindow) throw protocolError(`DATA of ${h.length} bytes exceeds the session credit of ${this.#sessionRecvWindow}`);
    this.#sessionRecvWindow -= h.length;
    const s = this.#stream(h);
    if (s === undefined) {
      this.#sessionConsumed(h.length);
      return undefined;
    }
    if (h.length > 0) {
      if (s.finReceived) throw protocolError(`DATA on stream ${s.id} after its FIN`);
      if (h.length > s.recvWindow) throw protocolError(`DATA of ${h.length} bytes exceeds stream ${s.id}'s credit of ${s.recvWindow}`);
      s.recvWindow -= h.length;
    }
    return s;
  }

  #onDataPiece(piece: Buffer): void {
    const s = this.#bodyStream;
    if (s === undefined) return;
    if (this.#streams.get(s.id) !== s) {
      // Reset between two pieces of one frame: the rest is dropped, its credit returned.
      this.#bodyStream = undefined;
      this.#sessionConsumed(this.#bodyLeft + piece.length);
      return;
    }
    s.unconsumed += piece.length;
    this.#events.push({ type: 'data', id: s.id, data: piece });
  }

  #onControl(h: FrameHeader): void {
    switch (h.type) {
      case FrameType.WINDOW_UPDATE: {
        if (h.streamId === 0) {
          if (h.flags !== 0) throw protocolError('flags on a session WINDOW_UPDATE');
          if (this.#sessionSendCredit + h.length > MAX_CREDIT) throw protocolError('session credit above 2^31-1');
          this.#sessionSendCredit += h.length;
          if (h.length > 0) {
            for (const s of this.#blockedOnSession) this.#ready.add(s);
            this.#blockedOnSession.clear();
          }
          return;
        }
        const s = this.#stream(h);
        if (s === undefined) return;
        if (s.sendCredit + h.length > MAX_CREDIT) throw protocolError(`stream ${s.id} credit above 2^31-1`);
        s.sendCredit += h.length;
        if (h.length > 0 && (s.queued > 0 || (s.finQueued && !s.finSent)) && !s.pendingAccept) this.#ready.add(s);
        this.#flags(s, h.flags);
        return;
      }
      case FrameType.PING:
        if (h.streamId !== 0) throw protocolError('PING on a stream');
        if (h.flags === Flag.SYN) this.#out.push(encodeHeader({ type: FrameType.PING, flags: Flag.ACK, streamId: 0, length: h.length }));
        else if (h.flags === Flag.ACK) this.#events.push({ type: 'pong', value: h.length });
        else throw protocolError('PING without SYN or ACK');
        return;
      case FrameType.GO_AWAY:
        if (h.streamId !== 0) throw protocolError('GO_AWAY on a stream');
        this.#goneAway = true;
        this.#dropAll(true);
        this.#events.push({ type: 'goaway', code: h.length, remote: true });
        return;
      default:
        throw protocolError('unknown frame type');
    }
  }

  /**
   * The stream a frame is for. A SYN opens one (a new, higher id of the peer's parity); a frame
   * for a stream that existed and is gone is ignored (in flight when we reset it, yamux spec.md);
   * a frame for a stream that never existed is a protocol error.
   */
  #stream(h: FrameHeader): Stream | undefined {
    const id = h.streamId;
    const peers = id % 2 !== this.#nextId % 2;
    if (h.flags & Flag.SYN) {
      if (!peers) throw protocolError(`SYN for stream ${id}, which has our parity`);
      if (id <= this.#peerHighest) throw protocolError(`SYN for stream ${id}, not above ${this.#peerHighest} (ids are not reused)`);
      if (h.flags & (Flag.ACK | Flag.RST)) throw protocolError(`SYN with ACK or RST on stream ${id}`);
      this.#peerHighest = id;
      if (this.#streams.size >= this.maxStreams) {
        // yamux answers a full backlog with RST: the stream is refused, the session lives.
        this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: Flag.RST, streamId: id, length: 0 }));
        return undefined;
      }
      const s = this.#newStream(id);
      s.pendingAccept = true;
      this.#events.push({ type: 'open', id });
      return s;
    }
    const s = this.#streams.get(id);
    if (s !== undefined) return s;
    if (peers ? id <= this.#peerHighest : id < this.#nextId) return undefined;
    throw protocolError(`frame for stream ${id}, which was never opened`);
  }

  #flags(s: Stream, flags: number): void {
    if (flags & Flag.RST) {
      this.#drop(s);
      this.#events.push({ type: 'reset', id: s.id, remote: true });
      return;
    }
    if (flags & Flag.ACK) {
      if (s.pendingAccept || (s.id % 2) !== (this.#nextId % 2)) throw protocolError(`ACK for stream ${s.id}, which we did not open`);
      this.#events.push({ type: 'accepted', id: s.id });
    }
    if (flags & Flag.FIN) {
      if (s.finReceived) throw protocolError(`second FIN on stream ${s.id}`);
      s.finReceived = true;
      this.#events.push({ type: 'fin', id: s.id });
      this.#maybeClosed(s);
    }
  }

  // ---------------------------------------------------------------- sending

  #flush(): void {
    if (this.closed) return;
    while (this.#ready.size > 0) {
      let progressed = false;
      for (const s of this.#ready) {
        this.#ready.delete(s);
        if (this.#sendOne(s)) {
          progressed = true;
          if (s.queued > 0 || (s.finQueued && !s.finSent)) this.#ready.add(s); // to the back: round robin
        }
      }
      if (!progressed) return;
    }
  }

  /** Emits at most one frame for the stream; false when it could send nothing (no credit). */
  #sendOne(s: Stream): boolean {
    if (s.pendingAccept || !this.#streams.has(s.id)) return false;
    const n = Math.min(s.queued, s.sendCredit, this.#sessionSendCredit, this.maxFrameData);
    const finNow = s.finQueued && !s.finSent && s.queued === n;
    if (n === 0 && !finNow) {
      // Wait for credit: the stream's WINDOW_UPDATE re-adds it, or the session's.
      this.#ready.delete(s);
      if (s.sendCredit > 0 && this.#sessionSendCredit === 0) this.#blockedOnSession.add(s);
      return false;
    }
    const body = this.#dequeue(s, n);
    // Header and body slices: the body is not copied into the frame (takeOutputParts).
    this.#out.push([encodeHeader({ type: FrameType.DATA, flags: finNow ? Flag.FIN : 0, streamId: s.id, length: n }), ...body]);
    s.sendCredit -= n;
    this.#sessionSendCredit -= n;
    if (finNow) {
      s.finSent = true;
      this.#maybeClosed(s);
    }
    if (s.wantWritable && s.queued < this.sendBufferLimit && this.#streams.has(s.id)) {
      s.wantWritable = false;
      this.#events.push({ type: 'writable', id: s.id });
    }
    return true;
  }

  /** Takes `n` queued bytes of the stream, as slices of what was written (no copy). */
  #dequeue(s: Stream, n: number): Buffer[] {
    s.queued -= n;
    const parts: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = s.sendQueue[0]!;
      if (c.length <= left) {
        parts.push(s.sendQueue.shift()!);
        left -= c.length;
      } else {
        parts.push(c.subarray(0, left));
        s.sendQueue[0] = c.subarray(left);
        left = 0;
      }
    }
    return parts;
  }

  // ---------------------------------------------------------------- bookkeeping

  #newStream(id: number): Stream {
    const s: Stream = {
      id, acked: false, pendingAccept: false, sendCredit: DEFAULT_WINDOW, recvWindow: this.window, unacked: 0, unconsumed: 0,
      sendQueue: [], queued: 0, wantWritable: false, finQueued: false, finSent: false, finReceived: false,
    };
    this.#streams.set(id, s);
    return s;
  }

  /** Both FINs, and every received byte consumed: only then is the stream's memory released. */
  #maybeClosed(s: Stream): void {
    if (s.finSent && s.finReceived && s.unconsumed === 0) {
      this.#drop(s);
      this.#events.push({ type: 'closed', id: s.id });
    }
  }

  /** Forgets a stream; the session credit its unconsumed bytes held is returned. */
  #drop(s: Stream): void {
    if (!this.#streams.delete(s.id)) return;
    this.#ready.delete(s);
    this.#blockedOnSession.delete(s);
    if (s.unconsumed > 0) this.#sessionConsumed(s.unconsumed);
    s.unconsumed = 0;
    s.sendQueue = [];
    s.queued = 0;
  }

  /** The session ended: every stream is dropped and reported as reset (by the peer when `remote`). */
  #dropAll(remote: boolean): void {
    for (const s of [...this.#streams.values()]) {
      this.#drop(s);
      this.#events.push({ type: 'reset', id: s.id, remote });
    }
    this.#ready.clear();
    this.#blockedOnSession.clear();
  }

  #sessionConsumed(n: number): void {
    this.#sessionUnacked += n;
    if (this.#sessionUnacked >= this.sessionWindow / 2 && !this.closed) {
      this.#out.push(encodeHeader({ type: FrameType.WINDOW_UPDATE, flags: 0, streamId: 0, length: this.#sessionUnacked }));
      this.#sessionRecvWindow += this.#sessionUnacked;
      this.#sessionUnacked = 0;
    }
  }

  #get(id: number): Stream {
    const s = this.#streams.get(id);
    if (s === undefined) throw new EnrollError('ERR_INVALID_ARG', `no open stream ${id}`);
    return s;
  }

  #alive(): void {
    if (this.#dead !== undefined) throw new EnrollError('ERR_CONNECTION_CLOSED', `the session failed: ${this.#dead.message}`);
    if (this.#goneAway) throw new EnrollError('ERR_CONNECTION_CLOSED', 'the session has gone away');
  }
}
