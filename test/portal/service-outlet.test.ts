/**
 * Service outlets end to end (issue #19 items 1, 2, 5, 7): the built CLI (`service outlet
 * add|list|remove`, `service start`, `enrollee inlet`), real loopback TCP, real SQLite, a
 * real HTTP server (node:http) behind the outlet, fetched with curl through the inlet.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import { assertFailure, okJson, ok, run, spawnCli, setupWorld, sleep, startService, type Background, type Enrollee, type World } from '../helpers/cli.js';
import { EXIT } from '../helpers/lifecycle.js';
import { enroll, revokeDuringTransfer } from './portal-cli.js';
import { freePort } from '../helpers/ports.js';
import { patience } from '../helpers/pace.js';
import { BIG, curl, Payload, startTarget } from './target.js';

const PAYLOAD = new Payload('');
const bigSha = PAYLOAD.sha256;

let w: World;
let axiom: Enrollee;
let pump: Enrollee;
let http: Server;
let httpPort: number;
const inlets: Background[] = [];

/** `enrollee inlet` for `e`; resolves once its ready line (JSON) is on stdout. */
async function inlet(e: Enrollee, target: string): Promise<{ bg: Background; port: number }> {
  const port = await freePort();
  const bg = spawnCli(['enrollee', 'inlet', '--from', `127.0.0.1:${port}`, '--to', target, '--json'], { home: e.home });
  inlets.push(bg);
  const end = Date.now() + (await patience(20_000));
  while (!bg.stdout().includes('"event":"ready"')) {
    if (!bg.running()) throw new Error(`inlet exited:\n${bg.lines.join('\n')}`);
    if (Date.now() > end) throw new Error(`inlet not ready:\n${bg.lines.join('\n')}`);
    await sleep(25);
  }
  const ready = JSON.parse(bg.stdout().trim().split('\n')[0]!);
  assert.deepEqual({ event: ready.event, listen: ready.listen, target: ready.target }, { event: 'ready', listen: `127.0.0.1:${port}`, target });
  return { bg, port };
}

before(async () => {
  ({ server: http, port: httpPort } = await startTarget('hello from the service side', PAYLOAD));
  w = await setupWorld({ bundles: 3 });
  axiom = w.enrollee;
  pump = await w.newEnrollee('pump-7');
  await enroll(w, axiom);
  await enroll(w, pump);
  await ok(['service', 'outlet', 'add', 'web', '--to', `127.0.0.1:${httpPort}`], { home: w.serviceHome });
});

after(async () => {
  for (const bg of inlets) if (bg.running()) bg.kill('SIGKILL');
  await Promise.all(inlets.map((bg) => bg.done().catch(() => undefined)));
  await w?.dispose();
  http?.close();
});

describe('service outlet add|list|remove', () => {
  test('add, list (--json and text, saying that no --allow admits every enrolled identity), remove; audited', async () => {
    const home = { home: w.serviceHome };
    const added = await okJson(['service', 'outlet', 'add', 'db', '--to', '[::1]:5432', '--allow', 'subject.attributes.role == "operator"'], home);
    assert.equal(added.to, '[::1]:5432');
    const list = await okJson<{ outlets: { name: string; to: string; allow: string | null; admits: string }[] }>(['service', 'outlet', 'list'], home);
    const byName = Object.fromEntries(list.outlets.map((o) => [o.name, o]));
    assert.equal(byName.web!.allow, null);
    assert.equal(byName.web!.admits, 'every enrolled identity');
    assert.equal(byName.db!.admits, 'subject.attributes.role == "operator"');
    const text = (await ok(['service', 'outlet', 'list'], home)).stdout;
    assert.match(text, /^web +127\.0\.0\.1:\d+ +admits: every enrolled identity$/m);
    assert.match(text, /without --allow admits every enrolled identity/);
    assert.match((await ok(['service', 'outlet', 'remove', 'db'], home)).stdout, /removed outlet db/);
    const names = (await okJson<{ outlets: { name: string }[] }>(['service', 'outlet', 'list'], home)).outlets.map((o) => o.name);
    assert.ok(!names.includes('db'));
    const audit = await okJson<{ entries: { event: string; fields: Record<string, unknown> }[] }>(['service', 'audit', 'export'], home);
    assert.ok(audit.entries.some((e) => e.event === 'outlet-added' && e.fields.outlet === 'db' && e.fields.to === '[::1]:5432'));
    assert.ok(audit.entries.some((e) => e.event === 'outlet-removed' && e.fields.outlet === 'db'));
  });

  test('bad input: a bad name, --to, --allow policy, removing an unknown outlet: a clear error, a hint, exit 2, nothing stored', async () => {
    const home = { home: w.serviceHome };
    assertFailure(await run(['service', 'outlet', 'add', 'bad/name', '--to', '127.0.0.1:1'], home), EXIT.USAGE, /outlet name "bad\/name" is invalid/, /letters, digits/);
    assertFailure(await run(['service', 'outlet', 'add', 'x'.repeat(65), '--to', '127.0.0.1:1'], home), EXIT.USAGE, /is invalid/);
    assertFailure(await run(['service', 'outlet', 'add', 'x', '--to', '127.0.0.1'], home), EXIT.USAGE, /--to "127\.0\.0\.1" is not HOST:PORT/, /port 1\.\.65535/);
    assertFailure(await run(['service', 'outlet', 'add', 'x', '--to', '127.0.0.1:70000'], home), EXIT.USAGE, /is not HOST:PORT/);
    assertFailure(await run(['service', 'outlet', 'add', 'x', '--to', '127.0.0.1:1', '--allow', 'pump-7,robot'], home), EXIT.USAGE, /policy: .*column/);
    assertFailure(await run(['service', 'outlet', 'add', 'x', '--to', '127.0.0.1:1', '--allow', 'subject.name'], home), EXIT.USAGE, /must be a bool/);
    assertFailure(await run(['service', 'outlet', 'remove', 'nope'], home), EXIT.USAGE, /no outlet is named nope/, /outlet list/);
    const names = (await okJson<{ outlets: { name: string }[] }>(['service', 'outlet', 'list'], home)).outlets.map((o) => o.name);
    assert.ok(!names.includes('x'));
  });
});

