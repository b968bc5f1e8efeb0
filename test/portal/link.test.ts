/**
 * Portal links end to end, in one process but over real parts: a Noise XX channel on loopback
 * TCP (src/transport), the mux (src/protocol/portal), the bridges to real TCP sockets
 * (src/portal/bridge.ts), a real HTTP server fetched with curl, and byte-counting targets.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { promisify } from 'node:util';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { isEnrollError } from '../../src/errors.js';
import { OpenStatus } from '../../src/protocol/portal/open.js';
import { openStream, serveStream, type OutletDecision } from '../../src/portal/bridge.js';
import { PortalLink } from '../../src/portal/link.js';
import { acceptChannel, initiateChannel } from '../../src/transport/channel.js';
import { connectTcp, listenTcp, type TcpServer } from '../../src/transport/tcp.js';

const run = promisify(execFile);
const PROLOGUE = Buffer.from('ockam-enroll/test/portal-link');

function pattern(n: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(n / 4) * 4);
  let x = seed >>> 0;
  for (let i = 0; i < out.length; i += 4) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out.writeUInt32BE(x, i);
  }
  return out.subarray(0, n);
}
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function listening(s: Server | HttpServer): Promise<number> {
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
}

let http: HttpServer;
let shaTarget: Server;
let flood: Server;
let service: TcpServer;
let link: PortalLink;
const inlets: Server[] = [];
const records: { target: string; status: number; reason: string }[] = [];
let closedPort = 0;

before(async () => {
  http = createHttpServer((req, res) => res.end(`hello through the portal: ${req.url}`));
  const httpPort = await listening(http);
  // Reads to EOF (the peer's half-close), then answers with the SHA-256 of what it read and N bytes.
  shaTarget = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined); // a reset stream resets its target connection
    const h = createHash('sha256');
    let first: Buffer | undefined;
    s.on('data', (c: Buffer) => {
      if (first === undefined) first = c.subarray(0, 12);
      h.update(c);
    });
    s.on('end', () => {
      const n = first !== undefined && first.length >= 12 && first.subarray(0, 4).toString() === 'SEND' ? Number(first.subarray(4, 12).toString()) : 0;
      s.write(h.digest('hex') + '\n');
      s.end(pattern(n, 7));
    });
  });
  const shaPort = await listening(shaTarget);
  // Sends 10 MB as fast as the connection takes it.
  flood = createServer((s) => {
    s.on('error', () => undefined); // the slow reader's stream is reset at the end
    s.end(pattern(10 * 1024 * 1024, 9));
  });
  const floodPort = await listening(flood);
  const closed = createServer();
  closedPort = await listening(closed);
  await new Promise((r) => closed.close(r));

  const targets: Record<string, { host: string; port: number }> = {
    web: { host: '127.0.0.1', port: httpPort },
    sha: { host: '127.0.0.1', port: shaPort },
    flood: { host: '127.0.0.1', port: floodPort },
    down: { host: '127.0.0.1', port: closedPort },
  };
  const decide = (target: string): OutletDecision =>
    targets[target] ?? { refuse: OpenStatus.UNKNOWN_OUTLET, reason: `no outlet named ${JSON.stringify(target)}` };

  const serviceKeys = generateX25519();
  service = await listenTcp({
    host: '127.0.0.1',
    port: 0,
    onConnection: async (conn) => {
      const channel = await acceptChannel(conn, { staticKeyPair: serviceKeys, prologue: PROLOGUE });
      const l = new PortalLink(channel, { role: 'server' });
      l.onOpen((id) => serveStream(l, id, decide, (r) => records.push(r)));
      await l.done;
    },
  });
  const conn = await connectTcp(service.address());
  const channel = await initiateChannel(conn, { staticKeyPair: generateX25519(), prologue: PROLOGUE });
  link = new PortalLink(channel, { role: 'client' });
});

after(async () => {
  link.end();
  for (const s of [http, shaTarget, flood, ...inlets]) s.close();
  await service.close();
});

/** A local listener whose every connection becomes one stream to `target`; refusals are collected. */
async function inlet(target: string, refusals: Error[] = []): Promise<number> {
  const s = createServer({ allowHalfOpen: true }, (sock) => {
    openStream(link, target, sock, { bytesIn: 0, bytesOut: 0 }, () => undefined).catch((e: Error) => {
      refusals.push(e);
      sock.destroy();
    });
  });
  inlets.push(s);
  return listening(s);
}

