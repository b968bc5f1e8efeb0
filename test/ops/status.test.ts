/**
 * `service status [--json]` (issue #21 item 4, docs/operations.md "service status"), beside a
 * running service, against SQLite and PostgreSQL: enrollees by state (an expired approval,
 * a locked-out one), bundles in stock per enroller, tokens outstanding, the signed prekey,
 * the CA, the audit head (the one `service audit verify` prints), the running process or
 * the replicas, and the store URL's password masked. The bundle and channel gauges of
 * /metrics agree with it. Real processes, real loopback TCP, real stores.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { freePort, ok, okJson, removeTempHomes, run, show, tempHome } from '../helpers/cli.js';
import { labWorld, nowSeconds, type LabWorld } from '../helpers/lab.js';
import { freshDatabase } from '../helpers/pg.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { enrolleeId } from '../../src/protocol/enrollment/index.js';
import { fromHex } from '../../src/crypto/bytes.js';

after(() => removeTempHomes());

function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    })
      .on('error', reject)
      .end();
  });
}

function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** One device enrolled through the CLI: a bundle fetched, its card approved, joined. */
async function enrollOne(w: LabWorld, name: string, env: Record<string, string>): Promise<void> {
  const home = join(w.root, `device-${name}`);
  const [id] = await w.fetchBundles(1);
  const { card } = await okJson<{ card: string }>(['enrollee', 'init', '--name', name], { home, env });
  const bundle = (await ok(['enroller', 'approve', card, '--bundle', id!], { home: w.enrollerHome, env })).stdout.trim();
  await ok(['enrollee', 'join', '--bundle', bundle], { home, env });
}

/**
 * The state the assertions expect, made beside the running service: 1 enrolled, 1 pending
 * whose approval expired, 1 pending locked out, 1 pending and fine, 1 token identity pending (4 bundles used in
 * all), 3 bundles in stock, 1 token outstanding.
 */
async function makeState(w: LabWorld, env: Record<string, string>): Promise<void> {
  await enrollOne(w, 'one', env);
  await w.fetchBundles(6);
  const svc = await ServiceHome.open(w.serviceHome, env.OCKAM_ENROLL_STORE ? { store: env.OCKAM_ENROLL_STORE } : {});
  try {
    const enroller = fromHex(w.enrollerKey);
    const stock = (await svc.store.listEnrollees()).length; // 1
    assert.equal(stock, 1);
    // Bundles of this enroller still issued: approve three of them as an APPROVE would.
    const issued = await issuedBundles(svc);
    assert.equal(issued.length, 6);
    const now = nowSeconds();
    const approve = async (i: number, expiresAt: number) => {
      const eik = generateX25519();
      const id = enrolleeId(eik.publicKey);
      await svc.store.approve({ enrolleeId: id, eikB: eik.publicKey, bundleId: issued[i]!, petName: `p${i}`, enroller, now: now - 120, expiresAt });
      return id;
    };
    await approve(0, now - 60); // expired
    const locked = await approve(1, now + 3600);
    for (let k = 0; k < svc.settings.maxFailedAttempts; k++) await svc.store.recordFailure(locked);
    await approve(2, now + 3600);
  } finally {
    await svc.close();
  }
  await ok(['enroller', 'token', 'create', '--name', 'sensor-1', '--service', w.address, '--service-key', w.serviceKey, '--out', join(w.root, 't.jwt')], { home: w.enrollerHome, env });
}

/** Ids of the bundles in state issued (through the store's own rows: a read of its table). */
async function issuedBundles(svc: ServiceHome): Promise<Uint8Array[]> {
  if (svc.pg) {
    const r = await svc.pg.pool.query(`SELECT id FROM bundles WHERE state = 'issued' ORDER BY created_at, id`);
    return r.rows.map((x) => new Uint8Array(x.id as Buffer));
  }
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(join(svc.keystore.dir, 'store.db'), { readonly: true });
  try {
    return (db.prepare(`SELECT id FROM bundles WHERE state = 'issued' ORDER BY created_at, id`).all() as { id: Buffer }[]).map((x) => new Uint8Array(x.id));
  } finally {
    db.close();
  }
}

