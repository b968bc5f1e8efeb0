/**
 * Attributes and outlet policies across PostgreSQL replicas (issue #20, docs/policies.md,
 * docs/portals.md): two `service start` replicas on one PostgreSQL store, each on a home of
 * its own (B made by `service init --from` A), real loopback TCP, a real HTTP server behind
 * a service outlet, curl through a device's inlet.
 *
 * The outlet admits `subject.attributes.role == "operator"`; the device's session is held by
 * replica B. `service enrollee set-attr` through replica A's home and store is seen by B at
 * the next stream open (admitted), and `unset-attr` likewise (refused again): the policy is
 * checked against the record in the shared store, not a copy either replica keeps.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { ServiceHome } from '../../src/roles/service/home.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { eventually, freePort, ok, okJson, removeTempHomes, run, show, sleep, spawnCli, tempHome, type Background } from '../helpers/cli.js';
import { approveCliEnrollee, nowSeconds, startLiveService, type LiveService } from '../helpers/lab.js';
import { patience } from '../helpers/pace.js';
import { freshDatabase } from '../helpers/pg.js';
import { curl, Payload, startTarget } from '../portal/target.js';

const POLICY = 'subject.attributes.role == "operator"';

let url: string;
let homeA: string;
let homeB: string;
let a: LiveService;
let b: LiveService;
let portA: number;
let portB: number;
let http: Server;
let device: { home: string; id: string };
let inlet: Background;
let inletPort: number;

before(async () => {
  let httpPort: number;
  ({ server: http, port: httpPort } = await startTarget('hello from behind the outlet', new Payload('attrs')));
  url = await freshDatabase();
  const root = tempHome('replica-attrs');
  homeA = join(root, 'replica-a');
  homeB = join(root, 'replica-b');
  portA = await freePort();
  portB = await freePort();
  // Bundles (and so the device's service.json) name replica B: the device's sessions go there.
  let bundle: string;
  const svc = await ServiceHome.init(homeA, { address: `tcp://127.0.0.1:${portB}`, now: nowSeconds() - 60, store: url });
  try {
    const enroller = generateX25519().publicKey;
    await svc.store.allowEnroller(enroller, 'replica-attrs enroller', nowSeconds() - 60);
    const made = await approveCliEnrollee(svc, enroller, join(root, 'laptop'), 'laptop-1');
    device = { home: made.home, id: made.id };
    bundle = made.bundle;
  } finally {
    await svc.close();
  }
  const init = await run(['service', 'init', '--from', homeA, '--store', url], { home: homeB });
  assert.equal(init.code, 0, show(init));
  a = await startLiveService(homeA, portA);
  b = await startLiveService(homeB, portB);
  // approveCliEnrollee issues EKA v1 bundles (lab.ts issueBundles).
  const joined = await run(['enrollee', 'join', '--eka', 'v1', '--bundle', bundle], { home: device.home });
  assert.equal(joined.code, 0, show(joined));
  // The outlet is in the shared store: added through A, served by B.
  await ok(['service', 'outlet', 'add', 'web', '--to', `127.0.0.1:${httpPort}`, '--allow', POLICY], { home: homeA });
  inletPort = await freePort();
  inlet = spawnCli(['enrollee', 'inlet', '--from', `127.0.0.1:${inletPort}`, '--to', 'service/web', '--json'], { home: device.home });
  const end = Date.now() + (await patience(20_000));
  while (!inlet.stdout().includes('"event":"ready"')) {
    if (!inlet.running()) throw new Error(`inlet exited:\n${inlet.lines.join('\n')}`);
    if (Date.now() > end) throw new Error(`inlet not ready:\n${inlet.lines.join('\n')}`);
    await sleep(25);
  }
});

after(async () => {
  if (inlet?.running()) inlet.kill('SIGKILL');
  await inlet?.done().catch(() => undefined);
  for (const r of [a, b]) if (r?.running()) await r.stop();
  http?.close();
  removeTempHomes();
});

/** Decision lines of `r` naming the device. */
function decided(r: LiveService, what: string): string[] {
  return r.decisions(what).filter((l) => l.includes(device.id));
}

async function fetchHello() {
  return curl(['-H', 'x-who: laptop-1', `http://127.0.0.1:${inletPort}/hello`]);
}

async function attributesAt(home: string): Promise<Record<string, string>> {
  return (await okJson<{ attributes: Record<string, string> }>(['service', 'enrollee', 'show', device.id], { home })).attributes;
}

describe('replicas: set-attr through replica A is seen by replica B at the next stream open', () => {
  it('refused without role=operator; admitted after set-attr through A; refused again after unset-attr', async () => {
    // The outlet is known to B (the shared store), and no attribute admits the device yet.
    assert.deepEqual(await attributesAt(homeB), {});
    const r1 = await fetchHello();
    assert.notEqual(r1.exitCode, 0, 'curl fails: the stream was refused');
    await inlet.waitForLine(/refused: service\/web: not allowed: the --allow policy of service\/web does not admit this enrollee/);
    await eventually(() => decided(b, 'stream-refused').some((l) => l.includes('not allowed')), 'a stream-refused decision on replica B');
    assert.equal(decided(a, 'stream-refused').length + decided(a, 'stream-opened').length, 0, 'replica A served no stream of the device');

    // set-attr through replica A's home, its store given explicitly (the PostgreSQL URL).
    const set = await okJson<{ attributes: Record<string, string> }>(['service', 'enrollee', 'set-attr', device.id, 'role=operator', '--store', url], { home: homeA });
    assert.deepEqual(set.attributes, { role: 'operator' });
    assert.deepEqual(await attributesAt(homeB), { role: 'operator' }, 'B reads the same record');
    // The next stream open, on the same inlet and B's same session: admitted.
    const r2 = await fetchHello();
    assert.equal(r2.exitCode, 0, String(r2.stderr));
    assert.equal(Buffer.from(r2.stdout).toString(), 'hello from behind the outlet, laptop-1\n');
    await eventually(() => decided(b, 'stream-opened').some((l) => l.includes('target=service/web')), 'a stream-opened decision on replica B');

    // unset-attr through A: refused again at the next stream open.
    const refusedBefore = decided(b, 'stream-refused').length;
    const unset = await okJson<{ attributes: Record<string, string> }>(['service', 'enrollee', 'unset-attr', device.id, 'role', '--store', url], { home: homeA });
    assert.deepEqual(unset.attributes, {});
    const r3 = await fetchHello();
    assert.notEqual(r3.exitCode, 0, 'curl fails again');
    await eventually(() => decided(b, 'stream-refused').length > refusedBefore, 'a second stream-refused decision on replica B');
    assert.equal(inlet.running(), true, 'the inlet kept serving throughout');
    assert.equal(decided(a, 'stream-opened').length, 0, 'every stream went through replica B');

    // Both changes are in the one audit chain, read through B.
    const audit = await okJson<{ entries: { event: string; fields: Record<string, unknown> }[] }>(['service', 'audit', 'export'], { home: homeB });
    const changes = audit.entries.filter((e) => e.event === 'enrollee-attributes-changed' && e.fields.enrollee === device.id);
    assert.deepEqual(changes.map((e) => e.fields.attributes), [{ role: 'operator' }, {}]);
  });
});
