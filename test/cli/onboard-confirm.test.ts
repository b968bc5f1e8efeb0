/**
 * The short authentication string is compared as a step of `enroller onboard`, not just
 * shown (issue #18 finding 1; docs/threat-model.md §3.1), and every wait of the onboarding
 * is bounded by --timeout (issue #22 finding 2). Real processes of the built CLI over
 * loopback TCP against one service; answers are typed into the enroller's stdin (a pipe).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EXIT } from '../../src/cli/exit-codes.js';
import {
  assertFailure,
  freePort,
  okJson,
  parseJsonOut,
  removeTempHomes,
  run,
  sasIn,
  setupWorld,
  show,
  spawnCli,
  type Background,
  type World,
} from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 8, enrolleeName: 'first' });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

async function killIfRunning(bg: Background | undefined): Promise<void> {
  if (bg?.running()) {
    bg.kill('SIGKILL');
    await bg.done().catch(() => undefined);
  }
}

/** Whether the service approved (or knows) this enrollee at all. */
async function serviceKnows(id: string): Promise<boolean> {
  const r = await run(['service', 'enrollee', 'show', id], { home: w.serviceHome });
  return r.code === 0;
}

function approvedLines(id: string): string[] {
  return w.service.decisions('approved').filter((l) => l.includes(`enrollee=${id}`));
}

/** Opens a TCP connection to the port and does something with it; resolves with its local port once closed. */
function rawConnection(port: number, act: (s: ReturnType<typeof connect>) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      const local = s.localPort!;
      s.on('close', () => resolve(local));
      act(s);
    });
    s.on('error', () => undefined);
    s.once('error', (e) => (s.connecting ? reject(e) : undefined));
  });
}