async function checkStatus(w: LabWorld, env: Record<string, string>, mport: number, storeFlag: string[] = []) {
  const s = await okJson<any>(['service', 'status', ...storeFlag], { home: w.serviceHome, env });
  assert.deepEqual(s.enrollees, { pending: 4, pending_expired: 1, enrolled: 1, revoked: 0, locked_out: 1, x3dh: 4, token: 1 }, JSON.stringify(s));
  // 7 fetched, 1 used by the enrolled device, 3 approved (one of them expired: its bundle is not).
  assert.equal(s.bundles.in_stock, 3, JSON.stringify(s.bundles));
  assert.equal(s.bundles.approved, 3);
  assert.equal(s.bundles.opks_left, 6);
  assert.deepEqual(s.bundles.per_enroller, [{ enroller: w.enrollerKey, name: 'lab terminal', in_stock: 3 }]);
  assert.deepEqual(s.enrollers, { allowed: 1, revoked: 0 });
  assert.deepEqual(s.tokens, { outstanding: 1, expired_unused: 0 });
  assert.equal(s.signed_prekey.spk_id, 1);
  assert.equal(s.signed_prekey.eka_v2, true);
  assert.ok(s.signed_prekey.age_days >= 0);
  assert.ok(s.ca.days_left > 3000, JSON.stringify(s.ca));
  assert.equal(s.store.schema_version, s.store.schema_supported);
  const verify = await okJson<any>(['service', 'audit', 'verify', ...storeFlag], { home: w.serviceHome, env });
  // The service appends on its own thread: the head may have moved on since status read it.
  assert.ok(s.audit.head.seq >= 1 && s.audit.head.seq <= verify.head.seq, `${JSON.stringify(s.audit)} vs ${JSON.stringify(verify.head)}`);
  assert.equal(s.audit.entries, s.audit.head.seq);
  assert.equal(s.last_backup, null);
  assert.equal(s.restored, null);
  assert.match(s.version, /^\d+\.\d+\.\d+/);
  // The gauges of /metrics say the same.
  const m = await metrics(mport);
  assert.equal(sample(m, 'ockam_enroll_bundles{state="in_stock"}'), 3, m);
  assert.equal(sample(m, 'ockam_enroll_bundles{state="approved"}'), 3, m);
  assert.equal(sample(m, 'ockam_enroll_live_channels{kind="session"}'), 0, m);
  assert.notEqual(sample(m, 'ockam_enroll_live_channels{kind="enroller"}'), undefined, m);
  // The text form: one line per subject.
  const text = (await ok(['service', 'status', ...storeFlag], { home: w.serviceHome, env })).stdout;
  assert.match(text, /^enrollees +1 enrolled, 4 pending \(1 expired, 1 locked out\), 0 revoked/m);
  assert.match(text, /^bundles +3 in stock at enrollers, 3 approved and not yet used; one-time prekeys left: 6$/m);
  assert.match(text, new RegExp(`^  ${w.enrollerKey.slice(0, 16)} +3  lab terminal$`, 'm'));
  assert.match(text, /^tokens +1 outstanding/m);
  assert.match(text, /^audit +\d+ entries, head seq \d+ [0-9a-f]{64}$/m);
  return { s, text };
}

describe('service status on a SQLite store', () => {
  it('counts every state beside the running service, names the running process; the gauges agree', { timeout: 180_000 }, async () => {
    const mport = await freePort();
    const w = await labWorld({ bundles: 0, serviceFlags: ['--metrics-listen', `127.0.0.1:${mport}`] });
    try {
      await w.service.waitForLine(' metrics-listening ');
      await makeState(w, {});
      const { s, text } = await checkStatus(w, {}, mport);
      assert.equal(s.store.kind, 'sqlite');
      assert.equal(s.store.location, join(w.serviceHome, 'service', 'store.db'));
      assert.equal(s.running.pid, w.service.child.pid, 'the pid of the running service');
      assert.equal(s.replicas, null);
      assert.match(text, new RegExp(`^service +running \\(pid ${w.service.child.pid}\\)$`, 'm'));
    } finally {
      await w.dispose();
    }
  });

  it('without an initialised home: exit 1 with the init hint', async () => {
    const r = await run(['service', 'status'], { home: tempHome('no-service') });
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /no service is initialised in/);
    assert.match(r.stderr, /hint: run `ockam-enroll service init` first/);
  });
});

describe('service status on a PostgreSQL store', () => {
  it('counts every state, lists the replica by its connections, and masks the URL\'s password', { timeout: 180_000 }, async () => {
    const url = await freshDatabase();
    const env = { OCKAM_ENROLL_STORE: url };
    const mport = await freePort();
    const w = await labWorld({ bundles: 0, env, serviceFlags: ['--metrics-listen', `127.0.0.1:${mport}`] });
    try {
      await w.service.waitForLine(' metrics-listening ');
      await makeState(w, env);
      // A password in the URL (the test cluster trusts local connections and ignores it).
      const withPassword = new URL(url);
      withPassword.searchParams.set('password', 'Zq9-status-secret');
      const { s, text } = await checkStatus(w, env, mport, ['--store', withPassword.toString()]);
      assert.equal(s.store.kind, 'postgres');
      assert.match(s.store.location, /password=\*\*\*/);
      assert.equal(s.running, null);
      assert.ok(!JSON.stringify(s).includes('Zq9-status-secret') && !text.includes('Zq9-status-secret'), 'the password is never printed');
      const mine = s.replicas.filter((r: any) => r.name === `ockam-enroll start ${hostname()} ${w.service.child.pid}`.slice(0, 63));
      assert.equal(mine.length, 1, JSON.stringify(s.replicas));
      assert.ok(mine[0].connections >= 1);
      assert.match(text, /^replicas +1 connected now$/m);
    } finally {
      await w.dispose();
    }
  });
});
