/**
 * A service on PostgreSQL whose database goes away (issue #21 items 6 and 7): stopped, every
 * client path is answered UNAVAILABLE and every client says "the service is temporarily
 * unavailable; retry" with exit 75 (`enroller bundle fetch`, `enroller approve`, `enrollee
 * join --bundle` for v2, whose KEM prekey request comes first, and v1, and `enrollee join
 * --token`, over HTTPS 503); started again, the same commands succeed without a restart of the
 * service. Blackholed (a TCP proxy that keeps the connections open and stops forwarding), an
 * enrollment message and a KEM prekey request are answered UNAVAILABLE within the store's
 * deadlines, well inside the enrollee's 15 s, and the service recovers once it forwards again.
 * Real processes, a private PostgreSQL cluster, real loopback TCP.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { KIND_KEM_PREKEY, ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { encodeFrame } from '../../src/transport/frame.js';
import { concat } from '../../src/crypto/bytes.js';
import { decodeBundleText } from '../../src/protocol/codec/text.js';
import { assertFailure, ok, okJson, removeTempHomes, run, show, sleep, type RunResult } from '../helpers/cli.js';
import { alarmingLines, labWorld, rawExchange, type LabWorld } from '../helpers/lab.js';
import { freshDatabase, privateCluster, type TestCluster } from '../helpers/pg.js';

const EXIT_UNAVAILABLE = 75;
const UNAVAILABLE = 'the service is temporarily unavailable; retry';

let cluster: TestCluster;
let url: string;

before(async () => {
  cluster = await privateCluster();
  url = await freshDatabase(cluster.url);
});

after(() => {
  cluster?.stop();
  removeTempHomes();
});

/** A device home with an approved card for the cached bundle `bundleId`, through `enroller approve`, and the bundle's text it prints. */
async function approvedDevice(w: LabWorld, name: string, bundleId: string): Promise<{ home: string; bundle: string }> {
  const home = join(w.root, `device-${name}`);
  const { card } = await okJson<{ card: string }>(['enrollee', 'init', '--name', name], { home });
  const bundle = (await ok(['enroller', 'approve', card, '--bundle', bundleId], { home: w.enrollerHome })).stdout.trim();
  return { home, bundle };
}

/**
 * Runs `args` until it succeeds: while the service reconnects it answers UNAVAILABLE (75),
 * and nothing else is allowed. Bounded by tries, not by a clock (each try is a real exchange).
 */
async function untilOk(args: string[], home: string, what: string): Promise<RunResult> {
  for (let tries = 0; ; tries++) {
    const r = await run(args, { home });
    if (r.code === 0) return r;
    assert.equal(r.code, EXIT_UNAVAILABLE, `${what}: only UNAVAILABLE while it recovers: ${show(r)}`);
    assert.ok(tries < 60, `${what}: still unavailable after ${tries} tries: ${show(r)}`);
    await sleep(500);
  }
}

