/**
 * What the CLI refuses, end to end: each refusal has a clear message, a hint where one
 * helps, the documented exit status, and leaves the service serving. The service is the
 * real `service start` process; the enroller and enrollees are real CLI processes, except
 * for the replay test, whose attacker sends hand-made bytes with the library.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { generateX25519, keyPairFromPrivate } from '../../src/crypto/x25519.js';
import { bundleFromText } from '../../src/protocol/codec/index.js';
import { initiateV2 } from '../../src/protocol/enrollment/index.js';
import type { BundleV2 } from '../../src/protocol/codec/bundle.js';
import { fetchKemPrekey } from '../../src/roles/enrollee/kem-prekey.js';
import { ENROLL_STATUS, KIND_ENROLL, kindFrame } from '../../src/protocol/messages/service.js';
import { connectTcp } from '../../src/transport/tcp.js';
import {
  assertFailure,
  eventually,
  freePort,
  initEnrollee,
  initService,
  ok,
  okJson,
  removeTempHomes,
  run,
  setupWorld,
  show,
  sleep,
  startService,
  tempHome,
  takeBundle as takeBundleOf,
  type World,
} from '../helpers/cli.js';

const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

let w: World;
before(async () => {
  w = await setupWorld({ bundles: 8 });
});
after(async () => {
  try {
    await w?.dispose();
  } finally {
    removeTempHomes();
  }
});

const takeBundle = (): string => takeBundleOf(w);

async function bundleText(id: string): Promise<string> {
  return (await ok(['enroller', 'bundle', 'show', id], { home: w.enrollerHome })).stdout.trim();
}

/** The service is still up and serving: the process runs and a bundle fetch succeeds. */
async function assertServing(): Promise<void> {
  assert.ok(w.service.running(), `the service process exited:\n${w.service.lines.join('\n')}`);
  const r = await okJson<{ fetched: number }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', '1'], { home: w.enrollerHome });
  assert.equal(r.fetched, 1);
}

/** Waits for a service log line of this decision that contains every one of `parts`. */
async function logged(decision: string, ...parts: string[]): Promise<string> {
  const find = () => w.service.decisions(decision).find((l) => parts.every((p) => l.includes(p)));
  await eventually(() => find() !== undefined, `a "${decision}" log line with ${parts.join(', ')}:\n${w.service.lines.join('\n')}`, 5_000);
  return find()!;
}

/** Sends one enrollment connection (KIND_ENROLL + the message) and returns the response frame. */
async function sendEnrollment(address: string, message: Uint8Array): Promise<Uint8Array> {
  const conn = await connectTcp(address, { readTimeoutMs: 10_000 });
  try {
    await conn.writeFrame(kindFrame(KIND_ENROLL));
    await conn.writeFrame(message);
    return await conn.readFrame(10_000);
  } finally {
    conn.destroy();
  }
}

