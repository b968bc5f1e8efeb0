/**
 * connectTcp / listenTcp over real loopback TCP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, isIPv6 } from 'node:net';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { connectTcp, listenTcp, type TcpServer } from '../../src/transport/tcp.js';
import type { FramedConnection } from '../../src/transport/connection.js';
import { patience } from '../helpers/pace.js';
import { freePort as reservedPort } from '../helpers/ports.js';

function code(c: ErrorCode) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e, c), `expected ${c}, got ${String(e)}`);
    return true;
  };
}

/** A port nobody listens on, reserved so that no other test process starts listening there (ports.ts). */
const freePort = reservedPort;

/** Waits for cond; fails after ms (the bound on an idle machine, scaled by patience()). */
async function until(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + (await patience(ms));
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** An echo handler: answers each frame with the same bytes until the peer ends. */
async function echo(conn: FramedConnection): Promise<void> {
  for (;;) {
    let f: Uint8Array;
    try {
      f = await conn.readFrame();
    } catch (e) {
      if (isEnrollError(e, 'ERR_CONNECTION_CLOSED')) return;
      throw e;
    }
    await conn.writeFrame(f);
  }
}

test('connect and echo over tcp://127.0.0.1 with a string and an object address', async () => {
  const server = await listenTcp({ host: '127.0.0.1', port: 0, onConnection: echo });
  const { host, port } = server.address();
  assert.equal(host, '127.0.0.1');
  assert.ok(port > 0);
  for (const addr of [`tcp://127.0.0.1:${port}`, `127.0.0.1:${port}`, { host: '127.0.0.1', port }]) {
    const c = await connectTcp(addr, { readTimeoutMs: 2000 });
    assert.match(c.remoteAddress ?? '', new RegExp(`^127\\.0\\.0\\.1:${port}$`));
    await c.writeFrame(new Uint8Array([1, 2, 3]));
    assert.deepEqual(await c.readFrame(), new Uint8Array([1, 2, 3]));
    await c.end();
    await c.closed;
  }
  await until(() => server.connections === 0, 'connections to close');
  await server.close();
});

test('connect over IPv6 loopback when the host has it', async (t) => {
  let server: TcpServer;
  try {
    server = await listenTcp({ host: '::1', port: 0, onConnection: echo });
  } catch (e) {
    if (isEnrollError(e, 'ERR_LISTEN')) return t.skip('no IPv6 loopback here');
    throw e;
  }
  const { host, port } = server.address();
  assert.ok(isIPv6(host));
  const c = await connectTcp(`tcp://[::1]:${port}`, { readTimeoutMs: 2000 });
  assert.equal(c.remoteAddress, `[::1]:${port}`);
  await c.writeFrame(new Uint8Array([6]));
  assert.deepEqual(await c.readFrame(), new Uint8Array([6]));
  c.destroy();
  await server.close();
});

test('connect refused: ERR_UNREACHABLE naming the address, with a hint', async () => {
  const port = await freePort();
  await assert.rejects(connectTcp(`tcp://127.0.0.1:${port}`), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_UNREACHABLE'), String(e));
    assert.match(e.message, new RegExp(`tcp://127\\.0\\.0\\.1:${port}`));
    assert.match(e.message, /refused/);
    assert.match(e.hint ?? '', /ockam-enroll service start/);
    assert.match(e.hint ?? '', new RegExp(`tcp://127\\.0\\.0\\.1:${port}`));
    return true;
  });
});

test('connect to a name that does not resolve: ERR_UNREACHABLE', async () => {
  // .invalid is reserved (RFC 2606) and never resolves.
  await assert.rejects(connectTcp('tcp://no-such-host.invalid:4000', { connectTimeoutMs: 5000 }), (e: unknown) =>
    isEnrollError(e, 'ERR_UNREACHABLE') || isEnrollError(e, 'ERR_TIMEOUT'),
  );
});