describe('PostgreSQL stopped: every client path says the service is temporarily unavailable', () => {
  it('bundle fetch, approve, join --bundle (v2 and v1) and join --token all exit 75 with the same words, and succeed once it is back', { timeout: 300_000 }, async () => {
    const env = { OCKAM_ENROLL_STORE: url };
    const w = await labWorld({ bundles: 0, env });
    try {
      const [v2a, v2b, v2c] = await w.fetchBundles(3);
      const [v1] = (await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1', '--eka', 'v1', '--service-key', w.serviceKey], { home: w.enrollerHome })).bundles;
      const devV2 = await approvedDevice(w, 'v2', v2a!);
      const devV1 = await approvedDevice(w, 'v1', v1!);
      const [textV2, textV1] = [devV2.bundle, devV1.bundle];
      const { card: lateCard } = await okJson<{ card: string }>(['enrollee', 'init', '--name', 'late'], { home: join(w.root, 'device-late') });
      const tokenFile = join(w.root, 'sensor.jwt');
      await ok(['enroller', 'token', 'create', '--name', 'sensor', '--service', w.address, '--out', tokenFile], { home: w.enrollerHome });

      cluster.pgCtl('stop', ['-m', 'fast']);
      const seq = async (label: string, args: string[], home: string) => {
        const r = await run(args, { home });
        process.stderr.write(`# PostgreSQL stopped: ${label} exit ${r.code}: ${r.stderr.trim().split('\n').join(' | ')}\n`);
        assertFailure(r, EXIT_UNAVAILABLE, UNAVAILABLE, /nothing was recorded/);
      };
      await seq('bundle fetch', ['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1'], w.enrollerHome);
      await seq('approve', ['enroller', 'approve', lateCard, '--bundle', v2b!], w.enrollerHome);
      await seq('join --bundle (v2)', ['enrollee', 'join', '--bundle', textV2], devV2.home);
      await seq('join --bundle (v1)', ['enrollee', 'join', '--eka', 'v1', '--bundle', textV1], devV1.home);
      await seq('join --token', ['enrollee', 'join', '--token', `@${tokenFile}`], join(w.root, 'device-token'));
      // The service's log has the precise reason once, not a stack or an internal error.
      assert.ok(w.service.decisions('store-unreachable').length >= 1, w.service.lines.slice(-20).join('\n'));
      assert.deepEqual(alarmingLines(w.service.lines), []);

      cluster.pgCtl('start');
      // Back: the same commands succeed, without restarting the service (the pool reconnects).
      await untilOk(['enrollee', 'join', '--bundle', textV2], devV2.home, 'join --bundle (v2) once PostgreSQL is back');
      const j1 = await run(['enrollee', 'join', '--eka', 'v1', '--bundle', textV1], { home: devV1.home });
      assert.equal(j1.code, 0, show(j1));
      const late = await run(['enroller', 'approve', lateCard, '--bundle', v2c!], { home: w.enrollerHome, env });
      assert.equal(late.code, 0, show(late));
      const tj = await run(['enrollee', 'join', '--token', `@${tokenFile}`], { home: join(w.root, 'device-token') });
      assert.equal(tj.code, 0, show(tj));
      assert.ok(w.service.decisions('store-reachable').length >= 1);
    } finally {
      try {
        cluster.pgCtl('status');
      } catch {
        cluster.pgCtl('start'); // `status` exits 3 when stopped: the next test needs the server
      }
      await w.dispose();
    }
  });
});

/** A TCP proxy to PostgreSQL that can stop forwarding while keeping every connection open. */
function blackholeProxy(target: number): Promise<{ port: number; blackhole(on: boolean): void; close(): void }> {
  let dropping = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    sockets.add(client).add(upstream);
    client.on('data', (d) => {
      if (!dropping) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!dropping) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({
        port: (server.address() as { port: number }).port,
        blackhole(on) {
          dropping = on;
        },
        close() {
          for (const s of sockets) s.destroy();
          server.close();
        },
      }),
    ),
  );
}

describe('PostgreSQL blackholed: UNAVAILABLE within the deadlines, never a hang', () => {
  it('an enrollment message and a KEM prekey request are answered UNAVAILABLE within 12 s; the service recovers when packets flow again', { timeout: 300_000 }, async () => {
    const proxy = await blackholeProxy(cluster.port);
    const u = new URL(await freshDatabase(cluster.url));
    u.port = String(proxy.port);
    const env = { OCKAM_ENROLL_STORE: u.toString() };
    const w = await labWorld({ bundles: 0, env });
    try {
      const [id1] = await w.fetchBundles(1);
      const { home: dev, bundle: b1 } = await approvedDevice(w, 'holed', id1!);
      const kemHash = (decodeBundleText(b1) as { kemHash?: Uint8Array }).kemHash;
      assert.ok(kemHash !== undefined, 'a v2 bundle names its KEM prekey');

      proxy.blackhole(true);
      // The enrollee's own client: it waits 15 s for an answer; the service must answer first.
      const t0 = Date.now();
      const j = await run(['enrollee', 'join', '--bundle', b1], { home: dev });
      const took = Date.now() - t0;
      process.stderr.write(`# blackhole: join answered in ${took} ms, exit ${j.code}\n`);
      assertFailure(j, EXIT_UNAVAILABLE, UNAVAILABLE);
      // A raw KEM prekey request, timed on its own.
      const t1 = Date.now();
      const kem = await rawExchange(w.port, [concat(encodeFrame(Uint8Array.of(KIND_KEM_PREKEY)), encodeFrame(kemHash))], { waitMs: 30_000 });
      const kemMs = Date.now() - t1;
      process.stderr.write(`# blackhole: KEM prekey request answered in ${kemMs} ms\n`);
      assert.deepEqual(kem.frames.map((f) => [...f]), [[ENROLL_STATUS.UNAVAILABLE]], `answered UNAVAILABLE (${kem.how} after ${kemMs} ms)`);
      assert.ok(kemMs < 12_000, `the KEM prekey request was answered within 12 s (${kemMs} ms)`);
      await w.service.waitForLine(' store-unreachable ');

      proxy.blackhole(false);
      await untilOk(['enrollee', 'join', '--bundle', b1], dev, 'join once the database answers again');
      assert.deepEqual(alarmingLines(w.service.lines), []);
    } finally {
      proxy.blackhole(false);
      await w.dispose();
      proxy.close();
    }
  });
});