describe('enroller onboard --listen asks before it approves', () => {
  test('a rogue enrollee that connects first is not approved without a yes; the device after it is', async () => {
    const rogue = await w.newEnrollee('Rogue');
    const device = await w.newEnrollee('Robot Axiom');
    const p = await freePort();
    let onboard: Background | undefined;
    let rogueJoin: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--json'], { home: w.enrollerHome, stdinPipe: true });
      await onboard.waitForLine('waiting for the enrollee');
      // The rogue connects first (it even waives its own question).
      rogueJoin = spawnCli(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: rogue.home });
      await onboard.waitForLine('short authentication string');
      // The enroller's operator looks at the device, sees another string, and says no.
      onboard.child.stdin!.write('n\n');
      const question = await onboard.waitForLine(/does the enrollee show \d{4}-\d{4}\? .*\[y\/N\] n$/);
      assert.ok(question.includes(rogue.id), `the question names the enrollee that connected: ${question}`);
      const r = await rogueJoin.done();
      assertFailure(r, EXIT.AUTH, 'did not confirm the short authentication string');
      await onboard.waitForLine(/refused the connection from 127\.0\.0\.1:\d+: .*was not confirmed.*still waiting/);
      assert.ok(onboard.running(), 'the run is not spent by the refused connection');
      assert.deepEqual(approvedLines(rogue.id), [], 'nothing was approved for the rogue');
      assert.equal(await serviceKnows(rogue.id), false);

      // The real device gets the same listener; this time the strings match and the answer is yes.
      const deviceJoin = spawnCli(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes', '--json'], { home: device.home });
      await deviceJoin.waitForLine('short authentication string');
      onboard.child.stdin!.write('y\n');
      const joined = await deviceJoin.done();
      const ob = await onboard.done();
      assert.equal(joined.code, 0, show(joined));
      assert.equal(ob.code, 0, show(ob));
      const o = parseJsonOut<{ enrollee: string; enrolled: boolean; sas: string }>(ob);
      assert.equal(o.enrollee, device.id);
      assert.equal(o.enrolled, true);
      assert.equal(o.sas, sasIn(joined.stderr), 'the device showed the string the operator confirmed');
      assert.equal(approvedLines(device.id).length, 1);
      assert.deepEqual(approvedLines(rogue.id), []);
    } finally {
      await killIfRunning(rogueJoin);
      await killIfRunning(onboard);
    }
  });

  test('an answer other than y or yes, or the end of the answers, is a no', async () => {
    const rogue = await w.newEnrollee('Rogue 2');
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--timeout', '20s'], { home: w.enrollerHome, stdinPipe: true });
      await onboard.waitForLine('waiting for the enrollee');
      onboard.child.stdin!.end('sure\n');
      const r = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: rogue.home });
      assertFailure(r, EXIT.AUTH, 'did not confirm');
      await onboard.waitForLine(/\[y\/N\] sure$/);
      // The answers have ended: the next connection's question is a no as well.
      const r2 = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: rogue.home });
      assertFailure(r2, EXIT.AUTH, 'did not confirm');
      assert.deepEqual(approvedLines(rogue.id), []);
    } finally {
      await killIfRunning(onboard);
    }
  });

  test('--card FILE refuses any other key outright, without a question; the device of the card is onboarded', async () => {
    const rogue = await w.newEnrollee('Rogue 3');
    const device = await w.newEnrollee('Card Bot');
    const cardFile = join(device.home, 'card.txt');
    writeFileSync(cardFile, `${device.card}\n`);
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--card', cardFile, '--json'], { home: w.enrollerHome });
      await onboard.waitForLine('waiting for the enrollee');
      const r = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: rogue.home });
      assert.notEqual(r.code, 0, show(r));
      await onboard.waitForLine(new RegExp(`refused the connection .*the enrollee that connected is ${rogue.id}, not the expected ${device.id}`));
      assert.deepEqual(approvedLines(rogue.id), []);
      assert.equal(await serviceKnows(rogue.id), false);

      const joined = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: device.home });
      const ob = await onboard.done();
      assert.equal(joined.code, 0, show(joined));
      assert.equal(ob.code, 0, show(ob));
      assert.equal(parseJsonOut<{ enrollee: string }>(ob).enrollee, device.id);
      assert.ok(!ob.stderr.includes('[y/N]'), `no question with --card: ${show(ob)}`);
    } finally {
      await killIfRunning(onboard);
    }
  });

  test('connections that never complete the handshake do not spend the run (--expect-enrollee)', async () => {
    const device = await w.newEnrollee('Scan Survivor');
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--expect-enrollee', device.id, '--json'], { home: w.enrollerHome });
      await onboard.waitForLine('waiting for the enrollee');
      // A port scan: connect, close.
      const scan = await rawConnection(p, (s) => s.end());
      await onboard.waitForLine(`refused the connection from 127.0.0.1:${scan}`);
      // Garbage instead of Noise msg 1.
      const junk = await rawConnection(p, (s) => s.end(Buffer.alloc(64, 0xff)));
      await onboard.waitForLine(`refused the connection from 127.0.0.1:${junk}`);
      assert.ok(onboard.running());
      const joined = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: device.home });
      const ob = await onboard.done();
      assert.equal(joined.code, 0, show(joined));
      assert.equal(ob.code, 0, show(ob));
      assert.equal(parseJsonOut<{ enrollee: string }>(ob).enrollee, device.id);
    } finally {
      await killIfRunning(onboard);
    }
  });

  test('the device asks too: a no there sends no card and approves nothing, and the device can join again', async () => {
    const device = await w.newEnrollee('Careful Bot');
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--expect-enrollee', device.id, '--json'], { home: w.enrollerHome });
      await onboard.waitForLine('waiting for the enrollee');
      const first = spawnCli(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`], { home: device.home, stdinPipe: true });
      await first.waitForLine('short authentication string');
      first.child.stdin!.write('n\n');
      const r = await first.done();
      assertFailure(r, EXIT.AUTH, 'was not confirmed; nothing was sent to the enroller');
      assert.match(r.stderr, /does the enroller show \d{4}-\d{4}\? \[y\/N\] n/);
      await onboard.waitForLine(/refused the connection .*enrollee's user did not confirm/);
      assert.deepEqual(approvedLines(device.id), []);

      const again = spawnCli(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`], { home: device.home, stdinPipe: true });
      await again.waitForLine('short authentication string');
      again.child.stdin!.write('yes\n');
      const joined = await again.done();
      const ob = await onboard.done();
      assert.equal(joined.code, 0, show(joined));
      assert.equal(ob.code, 0, show(ob));
      assert.equal(approvedLines(device.id).length, 1);
    } finally {
      await killIfRunning(onboard);
    }
  });

  test('with nobody to ask, onboard and join refuse to start; --no-confirm warns', async () => {
    const p = await freePort();
    const r = await run(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`], { home: w.enrollerHome });
    assertFailure(r, EXIT.USAGE, 'cannot ask to compare the short authentication string', '--expect-enrollee');
    const e = await w.newEnrollee();
    const j = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`], { home: e.home });
    assertFailure(j, EXIT.USAGE, 'cannot ask to compare the short authentication string', '--yes');
    const y = await run(['enrollee', 'join', '--bundle', 'OEB2:AAAA', '--yes'], { home: e.home });
    assertFailure(y, EXIT.USAGE, '--yes applies only with --enroller or --stdio');

    // --no-confirm: the old behaviour for automation, said out loud (here ended by --timeout).
    const nc = await run(['enroller', 'onboard', '--listen', `${p}`, '--no-confirm', '--timeout', '1s'], { home: w.enrollerHome });
    assert.match(nc.stderr, /warning: --no-confirm: .*whoever connects first is approved/, show(nc));
    // A bare port listens on loopback.
    assert.ok(nc.stderr.includes(`waiting for the enrollee on 127.0.0.1:${p}`), show(nc));
  });
});