test('connectTcp checks its arguments before any I/O', async () => {
  await assert.rejects(connectTcp('127.0.0.1'), code('ERR_ADDRESS'));
  await assert.rejects(connectTcp({ host: '127.0.0.1', port: 0 }), code('ERR_ADDRESS'));
  await assert.rejects(connectTcp({ host: 'a b', port: 1 }), code('ERR_ADDRESS'));
  await assert.rejects(connectTcp(null as unknown as string), code('ERR_ADDRESS'));
  await assert.rejects(connectTcp('127.0.0.1:1', { connectTimeoutMs: -5 }), code('ERR_INVALID_ARG'));
  await assert.rejects(connectTcp('127.0.0.1:1', { maxFrameLen: 1e6 }), code('ERR_INVALID_ARG'));
});

test('listenTcp on a port in use: ERR_LISTEN with a hint', async () => {
  const first = await listenTcp({ host: '127.0.0.1', port: 0, onConnection: echo });
  const { port } = first.address();
  await assert.rejects(listenTcp({ host: '127.0.0.1', port, onConnection: echo }), (e: unknown) => {
    assert.ok(isEnrollError(e, 'ERR_LISTEN'), String(e));
    assert.match(e.message, /EADDRINUSE/);
    assert.ok(e.hint);
    return true;
  });
  await first.close();
});

test('listenTcp validates its options', async () => {
  const onConnection = (): void => {};
  await assert.rejects(listenTcp({ host: '127.0.0.1', port: 70000, onConnection }), code('ERR_ADDRESS'));
  await assert.rejects(listenTcp({ host: '', port: 0, onConnection }), code('ERR_ADDRESS'));
  await assert.rejects(listenTcp({ host: '127.0.0.1', port: 0, maxConnections: 0, onConnection }), code('ERR_INVALID_ARG'));
  await assert.rejects(
    listenTcp({ host: '127.0.0.1', port: 0, onConnection: 5 as unknown as () => void }),
    code('ERR_INVALID_ARG'),
  );
  await assert.rejects(
    listenTcp({ host: '127.0.0.1', port: 0, connection: { readTimeoutMs: -1 }, onConnection }),
    code('ERR_INVALID_ARG'),
  );
});

test('maxConnections: connections over the limit are dropped at once and onError is told', async () => {
  const release: (() => void)[] = [];
  const errors: unknown[] = [];
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    maxConnections: 2,
    onConnection: (conn) =>
      new Promise<void>((resolve) => {
        release.push(resolve);
        // Hold the connection open until the test releases it.
        void conn.closed.then(resolve);
      }),
    onError: (err) => errors.push(err),
  });
  const addr = server.address();
  const c1 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await until(() => server.connections === 1, 'first connection');
  const c2 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await until(() => server.connections === 2, 'second connection');

  const c3 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await assert.rejects(c3.readFrame(), code('ERR_CONNECTION_CLOSED'));
  await until(() => errors.length === 1, 'onError for the dropped connection');
  assert.ok(isEnrollError(errors[0], 'ERR_CONNECTION_LIMIT'));
  assert.equal(server.connections, 2);

  // Once a slot frees up, new connections are served again.
  c1.destroy();
  await until(() => server.connections === 1, 'a slot to free up');
  const c4 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await until(() => server.connections === 2, 'the fourth connection');
  assert.equal(errors.length, 1);

  for (const r of release) r();
  await Promise.all([c2.closed, c4.closed]);
  c2.destroy();
  c4.destroy();
  await server.close();
});

