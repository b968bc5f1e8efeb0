/**
 * Moving the service (docs/protocol.md §7.10; docs/threat-model.md §5.12): `service address
 * set` signs an announcement with IK_A; a running service takes it at once; enrolled devices
 * learn it at their next session and go there from then on; bundles made afterwards carry
 * the new address.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { signAnnouncement } from '../../src/protocol/announce.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { freePort, ok, okJson, removeTempHomes, run, setupWorld, show, startService, type ServiceHandle, type World } from '../helpers/cli.js';
import { cachedBundle, enrollDevice, enrolleeDir, EXIT } from './helpers.js';
import { learnAddress } from '../../src/roles/enrollee/lifecycle.js';
import { EnrolleeHome } from '../../src/roles/enrollee/home.js';

let w: World;
let moved: ServiceHandle | undefined;
let followingHome: string | undefined;
before(async () => {
  w = await setupWorld({ bundles: 4 });
});
after(async () => {
  if (moved?.running()) await moved.stop();
  await w?.dispose();
  removeTempHomes();
});

function serviceJson(home: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(enrolleeDir(home), 'service.json'), 'utf8')) as Record<string, unknown>;
}

describe('service address set', () => {
  test('an enrolled device follows the service to its new address; bundles made afterwards carry it', async () => {
    const dev = await enrollDevice(w, 'Following Bot');
    followingHome = dev.home;
    assert.equal(serviceJson(dev.home).address, w.address);
    const show0 = await okJson<{ address: string; seq: number }>(['service', 'address', 'show'], { home: w.serviceHome });
    assert.deepEqual([show0.address, show0.seq], [w.address, 0]);

    const portB = await freePort();
    const addressB = `tcp://127.0.0.1:${portB}`;
    const set = await okJson<{ address: string; previous: string; seq: number; changed: boolean }>(['service', 'address', 'set', addressB], { home: w.serviceHome });
    assert.deepEqual([set.address, set.previous, set.seq, set.changed], [addressB, w.address, 1, true]);
    const audited = await ok(['service', 'audit', 'export'], { home: w.serviceHome });
    assert.ok(audited.stdout.includes(`address-set address=${addressB} previous=${w.address} seq=1`), audited.stdout);
    // The running service on A takes the announcement from the store.
    await w.service.waitForLine(` address-changed address=${addressB} seq=1`, 5_000);

    // A bundle made now by the service still listening on A carries B.
    const [afterMove] = await w.fetchBundles(1);
    assert.equal((await cachedBundle(w, afterMove!)).addr, addressB);

    // One session via A: the device learns B.
    const learnt = await run(['enrollee', 'status'], { home: dev.home });
    assert.equal(learnt.code, EXIT.OK, show(learnt));
    assert.ok(learnt.stderr.includes(`the service announced a new address, ${addressB}`), show(learnt));
    assert.equal(serviceJson(dev.home).address, addressB);
    assert.equal(serviceJson(dev.home).address_seq, 1);
    assert.equal(serviceJson(dev.home).previous_address, w.address);

    // Nothing listens on B yet: the device falls back to A, which still answers.
    await ok(['enrollee', 'status'], { home: dev.home });

    // A second service process on the same home listens on B.
    moved = await startService(w.serviceHome, portB);
    assert.ok(moved.lines.some((l) => l.includes(`enroll_address=${addressB}`)), moved.lines.join('\n'));

    // A stops; the device reaches B.
    await w.service.stop();
    const s = await okJson<{ address: string }>(['enrollee', 'status'], { home: dev.home });
    assert.equal(s.address, addressB);
    assert.equal(moved.decisions('rejected').length, 0, moved.lines.join('\n'));

    // Setting the same address again changes nothing.
    const again = await okJson<{ changed: boolean; seq: number }>(['service', 'address', 'set', addressB], { home: w.serviceHome });
    assert.deepEqual([again.changed, again.seq], [false, 1]);
    // A device enrolled after the move is told B in its acceptance.
    const late = await w.newEnrollee('Late Bot');
    const bundleB = (await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', addressB, '--service-key', w.serviceKey], { home: w.enrollerHome })).bundles[0]!;
    const approved = await ok(['enroller', 'approve', late.card, '--bundle', bundleB], { home: w.enrollerHome });
    const joined = await okJson<{ address: string }>(['enrollee', 'join', '--bundle', approved.stdout.trim()], { home: late.home });
    assert.equal(joined.address, addressB);
    await moved.stop();
  });

  test('a device believes only a newer announcement signed by the key it pinned', () => {
    // The device of the test above (no service is needed: the check is local).
    assert.ok(followingHome, 'the test above enrolled a device');
    const e = EnrolleeHome.open(followingHome);
    const svc = serviceJson(followingHome);
    const seq = Number(svc.address_seq);
    const stranger = generateX25519();
    // Signed by another key than the pinned IK_A: refused (ERR_ANNOUNCEMENT_INVALID, exit 5 on the CLI).
    assert.throws(() => learnAddress(e, signAnnouncement(stranger.privateKey, seq + 1, 'tcp://203.0.113.9:4100')), { code: 'ERR_ANNOUNCEMENT_INVALID' });
    // Not newer than the one taken: ignored before any signature check.
    assert.equal(learnAddress(e, signAnnouncement(stranger.privateKey, seq, 'tcp://203.0.113.9:4100')), undefined);
    assert.deepEqual(serviceJson(followingHome), svc, 'nothing was written');
  });
});

