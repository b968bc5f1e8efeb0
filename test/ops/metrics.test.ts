/**
 * `service start --metrics-listen` (issue #21 items 1 and 2, docs/operations.md): /healthz,
 * /readyz and /metrics on a listener of its own. With SQLite: ready, and after real
 * enrollments through the CLI the counters say so with bounded labels, and Prometheus's
 * `promtool check metrics` accepts the text (skipped, saying why, where promtool is not
 * installed: .ci/run installs it). With PostgreSQL: /readyz is 503 with a reason within 10 s
 * of the database stopping, and 200 again within 20 s of it starting. Real processes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { join } from 'node:path';
import { freePort, ok, okJson, removeTempHomes, run, show, sleep } from '../helpers/cli.js';
import { labWorld, type LabWorld } from '../helpers/lab.js';
import { freshDatabase, privateCluster, type TestCluster } from '../helpers/pg.js';

after(() => removeTempHomes());

function get(port: number, path: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body }));
    })
      .on('error', reject)
      .end();
  });
}

/** The value of one series in a Prometheus text exposition, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Polls /readyz until its status is `want`; returns how long it took. Bounded by tries. */
async function readyzBecomes(port: number, want: number, maxMs: number): Promise<{ ms: number; body: string }> {
  const t0 = Date.now();
  for (;;) {
    const r = await get(port, '/readyz');
    if (r.status === want) return { ms: Date.now() - t0, body: r.body };
    assert.ok(Date.now() - t0 < maxMs, `/readyz still ${r.status} (${r.body.trim()}) after ${Date.now() - t0} ms, wanted ${want}`);
    await sleep(250);
  }
}

async function enrollOne(w: LabWorld, name: string): Promise<void> {
  const home = join(w.root, `device-${name}`);
  const [id] = await w.fetchBundles(1);
  const { card } = await okJson<{ card: string }>(['enrollee', 'init', '--name', name], { home });
  const bundle = (await ok(['enroller', 'approve', card, '--bundle', id!], { home: w.enrollerHome })).stdout.trim();
  await ok(['enrollee', 'join', '--bundle', bundle], { home });
  // The same bundle again, from a device that was never approved: refused (check 3).
  const stranger = join(w.root, `stranger-${name}`);
  await ok(['enrollee', 'init'], { home: stranger });
  const r = await run(['enrollee', 'join', '--bundle', bundle], { home: stranger });
  assert.equal(r.code, 3, show(r));
}

describe('--metrics-listen on a SQLite store', () => {
  it('/healthz and /readyz are 200; /metrics counts real enrollments with bounded labels; promtool accepts it', { timeout: 180_000 }, async (t) => {
    const mport = await freePort();
    const w = await labWorld({ bundles: 0, serviceFlags: ['--metrics-listen', `127.0.0.1:${mport}`] });
    try {
      await w.service.waitForLine(` metrics-listening address=127.0.0.1:${mport}`);
      assert.deepEqual(await get(mport, '/healthz'), { status: 200, type: 'text/plain; charset=utf-8', body: 'ok\n' });
      assert.equal((await get(mport, '/readyz')).status, 200);
      assert.equal((await get(mport, '/nothing')).status, 404);
      await enrollOne(w, 'one');
      await enrollOne(w, 'two');
      const m = await get(mport, '/metrics');
      assert.equal(m.status, 200);
      assert.match(m.type, /^text\/plain; version=0\.0\.4/);
      assert.equal(sample(m.body, 'ockam_enroll_enrollments_total{method="eka",eka="2",result="accepted"}'), 2, m.body);
      assert.equal(sample(m.body, 'ockam_enroll_enrollments_total{method="eka",eka="2",result="unknown"}'), 2, m.body);
      assert.equal(sample(m.body, 'ockam_enroll_rejections_total{code="ERR_ENROLLEE_UNKNOWN"}'), 2, m.body);
      assert.equal(sample(m.body, 'ockam_enroll_bundles_issued_total'), 2, m.body);
      assert.equal(sample(m.body, 'ockam_enroll_enroll_seconds_count{method="eka"}'), 4, m.body);
      assert.equal(sample(m.body, 'ockam_enroll_enrollees{state="enrolled"}'), 2, m.body);
      assert.ok((sample(m.body, 'ockam_enroll_store_query_seconds_count') ?? 0) >= 1, m.body);
      // Bounded labels: no enrollee id, key or address in any label value.
      for (const l of m.body.split('\n').filter((x) => x.startsWith('ockam_enroll_'))) {
        const labels = /\{([^}]*)\}/.exec(l)?.[1] ?? '';
        assert.doesNotMatch(labels, /[0-9a-f]{16}|127\.0\.0\.1/, `a label value that is not from a closed set: ${l}`);
      }
      const promtool = spawnSync('promtool', ['check', 'metrics'], { input: m.body, encoding: 'utf8' });
      if (promtool.error) {
        t.skip(`promtool is not installed here (${promtool.error.message}): \`apt-get install prometheus\` (.ci/run does)`);
        return;
      }
      assert.equal(promtool.status, 0, `promtool check metrics:\n${promtool.stdout}${promtool.stderr}`);
    } finally {
      await w.dispose();
    }
  });
});

describe('--metrics-listen on a PostgreSQL store', () => {
  let cluster: TestCluster;
  before(async () => {
    cluster = await privateCluster();
  });
  after(() => cluster?.stop());

  it('/readyz: 503 with a reason within 10 s of the database stopping, 200 within 20 s of it starting', { timeout: 180_000 }, async () => {
    const url = await freshDatabase(cluster.url);
    const mport = await freePort();
    const w = await labWorld({ bundles: 1, env: { OCKAM_ENROLL_STORE: url }, serviceFlags: ['--metrics-listen', `127.0.0.1:${mport}`] });
    try {
      await w.service.waitForLine(' metrics-listening ');
      assert.equal((await get(mport, '/readyz')).status, 200);
      const m = await get(mport, '/metrics');
      assert.ok(sample(m.body, 'ockam_enroll_pg_pool_connections{state="total"}')! >= 1, m.body);
      cluster.pgCtl('stop', ['-m', 'fast']);
      const down = await readyzBecomes(mport, 503, 10_000);
      process.stderr.write(`# readyz: 503 ${down.ms} ms after PostgreSQL stopped: ${down.body.trim()}\n`);
      assert.match(down.body, /^not ready: the store (cannot be queried|did not answer)/);
      assert.doesNotMatch(down.body, /\n./, 'one line');
      assert.equal((await get(mport, '/healthz')).status, 200, 'the process is still up');
      cluster.pgCtl('start');
      const up = await readyzBecomes(mport, 200, 20_000);
      process.stderr.write(`# readyz: 200 ${up.ms} ms after PostgreSQL started\n`);
    } finally {
      try {
        cluster.pgCtl('status');
      } catch {
        cluster.pgCtl('start');
      }
      await w.dispose();
    }
  });
});