test('a throwing or rejecting onConnection goes to onError, destroys that connection, and the server keeps serving', async () => {
  const seen: { err: unknown; conn: FramedConnection | undefined }[] = [];
  let n = 0;
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: async (conn) => {
      n++;
      if (n === 1) throw new Error('synchronous-style failure');
      if (n === 2) {
        await conn.readFrame();
        throw new TypeError('failure after a read');
      }
      await echo(conn);
    },
    onError: (err, conn) => {
      seen.push({ err, conn });
      // A throwing onError must not hurt either.
      throw new Error('onError itself fails');
    },
  });
  const addr = server.address();

  const c1 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await assert.rejects(c1.readFrame(), code('ERR_CONNECTION_CLOSED'));

  const c2 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await c2.writeFrame(new Uint8Array([1]));
  await assert.rejects(c2.readFrame(), code('ERR_CONNECTION_CLOSED'));

  const c3 = await connectTcp(addr, { readTimeoutMs: 2000 });
  await c3.writeFrame(new Uint8Array([3]));
  assert.deepEqual(await c3.readFrame(), new Uint8Array([3]));
  await c3.end();
  await c3.closed;

  assert.equal(seen.length, 2);
  assert.match(String(seen[0]!.err), /synchronous-style/);
  assert.ok(seen[1]!.err instanceof TypeError);
  assert.ok(seen[0]!.conn && seen[1]!.conn);
  await server.close();
});

test('a synchronous (non-async) throwing handler is caught too', async () => {
  const errors: unknown[] = [];
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: () => {
      throw new RangeError('sync throw');
    },
    onError: (e) => errors.push(e),
  });
  const c = await connectTcp(server.address(), { readTimeoutMs: 2000 });
  await assert.rejects(c.readFrame(), code('ERR_CONNECTION_CLOSED'));
  assert.ok(errors[0] instanceof RangeError);
  await server.close();
});

test('when the handler resolves, the connection is ended after its last frame is flushed', async () => {
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: async (conn) => {
      void conn.writeFrame(new Uint8Array(60_000).fill(1));
      void conn.writeFrame(new Uint8Array([2]));
    },
  });
  const c = await connectTcp(server.address(), { readTimeoutMs: 2000 });
  assert.equal((await c.readFrame()).length, 60_000);
  assert.deepEqual(await c.readFrame(), new Uint8Array([2]));
  await assert.rejects(c.readFrame(), code('ERR_CONNECTION_CLOSED'));
  await c.closed;
  await until(() => server.connections === 0, 'the server side to close');
  await server.close();
});

test('close() stops accepting and destroys open connections', async () => {
  const server = await listenTcp({ host: '127.0.0.1', port: 0, onConnection: echo });
  const addr = server.address();
  const c = await connectTcp(addr, { readTimeoutMs: 5000 });
  await until(() => server.connections === 1, 'the connection');
  const pending = c.readFrame();
  await server.close();
  await server.close(); // idempotent
  assert.equal(server.connections, 0);
  await assert.rejects(pending, code('ERR_CONNECTION_CLOSED'));
  await assert.rejects(connectTcp(addr), code('ERR_UNREACHABLE'));
});

test('hostile bytes on a server connection: an oversized header costs only that connection', async () => {
  const errors: unknown[] = [];
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    connection: { maxFrameLen: 512, readTimeoutMs: 2000 },
    onConnection: echo,
    onError: (e) => errors.push(e),
  });
  const { port } = server.address();
  const raw = connect(port, '127.0.0.1');
  raw.on('error', () => {});
  await once(raw, 'connect');
  raw.write(new Uint8Array([0xff, 0xff]));
  await once(raw, 'close');
  await until(() => errors.length === 1, 'onError');
  assert.ok(isEnrollError(errors[0], 'ERR_FRAME_TOO_LARGE'));

  const c = await connectTcp(server.address(), { readTimeoutMs: 2000 });
  await c.writeFrame(new Uint8Array(512));
  assert.equal((await c.readFrame()).length, 512);
  c.destroy();
  await server.close();
});

test('a silent peer is dropped by the read timeout', async () => {
  const errors: unknown[] = [];
  const server = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    connection: { readTimeoutMs: 50 },
    onConnection: echo,
    onError: (e) => errors.push(e),
  });
  const c = await connectTcp(server.address(), { readTimeoutMs: 3000 });
  await assert.rejects(c.readFrame(), code('ERR_CONNECTION_CLOSED'));
  assert.ok(isEnrollError(errors[0], 'ERR_TIMEOUT'));
  await server.close();
});
