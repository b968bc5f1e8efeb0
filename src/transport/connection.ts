/**
 * A framed, promise-based connection over a byte stream: a TCP socket, or a readable and a
 * writable such as stdin/stdout or a child process's pipes.
 *
 * The service faces the network, so everything a peer can do to a stream ends as a
 * rejection with an EnrollError code and never as an unhandled 'error' event, an unhandled
 * rejection, a hang or unbounded memory:
 * - every read has a timeout (ERR_TIMEOUT);
 * - a header announcing more than `maxFrameLen` fails at once, before the body is buffered,
 *   and destroys the connection (ERR_FRAME_TOO_LARGE);
 * - frames nobody reads yet are queued up to {@link MAX_QUEUED_FRAMES}; then the stream is
 *   paused, so a fast peer meets TCP backpressure instead of filling our memory;
 * - end of stream, resets and local closes reject pending and later reads with
 *   ERR_CONNECTION_CLOSED.
 */
import type { Socket } from 'node:net';
import { finished } from 'node:stream';
import { EnrollError } from '../errors.js';
import { hostPort } from './address.js';
import { checkMaxFrameLen, encodeFrame, encodeFrameHeader, FrameDecoder, joinFrame, MAX_FRAME_LEN } from './frame.js';

export interface FramedConnectionOptions {
  /** Largest frame payload accepted or sent, 0..65535. Default 65535. */
  maxFrameLen?: number;
  /** Default timeout of each `readFrame`, in ms; 0 or Infinity disables it. Default 30 000. */
  readTimeoutMs?: number;
}

export const DEFAULT_READ_TIMEOUT_MS = 30_000;
/** Unread frames held before the stream is paused. */
export const MAX_QUEUED_FRAMES = 64;
/** Reading resumes once the queue has drained to this many frames. */
const RESUME_AT = MAX_QUEUED_FRAMES / 2;
/** setTimeout fires at once for delays above 2^31-1 ms; longer timeouts mean "none". */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Checks a timeout in ms; returns undefined for "no timeout" (0, Infinity, or beyond what
 * a timer can hold).
 */
export function checkTimeoutMs(ms: unknown, name: string): number | undefined {
  if (typeof ms !== 'number' || Number.isNaN(ms) || ms < 0) {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" must be a number of milliseconds >= 0, got ${String(ms)}`);
  }
  if (ms === 0 || ms > MAX_TIMER_MS) return undefined;
  return Math.ceil(ms);
}

/** Validates connection options up front (before a socket or child process exists). */
export function checkConnectionOptions(opts: FramedConnectionOptions | undefined, name = 'options'): void {
  if (opts === undefined) return;
  if (opts === null || typeof opts !== 'object') {
    throw new EnrollError('ERR_INVALID_ARG', `"${name}" expected an object`);
  }
  if (opts.maxFrameLen !== undefined) checkMaxFrameLen(opts.maxFrameLen);
  if (opts.readTimeoutMs !== undefined) checkTimeoutMs(opts.readTimeoutMs, 'readTimeoutMs');
}

interface Waiter {
  /** The frame as its slices (readFrameParts) or joined (readFrame). */
  resolve(frame: Uint8Array[]): void;
  reject(err: EnrollError): void;
  timer: NodeJS.Timeout | undefined;
}

interface DrainWaiter {
  resolve(): void;
  reject(err: EnrollError): void;
}

/** Node streams as used here: the NodeJS.*Stream interfaces plus the state flags they all have. */
type AnyReadable = NodeJS.ReadableStream & { destroy?(): unknown; destroyed?: boolean };
type AnyWritable = NodeJS.WritableStream & {
  destroy?(): unknown;
  destroyed?: boolean;
  writableEnded?: boolean;
  writableFinished?: boolean;
};

/**
 * Hook set by `spawnConnection`: when the child's stdout ends, say why (its exit code).
 * Internal; not re-exported from the transport index.
 */
export type EndDescriber = (midFrame: boolean, base: EnrollError) => Promise<EnrollError>;
const describers = new WeakMap<FramedConnection, EndDescriber>();
export function setEndDescriber(conn: FramedConnection, describe: EndDescriber): void {
  describers.set(conn, describe);
}

