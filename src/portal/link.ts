/**
 * A portal link: the stream multiplexer (src/protocol/portal/mux.ts) run over one secure
 * channel. This is the I/O shell: it reads Noise messages into the mux, packs the mux's frames
 * into Noise messages (several small frames share one message; the mux is a byte stream, so
 * frames may also span messages), and hands stream events to per-stream handlers.
 *
 * Bytes are not copied on the way (docs/performance.md "Portals"): the mux's output is
 * headers and slices of what the sockets delivered, a message is encrypted piece by piece
 * (SecureChannel.sendParts) and written as one writev, and a received message is decrypted
 * from the slices of the socket's chunks (receiveParts) and fed to the mux in pieces. Full
 * messages go out at once; a last, partial one waits for the end of the event-loop turn
 * (setImmediate), so the frames of several socket reads and window updates in one turn share
 * one message (one AES-GCM call, one syscall) instead of one each.
 */
import { EnrollError } from '../errors.js';
import { MAX_CHANNEL_PAYLOAD, type SecureChannel } from '../transport/channel.js';
import { Mux, type MuxEvent, type MuxOptions } from '../protocol/portal/mux.js';

export interface StreamHandler {
  data(data: Buffer): void;
  fin(): void;
  /** The stream is gone: reset by either side, or the link ended. */
  reset(remote: boolean): void;
  closed(): void;
  writable(): void;
  accepted?(): void;
}

/** What a link needs of a channel: one ordered, authenticated message stream. */
export type LinkChannel = Pick<SecureChannel, 'send' | 'receive' | 'close' | 'sendParts' | 'receiveParts'> & { connection: { destroy(): void } };

/** Pieces shorter than this are joined before encryption: one AES-GCM update per 12-byte header would cost more than the copy. */
const SMALL_PIECE = 512;

export class PortalLink {
  readonly mux: Mux;
  readonly #channel: LinkChannel;
  readonly #handlers = new Map<number, StreamHandler>();
  #onOpen: (id: number) => void = (id) => this.reset(id);
  #ended = false;
  readonly done: Promise<EnrollError | undefined>;
  #resolveDone!: (e: EnrollError | undefined) => void;

  readonly #idleTimeoutMs: number;
  /** Mux output not sent yet: less than one message once flush() returns. */
  #pending: Buffer[] = [];
  #pendingSize = 0;
  #scheduled = false;

