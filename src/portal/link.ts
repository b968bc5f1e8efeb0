/**
 * A portal link: the stream multiplexer (src/protocol/portal/mux.ts) run over one secure
 * channel. This is the I/O shell: it reads Noise messages into the mux, packs the mux's frames
 * into Noise messages (several small frames share one message; the mux is a byte stream, so
 * frames may also span messages), and hands stream events to per-stream handlers.
 */
import { EnrollError } from '../errors.js';
import { MAX_CHANNEL_PAYLOAD, type SecureChannel } from '../transport/channel.js';
import { Mux, type MuxOptions } from '../protocol/portal/mux.js';

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
export type LinkChannel = Pick<SecureChannel, 'send' | 'receive' | 'close'> & { connection: { destroy(): void } };

export class PortalLink {
  readonly mux: Mux;
  readonly #channel: LinkChannel;
  readonly #handlers = new Map<number, StreamHandler>();
  #onOpen: (id: number) => void = (id) => this.reset(id);
  #ended = false;
  readonly done: Promise<EnrollError | undefined>;
  #resolveDone!: (e: EnrollError | undefined) => void;

  readonly #idleTimeoutMs: number;

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

  /** Writes what the mux has to send, packed into channel messages of at most MAX_CHANNEL_PAYLOAD. */
  flush(): void {
    const frames = this.mux.takeOutput();
    let batch: Buffer[] = [];
    let size = 0;
    const send = () => {
      if (size === 0) return;
      const msg = batch.length === 1 ? batch[0]! : Buffer.concat(batch, size);
      batch = [];
      size = 0;
      this.#channel.send(msg).catch((e: unknown) => this.#fail(e));
    };
    for (let f of frames) {
      while (f.length > 0) {
        const room = MAX_CHANNEL_PAYLOAD - size;
        const piece = f.length <= room ? f : f.subarray(0, room);
        batch.push(piece);
        size += piece.length;
        f = f.subarray(piece.length);
        if (size === MAX_CHANNEL_PAYLOAD) send();
      }
    }
    send();
    this.#dispatch();
  }

  #dispatch(): void {
    for (const e of this.mux.takeEvents()) {
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
    this.#channel.connection.destroy();
    this.#finish(err);
  }

  async #readLoop(): Promise<void> {
    try {
      while (!this.#ended) {
        const msg = await this.#channel.receive(this.#idleTimeoutMs);
        this.mux.receive(msg);
        this.flush();
      }
    } catch (e) {
      this.#fail(e);
    }
  }
}
