/**
 * Crash safety of the clients: `enrollee join`, `enroller bundle fetch` and `enroller approve`
 * are killed with SIGKILL at seeded random moments (OCKAM_ENROLL_FUZZ_SEED; each failure names
 * its delay), against a real service over loopback TCP.
 *
 * After every kill the role's home is checked file by file: every key file parses and its
 * private key yields its public key, every JSON file parses, a held bundle verifies under the
 * service key, the bundle cache parses and every cached bundle verifies, and no state says
 * "enrolled" without an identity key. Then the command is run again: it completes, or fails
 * with a clear error (an `error:` line, a hint, and a documented exit status).
 *
 * The enrollee's own commit is also cut at each of its steps (by rebuilding the files a kill
 * would leave), and a re-run of `join` must complete every time.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { EnrollError } from '../../src/errors.js';
import { KeyFile } from '../../src/keystore/keyfile.js';
import { EnrolleeHome } from '../../src/roles/enrollee/home.js';
import { bundleFromText } from '../../src/protocol/codec/index.js';
import {
  errorLine,
  hintLine,
  initEnrollee,
  ok,
  okJson,
  removeTempHomes,
  run,
  show,
  sleep,
  spawnCli,
} from '../helpers/cli.js';
import { FUZZ_SEED, labWorld, nowSeconds, sigkill, type LabWorld } from '../helpers/lab.js';
import { slowdown } from '../helpers/pace.js';

/** How much slower than idle the machine is (pace.ts): each test's timeout below is its idle bound times this. */
const SLOW = await slowdown();

/** mulberry32: a small seeded PRNG, so the kill moments are reproducible from the seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(FUZZ_SEED);
const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));

let world: LabWorld;
before(async () => {
  world = await labWorld({ bundles: 40 });
});
after(async () => {
  await world?.dispose();
  removeTempHomes();
});

const TEMP_RE = /^\..+\.tmp-[0-9a-f]{16}$/;

/**
 * Checks every file of `<home>/<role>`: returns their names. Key files parse and unlock to
 * their own public key (they are 0600); JSON files parse; the held bundle verifies.
 */
async function checkHome(home: string, role: 'enrollee' | 'enroller'): Promise<Set<string>> {
  const dir = join(home, role);
  const names = new Set<string>();
  if (!existsSync(dir)) return names;
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (TEMP_RE.test(name)) continue; // a temp file a kill left: never read, removed by the next open after 10 min
    names.add(name);
    const text = readFileSync(path, 'utf8');
    if (name.endsWith('.key')) {
      assert.equal(statSync(path).mode & 0o777, 0o600, `${path} is 0600`);
      const kf = KeyFile.parse(text, path);
      const kp = await kf.unlock();
      assert.deepEqual(kp.publicKey, kf.publicKey, `${path}: the private key yields the public key`);
    } else if (name.endsWith('.json')) {
      assert.doesNotThrow(() => JSON.parse(text), `${path} parses`);
    } else if (name === 'bundle.txt') {
      bundleFromText(text, { now: nowSeconds(), ikA: fromHex(world.serviceKey) });
    }
  }
  if (role === 'enrollee') {
    if (names.has('service.json')) {
      assert.ok(names.has('ik_b.key'), `${dir}: service.json (enrolled) without ik_b.key`);
      const svc = JSON.parse(readFileSync(join(dir, 'service.json'), 'utf8')) as { identity_key: string };
      assert.equal(svc.identity_key, toHex(KeyFile.parse(readFileSync(join(dir, 'ik_b.key'), 'utf8'), 'ik_b.key').publicKey), 'service.json names ik_b.key');
    }
    if (names.has('ik_b.key') && names.has('ik_b.pending.key')) {
      const a = KeyFile.parse(readFileSync(join(dir, 'ik_b.key'), 'utf8'), 'a').publicKey;
      const b = KeyFile.parse(readFileSync(join(dir, 'ik_b.pending.key'), 'utf8'), 'b').publicKey;
      assert.deepEqual(a, b, 'a pending IK_B next to ik_b.key is the same key');
    }
  }
  if (role === 'enroller' && names.has('bundles.json')) {
    const cache = JSON.parse(readFileSync(join(dir, 'bundles.json'), 'utf8')) as { version: number; bundles: { id: string; text: string }[] };
    assert.equal(cache.version, 1);
    const ids = new Set<string>();
    for (const b of cache.bundles) {
      const bundle = bundleFromText(b.text, { now: nowSeconds(), ikA: fromHex(world.serviceKey) });
      assert.equal(Buffer.from(bundle.bundleId).toString('hex'), b.id);
      assert.ok(!ids.has(b.id), `bundle ${b.id} is cached once`);
      ids.add(b.id);
    }
  }
  return names;
}