describe('enrollee inlet to a service outlet', () => {
  test('curl through the inlet reaches the HTTP server; the decision log has the open and the byte counts, no payload', async () => {
    const { port } = await inlet(axiom, 'service/web');
    const r = await curl(['-H', 'x-who: axiom', `http://127.0.0.1:${port}/hello`]);
    assert.equal(r.exitCode, 0, String(r.stderr));
    assert.equal(Buffer.from(r.stdout).toString(), 'hello from the service side, axiom\n');
    const end = Date.now() + (await patience(5000));
    while (!w.service.decisions('stream-closed').some((l) => l.includes(axiom.id))) {
      assert.ok(Date.now() < end, w.service.lines.join('\n'));
      await sleep(25);
    }
    const opened = w.service.decisions('stream-opened').find((l) => l.includes(axiom.id))!;
    assert.match(opened, /target=service\/web/);
    assert.match(opened, new RegExp(`to=127\\.0\\.0\\.1:${httpPort}`));
    const closed = w.service.decisions('stream-closed').find((l) => l.includes(axiom.id))!;
    assert.match(closed, /bytes_in=\d+ bytes_out=\d+/);
    assert.ok(!w.service.lines.join('\n').includes('hello from the service side'), 'no payload in the log');
  });

  test('50 MB each way through the service outlet, SHA-256 compared', async () => {
    const { port } = await inlet(axiom, 'service/web');
    const down = await curl([`http://127.0.0.1:${port}/big`]);
    assert.equal(down.exitCode, 0, String(down.stderr));
    assert.equal(down.stdout.length, BIG);
    assert.equal(createHash('sha256').update(down.stdout).digest('hex'), bigSha);
    const up = await curl(['--data-binary', '@-', '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${port}/sha`], { input: Buffer.from(down.stdout) });
    assert.equal(up.exitCode, 0, String(up.stderr));
    assert.equal(Buffer.from(up.stdout).toString(), `${BIG} ${bigSha}`);
  });

  test('refusals: not allowed by --allow, unknown outlet; the reason at the inlet and in the log; the inlet keeps serving and takes a new outlet without a restart', async () => {
    await ok(['service', 'outlet', 'add', 'ops', '--to', `127.0.0.1:${httpPort}`, '--allow', 'subject.name == "pump-7"'], { home: w.serviceHome });
    const ops = await inlet(axiom, 'service/ops');
    const r1 = await curl([`http://127.0.0.1:${ops.port}/hello`]);
    assert.notEqual(r1.exitCode, 0);
    await ops.bg.waitForLine(/refused: service\/ops: not allowed: the --allow policy of service\/ops does not admit this enrollee/);
    assert.ok(w.service.decisions('stream-refused').some((l) => l.includes(axiom.id) && l.includes('not allowed')));
    // pump-7 is admitted by the same policy.
    const opsPump = await inlet(pump, 'service/ops');
    const r2 = await curl([`http://127.0.0.1:${opsPump.port}/hello`]);
    assert.equal(Buffer.from(r2.stdout).toString(), 'hello from the service side, anyone\n');

    const later = await inlet(axiom, 'service/later');
    const r3 = await curl([`http://127.0.0.1:${later.port}/hello`]);
    assert.notEqual(r3.exitCode, 0);
    await later.bg.waitForLine(/refused: service\/later: unknown outlet: the service has no outlet named later/);
    assert.ok(w.service.decisions('stream-refused').some((l) => l.includes('unknown outlet')));
    // Added while service and inlet run: the next connection reaches it.
    await ok(['service', 'outlet', 'add', 'later', '--to', `127.0.0.1:${httpPort}`], { home: w.serviceHome });
    const r4 = await curl([`http://127.0.0.1:${later.port}/hello`]);
    assert.equal(r4.exitCode, 0, String(r4.stderr));
    assert.equal(later.bg.running(), true);
    // A target that refuses: the reason says so.
    const dead = await freePort();
    await ok(['service', 'outlet', 'add', 'dead', '--to', `127.0.0.1:${dead}`], { home: w.serviceHome });
    const d = await inlet(axiom, 'service/dead');
    assert.notEqual((await curl([`http://127.0.0.1:${d.port}/`])).exitCode, 0);
    await d.bg.waitForLine(/refused: service\/dead: target refused or unreachable: 127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  test('bad --from / --to, a port in use: a clear error, a hint, the documented exit code', async () => {
    assertFailure(await run(['enrollee', 'inlet', '--from', 'localhost', '--to', 'service/web'], { home: axiom.home }), EXIT.USAGE, /--from "localhost" is not HOST:PORT/);
    assertFailure(await run(['enrollee', 'inlet', '--from', '127.0.0.1:1', '--to', 'web'], { home: axiom.home }), EXIT.USAGE, /--to "web" is not a portal target/, /service\/NAME/);
    assertFailure(await run(['enrollee', 'inlet', '--from', `127.0.0.1:${httpPort}`, '--to', 'service/web'], { home: axiom.home }), EXIT.FAILURE, /cannot listen on 127\.0\.0\.1:\d+: EADDRINUSE/, /another process holds that port/);
  });

  test('SIGTERM stops the inlet with exit 0; a service restart under an open inlet: it reconnects and new streams work; /metrics counts streams and bytes by outlet', async () => {
    const a = await inlet(axiom, 'service/web');
    await w.service.stop();
    await a.bg.waitForLine(/the portal session with the service ended|cannot reach the service/);
    const metricsPort = await freePort();
    w.service = await startService(w.serviceHome, w.port, w.httpsPort, ['--metrics-listen', `127.0.0.1:${metricsPort}`]);
    await a.bg.waitForLine(/reconnected to the service/);
    const r = await curl([`http://127.0.0.1:${a.port}/hello`]);
    assert.equal(Buffer.from(r.stdout).toString(), 'hello from the service side, anyone\n');
    // One refused stream, for an outlet that does not exist: counted by its reason, never by the name asked for.
    const nope = await inlet(axiom, 'service/nope');
    assert.notEqual((await curl([`http://127.0.0.1:${nope.port}/hello`])).exitCode, 0);
    nope.bg.kill('SIGTERM');
    const end = Date.now() + (await patience(5000));
    let text = '';
    for (;;) {
      text = Buffer.from((await curl([`http://127.0.0.1:${metricsPort}/metrics`])).stdout).toString();
      if (/^ockam_enroll_portal_bytes_total\{outlet="web",direction="out"\} [1-9]/m.test(text) && /result="unknown_outlet"/.test(text)) break;
      assert.ok(Date.now() < end, text);
      await sleep(50);
    }
    assert.match(text, /^ockam_enroll_portal_streams_total\{outlet="web",result="opened"\} 1$/m);
    assert.match(text, /^ockam_enroll_portal_streams_total\{outlet="none",result="unknown_outlet"\} 1$/m);
    assert.match(text, /^ockam_enroll_portal_bytes_total\{outlet="web",direction="in"\} [1-9]\d*$/m);
    assert.ok(!text.includes('nope'), 'a name a peer asked for is never a label');
    a.bg.kill('SIGTERM');
    const done = await a.bg.done();
    assert.equal(done.code, 0, done.stderr);
  });

  test('revoking the enrollee during a transfer closes the stream within 1 s (scaled), refuses new ones, and ends the inlet with exit 3', async () => {
    const p = await inlet(pump, 'service/web');
    await revokeDuringTransfer(w, pump, p, 'service/web', (l) => l.includes(pump.id) && l.includes('service/web'), curl);
    assert.ok(w.service.decisions('channel-closed').some((l) => l.includes(pump.id)));
  });
});
