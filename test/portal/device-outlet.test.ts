/**
 * Device outlets end to end (issue #19 item 3): the built CLI (`service start`, `enrollee
 * outlet` on device Y, `enrollee inlet --to DEVICE/NAME` on device X), real loopback TCP, real
 * SQLite, a real HTTP server (node:http) behind Y's outlet, fetched with curl through X's
 * inlet; the service relays, the two devices run Noise end to end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join as joinPath } from 'node:path';
import type { Server } from 'node:http';
import { ok, run, setupWorld, sleep, type Background, type Enrollee, type World } from '../helpers/cli.js';
import { enroll, startInlet, startOutlet, waitFor } from './portal-cli.js';
import { BIG, curl as curlBytes, Payload, startTarget } from './target.js';

const PAYLOAD = new Payload('device:');
const bigBytes = () => PAYLOAD.bytes();
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let w: World;
let axiom: Enrollee; // device X: runs the inlets
let pump: Enrollee; // device Y: runs the outlets, behind "NAT" (it only dials out)
let idle: Enrollee; // enrolled, runs no outlet
let http: Server;
let httpPort: number;
const procs: Background[] = [];

const outlet = (e: Enrollee, name: string, to: string, extra: readonly string[] = []) => startOutlet(e, name, to, procs, extra);
const inlet = (e: Enrollee, target: string) => startInlet(e, target, procs);

const curl = (args: readonly string[]) => curlBytes(args, { maxTimeS: 60 });

before(async () => {
  ({ server: http, port: httpPort } = await startTarget('hello from behind the device', PAYLOAD));
  w = await setupWorld({ bundles: 4 });
  axiom = w.enrollee;
  pump = await w.newEnrollee('pump-7');
  idle = await w.newEnrollee('idle-3');
  await enroll(w, axiom);
  await enroll(w, pump);
  await enroll(w, idle);
  await outlet(pump, 'web', `127.0.0.1:${httpPort}`);
  // Admits only a device called "operator-1": Robot Axiom is enrolled but not admitted.
  await outlet(pump, 'private', `127.0.0.1:${httpPort}`, ['--allow', 'subject.name == "operator-1"']);
});

after(async () => {
  for (const bg of procs) if (bg.running()) bg.kill('SIGKILL');
  await Promise.all(procs.map((bg) => bg.done().catch(() => undefined)));
  await w?.dispose();
  http?.close();
});

describe('enrollee outlet and enrollee inlet --to DEVICE/NAME', () => {
  test('curl reaches an HTTP server behind device Y from device X, by pet name and by id prefix', async () => {
    const byName = await inlet(axiom, 'pump-7/web');
    const r = await curl(['-H', 'x-who: axiom', `http://127.0.0.1:${byName.port}/hello`]);
    assert.equal(r.exitCode, 0, Buffer.from(r.stderr).toString());
    assert.equal(Buffer.from(r.stdout).toString(), 'hello from behind the device, axiom\n');
    const byId = await inlet(axiom, `${pump.id.slice(0, 12)}/web`);
    const r2 = await curl([`http://127.0.0.1:${byId.port}/hello`]);
    assert.equal(Buffer.from(r2.stdout).toString(), 'hello from behind the device, anyone\n');
    // The service logged the relayed streams without their payloads.
    await sleep(200);
    const log = w.service.lines.join('\n');
    assert.match(log, /stream-opened.*relayed|relayed.*stream-opened/);
    assert.ok(!log.includes('hello from behind the device'), 'no payload in the service log');
  });

  test('50 MB each way through the device portal, SHA-256 compared at both ends', async () => {
    const { port } = await inlet(axiom, 'pump-7/web');
    const down = await curl([`http://127.0.0.1:${port}/big`]);
    assert.equal(down.exitCode, 0, Buffer.from(down.stderr).toString());
    const body = Buffer.from(down.stdout);
    assert.equal(body.length, BIG);
    assert.equal(sha(body), PAYLOAD.sha256);
    const up = bigBytes();
    const file = joinPath(w.root, 'up.bin');
    writeFileSync(file, up);
    const r = await curl(['--data-binary', `@${file}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${port}/sha`]);
    assert.equal(r.exitCode, 0, Buffer.from(r.stderr).toString());
    assert.equal(Buffer.from(r.stdout).toString(), `${BIG} ${sha(up)}`);
  });

  test('refusals carry clear reasons to the inlet: unknown device, device offline, no such outlet, --allow denies', async () => {
    const cases: [string, RegExp][] = [
      ['no-such-device/web', /no-such-device\/web: unknown device: no enrolled device is called or has the id "no-such-device"/],
      ['idle-3/web', /idle-3\/web: device offline: device "idle-3" has no outlet session open/],
      ['pump-7/nope', /pump-7\/nope: unknown outlet: device "pump-7" has no outlet named "nope"/],
      ['pump-7/private', /pump-7\/private: not allowed \(said the device\): this device's --allow for "private" does not admit Robot Axiom/],
    ];
    for (const [target, reason] of cases) {
      const { bg, port } = await inlet(axiom, target);
      const r = await curl([`http://127.0.0.1:${port}/hello`]);
      assert.notEqual(r.exitCode, 0, `${target}: curl got an answer`);
      await waitFor(bg, reason, `inlet ${target}`);
      // The inlet keeps serving: the next connection gets the same clear refusal.
      await curl([`http://127.0.0.1:${port}/hello`]);
      assert.ok(bg.running(), `${target}: the inlet still runs`);
    }
    const log = w.service.lines.join('\n');
    assert.match(log, /stream-refused.*unknown device/);
    assert.match(log, /stream-refused.*device offline/);
    assert.match(log, /stream-refused.*no outlet named/);
    // The --allow verdict is the device's, inside the end-to-end channel; the outlet reports it.
    const privateOutlet = procs[1]!;
    await waitFor(privateOutlet, /refused: not allowed/, 'outlet private');
  });

  test('bad input: a bad --name, --to, --allow: exit 2 with a hint, before any connection', async () => {
    const bad = [
      [['--name', 'a/b', '--to', '127.0.0.1:1'], /--name "a\/b"/],
      [['--name', 'x', '--to', '127.0.0.1'], /--to "127\.0\.0\.1" is not HOST:PORT/],
      [['--name', 'x', '--to', '127.0.0.1:1', '--allow', 'subject.nope =='], /policy/],
    ] as const;
    for (const [args, msg] of bad) {
      const r = await run(['enrollee', 'outlet', ...args], { home: pump.home });
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, msg);
      assert.match(r.stderr, /hint: /);
    }
    void ok;
  });
});