/** Sends `body`, half-closes, and collects the whole answer. */
function exchange(port: number, body: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('end', () => resolve(Buffer.concat(parts)));
    s.on('error', reject);
    s.end(body);
  });
}

describe('portal link over a Noise channel on loopback', () => {
  test('curl fetches a real HTTP server through an inlet', async () => {
    const port = await inlet('web');
    const { stdout } = await run('curl', ['-sS', '--max-time', '30', `http://127.0.0.1:${port}/sensor`]);
    assert.equal(stdout, 'hello through the portal: /sensor');
  });

  test('50 MB each way, SHA-256 compared at both ends, across a half-close', async () => {
    const port = await inlet('sha');
    const n = 50 * 1024 * 1024;
    const up = Buffer.concat([Buffer.from(`SEND${String(n).padStart(8, '0')}`), pattern(n, 3)]);
    const answer = await exchange(port, up);
    const nl = answer.indexOf(0x0a);
    assert.equal(answer.subarray(0, nl).toString(), sha(up), 'the target read exactly what was sent');
    const down = answer.subarray(nl + 1);
    assert.equal(down.length, n);
    assert.equal(sha(down), sha(pattern(n, 7)), 'the answer arrived intact after the half-close');
  });

  test('200 concurrent streams all complete with their own bytes', async () => {
    const port = await inlet('sha');
    const bodies = Array.from({ length: 200 }, (_, i) => Buffer.concat([Buffer.from('SEND00001000'), pattern(50_000 + i, 100 + i)]));
    const answers = await Promise.all(bodies.map((b) => exchange(port, b)));
    answers.forEach((a, i) => {
      const nl = a.indexOf(0x0a);
      assert.equal(a.subarray(0, nl).toString(), sha(bodies[i]!), `stream ${i}`);
      assert.equal(sha(a.subarray(nl + 1)), sha(pattern(1000, 7)));
    });
    assert.equal(link.mux.streamCount, 0, 'every stream released');
  });

  test('a slow reader on one stream does not stall 10 MB on another', async () => {
    const port = await inlet('flood');
    const slow = connect({ port, host: '127.0.0.1' });
    slow.pause();
    await new Promise((r) => slow.once('connect', r));
    const t0 = Date.now();
    const fast = await exchange(port, Buffer.alloc(0));
    assert.equal(fast.length, 10 * 1024 * 1024);
    assert.equal(sha(fast), sha(pattern(10 * 1024 * 1024, 9)));
    assert.ok(Date.now() - t0 < 60_000);
    // The slow stream is still open, holding at most its window plus socket buffers.
    assert.ok(!slow.destroyed);
    slow.destroy();
  });

  test('refusals carry their reason to the inlet, and the inlet keeps serving', async () => {
    const refusals: Error[] = [];
    const port = await inlet('nope', refusals);
    await exchange(port, Buffer.from('x')).catch(() => undefined);
    const downPort = await inlet('down', refusals);
    await exchange(downPort, Buffer.from('x')).catch(() => undefined);
    assert.equal(refusals.length, 2);
    assert.ok(isEnrollError(refusals[0], 'ERR_REJECTED'));
    assert.match(refusals[0]!.message, /nope: unknown outlet: no outlet named "nope"/);
    assert.match(refusals[1]!.message, /down: target refused or unreachable: 127\.0\.0\.1:\d+: ECONNREFUSED/);
    assert.ok(records.some((r) => r.target === 'nope' && r.status === OpenStatus.UNKNOWN_OUTLET));
    const webPort = await inlet('web');
    const { stdout } = await run('curl', ['-sS', '--max-time', '30', `http://127.0.0.1:${webPort}/still`]);
    assert.equal(stdout, 'hello through the portal: /still');
  });
});
