/**
 * Bundle pinning (docs/threat-model.md §5.2): `enrollee join --service-key KEY`, or a key
 * pinned with `enrollee init --service-key KEY`, makes the enrollee refuse any bundle whose
 * IK_A is another key, with ERR_BUNDLE_SERVICE_KEY (exit 5) and a hint, before anything is
 * sent: on the offline path (--bundle text), over TCP (--enroller) and over pipes (--stdio).
 *
 * The foreign bundles come from a second service home made through the library, whose
 * address is a plain TCP listener of this test: it counts every connection, so "nothing was
 * sent" is checked, not assumed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { toHex } from '../../src/crypto/bytes.js';
import { bundleToText } from '../../src/protocol/codec/index.js';
import {
  assertFailure,
  freePort,
  ok,
  okJson,
  parseJsonOut,
  removeTempHomes,
  run,
  setupWorld,
  shellCommand,
  show,
  spawnCli,
  takeBundle as takeBundleOf,
  tempHome,
  type Background,
  type World,
} from '../helpers/cli.js';
import { initServiceHome, issueBundles } from '../helpers/lab.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

let w: World;
/** A bundle of another service (IK_A ≠ w.serviceKey), for an address where only `trap` listens. */
let foreign: { key: string; texts: string[] };
let trap: Server;
let trapped = 0;

