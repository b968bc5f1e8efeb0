/**
 * The Noise XX secure channel over real loopback TCP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnrollError, isEnrollError, type ErrorCode } from '../../src/errors.js';
import { equalBytes, utf8 } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { socketPair } from '../helpers/net.js';
import { patience } from '../helpers/pace.js';
import { FramedConnection } from '../../src/transport/connection.js';
import { encodeFrame } from '../../src/transport/frame.js';
import { connectTcp, listenTcp } from '../../src/transport/tcp.js';
import {
  acceptChannel,
  initiateChannel,
  MAX_CHANNEL_PAYLOAD,
  type SecureChannel,
} from '../../src/transport/channel.js';

const PROLOGUE = utf8('ockam-enroll/v1/enroller-service');

function code(c: ErrorCode) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e, c), `expected ${c}, got ${String(e)}`);
    return true;
  };
}


/** Framed connections over a real TCP pair: `i` for the initiator, `r` for the responder. */
async function connPair(): Promise<{ i: FramedConnection; r: FramedConnection }> {
  const { a, b } = await socketPair();
  return {
    i: FramedConnection.fromSocket(a, { readTimeoutMs: 5000 }),
    r: FramedConnection.fromSocket(b, { readTimeoutMs: 5000 }),
  };
}

test('handshake over a TCP server: keys and handshake hash agree, messages flow both ways', async () => {
  const service = generateX25519();
  const enroller = generateX25519();
  const serverSide: Promise<SecureChannel>[] = [];
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: async (conn) => {
      const accepted = acceptChannel(conn, { staticKeyPair: service, prologue: PROLOGUE });
      serverSide.push(accepted);
      const ch = await accepted;
      // Echo with a prefix until the peer ends.
      for (;;) {
        let m: Uint8Array;
        try {
          m = await ch.receive();
        } catch (e) {
          if (isEnrollError(e, 'ERR_CONNECTION_CLOSED')) return;
          throw e;
        }
        await ch.send(new Uint8Array([0xee, ...m]));
      }
    },
  });
  const conn = await connectTcp(server.address(), { readTimeoutMs: 5000 });
  let pinnedSeen: Uint8Array | undefined;
  const ch = await initiateChannel(conn, {
    staticKeyPair: enroller,
    prologue: PROLOGUE,
    verifyRemote: (rs) => {
      pinnedSeen = rs;
      if (!equalBytes(rs, service.publicKey)) throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', 'service key differs');
    },
  });
  const sch = await serverSide[0]!;
  assert.deepEqual(pinnedSeen, service.publicKey);
  assert.deepEqual(ch.remoteStaticKey, service.publicKey);
  assert.deepEqual(sch.remoteStaticKey, enroller.publicKey);
  assert.equal(ch.handshakeHash.length, 32);
  assert.deepEqual(ch.handshakeHash, sch.handshakeHash);
  assert.equal(ch.connection, conn);

  for (let i = 0; i < 10; i++) {
    const msg = utf8(`message ${i}`);
    await ch.send(msg);
    assert.deepEqual(await ch.receive(), new Uint8Array([0xee, ...msg]));
  }
  // Unawaited sends keep nonce order on the wire.
  const burst = Array.from({ length: 25 }, (_, i) => new Uint8Array(1000 + i).fill(i));
  await Promise.all(burst.map((m) => ch.send(m)));
  for (const m of burst) assert.deepEqual(await ch.receive(), new Uint8Array([0xee, ...m]));

  await ch.close();
  await conn.closed;
  await server.close();
});

