/**
 * Device outlets across replicas (issue #19 item 6, docs/architecture.md "Device outlets
 * across replicas"): two `service start` replicas on one PostgreSQL store (the test cluster of
 * scripts/test.mjs), each with --peer-listen; device Y's `enrollee outlet` holds its session
 * on replica A, device X's `enrollee inlet --to pump-7/web` on replica B (a TCP balancer in
 * front, switched between the two while each device connects), and curl reaches a real HTTP
 * server behind Y through X's inlet, relayed B → A over the replica link. A peer that dials the
 * replica-link listener with a key other than IK_A is refused and logged; `service status`
 * lists both replicas from their heartbeats.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { join } from 'node:path';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { PROLOGUE_REPLICA_REPLICA } from '../../src/protocol/portal/replica-link.js';
import { initiateChannel } from '../../src/transport/channel.js';
import { connectTcp } from '../../src/transport/tcp.js';
import { eventually, freePort, initEnrollee, ok, okJson, removeTempHomes, show, sleep, spawnCli, spawnService, tempHome, type Background, type Enrollee, type ServiceHandle } from '../helpers/cli.js';
import { freshDatabase } from '../helpers/pg.js';
import { patience } from '../helpers/pace.js';
import { curl, Payload, startTarget } from '../portal/target.js';

let env: Record<string, string>;
let root: string;
let serviceHome: string;
let enrollerHome: string;
let lb: Server;
let lbPort: number;
/** Where the balancer sends the next connection. */
let lbTarget = 0;
const replicas: { svc: ServiceHandle; port: number; peerPort: number }[] = [];
const procs: Background[] = [];
let http: HttpServer;
let httpPort: number;
let axiom: Enrollee; // device X: the inlet, on replica B
let pump: Enrollee; // device Y: the outlet, on replica A
let lamp: Enrollee; // device Z: an outlet on replica C, which has no --peer-listen
let xPort: number; // X's inlet to pump-7/web

async function waitFor(bg: Background, what: RegExp, label: string): Promise<void> {
  const end = Date.now() + (await patience(20_000));
  while (!what.test(`${bg.stdout()}\n${bg.lines.join('\n')}`)) {
    if (!bg.running()) throw new Error(`${label} exited:\n${bg.lines.join('\n')}`);
    if (Date.now() > end) throw new Error(`${label}: no ${what} in:\n${bg.lines.join('\n')}`);
    await sleep(25);
  }
}

async function startReplica(peerListen = true): Promise<{ svc: ServiceHandle; port: number; peerPort: number }> {
  const port = await freePort();
  const peerPort = await freePort();
  const svc = await spawnService(
    ['service', 'start', '--listen', `127.0.0.1:${port}`, '--https-listen', `127.0.0.1:${await freePort()}`, ...(peerListen ? ['--peer-listen', `127.0.0.1:${peerPort}`] : []), '--rate-per-ip', 'off'],
    port,
    { home: serviceHome, env, ready: [` listening address=127.0.0.1:${port} `, ...(peerListen ? [' replica-listening '] : [])] },
  );
  return { svc, port, peerPort };
}

async function enroll(e: Enrollee): Promise<void> {
  const bundle = (await ok(['enroller', 'approve', e.card], { home: enrollerHome, env })).stdout.trim();
  await ok(['enrollee', 'join', '--bundle', bundle], { home: e.home });
}

before(async () => {
  const url = await freshDatabase();
  env = { OCKAM_ENROLL_STORE: url };
  root = tempHome('replica-outlets');
  serviceHome = join(root, 'service');
  enrollerHome = join(root, 'enroller');
  ({ server: http, port: httpPort } = await startTarget('hello from behind the device', new Payload('replicas:')));
  lb = createServer((client) => {
    const upstream = connect(lbTarget, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((r) => lb.listen(0, '127.0.0.1', r));
  lbPort = (lb.address() as { port: number }).port;
  const init = await okJson<{ service_key: string }>(['service', 'init', '--address', `tcp://127.0.0.1:${lbPort}`], { home: serviceHome, env });
  replicas.push(await startReplica(), await startReplica());
  lbTarget = replicas[0]!.port;
  const enrollerKey = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home: enrollerHome })).enroller_key;
  await ok(['service', 'enroller', 'allow', enrollerKey, '--name', 'replica terminal'], { home: serviceHome, env });
  await ok(['enroller', 'bundle', 'fetch', '--service', `tcp://127.0.0.1:${lbPort}`, '--count', '3', '--service-key', init.service_key], { home: enrollerHome });
  axiom = await initEnrollee(join(root, 'axiom'), 'Robot Axiom');
  pump = await initEnrollee(join(root, 'pump'), 'pump-7');
  lamp = await initEnrollee(join(root, 'lamp'), 'lamp-3');
  await enroll(axiom);
  await enroll(pump);
  await enroll(lamp);
});