  /**
   * `idleTimeoutMs` (0: none) ends the link with ERR_TIMEOUT when nothing at all arrives for
   * that long: a peer that vanished without a FIN. The other side keeps it alive with `ping`.
   */
  constructor(channel: LinkChannel, options: MuxOptions, idleTimeoutMs = 0) {
    this.#channel = channel;
    this.#idleTimeoutMs = idleTimeoutMs;
    this.mux = new Mux(options);
    this.done = new Promise((r) => (this.#resolveDone = r));
    this.flush();
    void this.#readLoop();
  }

  /** Called for every stream the peer opens; it must `accept` (and `attach`) or `reset`. */
  onOpen(fn: (id: number) => void): void {
    this.#onOpen = fn;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** A PING (yamux spec): keeps an idle link's far end from timing it out. */
  ping(): void {
    if (this.#ended || this.mux.closed) return;
    this.mux.ping();
    this.flush();
  }

  open(handler: StreamHandler): number {
    const id = this.mux.open();
    this.#handlers.set(id, handler);
    this.flush();
    return id;
  }

  attach(id: number, handler: StreamHandler): void {
    this.#handlers.set(id, handler);
  }

  accept(id: number): void {
    this.mux.accept(id);
    this.flush();
  }

  write(id: number, data: Uint8Array): boolean {
    if (this.#ended || !this.mux.has(id)) return true;
    const ok = this.mux.write(id, data);
    this.flush();
    return ok;
  }

  close(id: number): void {
    if (this.#ended) return;
    this.mux.close(id);
    this.flush();
  }

  reset(id: number): void {
    if (this.#ended) return;
    this.mux.reset(id);
    this.flush();
  }

  consumed(id: number, n: number): void {
    if (this.#ended) return;
    this.mux.consumed(id, n);
    this.flush();
  }

  /** Ends the link: GO_AWAY, every stream reset, the channel closed. */
  end(error?: EnrollError): void {
    if (this.#ended) return;
    if (!this.mux.closed) this.mux.goAway();
    this.flush();
    this.#sendRest();
    this.#finish(error);
    // Once our GO_AWAY is flushed nothing more is read (the mux ignores it), so the
    // connection goes at once: a pending receive (and its idle timer) must not keep the
    // process or the socket alive until the peer closes its side.
    this.#channel
      .close()
      .catch(() => undefined)
      .finally(() => this.#channel.connection.destroy());
  }

  #finish(error: EnrollError | undefined): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#dispatch();
    for (const [, h] of this.#handlers) h.reset(false);
    this.#handlers.clear();
    this.#resolveDone(error);
  }

  /**
   * Writes what the mux has to send, packed into channel messages of at most
   * MAX_CHANNEL_PAYLOAD: the full ones now, the rest at the end of this event-loop turn.
   */
  flush(): void {
    for (const p of this.mux.takeOutputParts()) {
      if (p.length === 0) continue;
      this.#pending.push(p);
      this.#pendingSize += p.length;
    }
    while (this.#pendingSize >= MAX_CHANNEL_PAYLOAD) this.#sendMessage(MAX_CHANNEL_PAYLOAD);
    if (this.#pendingSize > 0 && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.#sendRest);
    }
    this.#dispatch();
  }

  readonly #sendRest = (): void => {
    this.#scheduled = false;
    if (this.#pendingSize > 0 && !this.#failed) this.#sendMessage(this.#pendingSize);
  };

  #failed = false;

  /** Sends the first `n` pending bytes as one channel message. */
  #sendMessage(n: number): void {
    const pieces: Buffer[] = [];
    let small: Buffer[] = [];
    let smallSize = 0;
    const joinSmall = () => {
      if (small.length === 0) return;
      pieces.push(small.length === 1 ? small[0]! : Buffer.concat(small, smallSize));
      small = [];
      smallSize = 0;
    };
    let left = n;
    while (left > 0) {
      let p = this.#pending[0]!;
      if (p.length <= left) {
        this.#pending.shift();
      } else {
        this.#pending[0] = p.subarray(left);
        p = p.subarray(0, left);
      }
      left -= p.length;
      if (p.length < SMALL_PIECE) {
        small.push(p);
        smallSize += p.length;
      } else {
        joinSmall();
        pieces.push(p);
      }
    }
    joinSmall();
    this.#pendingSize -= n;
    const sent =
      this.#channel.sendParts !== undefined
        ? this.#channel.sendParts(pieces)
        : this.#channel.send(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, n));
    sent.catch((e: unknown) => this.#fail(e));
  }

  #dispatching = false;

  /**
   * Hands the mux's events to the handlers, in the mux's order. Not reentrant: a handler
   * that calls back into the link (consumed, write, reset) makes the mux queue more events,
   * which this loop delivers after the ones already taken. Delivered from a nested call,
   * a stream's `closed` (queued by its `consumed`) would overtake the `fin` that the same
   * frame carried, and the handler, dropped at `closed`, would never see the FIN.
   */
  #dispatch(): void {
    if (this.#dispatching) return;
    this.#dispatching = true;
    try {
      for (let events = this.mux.takeEvents(); events.length > 0; events = this.mux.takeEvents()) this.#deliver(events);
    } finally {
      this.#dispatching = false;
    }
  }

  #deliver(events: readonly MuxEvent[]): void {
    for (const e of events) {
      switch (e.type) {
        case 'open':
          this.#onOpen(e.id);
          break;
        case 'accepted':
          this.#handlers.get(e.id)?.accepted?.();
          break;
        case 'data':
          this.#handlers.get(e.id)?.data(e.data);
          break;
        case 'fin':
          this.#handlers.get(e.id)?.fin();
          break;
        case 'writable':
          this.#handlers.get(e.id)?.writable();
          break;
        case 'closed': {
          const h = this.#handlers.get(e.id);
          this.#handlers.delete(e.id);
          h?.closed();
          break;
        }
        case 'reset': {
          const h = this.#handlers.get(e.id);
          this.#handlers.delete(e.id);
          h?.reset(e.remote);
          break;
        }
        case 'goaway':
          queueMicrotask(() => this.end(e.error));
          break;
        case 'pong':
          break;
      }
    }
  }

  #fail(e: unknown): void {
    const err = e instanceof EnrollError ? e : new EnrollError('ERR_CONNECTION_CLOSED', 'the portal session ended', { cause: e });
    if (this.#ended) return;
    this.#failed = true;
    this.#pending = [];
    this.#pendingSize = 0;
    this.#channel.connection.destroy();
    this.#finish(err);
  }

  async #readLoop(): Promise<void> {
    try {
      while (!this.#ended) {
        if (this.#channel.receiveParts !== undefined) {
          for (const p of await this.#channel.receiveParts(this.#idleTimeoutMs)) this.mux.receive(p);
        } else {
          this.mux.receive(await this.#channel.receive(this.#idleTimeoutMs));
        }
        this.flush();
      }
    } catch (e) {
      this.#fail(e);
    }
  }
}