/** Approves `card` with the world's enroller and returns the bundle's text. */
async function approve(card: string): Promise<string> {
  return (await okJson<{ bundle_text: string }>(['enroller', 'approve', card], { home: world.enrollerHome })).bundle_text;
}

describe('crash: SIGKILL of `enrollee join` at random moments', () => {
  // A `join` process lives about 500-700 ms here (most of it node's start-up): the range
  // covers the time before it starts writing, its writes, and after it is done.
  for (let trial = 0; trial < 5; trial++) {
    const delay = between(250, 800);
    it(`trial ${trial}: killed after ${delay} ms, the keystore is whole and a re-run completes`, { timeout: Math.ceil(120_000 * SLOW) }, async () => {
      const e = await initEnrollee(join(world.root, `kill-join-${trial}`), `kill ${trial}`);
      const bundle = await approve(e.card);
      const bg = spawnCli(['enrollee', 'join', '--bundle', bundle], { home: e.home });
      await sleep(delay);
      const finishedFirst = !bg.running();
      await sigkill(bg);
      const left = await checkHome(e.home, 'enrollee');
      process.stderr.write(`# join killed at ${delay} ms: ${finishedFirst ? 'had finished' : `left ${[...left].sort().join(' ')}`}\n`);
      const again = await run(['enrollee', 'join', '--bundle', bundle, '--json'], { home: e.home });
      if (again.code !== 0) {
        // Only an enrollee that was already enrolled (the kill came after the whole run) may refuse.
        assert.ok(finishedFirst || existsSync(join(e.home, 'enrollee', 'service.json')), `re-run after a kill at ${delay} ms: ${show(again)}`);
        assert.match(errorLine(again), /already enrolled/);
        assert.ok(hintLine(again), 'with a hint');
      }
      await checkHome(e.home, 'enrollee');
      const st = await okJson<{ state: string; enrollee_id: string }>(['enrollee', 'status'], { home: e.home });
      assert.equal(st.enrollee_id, e.id);
    });
  }
});

describe('crash: the enrollee commit cut at each step', () => {
  // What a kill between the writes of EnrolleeHome.commitEnrollment leaves, rebuilt from a
  // completed enrollment: the pending IK_B is still there, and the later files are not.
  const cuts: { name: string; remove: string[] }[] = [
    { name: 'before anything was saved', remove: ['session.json', 'ik_b.key', 'service.json'] },
    { name: 'after session.json', remove: ['ik_b.key', 'service.json'] },
    { name: 'after ik_b.key', remove: ['service.json'] },
  ];
  for (const cut of cuts) {
    it(`a crash ${cut.name}: the re-run of join recovers the enrollment the service already accepted`, { timeout: Math.ceil(120_000 * SLOW) }, async () => {
      const e = await initEnrollee(join(world.root, `cut-${cut.name.replace(/\W+/g, '-')}`), 'cut');
      const bundle = await approve(e.card);
      await ok(['enrollee', 'join', '--bundle', bundle], { home: e.home });
      const dir = join(e.home, 'enrollee');
      copyFileSync(join(dir, 'ik_b.key'), join(dir, 'ik_b.pending.key'));
      for (const f of cut.remove) rmSync(join(dir, f), { force: true });
      await checkHome(e.home, 'enrollee');
      const again = await okJson<{ enrolled: boolean; enrollee_id: string }>(['enrollee', 'join', '--bundle', bundle], { home: e.home });
      assert.equal(again.enrolled, true);
      const names = await checkHome(e.home, 'enrollee');
      assert.ok(names.has('service.json') && names.has('ik_b.key') && !names.has('ik_b.pending.key'));
      await ok(['enrollee', 'status'], { home: e.home });
    });
  }
});

