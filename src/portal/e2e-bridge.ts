/**
 * A TCP socket bridged to a relayed stream through its end-to-end Noise transport
 * (docs/protocol.md §11.10.3), with the same backpressure as bridge.ts: the socket pauses while
 * the stream's send queue is full, and a received E2E message returns its credit only once
 * the socket has taken its plaintext. The stream's own FIN is not trusted: only the
 * authenticated empty message ends the peer's direction; a FIN without it is a truncation,
 * and the stream is reset.
 */
import type { Socket } from 'node:net';
import { E2E_HEADER_LEN, type E2eDeframer, type E2eTransport } from '../protocol/portal/e2e.js';
import type { StreamCounts } from './bridge.js';
import type { PortalLink, StreamHandler } from './link.js';

export function bridgeE2e(
  link: PortalLink,
  id: number,
  socket: Socket,
  transport: E2eTransport,
  deframer: E2eDeframer,
  counts: StreamCounts,
  onDone: (how: 'closed' | 'reset', why?: string) => void,
): void {
  let done = false;
  const finish = (how: 'closed' | 'reset', why?: string) => {
    if (done) return;
    done = true;
    onDone(how, why);
  };
  const fail = (why: string) => {
    link.reset(id);
    socket.destroy();
    finish('reset', why);
  };
  const drain = () => {
    for (;;) {
      let m: Buffer[] | undefined;
      let plain: Buffer[] | 'fin';
      try {
        m = deframer.nextParts();
        if (m === undefined) return;
        plain = transport.openParts(m);
      } catch (e) {
        fail((e as Error).message);
        return;
      }
      let framed = E2E_HEADER_LEN;
      for (const x of m) framed += x.length;
      if (plain === 'fin') {
        link.consumed(id, framed);
        socket.end();
        continue;
      }
      // The plaintext's pieces in one corked write; the message's credit goes back once the
      // socket has taken the last of them.
      socket.cork();
      for (let i = 0; i < plain.length; i++) {
        counts.bytesIn += plain[i]!.length;
        if (i < plain.length - 1) socket.write(plain[i]!);
        else socket.write(plain[i]!, () => link.consumed(id, framed));
      }
      socket.uncork();
    }
  };
  const handler: StreamHandler = {
    data(data) {
      deframer.push(data);
      drain();
    },
    fin() {
      if (!transport.finReceived) fail('the relayed stream ended without the peer device\'s authenticated FIN');
    },
    reset() {
      socket.destroy();
      finish('reset');
    },
    closed: () => finish('closed'),
    writable: () => socket.resume(),
  };
  link.attach(id, handler);
  socket.on('data', (chunk: Buffer) => {
    counts.bytesOut += chunk.length;
    let ok = true;
    for (const b of transport.seal(chunk)) ok = link.write(id, b) && ok;
    if (!ok) socket.pause();
  });
  socket.on('end', () => {
    link.write(id, transport.sealFin());
    link.close(id);
  });
  socket.on('error', () => {
    link.reset(id);
    finish('reset');
  });
  socket.on('close', () => {
    if (!done && socket.readableEnded && socket.writableFinished) return;
    if (!done) {
      link.reset(id);
      finish('reset');
    }
  });
  drain();
  socket.resume();
}