describe('refusals at the service', () => {
  test('a replayed enrollment message is refused with REPLAY and logged as ERR_REPLAY', async () => {
    const e = await w.newEnrollee('Replay Target');
    const id = takeBundle();
    const approved = await ok(['enroller', 'approve', e.card, '--bundle', id], { home: w.enrollerHome });

    // The enrollee's side, done by hand from its keystore, so the exact bytes can be sent twice.
    const keyFile = JSON.parse(readFileSync(join(e.home, 'enrollee', 'eik_b.key'), 'utf8')) as { public_key: string; private_key: string };
    const eikB = keyPairFromPrivate(fromHex(keyFile.private_key));
    assert.equal(toHex(eikB.publicKey), keyFile.public_key);
    const bundle = bundleFromText(approved.stdout.trim(), { now: Math.floor(Date.now() / 1000), ikA: fromHex(w.serviceKey) });
    // The world's bundles are EKA v2 (the default): the message is v2's, with the service's
    // KEM prekey fetched and checked as `enrollee join` does.
    assert.equal(bundle.version, 2);
    const kemPrekey = await fetchKemPrekey(bundle as BundleV2);
    const { message } = initiateV2({ bundle: bundle as BundleV2, kemPrekey, eikB, ikB: generateX25519() });
    const bytes = Uint8Array.from(message);
    assert.equal(bytes.length, 1265);

    const first = await sendEnrollment(bundle.addr, bytes);
    assert.equal(first[0], ENROLL_STATUS.ACCEPTED, 'the first copy is accepted');
    await logged('accepted', `enrollee=${e.id}`);

    const second = await sendEnrollment(bundle.addr, bytes);
    assert.deepEqual([...second], [ENROLL_STATUS.REPLAY], 'the identical second copy is refused as a replay');
    const line = await logged('rejected', 'ERR_REPLAY', `enrollee=${e.id}`);
    assert.match(line, /reason="?ERR_REPLAY/);

    // The enrollment the first copy made stands.
    const row = await okJson<{ state: string }>(['service', 'enrollee', 'show', e.id], { home: w.serviceHome });
    assert.equal(row.state, 'enrolled');
    await assertServing();
  });

  test('an expired approval: join exits 3 and says to approve again', async () => {
    const e = await w.newEnrollee('Late Bot');
    const id = takeBundle();
    const approved = await okJson<{ bundle_text: string; expires_at: string }>(['enroller', 'approve', e.card, '--bundle', id, '--ttl', '1s'], { home: w.enrollerHome });
    // Until the second after its expiry has begun (was a fixed 2.5 s: issue 24).
    await sleep(Math.max(0, Date.parse(approved.expires_at) - Date.now() + 1100));
    const r = await run(['enrollee', 'join', '--bundle', approved.bundle_text], { home: e.home });
    assertFailure(r, EXIT.REJECTED, 'approval has expired', 'approve it again');
    await logged('rejected', 'ERR_APPROVAL_EXPIRED', `enrollee=${e.id}`);
    const row = await okJson<{ state: string; expired: boolean }>(['service', 'enrollee', 'show', e.id], { home: w.serviceHome });
    assert.deepEqual({ state: row.state, expired: row.expired }, { state: 'pending', expired: true });

    // Approving again (another bundle) lets the same enrollee in.
    const again = await ok(['enroller', 'approve', e.card, '--bundle', takeBundle()], { home: w.enrollerHome });
    await ok(['enrollee', 'join', '--bundle', again.stdout.trim()], { home: e.home });
    await assertServing();
  });

  test('a bundle serves one enrollee: a second approval and a stranger\'s join are refused', async () => {
    const a = await w.newEnrollee('First Bot');
    const b = await w.newEnrollee('Second Bot');
    const x = takeBundle();
    const textX = (await ok(['enroller', 'approve', a.card, '--bundle', x], { home: w.enrollerHome })).stdout.trim();
    await ok(['enrollee', 'join', '--bundle', textX], { home: a.home });

    // The enroller's own cache already knows the bundle is spent.
    const local = await run(['enroller', 'approve', b.card, '--bundle', x], { home: w.enrollerHome });
    assertFailure(local, EXIT.REJECTED, `bundle ${x} was already used for enrollee ${a.id}`, 'a bundle serves one enrollee only');

    // A stale or tampered cache does not help: the service refuses the bundle itself.
    const cacheFile = join(w.enrollerHome, 'enroller', 'bundles.json');
    const cache = JSON.parse(readFileSync(cacheFile, 'utf8')) as { bundles: { id: string; state: string }[] };
    cache.bundles.find((c) => c.id === x)!.state = 'fresh';
    writeFileSync(cacheFile, JSON.stringify(cache));
    const remote = await run(['enroller', 'approve', b.card, '--bundle', x], { home: w.enrollerHome });
    assertFailure(remote, EXIT.REJECTED, 'a bundle serves one enrollee only', 'use another bundle');
    await logged('approve-refused', 'ERR_BUNDLE_USED');

    // B, holding X's text but never approved, is refused too.
    const joined = await run(['enrollee', 'join', '--bundle', textX], { home: b.home });
    assertFailure(joined, EXIT.REJECTED, 'no pending approval', 'enroller approve');
    await logged('rejected', 'ERR_ENROLLEE_UNKNOWN', `enrollee=${b.id}`);
    await assertServing();
  });

  test('an enrollee the enroller never approved: exit 3, no pending approval', async () => {
    const e = await w.newEnrollee('Stranger');
    const r = await run(['enrollee', 'join', '--bundle', await bundleText(takeBundle())], { home: e.home });
    assertFailure(r, EXIT.REJECTED, 'has no pending approval for this enrollee', '`enroller approve CARD --bundle ID`');
    await logged('rejected', 'ERR_ENROLLEE_UNKNOWN', `enrollee=${e.id}`);
    await assertServing();
  });

  test('an enroller the service never allowed: exit 3, hint names the allow command with its key', async () => {
    const home = tempHome('rogue');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home })).enroller_key;
    const r = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', w.serviceKey], { home });
    assertFailure(r, EXIT.REJECTED, 'is not allowed by the service', `service enroller allow ${key}`);
    await logged('enroller-refused', `enroller=${key}`);
    // Once allowed, it is served.
    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', w.serviceKey], { home });
    await assertServing();
  });

  test('a wrong --service-key: exit 5, and nothing is pinned', async () => {
    const home = tempHome('pinning');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home })).enroller_key;
    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });
    const wrong = key; // 64 hex characters of a real key that is not the service's
    const r = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', wrong], { home });
    assertFailure(r, EXIT.AUTH, `the service at ${w.address} has key ${w.serviceKey}, not the --service-key given`, 'service init');
    // The refused key was not pinned: a later fetch with the right key, then by its pin, works.
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', w.serviceKey], { home });
    const pinned = await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assert.ok(!pinned.stderr.includes('warning'), `a pinned key gives no warning: ${show(pinned)}`);
    await assertServing();
  });

  test('cannot reach the service: exit 4 with a hint', async () => {
    const closed = await freePort();
    const r = await run(['enroller', 'bundle', 'fetch', '--service', `tcp://127.0.0.1:${closed}`], { home: w.enrollerHome });
    assertFailure(r, EXIT.UNREACHABLE, `cannot reach tcp://127.0.0.1:${closed}`, 'service start');
    const e = await w.newEnrollee();
    const j = await run(['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${closed}`, '--yes'], { home: e.home });
    assertFailure(j, EXIT.UNREACHABLE, `cannot reach tcp://127.0.0.1:${closed}`);
  });

  test('a first contact that is refused pins nothing; the first one that succeeds pins and warns (issue #22)', async () => {
    const home = tempHome('tofu-refused');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home })).enroller_key;
    const pins = join(home, 'enroller', 'known_services.json');
    const pinned = (): Record<string, { key: string }> => {
      try {
        return JSON.parse(readFileSync(pins, 'utf8')) as Record<string, { key: string }>;
      } catch {
        return {};
      }
    };
    // Not allowed yet: the fetch and the token request are refused, and nothing is pinned.
    const refused = await run(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assertFailure(refused, EXIT.REJECTED, 'not allowed');
    assert.ok(!refused.stderr.includes('trusted the service key'), show(refused));
    const token = await run(['enroller', 'token', 'create', '--name', 'refused-device', '--service', w.address], { home });
    assert.notEqual(token.code, 0, show(token));
    assert.equal(pinned()[w.address], undefined, 'a refused first contact pinned the key');

    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });
    const first = await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assert.ok(first.stderr.includes(`warning: trusted the service key ${w.serviceKey} for ${w.address} on first use`), `the warning is shown the first time the pin is made: ${show(first)}`);
    assert.equal(pinned()[w.address]?.key, w.serviceKey);
    const second = await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assert.ok(!second.stderr.includes('trusted the service key'), `only once: ${show(second)}`);
  });

  // Last: it replaces the service's identity and store.
  test('trust on first use, then a re-initialised service: exit 5 and a hint about --service-key', async () => {
    const home = tempHome('tofu');
    const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home })).enroller_key;
    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });
    const first = await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assert.ok(first.stderr.includes(`warning: trusted the service key ${w.serviceKey} for ${w.address} on first use`), show(first));
    const known = JSON.parse(readFileSync(join(home, 'enroller', 'known_services.json'), 'utf8')) as Record<string, { key: string }>;
    assert.equal(known[w.address]?.key, w.serviceKey);

    await w.service.stop();
    const newKey = (await initService(w.serviceHome, { port: w.port, ...(w.httpsPort ? { httpsPort: w.httpsPort } : {}), force: true })).serviceKey;
    assert.notEqual(newKey, w.serviceKey);
    w.service = await startService(w.serviceHome, w.port, w.httpsPort);
    await ok(['service', 'enroller', 'allow', key], { home: w.serviceHome });

    const r = await run(['enroller', 'bundle', 'fetch', '--service', w.address], { home });
    assertFailure(r, EXIT.AUTH, 'differs from the key pinned for it', '--service-key');
    // Pinning the new key on purpose works, and replaces the pin.
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', newKey], { home });
    const after = JSON.parse(readFileSync(join(home, 'enroller', 'known_services.json'), 'utf8')) as Record<string, { key: string }>;
    assert.equal(after[w.address]?.key, newKey);
    await ok(['enroller', 'bundle', 'fetch', '--service', w.address], { home });

    // The old enroller's old-service bundles are unknown to the new store; new ones work.
    const e = await initEnrollee(join(home, 'device'), 'After Reinit');
    const fresh = (await okJson<{ bundles: string[] }>(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', newKey], { home })).bundles[0]!;
    const approved = await ok(['enroller', 'approve', e.card, '--bundle', fresh], { home });
    await ok(['enrollee', 'join', '--bundle', approved.stdout.trim()], { home: e.home });
  });
});

