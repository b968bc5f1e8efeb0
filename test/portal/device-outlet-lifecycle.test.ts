/**
 * Device outlets under a restart and a revocation (issue #19 "Tests", the two that device
 * outlets lacked): the built CLI, real loopback TCP, real SQLite, a real HTTP server behind
 * device Y's `enrollee outlet`, fetched with curl through device X's `enrollee inlet`.
 *
 * - The service restarts under an open device inlet and device outlet: both reconnect, and new
 *   streams work.
 * - The inlet's enrollee is revoked during a transfer through the device outlet: the stream is
 *   closed within 1 s (scaled by the machine's pace, as test/portal/service-outlet.test.ts
 *   does), and new streams are refused.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { setupWorld, startService, type Background, type Enrollee, type World } from '../helpers/cli.js';
import { enroll, revokeDuringTransfer, startInlet, startOutlet, waitFor } from './portal-cli.js';
import { curl as curlBytes, Payload, startTarget } from './target.js';

let w: World;
let axiom: Enrollee; // device X: the inlet that lives through the restart
let lex: Enrollee; // device X': the inlet whose enrollee is revoked
let pump: Enrollee; // device Y: the outlet
let http: Server;
let httpPort: number;
let out: Background;
const procs: Background[] = [];

const curl = (args: readonly string[]) => curlBytes(args, { maxTimeS: 60 });

const inlet = (e: Enrollee, target: string) => startInlet(e, target, procs);

before(async () => {
  ({ server: http, port: httpPort } = await startTarget('hello from behind the device', new Payload('lifecycle:')));
  w = await setupWorld({ bundles: 4 });
  axiom = w.enrollee;
  lex = await w.newEnrollee('lex-2');
  pump = await w.newEnrollee('pump-7');
  await enroll(w, axiom);
  await enroll(w, lex);
  await enroll(w, pump);
  out = await startOutlet(pump, 'web', `127.0.0.1:${httpPort}`, procs);
});

after(async () => {
  for (const bg of procs) if (bg.running()) bg.kill('SIGKILL');
  await Promise.all(procs.map((bg) => bg.done().catch(() => undefined)));
  await w?.dispose();
  http?.close();
});

describe('device outlets: restart and revocation', () => {
  test('a service restart under an open device inlet and device outlet: both reconnect, and new streams work', async () => {
    const x = await inlet(axiom, 'pump-7/web');
    const before = await curl(['-H', 'x-who: before', `http://127.0.0.1:${x.port}/hello`]);
    assert.equal(Buffer.from(before.stdout).toString(), 'hello from behind the device, before\n', Buffer.from(before.stderr).toString());
    await w.service.stop();
    await waitFor(x.bg, /the portal session with the service ended|cannot reach the service/, 'inlet');
    await waitFor(out, /the session to the service ended|cannot reach the service/, 'outlet');
    w.service = await startService(w.serviceHome, w.port, w.httpsPort);
    // Each says it reconnected once its new session is up (the outlet's has registered "web" then).
    await waitFor(out, /reconnected to the service/, 'outlet');
    await waitFor(x.bg, /reconnected to the service/, 'inlet');
    assert.equal(w.service.decisions('device-outlets').length, 1, w.service.lines.join('\n'));
    for (const who of ['after', 'again']) {
      const r = await curl(['-H', `x-who: ${who}`, `http://127.0.0.1:${x.port}/hello`]);
      assert.equal(r.exitCode, 0, Buffer.from(r.stderr).toString());
      assert.equal(Buffer.from(r.stdout).toString(), `hello from behind the device, ${who}\n`);
    }
    assert.ok(x.bg.running() && out.running(), 'both devices keep running');
  });

  test('revoking the inlet\'s enrollee during a transfer through a device outlet closes the stream within 1 s (scaled), and new streams are refused', async () => {
    const p = await inlet(lex, 'pump-7/web');
    await revokeDuringTransfer(w, lex, p, 'pump-7/web', (l) => l.includes(lex.id) && l.includes('relayed'), curl);
    // The device outlet itself is untouched: another device still reaches it.
    const x = await inlet(axiom, 'pump-7/web');
    const still = await curl([`http://127.0.0.1:${x.port}/hello`]);
    assert.equal(Buffer.from(still.stdout).toString(), 'hello from behind the device, anyone\n');
    assert.ok(out.running());
  });
});
