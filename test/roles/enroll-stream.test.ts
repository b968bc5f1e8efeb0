/**
 * KIND_ENROLL_STREAM (docs/protocol.md §7.2, §7.6.4): many enrollment messages on one TCP
 * connection, against a live `service start` over loopback. Each message must be answered in
 * order and checked exactly as if it had come alone on its own KIND_ENROLL connection; the
 * per-IP rate counts messages; pipelined messages are answered in order; an idle stream is
 * ended quietly; and KIND_ENROLL itself still carries one message only.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { concat } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { initiate, type InitiateResult } from '../../src/protocol/enrollment/index.js';
import { ENROLL_STATUS, KIND_ENROLL, KIND_ENROLL_STREAM, kindFrame } from '../../src/protocol/messages/service.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { eventually, removeTempHomes } from '../helpers/cli.js';
import { alarmingLines, messageFor, openAcceptance, rawExchange, serviceWithEnrollees, type LabEnrollee } from '../helpers/lab.js';
import { patience } from '../helpers/pace.js';

after(() => removeTempHomes());

const f = encodeFrame;

const serviceWith = (flags: readonly string[], n: number) => serviceWithEnrollees(flags, n, 'stream');

/** A raw KIND_ENROLL_STREAM client: frames out, ENROLL_RESPONSE frames back in order. */
class StreamClient {
  readonly #socket: Socket;
  readonly #decoder = new FrameDecoder(0xffff);
  readonly #frames: Uint8Array[] = [];
  readonly #waiters: ((f: Uint8Array | undefined) => void)[] = [];
  ended = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (chunk: Buffer) => {
      for (const frame of this.#decoder.push(new Uint8Array(chunk))) {
        const w = this.#waiters.shift();
        if (w) w(frame);
        else this.#frames.push(frame);
      }
    });
    const gone = () => {
      this.ended = true;
      for (const w of this.#waiters.splice(0)) w(undefined);
    };
    socket.on('end', gone);
    socket.on('close', gone);
    socket.on('error', gone);
  }

  static open(port: number): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.setNoDelay(true);
        s.write(f(kindFrame(KIND_ENROLL_STREAM)));
        resolve(new StreamClient(s));
      });
      s.once('error', reject);
    });
  }

  send(message: Uint8Array): void {
    this.#socket.write(f(message));
  }

  /** This end's address as the service logs it (`peer=`). */
  get peer(): string {
    return `${this.#socket.localAddress}:${this.#socket.localPort}`;
  }

  /** The next response frame, or undefined if the service closed first; timeoutMs is the idle-machine bound, scaled. */
  async next(timeoutMs = 15_000): Promise<Uint8Array | undefined> {
    const bound = await patience(timeoutMs);
    const queued = this.#frames.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no response within ${bound} ms`)), bound);
      this.#waiters.push((frame) => {
        clearTimeout(timer);
        resolve(frame);
      });
    });
  }

  async request(message: Uint8Array): Promise<Uint8Array> {
    this.send(message);
    const r = await this.next();
    assert.ok(r !== undefined, 'the service closed the stream instead of answering');
    return r;
  }

  /** Resolves, with the ms it took, once the service has ended its side; timeoutMs is the idle-machine bound, scaled. */
  async closedByService(timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    const bound = await patience(timeoutMs);
    return new Promise((resolve, reject) => {
      if (this.ended) return resolve(Date.now() - t0);
      const timer = setTimeout(() => reject(new Error(`the service did not end the stream within ${bound} ms`)), bound);
      this.#socket.once('end', () => {
        clearTimeout(timer);
        resolve(Date.now() - t0);
      });
    });
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

const unknownMessage = (e: LabEnrollee): Uint8Array => initiate({ bundle: e.bundle, eikB: generateX25519() }).message;