after(async () => {
  for (const bg of procs) if (bg.running()) bg.kill('SIGKILL');
  await Promise.all(procs.map((bg) => bg.done().catch(() => undefined)));
  for (const r of replicas) if (r.svc.running()) await r.svc.stop();
  lb?.close();
  http?.close();
  removeTempHomes();
});

describe('device outlets across two replicas on PostgreSQL', () => {
  it('device Y on replica A, device X on replica B: curl through X\'s inlet reaches the server behind Y, relayed over the replica link', { timeout: 120_000 }, async () => {
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    lbTarget = a.port;
    const out = spawnCli(['enrollee', 'outlet', '--name', 'web', '--to', `127.0.0.1:${httpPort}`, '--json'], { home: pump.home });
    procs.push(out);
    await waitFor(out, /"event":"ready"/, 'outlet');
    await eventually(() => a.svc.decisions('device-outlets').length === 1, 'replica A registers the device outlet');
    assert.equal(b.svc.decisions('device-outlets').length, 0, 'the outlet session is on replica A only');
    lbTarget = b.port;
    const port = (xPort = await freePort());
    const inl = spawnCli(['enrollee', 'inlet', '--from', `127.0.0.1:${port}`, '--to', 'pump-7/web', '--json'], { home: axiom.home });
    procs.push(inl);
    await waitFor(inl, /"event":"ready"/, 'inlet');
    await eventually(() => b.svc.decisions('portal-opened').length === 1, 'the inlet\'s session is on replica B');
    assert.equal(a.svc.decisions('portal-opened').length, 1, 'replica A holds only the outlet\'s session');
    for (const who of ['axiom', 'again']) {
      const r = await curl(['-H', `x-who: ${who}`, `http://127.0.0.1:${port}/hello`], { maxTimeS: 60 });
      assert.equal(r.exitCode, 0, `${Buffer.from(r.stderr).toString()}\n${b.svc.lines.join('\n')}\n${a.svc.lines.join('\n')}`);
      assert.equal(Buffer.from(r.stdout).toString(), `hello from behind the device, ${who}\n`);
    }
    // One replica link, dialled by B, served by A; both relayed the streams, neither saw a payload.
    assert.equal(b.svc.decisions('replica-link-opened').length, 1, b.svc.lines.join('\n'));
    assert.equal(a.svc.decisions('replica-link-opened').length, 1, a.svc.lines.join('\n'));
    await eventually(() => a.svc.decisions('stream-closed').length >= 2 && b.svc.decisions('stream-closed').length >= 2, 'both replicas log the streams\' close');
    for (const r of [a, b]) {
      assert.ok(r.svc.decisions('stream-opened').every((l) => /relayed/.test(l)));
      assert.ok(!r.svc.lines.join('\n').includes('hello from behind the device'), 'no payload in a replica\'s log');
    }
  });

  it('a peer that dials the replica-link listener with a key other than IK_A is refused, and logged', { timeout: 60_000 }, async () => {
    const a = replicas[0]!;
    const conn = await connectTcp({ host: '127.0.0.1', port: a.peerPort });
    // The impostor completes its side of XX (it learns IK_A, which is public); A checks msg 3's key and drops it.
    const channel = await initiateChannel(conn, { staticKeyPair: generateX25519(), prologue: PROLOGUE_REPLICA_REPLICA }).catch((e: unknown) => e as Error);
    if (!(channel instanceof Error)) {
      await assert.rejects(channel.receive(10_000), /closed|reset|ended/i);
    }
    await eventually(() => a.svc.decisions('replica-refused').some((l) => /ERR_SERVICE_KEY_MISMATCH/.test(l) && /not this service's IK_A/.test(l)), 'replica A logs the refusal');
    assert.equal(a.svc.decisions('replica-link-opened').length, 1, 'no link was opened for the impostor');
  });

  it('service status lists both replicas from their heartbeats, connected now, with their replica-link addresses', { timeout: 60_000 }, async () => {
    const r = await ok(['service', 'status', '--json'], { home: serviceHome, env });
    const s = JSON.parse(r.stdout);
    const addrs = replicas.map((x) => `127.0.0.1:${x.peerPort}`).sort();
    const seen = s.replicas_seen.filter((x: { address: string | null }) => x.address !== null && addrs.includes(x.address));
    assert.deepEqual(seen.map((x: { address: string }) => x.address).sort(), addrs, show(r));
    for (const x of seen) {
      assert.equal(x.connected, true, JSON.stringify(x));
      assert.match(x.id, /^[0-9a-z-]+-[0-9a-f]{12}$/);
      assert.ok(x.seen_ago_s >= 0 && x.seen_ago_s < 60, JSON.stringify(x));
    }
    const text = (await ok(['service', 'status'], { home: serviceHome, env })).stdout;
    for (const x of seen) assert.match(text, new RegExp(`^  ${x.id}  ${x.address.replace(/\./g, '\\.')}, connected now \\(last seen `, 'm'));
  });

  it('a device whose session is on a replica without --peer-listen: the inlet is told device offline, and why', { timeout: 120_000 }, async () => {
    const c = await startReplica(false);
    replicas.push(c);
    lbTarget = c.port;
    const z = spawnCli(['enrollee', 'outlet', '--name', 'web', '--to', `127.0.0.1:${httpPort}`, '--json'], { home: lamp.home });
    procs.push(z);
    await waitFor(z, /"event":"ready"/, 'outlet on replica C');
    lbTarget = replicas[1]!.port;
    const port = await freePort();
    const inl = spawnCli(['enrollee', 'inlet', '--from', `127.0.0.1:${port}`, '--to', 'lamp-3/web', '--json'], { home: axiom.home });
    procs.push(inl);
    await waitFor(inl, /"event":"ready"/, 'inlet');
    const r = await curl([`http://127.0.0.1:${port}/hello`], { maxTimeS: 60 });
    assert.notEqual(r.exitCode, 0);
    await waitFor(inl, /lamp-3\/web: device offline: device lamp-3 \([0-9a-f]{16}\): its session is on replica [0-9a-z-]+, which has no peer listener \(service start --peer-listen\)/, 'inlet');
    assert.ok(inl.running(), 'the inlet keeps serving');
  });

  it('a replica that dies under a relayed transfer: the stream fails at once, not after a hang, and the next open says why', { timeout: 120_000 }, async () => {
    const [a, b] = replicas as [(typeof replicas)[0], (typeof replicas)[0]];
    lbTarget = 1; // nothing listens there: device Y cannot move its session while A is down
    const slow = curl([`http://127.0.0.1:${xPort}/slow`], { maxTimeS: 120 });
    // Y connected its target for this third stream (its verdict OK): the bytes are on their way.
    await waitFor(procs[0]!, /stream from Robot Axiom \([0-9a-f]+\) to web opened[^]*to web opened[^]*to web opened/, 'outlet on replica A');
    await sleep(1000);
    a.svc.kill('SIGKILL');
    const t0 = Date.now();
    const r = await slow;
    const took = Date.now() - t0;
    assert.notEqual(r.exitCode, 0, 'the transfer was cut');
    assert.ok(r.stdout.length > 0, 'bytes flowed before');
    assert.ok(took <= (await patience(5000)), `the stream ended ${took} ms after the replica died`);
    await eventually(() => b.svc.decisions('replica-link-closed').length === 1, 'replica B sees the link end');
    const again = await curl([`http://127.0.0.1:${xPort}/hello`], { maxTimeS: 60 });
    assert.notEqual(again.exitCode, 0);
    const inl = procs[1]!;
    await waitFor(inl, /pump-7\/web: device offline: .*(which this replica cannot reach|has no outlet session open)/, 'inlet');
  });
});
