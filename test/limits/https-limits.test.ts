/**
 * The HTTPS listener's limits (issue #18 findings 5 and 6), through a live `service start`:
 * a per-address connection cap (--https-max-connections-per-ip: the next raw connection is
 * closed on arrival, before TLS), a short TLS handshake timeout (--https-handshake-timeout:
 * an idle raw socket is cut), and a per-address request rate (--https-rate-per-ip: 429 with
 * Retry-After; and --revocations-validity, the freshness of the list it serves). Each flood comes from one loopback address while a client on another
 * (127.0.0.2) is still served, and each refusal is a `limited` line in the decision log.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { request } from 'node:https';
import { join } from 'node:path';
import { eventually, initService, removeTempHomes, startService, tempHome, type ServiceHandle } from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';
import { decodeRevocationList } from '../../src/protocol/revocations.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One HTTPS GET from `localAddress` (the list and the CA certificates are public: no client certificate). */
function get(port: number, path: string, localAddress: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, localAddress, rejectUnauthorized: false, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

interface Raw {
  socket: Socket;
  closed: Promise<number>;
  isClosed(): boolean;
}

/** A raw TCP connection that sends nothing; `closed` resolves with the ms it stayed open. */
function raw(port: number, localAddress: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    let done = false;
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    const closed = new Promise<number>((r) => socket.once('close', () => {
      done = true;
      r(Date.now() - t0);
    }));
    socket.on('error', () => undefined);
    socket.once('connect', () => resolve({ socket, closed, isClosed: () => done }));
    socket.once('error', reject);
  });
}

const FLOOD = '127.0.0.1';
const CLIENT = '127.0.0.2';
const CAP = 4;
const HANDSHAKE_S = 3;

let svc: ServiceHandle;
let port: number;
before(async () => {
  const home = join(tempHome('https-limits'), 'service');
  const init = await initService(home);
  assert.ok(init.httpsPort !== undefined, 'this build serves HTTPS');
  port = init.httpsPort;
  svc = await startService(home, init.port, port, [
    '--https-max-connections-per-ip', String(CAP),
    '--https-handshake-timeout', `${HANDSHAKE_S}s`,
    '--https-rate-per-ip', '5/m',
    '--revocations-validity', '90s',
  ]);
});
after(async () => {
  try {
    await svc?.stop();
  } finally {
    removeTempHomes();
  }
});

describe('HTTPS listener limits (issue #18 findings 5, 6)', () => {
  it(`100 idle raw connections from one address: ${CAP} are held, the rest closed on arrival; another address is served meanwhile; the held ones are cut after the handshake timeout`, async () => {
    const held: Raw[] = [];
    for (let i = 0; i < CAP; i++) held.push(await raw(port, FLOOD));
    const extra = await Promise.all(Array.from({ length: 96 }, () => raw(port, FLOOD).catch(() => undefined)));
    // Every connection over the cap is closed by the service, while the first CAP are still open.
    const bound = await patience(HANDSHAKE_S * 1000);
    const closedFast = await Promise.all(extra.map((r) => (r ? Promise.race([r.closed, new Promise<number>((res) => setTimeout(() => res(Infinity), bound))]) : Promise.resolve(0))));
    assert.ok(closedFast.every((ms) => ms < Infinity), 'every connection over the cap was closed');
    const stillOpen = held.filter((r) => !r.isClosed()).length;
    // A legitimate client on another address gets its answer while the flood holds its cap.
    const a = await get(port, '/.well-known/est/cacerts', CLIENT);
    assert.equal(a.status, 200);
    assert.ok(a.body.length > 100);
    assert.equal(stillOpen, CAP, 'the held connections were open while the ones over the cap were refused');
    await eventually(() => svc.decisions('limited').some((l) => l.includes('limit=https-connections-per-ip') && l.includes(FLOOD)), 'a limited line for the connection cap');
    // A TLS handshake that never starts is cut after the timeout (3 s here, default 5 s).
    const openMs = await Promise.all(held.map((r) => Promise.race([r.closed, new Promise<number>((res) => setTimeout(() => res(Infinity), 20_000))])));
    for (const ms of openMs) {
      assert.ok(ms < Infinity, 'an idle raw connection is cut');
      assert.ok(ms >= HANDSHAKE_S * 1000 - 200, `held until the handshake timeout, not closed at once (${ms} ms)`);
    }
    // Its slots are free again: the flooding address is served once it behaves.
    assert.equal((await get(port, '/.well-known/est/cacerts', FLOOD)).status, 200);
  });

  it('requests over --https-rate-per-ip get 429 with Retry-After, before any route work; another address is still served', async () => {
    const from = '127.0.0.3';
    const answers: Answer[] = [];
    for (let i = 0; i < 7; i++) answers.push(await get(port, '/revocations', from));
    const statuses = answers.map((a) => a.status);
    assert.deepEqual(statuses.slice(0, 5), [200, 200, 200, 200, 200], String(statuses));
    assert.deepEqual(statuses.slice(5), [429, 429], String(statuses));
    // The served list (docs/protocol.md §4.7) is fresh for --revocations-validity, with Expires at its next_update.
    const list = decodeRevocationList(new Uint8Array(answers[0]!.body));
    assert.equal(list.nextUpdate - list.issuedAt, 90);
    assert.equal(answers[0]!.headers['content-type'], 'application/vnd.ockam-enroll.revocations');
    assert.equal(answers[0]!.headers.expires, new Date(list.nextUpdate * 1000).toUTCString());
    const refused = answers[5]!;
    assert.match(String(refused.headers['retry-after']), /^\d+$/);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    const body = JSON.parse(refused.body.toString('utf8')) as { error: string; message: string; hint: string };
    assert.equal(body.error, 'ERR_RATE_LIMITED');
    assert.match(body.message, /too many requests from this address \(limit 5\/m\)/);
    assert.equal((await get(port, '/revocations', CLIENT)).status, 200);
    await eventually(() => svc.decisions('limited').some((l) => l.includes('limit=https-rate-per-ip') && l.includes(from)), 'a limited line for the request rate');
  });
});