test('both directions, empty and maximum-size payloads, responder speaking first', async () => {
  const { i, r } = await connPair();
  const a = generateX25519();
  const b = generateX25519();
  const [ci, cr] = await Promise.all([
    initiateChannel(i, { staticKeyPair: a, prologue: PROLOGUE }),
    acceptChannel(r, { staticKeyPair: b, prologue: PROLOGUE }),
  ]);
  assert.deepEqual(ci.handshakeHash, cr.handshakeHash);
  assert.deepEqual(ci.remoteStaticKey, b.publicKey);
  assert.deepEqual(cr.remoteStaticKey, a.publicKey);

  const max = new Uint8Array(MAX_CHANNEL_PAYLOAD).map((_, k) => k * 7);
  await cr.send(utf8('hello enroller'));
  await cr.send(new Uint8Array(0));
  await cr.send(max);
  assert.deepEqual(await ci.receive(), utf8('hello enroller'));
  assert.deepEqual(await ci.receive(), new Uint8Array(0));
  assert.deepEqual(await ci.receive(), max);
  await ci.send(max);
  await ci.send(utf8('bye'));
  assert.deepEqual(await cr.receive(), max);
  assert.deepEqual(await cr.receive(), utf8('bye'));

  await assert.rejects(ci.send(new Uint8Array(MAX_CHANNEL_PAYLOAD + 1)), code('ERR_NOISE_TOO_LONG'));
  // A refused send does not use a nonce: the channel still works.
  await ci.send(utf8('still fine'));
  assert.deepEqual(await cr.receive(), utf8('still fine'));
  i.destroy();
  r.destroy();
});

test('acceptChannel with msg 1 already read by the caller', async () => {
  const { i, r } = await connPair();
  const a = generateX25519();
  const b = generateX25519();
  const initiated = initiateChannel(i, { staticKeyPair: a, prologue: PROLOGUE });
  const first = await r.readFrame();
  assert.equal(first.length, 32); // XX msg 1 is the bare ephemeral key
  const cr = await acceptChannel(r, { staticKeyPair: b, prologue: PROLOGUE }, first);
  const ci = await initiated;
  assert.deepEqual(ci.handshakeHash, cr.handshakeHash);
  await ci.send(utf8('x'));
  assert.deepEqual(await cr.receive(), utf8('x'));
  i.destroy();
  r.destroy();
});

test('initiator verifyRemote rejecting (pinned key mismatch) aborts both sides before msg 3', async () => {
  const { i, r } = await connPair();
  const pinned = generateX25519().publicKey;
  const impostor = generateX25519();
  const initiated = initiateChannel(i, {
    staticKeyPair: generateX25519(),
    prologue: PROLOGUE,
    verifyRemote: async (rs) => {
      if (!equalBytes(rs, pinned)) {
        throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', 'service static key differs from the pinned one');
      }
    },
  });
  const accepted = acceptChannel(r, { staticKeyPair: impostor, prologue: PROLOGUE });
  await assert.rejects(initiated, code('ERR_SERVICE_KEY_MISMATCH'));
  // The impostor never gets msg 3 (and so never learns the initiator's static key).
  await assert.rejects(accepted, code('ERR_CONNECTION_CLOSED'));
  await Promise.all([i.closed, r.closed]);
});

test('responder verifyRemote rejecting (not on the allow list) aborts both sides', async () => {
  const { i, r } = await connPair();
  const ci = initiateChannel(i, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  const cr = acceptChannel(r, {
    staticKeyPair: generateX25519(),
    prologue: PROLOGUE,
    verifyRemote: () => {
      throw new EnrollError('ERR_ENROLLER_NOT_ALLOWED', 'enroller key is not on the allow list');
    },
  });
  await assert.rejects(cr, code('ERR_ENROLLER_NOT_ALLOWED'));
  // XX finishes on the initiator's side with msg 3; it learns of the refusal on its next read.
  const channel = await ci;
  await assert.rejects(channel.receive(), code('ERR_CONNECTION_CLOSED'));
  await Promise.all([i.closed, r.closed]);
});

test('a verifyRemote throwing a non-EnrollError becomes ERR_INTERNAL', async () => {
  const { i, r } = await connPair();
  const ci = initiateChannel(i, {
    staticKeyPair: generateX25519(),
    prologue: PROLOGUE,
    verifyRemote: () => {
      throw new Error('oops');
    },
  });
  const cr = acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  await assert.rejects(ci, code('ERR_INTERNAL'));
  await assert.rejects(cr, code('ERR_CONNECTION_CLOSED'));
});

test('a tampered transport frame makes receive reject and closes the channel', async () => {
  const { a, b } = await socketPair();
  const i = FramedConnection.fromSocket(a, { readTimeoutMs: 5000 });
  const r = FramedConnection.fromSocket(b, { readTimeoutMs: 5000 });
  const [ci, cr] = await Promise.all([
    initiateChannel(i, { staticKeyPair: generateX25519(), prologue: PROLOGUE }),
    acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE }),
  ]);
  await cr.send(utf8('first, untouched'));
  assert.deepEqual(await ci.receive(), utf8('first, untouched'));

  // Intercept the next transport message below the channel, flip one bit, and inject the
  // tampered copy through the responder's raw socket, as an on-path attacker would.
  await cr.send(utf8('attack at dawn'));
  const genuine = await i.readFrame();
  const tampered = genuine.slice();
  tampered[3]! ^= 0x01;
  b.write(encodeFrame(tampered));
  await assert.rejects(ci.receive(), code('ERR_NOISE_DECRYPT'));
  // The connection is gone and the channel's keys are poisoned.
  await i.closed;
  await assert.rejects(ci.receive(), code('ERR_CONNECTION_CLOSED'));
  await assert.rejects(ci.send(utf8('x')), code('ERR_NOISE_POISONED'));
  await assert.rejects(cr.receive(), code('ERR_CONNECTION_CLOSED'));
  await r.closed;
});

