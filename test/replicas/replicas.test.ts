/**
 * Several `service start` replicas sharing one PostgreSQL store (docs/walkthrough.md "Running several
 * replicas"): real processes, real PostgreSQL (the test cluster of scripts/test.mjs), real
 * loopback TCP. Two replicas run on one home (the same IK_A, SPK_A and CA), each on its own port.
 *
 * - 2,000 enrollments sent half to each replica, a quarter of them also sent, the same
 *   message, to the other replica at the same moment, and another quarter raced by a second
 *   message (a fresh EK_B) for the same enrollee at the other replica: exactly one acceptance
 *   per enrollee, no OPK used twice, and every accepted message replayed at the other replica
 *   is refused.
 * - The audit log is one chain with every acceptance of both replicas, and verifies.
 * - A revocation (`service enrollee revoke` against the database) closes a `status --watch`
 *   held by replica 2.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { request } from 'node:https';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { generateX25519 } from '../../src/crypto/x25519.js';
import type { InitiateResult } from '../../src/protocol/enrollment/index.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { decodeTokenUnverified } from '../../src/protocol/token/claims.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { createToken } from '../../src/roles/service/tokens.js';
import { createCsr } from '../../src/x509/csr.js';
import { generateKeyPair } from '../../src/x509/keys.js';
import { encodeBase64Body } from '../../src/x509/pkcs7.js';
import { x509 } from '../../src/x509/provider.js';
import { freePort, removeTempHomes, run, show, spawnCli, tempHome, eventually } from '../helpers/cli.js';
import { alarmingLines, approveCliEnrollee, approveEnrollees, enrollChunks, messageFor, nowSeconds, openAcceptance, rawExchange, startLiveService, type LabEnrollee, type LiveService } from '../helpers/lab.js';
import { freshDatabase, pgQuery } from '../helpers/pg.js';
import { patience, slowdown } from '../helpers/pace.js';

/** How much slower than idle the machine is (pace.ts): each test's timeout below is its idle bound times this. */
const SLOW = await slowdown();

const N = 2000;
/** Enrollment messages in flight at once, over both replicas. */
const IN_FLIGHT = 64;
const FLAGS = ['--rate-per-ip', 'off', '--read-timeout', '30s'];

let url: string;
let root: string;
let home: string;
let enroller: Uint8Array;
let enrollees: LabEnrollee[];
const ports: number[] = [];
const replicas: LiveService[] = [];
/** A TCP load balancer in front of the replicas (the address bundles carry): forwards to `lbTarget`. */
let lb: Server;
let lbPort: number;
let lbTarget = 0;
/** The same for HTTPS, to replica 1 (the address tokens carry), and the replicas' HTTPS ports. */
let httpsLb: Server;
const httpsPorts: number[] = [];