const SOCKET_ERRORS: Record<string, string> = {
  ECONNRESET: 'connection reset by peer',
  EPIPE: 'peer closed the connection (broken pipe)',
  ETIMEDOUT: 'connection timed out',
  ECONNABORTED: 'connection aborted',
};

function streamError(err: unknown): EnrollError {
  if (err instanceof EnrollError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const what = typeof code === 'string' ? (SOCKET_ERRORS[code] ?? `connection failed (${code})`) : 'connection failed';
  return new EnrollError('ERR_CONNECTION_CLOSED', what, { cause: err });
}

export class FramedConnection {
  /** "ip:port" of the peer for sockets ("[v6]:port" for IPv6); undefined for other streams. */
  readonly remoteAddress: string | undefined;
  /** Resolves once the underlying stream(s) have closed or the connection was destroyed. Never rejects. */
  readonly closed: Promise<void>;
  #maxFrameLen: number;

  readonly #readable: AnyReadable;
  readonly #writable: AnyWritable;
  readonly #decoder: FrameDecoder;
  readonly #readTimeoutMs: number | undefined;
  /** Decoded frames nobody has read yet (each as its slices); at most MAX_QUEUED_FRAMES. */
  readonly #queue: Uint8Array[][] = [];
  /** Received bytes not decoded yet because the queue is full (the stream is paused then). */
  readonly #backlog: Uint8Array[] = [];
  /** The stream has ended; handled once the backlog is decoded. */
  #eof = false;
  readonly #waiters: Waiter[] = [];
  readonly #drainWaiters: DrainWaiter[] = [];
  /** Set once reading is over for good; later reads reject with it once the queue is empty. */
  #readError: EnrollError | undefined;
  /** Set once writing is no longer possible. */
  #writeError: EnrollError | undefined;
  /** The stream ended and an EndDescriber is working out why. */
  #ending = false;
  #paused = false;
  #destroyed = false;
  #resolveClosed!: () => void;

  private constructor(
    readable: AnyReadable,
    writable: AnyWritable,
    opts: FramedConnectionOptions,
    remoteAddress: string | undefined,
  ) {
    checkConnectionOptions(opts);
    this.#maxFrameLen = checkMaxFrameLen(opts.maxFrameLen ?? MAX_FRAME_LEN);
    this.#readTimeoutMs = checkTimeoutMs(opts.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS, 'readTimeoutMs');
    this.#decoder = new FrameDecoder(this.maxFrameLen);
    this.#readable = readable;
    this.#writable = writable;
    this.remoteAddress = remoteAddress;
    this.closed = new Promise<void>((resolve) => {
      this.#resolveClosed = resolve;
    });

    // 'error' listeners stay attached for the connection's whole life: an 'error' event
    // without a listener would crash the process.
    readable.on('error', (err: unknown) => this.#onError(err, readable === (writable as unknown)));
    readable.on('end', () => this.#onEnd());
    readable.on('close', () => this.#onReadClose());
    readable.on('data', (chunk: unknown) => this.#onData(chunk));
    if ((writable as unknown) !== readable) {
      writable.on('error', (err: unknown) => this.#onWriteError(streamError(err)));
    }
    // Also for sockets: a write waiting for 'drain' must not wait forever on a closed socket.
    writable.on('close', () => this.#onWriteError(new EnrollError('ERR_CONNECTION_CLOSED', 'connection closed')));
    writable.on('drain', () => this.#settleDrain(undefined));

    // A stream that ended or died before we got it emits nothing more: settle reads now.
    const state = readable as { readableEnded?: boolean; destroyed?: boolean };
    if (state.readableEnded === true) queueMicrotask(() => this.#onEnd());
    else if (state.destroyed === true) queueMicrotask(() => this.#onReadClose());

    // `closed`: for a socket its 'close' event; for a pair of streams, both being done.
    if ((writable as unknown) === readable) {
      readable.once('close', () => this.#resolveClosed());
    } else {
      let done = 0;
      const one = (): void => {
        if (++done === 2) this.#resolveClosed();
      };
      finished(readable, { writable: false }, one);
      finished(writable, { readable: false }, one);
    }
  }

  /** The largest frame read or written, header excluded. */
  get maxFrameLen(): number {
    return this.#maxFrameLen;
  }

  /**
   * Raises the frame limit, for a connection whose peer has authenticated and switched to a
   * protocol with bigger messages (a portal link, docs/protocol.md §11.8). Never lowers it.
   */
  raiseMaxFrameLen(n: number): void {
    const v = checkMaxFrameLen(n);
    if (v <= this.#maxFrameLen) return;
    this.#maxFrameLen = v;
    this.#decoder.maxFrameLen = v;
  }

  /** Frames a connected TCP socket. */
  static fromSocket(socket: Socket, opts: FramedConnectionOptions = {}): FramedConnection {
    const addr =
      socket.remoteAddress !== undefined && socket.remotePort !== undefined
        ? hostPort(socket.remoteAddress, socket.remotePort)
        : undefined;
    return new FramedConnection(socket, socket, opts, addr);
  }

  /** Frames a readable/writable pair, e.g. stdin/stdout or a child process's stdout/stdin. */
  static fromStreams(
    readable: NodeJS.ReadableStream,
    writable: NodeJS.WritableStream,
    opts: FramedConnectionOptions = {},
  ): FramedConnection {
    return new FramedConnection(readable, writable, opts, undefined);
  }

  /**
   * The next frame. Rejects with ERR_TIMEOUT after `timeoutMs` (default: the connection's
   * readTimeoutMs; 0 or Infinity: wait forever) — the connection stays usable after a
   * timeout. Rejects with ERR_CONNECTION_CLOSED once the peer has ended (frames that
   * arrived before that are still returned first) and ERR_FRAME_TOO_LARGE after an
   * oversized header.
   */
  readFrame(timeoutMs?: number): Promise<Uint8Array> {
    // A new array of its own, as the decoder always gave: a caller may keep it.
    return this.#read(timeoutMs, true) as Promise<Uint8Array>;
  }

  /**
   * As readFrame, but the frame comes as the slices of the received chunks it lies in, with
   * no copy made (an empty frame is an empty list): for a reader that decrypts it into a new
   * buffer at once (SecureChannel.receiveParts). The slices must not be kept.
   */
  readFrameParts(timeoutMs?: number): Promise<Uint8Array[]> {
    return this.#read(timeoutMs, false) as Promise<Uint8Array[]>;
  }

  #read(timeoutMs: number | undefined, join: boolean): Promise<Uint8Array | Uint8Array[]> {
    let ms: number | undefined;
    try {
      ms = timeoutMs === undefined ? this.#readTimeoutMs : checkTimeoutMs(timeoutMs, 'timeoutMs');
    } catch (e) {
      return Promise.reject(e);
    }
    const frame = this.#queue.shift();
    if (frame !== undefined) {
      this.#pump();
      return Promise.resolve(join ? joinFrame(frame) : frame);
    }
    if (this.#readError !== undefined) return Promise.reject(this.#readError);
    return new Promise<Uint8Array | Uint8Array[]>((resolve, reject) => {
      const waiter: Waiter = { resolve: join ? (f) => resolve(joinFrame(f)) : resolve, reject, timer: undefined };
      if (ms !== undefined) {
        waiter.timer = setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(new EnrollError('ERR_TIMEOUT', `no frame received within ${ms} ms`));
        }, ms);
      }
      this.#waiters.push(waiter);
    });
  }

  /**
   * The next frame, or undefined when the peer stopped between frames: it ended or reset the
   * connection, or sent nothing within the timeout, with no part of a next frame received.
   * For exchanges where the peer may send another request or go (KIND_ENROLL_STREAM,
   * docs/protocol.md §7.2). A peer that stops mid-frame still rejects, as in readFrame.
   */
  async readFrameOrEnd(timeoutMs?: number): Promise<Uint8Array | undefined> {
    try {
      return await this.readFrame(timeoutMs);
    } catch (err) {
      const betweenFrames = !this.#decoder.inProgress && this.#backlog.length === 0;
      if (betweenFrames && err instanceof EnrollError && (err.code === 'ERR_CONNECTION_CLOSED' || err.code === 'ERR_TIMEOUT')) {
        return undefined;
      }
      throw err;
    }
  }

  /**
   * Sends one frame. Resolves once the stream has taken it, after 'drain' when the stream
   * is applying backpressure. The bytes are handed to the stream synchronously, so frames
   * go out in call order even when callers do not await each write.
   */
  writeFrame(payload: Uint8Array): Promise<void> {
    let frame: Uint8Array;
    try {
      frame = encodeFrame(payload, this.maxFrameLen);
    } catch (e) {
      return Promise.reject(e);
    }
    const closed = this.#writeClosedError();
    if (closed !== undefined) return Promise.reject(closed);
    let ok: boolean;
    try {
      ok = this.#writable.write(frame);
    } catch (cause) {
      return Promise.reject(streamError(cause));
    }
    if (ok) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#drainWaiters.push({ resolve, reject });
    });
  }

  /**
   * Sends one frame whose payload is the concatenation of `parts`, without joining them: the
   * header and the pieces go to the stream corked, as one writev (one syscall on a socket).
   * Same limits, ordering and backpressure as writeFrame.
   */
  writeFrameParts(parts: readonly Uint8Array[]): Promise<void> {
    let header: Uint8Array;
    try {
      let n = 0;
      for (const p of parts) {
        if (!(p instanceof Uint8Array)) throw new EnrollError('ERR_INVALID_ARG', '"payload" expected Uint8Array parts');
        n += p.length;
      }
      header = encodeFrameHeader(n, this.maxFrameLen);
    } catch (e) {
      return Promise.reject(e);
    }
    const closed = this.#writeClosedError();
    if (closed !== undefined) return Promise.reject(closed);
    const w = this.#writable as AnyWritable & { cork?(): void; uncork?(): void };
    let ok: boolean;
    try {
      w.cork?.();
      ok = w.write(header);
      for (const p of parts) if (p.length > 0) ok = w.write(p);
    } catch (cause) {
      return Promise.reject(streamError(cause));
    } finally {
      w.uncork?.();
    }
    if (ok) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.#drainWaiters.push({ resolve, reject });
    });
  }

  /**
   * Half-closes: flushes what was written, then ends our side (FIN on TCP). Frames can still
   * be read until the peer ends too. Resolves once flushed, or at once if already closed;
   * never rejects.
   */
  end(): Promise<void> {
    const w = this.#writable;
    if (this.#destroyed || w.destroyed === true || w.writableFinished === true) return Promise.resolve();
    return new Promise<void>((resolve) => {
      finished(w as NodeJS.WritableStream, { readable: false }, () => resolve());
      if (w.writableEnded !== true) {
        try {
          // The callback too: process.stdout on a pipe calls it without ever finishing.
          w.end(() => resolve());
        } catch {
          // Some stdio streams refuse end(); there is nothing left to flush then.
          resolve();
        }
      }
    });
  }

  /** Closes both directions at once; pending reads and writes reject with ERR_CONNECTION_CLOSED. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const err = new EnrollError('ERR_CONNECTION_CLOSED', 'connection was closed locally');
    this.#ending = false;
    this.#failRead(err);
    this.#onWriteError(err);
    this.#readable.destroy?.();
    if ((this.#writable as unknown) !== this.#readable) this.#writable.destroy?.();
    // Streams that do not emit 'close' when destroyed (process.stdout) still count as closed.
    if ((this.#writable as unknown) !== this.#readable) this.#resolveClosed();
  }

  /** False once this side can no longer send: ended, destroyed, or the peer is gone. */
  get writable(): boolean {
    return this.#writeClosedError() === undefined;
  }

  /** True once destroy() was called. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  #writeClosedError(): EnrollError | undefined {
    if (this.#writeError !== undefined) return this.#writeError;
    const w = this.#writable;
    if (this.#destroyed || w.destroyed === true || w.writableEnded === true) {
      return new EnrollError('ERR_CONNECTION_CLOSED', 'connection is closed for writing');
    }
    return undefined;
  }

  #onData(chunk: unknown): void {
    if (this.#readError !== undefined || this.#ending || this.#eof) return;
    if (!(chunk instanceof Uint8Array)) {
      // Someone called setEncoding() on the stream: text decoding would corrupt frames.
      this.#failRead(new EnrollError('ERR_FRAME_MALFORMED', 'stream delivers text, not bytes'));
      this.destroy();
      return;
    }
    this.#backlog.push(chunk);
    this.#pump();
  }

  /**
   * Decodes the backlog into frames while there is room for them, hands frames to waiting
   * readers, and pauses or resumes the stream. Decoding stops when the queue is full rather
   * than when the stream is: one 64 KiB chunk can hold 32 768 empty frames, and turning each
   * into an object would let a peer multiply its bytes in our heap.
   */
  #pump(): void {
    while (this.#backlog.length > 0 && this.#readError === undefined) {
      const room = MAX_QUEUED_FRAMES + this.#waiters.length - this.#queue.length;
      if (room <= 0) break;
      const head = this.#backlog[0]!;
      let decoded: { frames: Uint8Array[][]; used: number };
      try {
        decoded = this.#decoder.pushPartsUpTo(head, room);
      } catch (e) {
        this.#backlog.length = 0;
        this.#failRead(e instanceof EnrollError ? e : streamError(e));
        this.destroy();
        return;
      }
      if (decoded.used === head.length) this.#backlog.shift();
      else this.#backlog[0] = head.subarray(decoded.used);
      for (const frame of decoded.frames) {
        const waiter = this.#waiters.shift();
        if (waiter !== undefined) {
          clearTimeout(waiter.timer);
          waiter.resolve(frame);
        } else {
          this.#queue.push(frame);
        }
      }
    }
    if (this.#readError !== undefined) return;
    const full = this.#backlog.length > 0 || this.#queue.length >= MAX_QUEUED_FRAMES;
    if (full && !this.#paused) {
      this.#paused = true;
      this.#readable.pause();
    } else if (!full && this.#paused && this.#queue.length <= RESUME_AT) {
      this.#paused = false;
      this.#readable.resume();
    }
    if (this.#eof && this.#backlog.length === 0) this.#onEndDecoded();
  }

  #onEnd(): void {
    if (this.#readError !== undefined || this.#ending || this.#eof) return;
    this.#eof = true;
    this.#pump();
  }

  /** The stream ended and every byte it delivered has been decoded. */
  #onEndDecoded(): void {
    if (this.#readError !== undefined || this.#ending) return;
    const midFrame = this.#decoder.inProgress;
    let base: EnrollError;
    if (midFrame) {
      const { received, expected } = this.#decoder.progress;
      base = new EnrollError(
        'ERR_CONNECTION_CLOSED',
        `peer closed the connection mid-frame (${received} of ${expected ?? 'at least 2'} bytes received)`,
      );
    } else {
      base = new EnrollError('ERR_CONNECTION_CLOSED', 'peer closed the connection');
    }
    const describe = describers.get(this);
    if (describe === undefined) {
      this.#failRead(base);
      return;
    }
    this.#ending = true;
    describe(midFrame, base).then(
      (err) => this.#failRead(err, true),
      () => this.#failRead(base, true),
    );
  }

  #onReadClose(): void {
    // After a clean end, the reason is given once the backlog is decoded.
    if (this.#ending || (this.#eof && this.#backlog.length > 0)) return;
    this.#failRead(new EnrollError('ERR_CONNECTION_CLOSED', 'connection closed'));
  }

  #onError(err: unknown, bothWays: boolean): void {
    const e = streamError(err);
    // A stream error is a more precise reason than an EndDescriber could give.
    this.#ending = false;
    this.#failRead(e);
    if (bothWays) this.#onWriteError(e);
  }

  #onWriteError(err: EnrollError): void {
    this.#writeError ??= err;
    this.#settleDrain(this.#writeError);
  }

  #settleDrain(err: EnrollError | undefined): void {
    const waiters = this.#drainWaiters.splice(0);
    for (const w of waiters) {
      if (err === undefined) w.resolve();
      else w.reject(err);
    }
  }

  /** Ends reading for good: pending waiters reject; queued frames are still handed out. */
  #failRead(err: EnrollError, fromDescriber = false): void {
    if (this.#readError !== undefined) return;
    if (this.#ending && !fromDescriber) return;
    this.#ending = false;
    this.#readError = err;
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.reject(err);
    }
  }
}