test('a truncated transport message (shorter than the tag) is refused', async () => {
  const { a, b } = await socketPair();
  const i = FramedConnection.fromSocket(a, { readTimeoutMs: 5000 });
  const r = FramedConnection.fromSocket(b, { readTimeoutMs: 5000 });
  const [ci] = await Promise.all([
    initiateChannel(i, { staticKeyPair: generateX25519(), prologue: PROLOGUE }),
    acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE }),
  ]);
  await r.writeFrame(new Uint8Array(5));
  await assert.rejects(ci.receive(), (e: unknown) => isEnrollError(e, 'ERR_NOISE_SHORT') || isEnrollError(e, 'ERR_NOISE_DECRYPT'));
  await i.closed;
  r.destroy();
});

test('different prologues fail the handshake on both sides', async () => {
  const { i, r } = await connPair();
  const ci = initiateChannel(i, { staticKeyPair: generateX25519(), prologue: utf8('ockam-enroll/v1/enroller-enrollee') });
  const cr = acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  await assert.rejects(ci, code('ERR_NOISE_DECRYPT'));
  await assert.rejects(cr, code('ERR_CONNECTION_CLOSED'));
});

test('garbage instead of msg 2 fails the handshake and destroys the connection', async () => {
  const { a, b } = await socketPair();
  const i = FramedConnection.fromSocket(a, { readTimeoutMs: 5000 });
  const initiated = initiateChannel(i, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  b.on('error', () => {});
  b.write(encodeFrame(new Uint8Array(96).fill(0x41)));
  await assert.rejects(initiated, code('ERR_NOISE_DECRYPT'));
  await i.closed;
  b.destroy();
});

test('a silent peer makes the handshake fail with ERR_TIMEOUT within handshakeTimeoutMs', async () => {
  const { i, r } = await connPair();
  const started = Date.now();
  await assert.rejects(
    acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE, handshakeTimeoutMs: 80 }),
    code('ERR_TIMEOUT'),
  );
  const bound = await patience(2000);
  assert.ok(Date.now() - started < bound, `failed after ${Date.now() - started} ms (bound ${bound} ms)`);
  await r.closed;
  // A hanging verifyRemote is bounded by the same deadline.
  const { i: i2, r: r2 } = await connPair();
  const ci = initiateChannel(i2, {
    staticKeyPair: generateX25519(),
    prologue: PROLOGUE,
    handshakeTimeoutMs: 80,
    verifyRemote: () => new Promise<void>(() => {}),
  });
  const cr = acceptChannel(r2, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  await assert.rejects(ci, code('ERR_TIMEOUT'));
  await assert.rejects(cr, code('ERR_CONNECTION_CLOSED'));
  i.destroy();
});

test('bad options are ERR_INVALID_ARG and destroy the connection', async () => {
  const { i, r } = await connPair();
  await assert.rejects(
    initiateChannel(i, { staticKeyPair: generateX25519(), prologue: 'x' as unknown as Uint8Array }),
    code('ERR_INVALID_ARG'),
  );
  await i.closed;
  await assert.rejects(
    acceptChannel(r, { staticKeyPair: generateX25519(), prologue: PROLOGUE, handshakeTimeoutMs: -1 }),
    code('ERR_INVALID_ARG'),
  );
  await r.closed;
});