describe('crash: the enrollee commit fails at each write', () => {
  // A failure (a kill, a full disk) at any write of commitEnrollment must never leave
  // service.json, the "enrolled" mark, without the identity key it names.
  for (const failing of ['session.json', 'ik_b.key', 'service.json'] as const) {
    it(`writing ${failing} fails: no "enrolled" mark without ik_b.key`, async () => {
      const home = join(world.root, `commit-fail-${failing}`);
      const e = await EnrolleeHome.init(home, { petName: 'commit' });
      const ikB = await e.identityForAttempt();
      const ks = e.keystore;
      const boom = () => {
        throw new EnrollError('ERR_KEYSTORE_IO', `cannot write ${failing}: no space left on device`);
      };
      const writeJson = ks.writeJson.bind(ks);
      const saveKeyPair = ks.saveKeyPair.bind(ks);
      ks.writeJson = (name, value, options) => (name === failing ? boom() : writeJson(name, value, options));
      ks.saveKeyPair = (name, kp, options) => (name === failing ? Promise.resolve().then(boom) : saveKeyPair(name, kp, options));
      const service = { service_key: world.serviceKey, address: world.address, enrollee_id: toHex(e.enrolleeId()), identity_key: toHex(ikB.publicKey), pet_name: 'commit', enrolled_at: nowSeconds() };
      await assert.rejects(e.commitEnrollment(ikB, service, { k_s2e: '00'.repeat(32), k_e2s: '11'.repeat(32), send_counter: '0', recv_counter: '0' }), { code: 'ERR_KEYSTORE_IO' });
      const names = await checkHome(home, 'enrollee');
      assert.ok(names.has('ik_b.pending.key'), 'the pending IK_B is kept for the retry');
      assert.equal(e.enrolled(), undefined, 'not marked enrolled');
    });
  }
});

describe('crash: SIGKILL of the enroller', () => {
  const cachedCount = (): number =>
    (JSON.parse(readFileSync(join(world.enrollerHome, 'enroller', 'bundles.json'), 'utf8')) as { bundles: unknown[] }).bundles.length;
  for (let trial = 0; trial < 2; trial++) {
    const delay = between(300, 2000);
    it(`bundle fetch killed after ${delay} ms: the cache parses, every bundle in it verifies, and a re-run works`, { timeout: Math.ceil(120_000 * SLOW) }, async () => {
      await checkHome(world.enrollerHome, 'enroller');
      const cachedBefore = cachedCount();
      const bg = spawnCli(['enroller', 'bundle', 'fetch', '--service', world.address, '--count', '2000'], { home: world.enrollerHome });
      await sleep(delay);
      await sigkill(bg);
      await checkHome(world.enrollerHome, 'enroller');
      const r = await okJson<{ fetched: number }>(['enroller', 'bundle', 'fetch', '--service', world.address, '--count', '5'], { home: world.enrollerHome });
      assert.equal(r.fetched, 5);
      await checkHome(world.enrollerHome, 'enroller');
      assert.ok(cachedCount() >= cachedBefore + 5);
    });
  }

  for (let trial = 0; trial < 2; trial++) {
    const delay = between(250, 800);
    it(`approve killed after ${delay} ms: the cache parses, a re-run approves, and the enrollee joins`, { timeout: Math.ceil(120_000 * SLOW) }, async () => {
      const e = await initEnrollee(join(world.root, `kill-approve-${trial}`), `approve ${trial}`);
      const bg = spawnCli(['enroller', 'approve', e.card], { home: world.enrollerHome });
      await sleep(delay);
      await sigkill(bg);
      await checkHome(world.enrollerHome, 'enroller');
      const bundle = await approve(e.card);
      await checkHome(world.enrollerHome, 'enroller');
      const joined = await okJson<{ enrolled: boolean }>(['enrollee', 'join', '--bundle', bundle], { home: e.home });
      assert.equal(joined.enrolled, true);
    });
  }
});