describe('enroller onboard --timeout bounds every wait (issue #22)', () => {
  test('--listen --timeout 2s with nobody connecting exits 4 in about 2 s', async () => {
    const p = await freePort();
    const t0 = Date.now();
    const r = await run(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--no-confirm', '--timeout', '2s'], { home: w.enrollerHome, timeoutMs: 20_000 });
    const elapsed = Date.now() - t0;
    assertFailure(r, EXIT.UNREACHABLE, 'nobody connected within 2 s', 'enrollee join --enroller');
    assert.ok(elapsed >= 2000, `waited the timeout: ${elapsed} ms`);
    const bound = Math.max(10_000, await patience(6_000));
    assert.ok(elapsed < bound, `ended soon after the timeout: ${elapsed} ms (bound ${bound} ms)`);
  });

  test('an unanswered question ends the run after --timeout and approves nothing', async () => {
    const rogue = await w.newEnrollee('Unanswered');
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--timeout', '2s'], { home: w.enrollerHome, stdinPipe: true });
      await onboard.waitForLine('waiting for the enrollee');
      const j = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes'], { home: rogue.home });
      assert.notEqual(j.code, 0, show(j));
      const ob = await onboard.done();
      assertFailure(ob, EXIT.UNREACHABLE, 'no answer within 2 s');
      assert.deepEqual(approvedLines(rogue.id), []);
    } finally {
      await killIfRunning(onboard);
    }
  });
});

// The service's enrollee list agrees with the decision log (no approval leaked past the log).
test('the service lists only the devices that were confirmed', async () => {
  const list = await okJson<{ enrollees: { name: string | null }[] }>(['service', 'enrollee', 'list'], { home: w.serviceHome });
  const names = list.enrollees.map((e) => e.name);
  for (const rogue of ['Rogue', 'Rogue 2', 'Rogue 3', 'Unanswered']) assert.ok(!names.includes(rogue), `${rogue} is not listed: ${JSON.stringify(names)}`);
});