before(async () => {
  w = await setupWorld({ bundles: 8 });
  const port = await freePort();
  trap = createServer((s) => {
    trapped++;
    s.destroy();
  });
  await new Promise<void>((resolve) => trap.listen(port, '127.0.0.1', resolve));
  const made = await initServiceHome(tempHome('foreign-service'), port);
  try {
    const bundles = await issueBundles(made.svc, made.enroller.publicKey, 4);
    foreign = { key: toHex(made.svc.ikA.publicKey), texts: bundles.map(bundleToText) };
  } finally {
    await made.svc.close();
  }
});
after(async () => {
  await new Promise<void>((resolve) => trap?.close(() => resolve()));
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

const takeBundle = (): string => takeBundleOf(w);

async function killIfRunning(bg: Background | undefined): Promise<void> {
  if (bg?.running()) {
    bg.kill('SIGKILL');
    await bg.done().catch(() => undefined);
  }
}

/** The enrollee's home kept nothing of a refused bundle: no bundle.txt, no pending IK_B. */
function keptNothing(home: string): void {
  assert.equal(existsSync(join(home, 'enrollee', 'bundle.txt')), false, 'bundle.txt');
  assert.equal(existsSync(join(home, 'enrollee', 'ik_b.pending.key')), false, 'ik_b.pending.key');
}

describe('enrollee join --bundle (offline: text or QR)', () => {
  test('the right --service-key: enrolled', async () => {
    const e = await w.newEnrollee('Pinned Bot');
    const text = (await ok(['enroller', 'approve', e.card, '--bundle', takeBundle()], { home: w.enrollerHome })).stdout.trim();
    const j = await okJson<{ enrolled: boolean; service_key: string }>(['enrollee', 'join', '--bundle', text, '--service-key', w.serviceKey.toUpperCase()], { home: e.home });
    assert.deepEqual([j.enrolled, j.service_key], [true, w.serviceKey]);
  });

  test('another service\'s bundle: exit 5, ERR_BUNDLE_SERVICE_KEY with a hint, nothing sent and nothing kept', async () => {
    const e = await w.newEnrollee('Careful Bot');
    const before = trapped;
    const r = await run(['enrollee', 'join', '--bundle', foreign.texts[0]!, '--service-key', w.serviceKey], { home: e.home });
    assertFailure(r, EXIT.AUTH, `the bundle is for the service key ${foreign.key}, not the expected ${w.serviceKey} (--service-key)`, 'comes from another service, or was forged');
    assert.equal(trapped, before, 'no connection to the bundle\'s address');
    keptNothing(e.home);
    // Its own code (shown with OCKAM_ENROLL_DEBUG=1).
    const j = await run(['enrollee', 'join', '--bundle', foreign.texts[0]!, '--service-key', w.serviceKey], { home: e.home, env: { OCKAM_ENROLL_DEBUG: '1' } });
    assert.equal(j.code, EXIT.AUTH, show(j));
    assert.match(j.stderr, /^ockam-enroll: code: ERR_BUNDLE_SERVICE_KEY$/m);
    assert.equal(trapped, before);
  });

  test('a genuine, approved bundle checked against a wrong key: refused, and the service sees nothing', async () => {
    const e = await w.newEnrollee('Misled Bot');
    const text = (await ok(['enroller', 'approve', e.card, '--bundle', takeBundle()], { home: w.enrollerHome })).stdout.trim();
    const r = await run(['enrollee', 'join', '--bundle', text, '--service-key', foreign.key], { home: e.home });
    assertFailure(r, EXIT.AUTH, `not the expected ${foreign.key} (--service-key)`);
    keptNothing(e.home);
    const row = await okJson<{ state: string; failed_attempts: number }>(['service', 'enrollee', 'show', e.id], { home: w.serviceHome });
    assert.deepEqual([row.state, row.failed_attempts], ['pending', 0]);
    assert.equal(w.service.lines.filter((l) => l.includes(`enrollee=${e.id}`) && !/ approved /.test(l)).length, 0, w.service.lines.join('\n'));
    // Without the wrong pin it enrolls.
    await ok(['enrollee', 'join', '--bundle', text], { home: e.home });
  });

  test('a key pinned at `enrollee init --service-key`: every join checks it; a contradicting flag is a usage error', async () => {
    const home = tempHome('pinned-enrollee');
    const init = await okJson<{ card: string; enrollee_id: string; pinned_service_key: string }>(['enrollee', 'init', '--name', 'Image Bot', '--service-key', w.serviceKey], { home });
    assert.equal(init.pinned_service_key, w.serviceKey);
    const before = trapped;
    const r = await run(['enrollee', 'join', '--bundle', foreign.texts[1]!], { home });
    assertFailure(r, EXIT.AUTH, /not the expected [0-9a-f]{64} \(pinned in .*enrollee\.json\)/, 'another service');
    const both = await run(['enrollee', 'join', '--bundle', foreign.texts[1]!, '--service-key', foreign.key], { home });
    assertFailure(both, EXIT.USAGE, `--service-key ${foreign.key} differs from the service key ${w.serviceKey} pinned at`, 'enrollee init --force --service-key');
    assert.equal(trapped, before);
    keptNothing(home);
    const text = (await ok(['enroller', 'approve', init.card, '--bundle', takeBundle()], { home: w.enrollerHome })).stdout.trim();
    await ok(['enrollee', 'join', '--bundle', text], { home });
  });

  test('a malformed key is a usage error (exit 2), before the home is opened', async () => {
    for (const bad of ['abc', w.serviceKey.slice(0, 63), `${w.serviceKey}00`, `${w.serviceKey.slice(0, 63)}g`, `sha256:${w.serviceKey}`]) {
      const r = await run(['enrollee', 'join', '--bundle', foreign.texts[0]!, '--service-key', bad], { home: tempHome('never-initialised') });
      assertFailure(r, EXIT.USAGE, '--service-key must be 64 hex characters');
      const i = await run(['enrollee', 'init', '--service-key', bad], { home: tempHome('init-bad-key') });
      assertFailure(i, EXIT.USAGE, '--service-key must be 64 hex characters');
    }
    const t = await run(['enrollee', 'join', '--token', 'x', '--service-key', w.serviceKey], { home: w.enrollee.home });
    assertFailure(t, EXIT.USAGE, '--service-key applies to --bundle, --enroller and --stdio');
  });
});

describe('enrollee join --enroller (TCP) and --stdio', () => {
  test('--enroller with the right key enrolls; with another key the card is never sent and the enroller is told', async () => {
    const good = await w.newEnrollee('Net Bot');
    const p = await freePort();
    let onboard: Background | undefined;
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p}`, '--expect-enrollee', good.id], { home: w.enrollerHome });
      await onboard.waitForLine('waiting for the enrollee');
      const joined = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p}`, '--yes', '--service-key', w.serviceKey], { home: good.home });
      const ob = await onboard.done();
      assert.equal(joined.code, 0, show(joined));
      assert.equal(ob.code, 0, show(ob));
    } finally {
      await killIfRunning(onboard);
    }

    const e = await w.newEnrollee('Net Skeptic');
    const p2 = await freePort();
    try {
      onboard = spawnCli(['enroller', 'onboard', '--listen', `127.0.0.1:${p2}`, '--expect-enrollee', e.id], { home: w.enrollerHome });
      await onboard.waitForLine('waiting for the enrollee');
      const joined = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${p2}`, '--yes', '--service-key', foreign.key], { home: e.home });
      const ob = await onboard.done();
      assertFailure(joined, EXIT.AUTH, `the bundle is for the service key ${w.serviceKey}, not the expected ${foreign.key} (--service-key)`, 'another service');
      assertFailure(ob, EXIT.AUTH, `the enrollee expects the service key ${foreign.key}; the offered bundle is for ${w.serviceKey}`, 'enroller bundle fetch');
      keptNothing(e.home);
      // No card reached the enroller, so nothing was approved for this enrollee.
      const show_ = await run(['service', 'enrollee', 'show', e.id], { home: w.serviceHome });
      assert.notEqual(show_.code, 0, show(show_));
    } finally {
      await killIfRunning(onboard);
    }
  });

  test('--stdio under `enroller onboard --exec`: the same refusal, and the right key enrolls', async () => {
    const e = await w.newEnrollee('Pipe Skeptic');
    const r = await run(['enroller', 'onboard', '--expect-enrollee', e.id, '--exec', shellCommand(['enrollee', 'join', '--stdio', '--yes', '--home', e.home, '--service-key', foreign.key])], { home: w.enrollerHome });
    // Both processes' errors reach this stderr (the child's passes through).
    assert.equal(r.code, EXIT.AUTH, show(r));
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^ockam-enroll: error: the bundle is for the service key ${w.serviceKey}, not the expected ${foreign.key} \\(--service-key\\)`, 'm'), show(r));
    assert.match(r.stderr, new RegExp(`^ockam-enroll: error: the peer refused: the enrollee expects the service key ${foreign.key}`, 'm'), show(r));
    keptNothing(e.home);

    const ok_ = await run(['enroller', 'onboard', '--expect-enrollee', e.id, '--exec', shellCommand(['enrollee', 'join', '--stdio', '--yes', '--home', e.home, '--service-key', w.serviceKey]), '--json'], { home: w.enrollerHome });
    assert.equal(ok_.code, 0, show(ok_));
    assert.equal(parseJsonOut<{ enrolled: boolean }>(ok_).enrolled, true);
  });
});
