/**
 * Revocation takes effect at once (docs/protocol.md §7.9, docs/threat-model.md §5.10):
 * `service enrollee revoke` and `service enroller revoke` run as their own processes, and
 * the running service closes the revoked party's open channels within a tick of its
 * lifecycle watcher (250 ms), with an ERROR naming the reason.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { decodeError, MSG_ERROR } from '../../src/protocol/messages/common.js';
import { encodeFetchBundles } from '../../src/protocol/messages/service.js';
import { assertFailure, eventually, removeTempHomes, run, setupWorld, show, spawnCli, type World } from '../helpers/cli.js';
import { enrollDevice, enrollerChannel, EXIT } from './helpers.js';
import { patience } from '../helpers/pace.js';

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 4 });
});
after(async () => {
  await w?.dispose();
  removeTempHomes();
});

describe('revocation closes open channels at once', () => {
  test('`enrollee status --watch` exits 3 within 2 s of `service enrollee revoke`', async () => {
    const dev = await enrollDevice(w, 'Watched Bot');
    // A long interval: only a push from the service can end the watch in time.
    const watch = spawnCli(['enrollee', 'status', '--watch', '--interval', '30s'], { home: dev.home });
    try {
      await watch.waitForLine('watching the session');
      assert.match(watch.stdout(), new RegExp(`^enrolled as ${dev.id} \\(Watched Bot\\)`), 'the first status is printed at once');
      const revoke = await run(['service', 'enrollee', 'revoke', dev.id], { home: w.serviceHome });
      assert.equal(revoke.code, 0, show(revoke));
      const revokedAt = Date.now();
      const r = await watch.done(5_000);
      const took = Date.now() - revokedAt;
      assert.equal(r.code, EXIT.REJECTED, show(r));
      // 2 s on an idle machine, scaled; the 30 s poll interval would be far later.
      const bound = Math.min(await patience(2_000), 20_000);
      assert.ok(took < bound, `the watch ended ${took} ms after the revocation (bound ${bound} ms)`);
      assert.ok(r.stderr.includes('ockam-enroll: error: the service revoked this enrollee and closed the session'), show(r));
      await eventually(() => w.service.decisions('channel-closed').some((l) => l.includes(`enrollee=${dev.id}`) && l.includes('ERR_ENROLLEE_REVOKED')), 'a channel-closed decision for the enrollee', 5_000);
    } finally {
      if (watch.running()) watch.kill('SIGKILL');
    }
    // And afterwards the key is refused outright.
    const again = await run(['enrollee', 'status'], { home: dev.home });
    assertFailure(again, EXIT.REJECTED, 'revoked');
  });

  test('an enroller\'s idle channel is closed with ERR_ENROLLER_NOT_ALLOWED after `service enroller revoke`, and its bundles stop working', async () => {
    const channel = await enrollerChannel(w);
    try {
      // The channel works: one bundle over it.
      await channel.send(encodeFetchBundles(1));
      assert.equal((await channel.receive(await patience(5_000)))[0], 0x11);
      assert.equal((await channel.receive(await patience(5_000)))[0], 0x12);
      const spare = await w.newEnrollee('Late Bot');
      const revoke = await run(['service', 'enroller', 'revoke', w.enrollerKey], { home: w.serviceHome });
      assert.equal(revoke.code, 0, show(revoke));
      const revokedAt = Date.now();
      // Nothing is asked: the service pushes the ERROR on its own.
      const msg = await channel.receive(await patience(3_000));
      const took = Date.now() - revokedAt;
      assert.equal(msg[0], MSG_ERROR);
      const err = decodeError(msg);
      assert.equal(err.code, 'ERR_ENROLLER_NOT_ALLOWED');
      const bound = await patience(2_000);
      assert.ok(took < bound, `the channel was closed ${took} ms after the revocation (bound ${bound} ms)`);
      await assert.rejects(channel.receive(await patience(5_000)), (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED'));
      await eventually(() => w.service.decisions('channel-closed').some((l) => l.includes(`enroller=${w.enrollerKey}`)), 'a channel-closed decision for the enroller', 5_000);
      // Its cached bundles are unusable, and it cannot open a new channel.
      const approve = await run(['enroller', 'approve', spare.card], { home: w.enrollerHome });
      assertFailure(approve, EXIT.REJECTED, 'not allowed');
    } finally {
      channel.connection.destroy();
    }
  });
});