describe('usage errors exit 2', () => {
  test('an unknown flag', async () => {
    const r = await run(['enroller', 'bundle', 'fetch', '--service', 'tcp://127.0.0.1:1', '--bogus'], { home: tempHome('usage') });
    assert.equal(r.code, EXIT.USAGE, show(r));
    assert.equal(r.stdout, '');
    assert.ok(r.stderr.startsWith('ockam-enroll: error: '), show(r));
    assert.ok(r.stderr.includes("unknown option '--bogus'"), show(r));
  });

  test('an unknown command', async () => {
    const r = await run(['enrollee', 'frobnicate']);
    assert.equal(r.code, EXIT.USAGE, show(r));
    assert.ok(r.stderr.startsWith('ockam-enroll: error: '), show(r));
  });

  test('a missing required option', async () => {
    const r = await run(['enroller', 'bundle', 'fetch'], { home: tempHome('usage') });
    assert.equal(r.code, EXIT.USAGE, show(r));
    assert.ok(r.stderr.startsWith("ockam-enroll: error: required option '--service"), show(r));
  });

  test('enrollee join with no mode, or two', async () => {
    const e = await initEnrollee(join(tempHome('usage'), 'e'));
    for (const args of [[], ['--bundle', 'OEB1:X', '--enroller', 'tcp://127.0.0.1:1'], ['--stdio', '--enroller', 'tcp://127.0.0.1:1']]) {
      const r = await run(['enrollee', 'join', ...args], { home: e.home });
      assertFailure(r, EXIT.USAGE, /choose exactly one of --bundle, --enroller,? (or )?--stdio/);
    }
  });

  test('enroller onboard with no mode', async () => {
    const r = await run(['enroller', 'onboard'], { home: w.enrollerHome });
    assertFailure(r, EXIT.USAGE, 'choose exactly one of --listen, --stdio or --exec');
  });

  test('a bad --ttl, --count or --service-key', async () => {
    const card = w.enrollee.card;
    const bad = await run(['enroller', 'approve', card, '--ttl', '5x'], { home: w.enrollerHome });
    assertFailure(bad, EXIT.USAGE, '--ttl "5x" is not a duration', 'use e.g. 90s');
    const zero = await run(['enroller', 'approve', card, '--ttl', '0s'], { home: w.enrollerHome });
    assertFailure(zero, EXIT.USAGE, '--ttl must be between 1s and 2592000s, got 0s');
    const long = await run(['enroller', 'approve', card, '--ttl', '31d'], { home: w.enrollerHome });
    assertFailure(long, EXIT.USAGE, '--ttl must be between');
    const count = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--count', 'many'], { home: w.enrollerHome });
    assertFailure(count, EXIT.USAGE, '--count "many" is not a whole number');
    const key = await run(['enroller', 'bundle', 'fetch', '--service', w.address, '--service-key', 'abc'], { home: w.enrollerHome });
    assertFailure(key, EXIT.USAGE, '--service-key must be 64 hex characters');
    const addr = await run(['enroller', 'bundle', 'fetch', '--service', 'http://example.com'], { home: w.enrollerHome });
    assert.equal(addr.code, EXIT.USAGE, show(addr));
    // Nothing was approved by the refused commands.
    const rows = await okJson<{ enrollees: { id: string }[] }>(['service', 'enrollee', 'list'], { home: w.serviceHome });
    assert.ok(!rows.enrollees.some((r) => r.id === w.enrollee.id));
  });
});