describe('KIND_ENROLL_STREAM: many enrollments on one connection', () => {
  it('answers each message in order, checks each as if it came alone, and enrolls every valid one', async () => {
    const { service, enrollees } = await serviceWith([], 6);
    const attempts: InitiateResult[] = enrollees.map(messageFor);
    try {
      const c = await StreamClient.open(service.port);
      // One at a time: four valid enrollments.
      for (let i = 0; i < 4; i++) {
        const a = openAcceptance(attempts[i]!, await c.request(attempts[i]!.message));
        assert.ok(a, `enrollment ${i} is accepted, and its acceptance opens under its own session key`);
      }
      // Refusals do not end the stream, and each has the status it would have alone.
      assert.deepEqual(await c.request(unknownMessage(enrollees[5]!)), Uint8Array.of(ENROLL_STATUS.UNKNOWN));
      assert.deepEqual(await c.request(new Uint8Array(100)), Uint8Array.of(ENROLL_STATUS.MALFORMED));
      assert.deepEqual(await c.request(attempts[0]!.message), Uint8Array.of(ENROLL_STATUS.REPLAY), 'a replay on the same stream');
      const tampered = attempts[4]!.message.slice();
      tampered[120] ^= 0x80;
      assert.deepEqual(await c.request(tampered), Uint8Array.of(ENROLL_STATUS.REJECTED), 'a tampered message');
      // Pipelined: two messages written together are answered in the order they came.
      c.send(attempts[4]!.message);
      c.send(unknownMessage(enrollees[5]!));
      c.send(attempts[5]!.message);
      const [r4, rUnknown, r5] = [await c.next(), await c.next(), await c.next()];
      assert.ok(openAcceptance(attempts[4]!, r4!), 'the first pipelined message is answered first');
      assert.deepEqual(rUnknown, Uint8Array.of(ENROLL_STATUS.UNKNOWN));
      assert.ok(openAcceptance(attempts[5]!, r5!), 'the third, third');
      c.destroy();

      // Each decision is logged before its answer is sent, but the log reaches us through a
      // pipe of its own, which may lag the socket: wait for the lines, then count exactly.
      await eventually(() => service.decisions('accepted').length >= 6 && service.decisions('rejected').length >= 5, 'six accepted and five rejected decisions');
      assert.equal(service.decisions('accepted').length, 6, service.lines.join('\n'));
      assert.equal(service.decisions('rejected').length, 5, service.lines.join('\n'));
      // The client's close between messages is the normal end of a stream: no error line.
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(service.decisions('error'), [], service.lines.join('\n'));
      assert.deepEqual(alarmingLines(service.lines), []);
    } finally {
      await service.stop();
    }
  });

  it('messages written in one go are answered one by one, in order; the peer closes when it has them all', async () => {
    const { service, enrollees } = await serviceWith([], 3);
    try {
      const attempts = enrollees.map(messageFor);
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL_STREAM)), ...attempts.map((a) => f(a.message)))], { closeAfterFrames: 3, waitMs: 10_000 });
      assert.equal(out.frames.length, 3, 'one response per message');
      attempts.forEach((a, i) => assert.ok(openAcceptance(a, out.frames[i]!), `response ${i} is message ${i}'s acceptance`));
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(service.decisions('error'), [], service.lines.join('\n'));
    } finally {
      await service.stop();
    }
  });

  it('after the peer half-closes, queued messages are not processed: nothing is committed that cannot be answered', async () => {
    const { service, enrollees } = await serviceWith([], 4);
    try {
      const attempts = enrollees.map(messageFor);
      // Four messages and the FIN in one go. The service's side is not half-open, so it can
      // answer none of them; at most the one already being checked when the FIN is seen is
      // committed (its enrollee recovers through its pending IK_B, as after any lost answer).
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL_STREAM)), ...attempts.map((a) => f(a.message)))], { endAfterWrite: true, waitMs: 10_000 });
      assert.equal(out.how, 'end');
      // That end is the service's socket answering our FIN at once (it is not half-open); the
      // message in flight, if any, is still being checked, committed and signed then, and may
      // be decided after the fresh stream below has been answered. So its decision is not
      // counted after a pause: the fresh stream goes first, then every enrollee's acceptance
      // is awaited, whichever stream carried it, and the first stream's are counted.
      const c = await StreamClient.open(service.port);
      const freshPeer = c.peer;
      const fresh = enrollees.map(messageFor);
      let now = 0;
      for (let i = 0; i < fresh.length; i++) {
        const r = await c.request(fresh[i]!.message);
        if (openAcceptance(fresh[i]!, r)) now++;
        else assert.deepEqual(r, Uint8Array.of(ENROLL_STATUS.USED), `enrollee ${i}: accepted, or USED if it was the one in flight`);
      }
      c.destroy();
      // An enrollee answered USED above was enrolled by the first stream: its acceptance is
      // logged once that enrollment's commit and credential are done. None may be missing.
      for (const e of enrollees) {
        await eventually(() => service.decisions('accepted').some((l) => l.includes(` enrollee=${e.hex} `)), `the accepted decision of enrollee ${e.hex}\n${service.lines.join('\n')}`);
      }
      const fromFresh = (l: string) => l.endsWith(` peer=${freshPeer}`) || l.includes(` peer=${freshPeer} `);
      const accepted = service.decisions('accepted').filter((l) => !fromFresh(l)).length;
      assert.ok(accepted <= 1, `at most the message in flight is committed, got ${accepted}\n${service.lines.join('\n')}`);
      assert.equal(now + accepted, 4, `every enrollee enrolled exactly once\n${service.lines.join('\n')}`);
      assert.equal(service.decisions('accepted').length, 4, `one acceptance per enrollee\n${service.lines.join('\n')}`);
    } finally {
      await service.stop();
    }
  });

  it('--rate-per-ip counts messages, not connections: over it, RATE_LIMITED, and the stream ends', async () => {
    const { service, enrollees } = await serviceWith(['--rate-per-ip', '3/m'], 1);
    try {
      const e = enrollees[0]!;
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL_STREAM)), ...Array.from({ length: 5 }, () => f(unknownMessage(e))))], { waitMs: 5000 });
      assert.equal(out.how, 'end', 'the service ends the stream after RATE_LIMITED');
      assert.deepEqual(
        out.frames.map((x) => [...x]),
        [[ENROLL_STATUS.UNKNOWN], [ENROLL_STATUS.UNKNOWN], [ENROLL_STATUS.UNKNOWN], [ENROLL_STATUS.RATE_LIMITED]],
      );
      assert.equal(service.decisions('rejected').length, 3, 'the limited message reached no check');
      await service.waitForLine(/ limited limit=rate-per-ip .*ERR_RATE_LIMITED: over 3\/m enrollment messages from this address/, 5000);
    } finally {
      await service.stop();
    }
  });

  it('an idle stream is ended quietly after the read timeout', async () => {
    const { service, enrollees } = await serviceWith(['--read-timeout', '1s'], 1);
    try {
      // The message is made before the stream is opened: the service's 1 s read timeout runs
      // from the open, and making it (X3DH and ML-KEM-768 in this process) took longer than
      // that on a busy machine, so the service ended the stream before the message came (a
      // whole-suite run under load, issue 24). Opened, the kind frame and the message are
      // written in the same turn.
      const a = messageFor(enrollees[0]!);
      const c = await StreamClient.open(service.port);
      // Measured from before the request: the service starts its 1 s read timer only after it
      // has answered, so the end comes at least 1 s after this point in real time, however
      // late this (possibly busy) process gets to see the answer.
      const sent = Date.now();
      assert.ok(openAcceptance(a, await c.request(a.message)));
      await c.closedByService(6000);
      const idled = Date.now() - sent;
      assert.ok(idled >= 950, `ended ${idled} ms after the request: the 1 s read timeout runs only once the answer is sent`);
      c.destroy();
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(service.decisions('limited'), [], 'an idle stream between messages is no slow-loris');
      assert.deepEqual(service.decisions('error'), [], service.lines.join('\n'));
    } finally {
      await service.stop();
    }
  });

  it('a stream cut in the middle of a message is still a read error, as on any connection', async () => {
    const { service, enrollees } = await serviceWith(['--read-timeout', '1s'], 1);
    try {
      const a = messageFor(enrollees[0]!);
      const cut = f(a.message).subarray(0, 90);
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL_STREAM)), f(a.message), cut)], { waitMs: 6000 });
      assert.equal(out.how, 'end');
      assert.equal(out.frames.length, 1, 'the whole message is answered; the cut one is not');
      await service.waitForLine(/ limited limit=read-timeout /, 5000);
    } finally {
      await service.stop();
    }
  });

  it('KIND_ENROLL still carries one message: a second one is never read', async () => {
    const { service, enrollees } = await serviceWith([], 2);
    try {
      const [a, b] = enrollees.map(messageFor);
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), f(a!.message), f(b!.message))], { waitMs: 10_000 });
      assert.equal(out.how, 'end');
      assert.equal(out.frames.length, 1);
      assert.ok(openAcceptance(a!, out.frames[0]!));
      assert.equal(service.decisions('accepted').length, 1);
    } finally {
      await service.stop();
    }
  });
});

describe('a peer that is gone before its enrollment is committed', () => {
  it('nothing is recorded: the enrollee stays pending, and its next attempt is ACCEPTED', async () => {
    // A 2 s --on-enroll hook holds the enrollment between its checks and its commit; the
    // peer resets its connection meanwhile, so no answer could reach it.
    const { service, enrollees } = await serviceWith(['--on-enroll', 'sleep 2'], 1);
    try {
      const e = enrollees[0]!;
      const first = messageFor(e);
      const out = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), f(first.message))], { resetAfterWrite: true, waitMs: 5000 });
      assert.equal(out.frames.length, 0);
      await service.waitForLine(/ rejected .*ERR_CONNECTION_CLOSED: the peer closed before its enrollment was committed; nothing recorded/, 10_000);
      assert.equal(service.decisions('accepted').length, 0);
      // Not consumed, not locked out: the next attempt (a fresh EK_B) enrolls.
      const again = messageFor(e);
      const r = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), f(again.message))], { waitMs: 10_000 });
      assert.equal(r.frames.length, 1);
      assert.ok(openAcceptance(again, r.frames[0]!), 'the second attempt is accepted');
    } finally {
      await service.stop();
    }
  });
});
