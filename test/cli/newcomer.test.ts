/**
 * What a new user tripped over (issue #22), each as it was met: a device that took another
 * service's bundle, a `--json` failure with nothing on stdout, permission gaps, and uneven
 * messages and exit statuses. Real processes, real loopback TCP, real SQLite.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { assertFailure, okJson, removeTempHomes, run, setupWorld, show, takeBundle, type World } from '../helpers/cli.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

/** The device's own service and enroller (w), and another service with its enroller (other). */
let w: World;
let other: World;

before(async () => {
  [w, other] = await Promise.all([setupWorld({ bundles: 4 }), setupWorld({ bundles: 2 })]);
});

after(async () => {
  await Promise.all([w?.dispose(), other?.dispose()]);
  removeTempHomes();
});

describe('a device that joined with another service\'s bundle (finding 1)', () => {
  test('is not stuck: the right enroller approves its card with --bundle, and the device enrolls with that bundle', async () => {
    const device = await w.newEnrollee('Robot Stray');
    const foreign = await okJson<{ text: string }>(['enroller', 'bundle', 'show', takeBundle(other)], { home: other.enrollerHome });

    // The foreign service has no approval for it: refused, and the hint names the way out.
    const join1 = await run(['enrollee', 'join', '--bundle', foreign.text], { home: device.home });
    assertFailure(join1, EXIT.REJECTED, 'no pending approval', '--bundle ID');
    assert.ok(!/init --force/.test(join1.stderr), `no second identity is suggested: ${show(join1)}`);

    // Its card now names the foreign bundle: the right enroller says so, locally (exit 1, not
    // "rejected by the service"), and names `--bundle`.
    const card = (await okJson<{ card: string }>(['enrollee', 'card'], { home: device.home })).card;
    const plain = await run(['enroller', 'approve', card], { home: w.enrollerHome });
    assertFailure(plain, EXIT.FAILURE, 'which this enroller did not fetch', 'enroller approve CARD --bundle ID');

    // --bundle binds one of this enroller's bundles instead of the card's foreign one.
    const mine = takeBundle(w);
    const approved = await okJson<{ bundle: string; bundle_text: string; enrollee: string }>(['enroller', 'approve', card, '--bundle', mine], { home: w.enrollerHome });
    assert.equal(approved.bundle, mine);
    assert.equal(approved.enrollee, device.id);

    const joined = await okJson<{ enrolled: boolean; enrollee_id: string; service_key: string }>(['enrollee', 'join', '--bundle', approved.bundle_text], { home: device.home });
    assert.equal(joined.enrolled, true);
    assert.equal(joined.enrollee_id, device.id);
    assert.equal(joined.service_key, w.serviceKey);
  });

  test('a card naming one of this enroller\'s bundles and a --bundle naming another is refused with a hint', async () => {
    const device = await w.newEnrollee();
    const held = takeBundle(w);
    const text = (await okJson<{ text: string }>(['enroller', 'bundle', 'show', held], { home: w.enrollerHome })).text;
    await run(['enrollee', 'join', '--bundle', text], { home: device.home });
    const card = (await okJson<{ card: string }>(['enrollee', 'card'], { home: device.home })).card;
    const r = await run(['enroller', 'approve', card, '--bundle', w.bundles[0]!], { home: w.enrollerHome });
    assertFailure(r, EXIT.USAGE, `the card names bundle ${held}`, 'leave out --bundle');
  });
});