before(async () => {
  url = await freshDatabase();
  root = tempHome('replicas');
  home = join(root, 'service-home');
  ports.push(await freePort(), await freePort());
  lb = createServer((client) => {
    const upstream = connect(lbTarget, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => lb.listen(0, '127.0.0.1', resolve));
  lbPort = (lb.address() as { port: number }).port;
  lbTarget = ports[0]!;
  // The same for HTTPS (docs/walkthrough.md "Running several replicas"): tokens name the balancer, which
  // forwards to replica 1, so each replica's start-up check finds this service's certificate there.
  httpsPorts.push(await freePort(), await freePort());
  httpsLb = createServer((client) => {
    const upstream = connect(httpsPorts[0]!, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => httpsLb.listen(0, '127.0.0.1', resolve));
  const httpsLbPort = (httpsLb.address() as { port: number }).port;
  // Both replicas announce the load balancer's addresses, as a fleet behind one would.
  const svc = await ServiceHome.init(home, {
    address: `tcp://127.0.0.1:${lbPort}`,
    httpsAddress: `https://127.0.0.1:${httpsLbPort}`,
    now: nowSeconds() - 60,
    store: url,
  });
  try {
    const e = generateX25519();
    enroller = e.publicKey;
    await svc.store.allowEnroller(enroller, 'replica-test enroller', nowSeconds() - 60);
    enrollees = await approveEnrollees(svc, enroller, N, 'replica');
  } finally {
    await svc.close();
  }
  // The store setting was saved by init: the replicas need no --store (the second one is given it anyway).
  replicas.push(await startLiveService(home, ports[0]!, [...FLAGS, '--https-listen', `127.0.0.1:${httpsPorts[0]}`]));
  replicas.push(await startLiveService(home, ports[1]!, [...FLAGS, '--https-listen', `127.0.0.1:${httpsPorts[1]}`, '--store', url]));
  // startLiveService returns at the TCP listener's line; the HTTPS listener (and its address
  // check) comes after it: the tests begin once both replicas serve both.
  for (const r of replicas) await r.waitForLine(' https-listening ');
});

after(async () => {
  for (const r of replicas) if (r.running()) await r.stop();
  lb?.close();
  httpsLb?.close();
  removeTempHomes();
});

/** Sends one enrollment message to `port`; the status byte (or -1: no answer) and the frame. */
async function send(port: number, message: Uint8Array): Promise<{ status: number; frame: Uint8Array | undefined }> {
  const out = await rawExchange(port, enrollChunks(message), { waitMs: 60_000 });
  const frame = out.frames[0];
  return { status: frame === undefined ? -1 : frame[0]!, frame };
}

/** Runs `tasks` with at most `limit` at once. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const out: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, tasks.length) }, async () => {
      while (next < tasks.length) {
        const i = next++;
        out[i] = await tasks[i]!();
      }
    }),
  );
  return out;
}

describe('replicas: two `service start` on one PostgreSQL store', () => {
  it(`${N} enrollments half to each replica, with duplicates to both: one acceptance per enrollee, no OPK twice, replays refused by the other replica`, { timeout: Math.ceil(300_000 * SLOW) }, async () => {
    // Per enrollee: its first message goes to replica i % 2; i % 4 == 0 also sends that same
    // message to the other replica; i % 4 == 1 races a second message (fresh EK_B) there.
    const first: InitiateResult[] = enrollees.map(messageFor);
    const second: (InitiateResult | undefined)[] = enrollees.map((e, i) => (i % 4 === 1 ? messageFor(e) : undefined));
    const accepted: { attempt: InitiateResult; replica: number }[][] = enrollees.map(() => []);
    const statuses = new Map<number, number>();
    const tasks: (() => Promise<void>)[] = enrollees.map((_, i) => async () => {
      const home = i % 2;
      const other = 1 - home;
      const sends: [number, InitiateResult][] = [[home, first[i]!]];
      if (i % 4 === 0) sends.push([other, first[i]!]);
      if (second[i]) sends.push([other, second[i]!]);
      await Promise.all(
        sends.map(async ([r, attempt]) => {
          const { status, frame } = await send(ports[r]!, attempt.message);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (frame && openAcceptance(attempt, frame)) accepted[i]!.push({ attempt, replica: r });
        }),
      );
    });
    const t0 = Date.now();
    await pool(tasks, IN_FLIGHT / 2);
    const ms = Date.now() - t0;
    process.stderr.write(`# replicas: ${N} enrollees (${Math.round(N * 1.5)} messages) in ${ms} ms; statuses ${JSON.stringify(Object.fromEntries(statuses))}\n`);

    assert.equal(statuses.get(ENROLL_STATUS.UNAVAILABLE) ?? 0, 0, 'no replica answered UNAVAILABLE');
    assert.equal(statuses.get(-1) ?? 0, 0, 'every message was answered');
    for (let i = 0; i < N; i++) assert.equal(accepted[i]!.length, 1, `enrollee ${i} was accepted exactly once (got ${accepted[i]!.length})`);
    const perReplica = [0, 1].map((r) => accepted.filter((a) => a[0]!.replica === r).length);
    assert.ok(perReplica[0]! > N / 4 && perReplica[1]! > N / 4, `both replicas accepted a share: ${perReplica.join(' / ')}`);

    // The database: one consumed OPK and one accepted EK_B per enrollee, each on its own bundle.
    const [row] = await pgQuery(
      url,
      `SELECT (SELECT count(*) FROM enrollees WHERE state = 'enrolled') AS enrolled,
              (SELECT count(*) FROM bundles WHERE state = 'consumed') AS consumed,
              (SELECT count(*) FROM accepted_ek) AS accepted_ek,
              (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM enrollees WHERE state = 'enrolled' GROUP BY bundle_id) x) AS per_bundle,
              (SELECT count(*) FROM enrollees e JOIN bundles b ON b.id = e.bundle_id WHERE e.state = 'enrolled' AND b.state <> 'consumed') AS orphans`,
    );
    assert.deepEqual(
      { enrolled: Number(row!.enrolled), consumed: Number(row!.consumed), accepted_ek: Number(row!.accepted_ek), per_bundle: Number(row!.per_bundle), orphans: Number(row!.orphans) },
      { enrolled: N, consumed: N, accepted_ek: N, per_bundle: 1, orphans: 0 },
    );
    // Each enrollee holds the IK_B of the message that was accepted.
    const iks = new Map((await pgQuery(url, `SELECT encode(id, 'hex') AS id, encode(ik_b, 'hex') AS ik FROM enrollees WHERE state = 'enrolled'`)).map((r) => [String(r.id), String(r.ik)]));
    for (let i = 0; i < N; i++) assert.equal(iks.get(enrollees[i]!.hex), Buffer.from(accepted[i]![0]!.attempt.ikB.publicKey).toString('hex'), `enrollee ${i}'s IK_B`);

    // Every accepted message, replayed at the replica that did not accept it: refused.
    const replays = await pool(
      accepted.map((a) => async () => (await send(ports[1 - a[0]!.replica]!, a[0]!.attempt.message)).status),
      IN_FLIGHT,
    );
    for (const [i, s] of replays.entries()) assert.equal(s, ENROLL_STATUS.REPLAY, `replay of enrollee ${i}'s accepted message at the other replica`);

    for (const r of replicas) assert.deepEqual(alarmingLines(r.lines), [], `replica on ${r.port} logged no internal error`);
  });

  it('the audit log is one chain holding both replicas\' acceptances, and `service audit verify` accepts it', { timeout: Math.ceil(120_000 * SLOW) }, async () => {
    // The audit sinks flush every 50 ms; wait until every acceptance is in (10 s on an idle
    // machine, scaled to its pace: a fixed count of tries ran out while the CPUs were busy).
    let accepted = 0;
    for (const end = Date.now() + (await patience(10_000)); Date.now() < end; ) {
      const [r] = await pgQuery(url, `SELECT count(*) AS n FROM audit WHERE event = 'accepted'`);
      accepted = Number(r!.n);
      if (accepted >= N) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(accepted, N, 'one `accepted` audit entry per enrollment, from both replicas');
    const verify = await run(['service', 'audit', 'verify', '--json', '--store', url], { home });
    assert.equal(verify.code, 0, show(verify));
    const report = JSON.parse(verify.stdout) as { ok: boolean; entries: number };
    assert.equal(report.ok, true);
    assert.ok(report.entries >= N, show(verify));
  });

  it('`service enrollee revoke` against the database closes a `status --watch` held by replica 2 at once', { timeout: Math.ceil(120_000 * SLOW) }, async () => {
    const svc = await ServiceHome.open(home, { store: url });
    let dev: { home: string; id: string; bundle: string };
    // The load balancer sends this device to replica 2: its enrollment and its session.
    lbTarget = ports[1]!;
    try {
      dev = await approveCliEnrollee(svc, enroller, join(root, 'device'), 'Watched Replica Bot');
    } finally {
      await svc.close();
    }
    const join1 = await run(['enrollee', 'join', '--eka', 'v1', '--bundle', dev.bundle], { home: dev.home });
    assert.equal(join1.code, 0, show(join1));
    const watch = spawnCli(['enrollee', 'status', '--watch', '--interval', '30s'], { home: dev.home });
    try {
      await watch.waitForLine('watching the session');
      // The close itself takes milliseconds (NOTIFY, then the lifecycle watcher); the bound also
      // covers the CLI's revoke and the watcher's exit, 2 s idle, scaled by the load measured now
      // (a busy machine took 2.6 s in a stress run with both cores saturated).
      const bound = await patience(2_000);
      const revoke = await run(['service', 'enrollee', 'revoke', dev.id, '--store', url], { home });
      assert.equal(revoke.code, 0, show(revoke));
      const revokedAt = Date.now();
      const r = await watch.done(5 * bound);
      const took = Date.now() - revokedAt;
      assert.equal(r.code, 3, show(r));
      assert.ok(r.stderr.includes('the service revoked this enrollee and closed the session'), show(r));
      process.stderr.write(`# replicas: the watch on replica 2 ended ${took} ms after the revocation\n`);
      assert.ok(took < bound, `the watch ended ${took} ms after the revocation (bound ${bound} ms: 2 s idle, scaled by the load)`);
      await eventually(() => replicas[1]!.decisions('channel-closed').some((l) => l.includes(`enrollee=${dev.id}`)), 'replica 2 logged channel-closed', 5_000).catch((err: Error) => {
        throw new Error(`${err.message}\nreplica 1: ${replicas[0]!.lines.filter((l) => !l.includes(' accepted ') && !l.includes(' rejected ')).join('\n')}\nreplica 2: ${replicas[1]!.lines.filter((l) => !l.includes(' accepted ') && !l.includes(' rejected ')).join('\n')}`);
      });
    } finally {
      if (watch.running()) watch.kill('SIGKILL');
    }
  });

  it('the same one-time token redeemed at both replicas at once yields exactly one certificate', { timeout: Math.ceil(120_000 * SLOW) }, async () => {
    const svc = await ServiceHome.open(home, { store: url });
    let jwt: string;
    try {
      jwt = (await createToken(svc, { name: 'raced-sensor', ttl: 600, enroller: null, now: nowSeconds() })).jwt;
    } finally {
      await svc.close();
    }
    const { claims } = decodeTokenUnverified(jwt);
    const ca = readFileSync(join(home, 'service', 'ca.cert.pem'), 'utf8');
    for (const [i, r] of replicas.entries()) {
      assert.ok(r.lines.some((l) => l.includes(' https-listening ') && l.includes(` address=127.0.0.1:${httpsPorts[i]} `)), `replica ${r.port} serves HTTPS on ${httpsPorts[i]}`);
    }
    const redeem = async (port: number) => {
      const keys = await generateKeyPair('p256');
      const csr = await createCsr({ keys, keyType: 'p256', name: 'raced-sensor', idHex: claims.sub });
      return new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = request(
          `https://127.0.0.1:${port}/.well-known/est/simpleenroll`,
          { method: 'POST', ca, headers: { 'Content-Type': 'application/pkcs10', Authorization: `Bearer ${jwt}` } },
          (r) => {
            let body = '';
            r.on('data', (d) => (body += d));
            r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
          },
        );
        req.on('error', reject);
        req.end(encodeBase64Body(csr));
      });
    };
    // Four requests at each replica, all at once.
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => redeem(httpsPorts[i % 2]!)));
    const okCount = results.filter((r) => r.status === 200).length;
    assert.equal(okCount, 1, `exactly one redemption succeeds: ${results.map((r) => r.status).join(',')}`);
    for (const r of results.filter((x) => x.status !== 200)) {
      assert.equal(r.status, 401, r.body);
      assert.equal(JSON.parse(r.body).error, 'ERR_TOKEN_USED', r.body);
    }
    const certs = await pgQuery(url, `SELECT serial FROM certificates WHERE enrollee_id = decode($1, 'hex')`, [claims.sub]);
    assert.equal(certs.length, 1, 'one certificate recorded');

    // Revoked against the database: the CRL each replica serves lists the certificate.
    const revoke = await run(['service', 'enrollee', 'revoke', claims.sub, '--store', url], { home });
    assert.equal(revoke.code, 0, show(revoke));
    for (const port of httpsPorts) {
      const der = await new Promise<Buffer>((resolve, reject) => {
        request(`https://127.0.0.1:${port}/crl`, { ca }, (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (d: Buffer) => chunks.push(d));
          r.on('end', () => (r.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`GET /crl: ${r.statusCode}`))));
        })
          .on('error', reject)
          .end();
      });
      const crl = new x509.X509Crl(der);
      assert.ok(crl.findRevoked(String(certs[0]!.serial)), `the CRL of the replica on ${port} lists the revoked certificate`);
    }
  });

  it('`service init --from` makes a third replica with the same identity, which serves from the same store', { timeout: Math.ceil(120_000 * SLOW) }, async () => {
    const home3 = join(root, 'replica-3');
    const made = await run(['service', 'init', '--from', home, '--store', url, '--json'], { home: home3 });
    assert.equal(made.code, 0, show(made));
    const j = JSON.parse(made.stdout) as { service_key: string; store: string };
    const listening = replicas[0]!.lines.find((l) => l.includes(' listening '))!;
    assert.ok(listening.includes(`service_key=${j.service_key}`), 'the same IK_A');
    assert.equal(statSync(join(home3, 'service', 'ik_a.key')).mode & 0o777, 0o600);
    // Flags that would make another identity are refused with --from.
    const refused = await run(['service', 'init', '--from', home, '--address', 'tcp://127.0.0.1:1', '--force'], { home: join(root, 'replica-x') });
    assert.equal(refused.code, 2, show(refused));
    const svc = await ServiceHome.open(home, { store: url });
    let e: LabEnrollee;
    try {
      [e] = await approveEnrollees(svc, enroller, 1, 'third');
    } finally {
      await svc.close();
    }
    const port3 = await freePort();
    const third = await startLiveService(home3, port3, FLAGS);
    try {
      const attempt = messageFor(e!);
      const { frame } = await send(port3, attempt.message);
      assert.ok(frame && openAcceptance(attempt, frame), 'the third replica accepts an enrollment approved through the store');
      assert.equal((await send(ports[0]!, attempt.message)).status, ENROLL_STATUS.REPLAY, 'and the first one refuses its replay');
    } finally {
      await third.stop();
    }
  });
});
