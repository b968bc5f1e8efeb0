/**
 * The service's limits, through a live `service start` over loopback TCP, each with its
 * flag: frame size (--max-frame), the per-read timeout against slow-loris peers
 * (--read-timeout), open connections (--max-connections), requests per IP
 * (--rate-per-ip: an enrollment message gets status RATE_LIMITED, a Noise connection is
 * dropped before its handshake), requests per enroller (--rate-per-enroller: ERROR ERR_RATE_LIMITED, exit 3 with
 * a hint), and the lockout after settings.maxFailedAttempts (20) failed attempts.
 *
 * Every refusal is checked on the wire, in the client's error (where a client is involved),
 * and as a `limited` (or `rejected`) line in the service's decision log. The last test holds
 * 1 000 idle connections open while valid enrollments (library-driven and a real
 * `enrollee join`) complete.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { concat, fromHex } from '../../src/crypto/bytes.js';
import { bundleFromText } from '../../src/protocol/codec/text.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { initiate } from '../../src/protocol/enrollment/index.js';
import { ENROLL_STATUS, KEM_PREKEY_LEN, KIND_ENROLL, KIND_ENROLLER, KIND_KEM_PREKEY, kindFrame } from '../../src/protocol/messages/service.js';
import { sha256 } from '../../src/crypto/hash.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { encodeFrame } from '../../src/transport/frame.js';
import { assertFailure, okJson, removeTempHomes, run, show, sleep, tempHome } from '../helpers/cli.js';
import {
  approveCliEnrollee,
  badPopMessage,
  enrollRaw,
  outsiderMessage,
  labWorld,
  messageFor,
  openAcceptance,
  openFileLimit,
  rawExchange,
  serviceWithEnrollees,
} from '../helpers/lab.js';
import { patience, slowdown } from '../helpers/pace.js';

after(() => removeTempHomes());

/** How much slower than idle the machine is now (pace.ts): the test-level bounds are scaled by it. */
const SLOW = await slowdown();

const f = encodeFrame;

const serviceWith = (flags: readonly string[], n = 0, label = 'limits') => serviceWithEnrollees(flags, n, label);

describe('limits: flags', () => {
  it('bad limit flags are usage errors (exit 2), before anything is opened', async () => {
    const home = tempHome('flags');
    for (const [flag, value] of [
      ['--rate-per-ip', 'fast'],
      ['--rate-per-enroller', '0/s'],
      ['--fail-rate-per-ip', '20/d'],
      ['--max-frame', '100'],
      ['--max-frame', '70000'],
      ['--max-connections', '0'],
      ['--read-timeout', '0s'],
    ] as const) {
      const r = await run(['service', 'start', flag, value], { home });
      assertFailure(r, 2, flag);
    }
  });

  it('the listening line states every limit in force', async () => {
    const { service } = await serviceWith(['--max-frame', '2048', '--read-timeout', '7s', '--max-connections', '99', '--rate-per-ip', '50/m', '--rate-per-enroller', 'off', '--fail-rate-per-ip', '5/h']);
    try {
      const line = service.decisions('listening')[0]!;
      for (const part of ['max_frame=2048', 'read_timeout_ms=7000', 'max_connections=99', 'rate_per_ip=50/m', 'rate_per_enroller=off', 'fail_rate_per_ip=5/h', 'max_failed_attempts=20']) {
        assert.ok(line.includes(part), `${part} in ${line}`);
      }
    } finally {
      await service.stop();
    }
    const d = await serviceWith([]);
    try {
      const line = d.service.decisions('listening')[0]!;
      for (const part of ['max_frame=8192', 'read_timeout_ms=10000', 'max_connections=4096', 'rate_per_ip=100/s', 'rate_per_enroller=20/s']) {
        assert.ok(line.includes(part), `default ${part} in ${line}`);
      }
    } finally {
      await d.service.stop();
    }
  });
});

describe('limits: frame size (--max-frame)', () => {
  it('a --max-frame below the largest frame of EKA v2 (its 1265-byte enrollment message) is a usage error: v2 could never work', async () => {
    const home = tempHome('frame-min');
    for (const value of ['1024', '1264']) {
      const r = await run(['service', 'start', '--max-frame', value], { home });
      assertFailure(r, 2, /--max-frame must be 1265\.\.65535/);
    }
  });

  it('a header over the limit closes the connection before its body is read, and is logged', async () => {
    const { service, enrollees } = await serviceWith(['--max-frame', '1265'], 1);
    try {
      const over = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), Uint8Array.of(0x04, 0xf2))], { waitMs: 5000 });
      assert.equal(over.how, 'end', 'closed at once');
      assert.equal(over.frames.length, 0, 'no answer');
      // Well before the 10 s read timeout: 3 s on an idle machine, scaled, never past 9 s.
      const soon = Math.min(await patience(3000), 9000);
      assert.ok(over.ms < soon, `closed in ${over.ms} ms (bound ${soon} ms), not at the read timeout`);
      // As the very first frame too.
      const first = await rawExchange(service.port, [Uint8Array.of(0xff, 0xff)], { waitMs: 5000 });
      assert.equal(first.how, 'end');
      // At the limit it is read (and a 1265-byte message not starting with 0x02 is MALFORMED).
      const at = await enrollRaw(service.port, new Uint8Array(1265));
      assert.deepEqual(at, Uint8Array.of(ENROLL_STATUS.MALFORMED));
      // The service is fine: a valid enrollment goes through.
      const a = messageFor(enrollees[0]!);
      assert.ok(openAcceptance(a, await enrollRaw(service.port, a.message)));
      await service.waitForLine(/ limited limit=max-frame .*ERR_FRAME_TOO_LARGE: frame of 1266 bytes exceeds the limit of 1265 bytes/, 5000);
    } finally {
      await service.stop();
    }
  });

  it('the default limit is 8192 bytes', async () => {
    const { service } = await serviceWith([]);
    try {
      const over = await rawExchange(service.port, [Uint8Array.of(0x20, 0x01)], { waitMs: 5000 });
      assert.equal(over.how, 'end');
      await service.waitForLine(/ limited limit=max-frame .*8193 bytes exceeds the limit of 8192/, 5000);
    } finally {
      await service.stop();
    }
  });
});

describe('limits: per-read timeout (--read-timeout), slow-loris', () => {
  it('a silent peer, a peer dribbling one byte at a time, and a stalled handshake are all cut at the timeout', async () => {
    const { service, enrollees } = await serviceWith(['--read-timeout', '1s'], 1);
    try {
      const [silent, dribble, handshake] = await Promise.all([
        rawExchange(service.port, [], { waitMs: 8000 }),
        // The kind frame, then a 176-byte message frame, 1 byte every 150 ms (it would take 27 s).
        rawExchange(service.port, [f(kindFrame(KIND_ENROLL)), ...Array.from(f(new Uint8Array(176)), (b) => Uint8Array.of(b))], { waitMs: 8000, chunkDelayMs: 150 }),
        rawExchange(service.port, [f(kindFrame(KIND_ENROLLER))], { waitMs: 8000 }),
      ]);
      // Cut at the timeout: never before it, and well before the 27 s the dribble would take
      // (4 s on an idle machine, scaled by how busy this one is).
      const late = await patience(4000);
      for (const [name, r] of [['silent', silent], ['dribbling', dribble], ['stalled handshake', handshake]] as const) {
        assert.notEqual(r.how, 'timeout', `${name} peer was not cut`);
        assert.ok(r.ms >= 900 && r.ms < late, `${name} peer cut after ${r.ms} ms (read timeout 1 s, bound ${late} ms)`);
        assert.equal(r.frames.length, 0);
      }
      // A peer that keeps to the timeout is served.
      const a = messageFor(enrollees[0]!);
      assert.ok(openAcceptance(a, await enrollRaw(service.port, a.message)));
      await service.waitForLine(/ limited limit=read-timeout .*ERR_TIMEOUT: (no frame received within 1000 ms|secure channel handshake did not finish within 1000 ms)/, 5000);
    } finally {
      await service.stop();
    }
  });
});

describe('limits: open connections (--max-connections)', () => {
  it('a connection over the cap is dropped on arrival and logged; once others close, new ones are served', async () => {
    const { service, enrollees } = await serviceWith(['--max-connections', '5', '--read-timeout', '30s'], 1);
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < 5; i++) idle.push(await openIdle(service.port));
      await sleep(200);
      const over = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), f(messageFor(enrollees[0]!).message))], { waitMs: 5000 });
      assert.equal(over.frames.length, 0, 'the extra connection got no answer');
      assert.notEqual(over.how, 'timeout');
      await service.waitForLine(/ limited limit=max-connections .*ERR_CONNECTION_LIMIT: dropped a connection from 127\.0\.0\.1: 5 connections already open/, 5000);
      for (const s of idle.splice(0)) s.destroy();
      // The service frees a slot when its side of an idle connection has closed, which this
      // side cannot observe: try until served, each time with a fresh message (a dropped
      // connection consumes nothing), within a bound scaled to the machine's pace.
      const end = Date.now() + (await patience(10_000));
      for (;;) {
        const a = messageFor(enrollees[0]!);
        const r = await rawExchange(service.port, [concat(f(kindFrame(KIND_ENROLL)), f(a.message))]);
        if (r.frames.length > 0) {
          assert.equal(r.frames.length, 1);
          assert.ok(openAcceptance(a, r.frames[0]!), 'served once the idle connections closed');
          break;
        }
        assert.ok(Date.now() < end, `not served after the idle connections closed\n${service.lines.join('\n')}`);
        await sleep(50);
      }
    } finally {
      for (const s of idle) s.destroy();
      await service.stop();
    }
  });
});

describe('limits: the KEM prekey endpoint (KIND_KEM_PREKEY, EKA v2)', () => {
  it('answers one frame per connection: the key for a known hash, UNKNOWN, MALFORMED for a request that is not 32 bytes, RATE_LIMITED over the per-IP rate', async () => {
    const { service, home } = await serviceWith(['--rate-per-ip', '4/m'], 0, 'kem-endpoint');
    try {
      const svc = await ServiceHome.open(home);
      const kem = await svc.store.currentSignedPrekey().finally(() => svc.close());
      const hash = kem!.kem!.hash;
      const ask = (request: Uint8Array) => rawExchange(service.port, [f(kindFrame(KIND_KEM_PREKEY)), f(request)], { waitMs: 10_000 });
      const known = await ask(hash);
      assert.equal(known.how, 'end', 'the service ends the connection after its one answer');
      assert.equal(known.frames.length, 1);
      assert.equal(known.frames[0]!.length, KEM_PREKEY_LEN);
      assert.deepEqual(sha256(known.frames[0]!), hash, 'the key whose SHA-256 was asked for');
      const unknown = Uint8Array.from(hash);
      unknown[0]! ^= 1;
      assert.deepEqual((await ask(unknown)).frames, [Uint8Array.of(ENROLL_STATUS.UNKNOWN)]);
      assert.deepEqual((await ask(hash.subarray(1))).frames, [Uint8Array.of(ENROLL_STATUS.MALFORMED)]);
      assert.equal((await ask(hash)).frames[0]!.length, KEM_PREKEY_LEN);
      // The fifth request from this address in a minute: refused before the store is read.
      const before = service.decisions('rejected').length;
      assert.deepEqual((await ask(unknown)).frames, [Uint8Array.of(ENROLL_STATUS.RATE_LIMITED)]);
      await service.waitForLine(/ limited limit=rate-per-ip .*ERR_RATE_LIMITED: over 4\/m requests from this address/, 5000);
      assert.equal(service.decisions('rejected').length, before, 'no lookup, no rejected line');
    } finally {
      await service.stop();
    }
  });
});

describe('limits: connections per IP (--rate-per-ip)', () => {
  it('over the rate, an enrollment gets RATE_LIMITED before any check runs, and a Noise kind is dropped before its handshake', async () => {
    const { service, enrollees, root, home, enroller } = await serviceWith(['--rate-per-ip', '3/m'], 1);
    try {
      const unknown = () => initiate({ bundle: enrollees[0]!.bundle, eikB: generateX25519() }).message;
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await enrollRaw(service.port, unknown()))[0]);
      assert.deepEqual(statuses, [ENROLL_STATUS.UNKNOWN, ENROLL_STATUS.UNKNOWN, ENROLL_STATUS.UNKNOWN, ENROLL_STATUS.RATE_LIMITED, ENROLL_STATUS.RATE_LIMITED]);
      // Checked before the enrollment checks: only the first three reached the store.
      assert.equal(service.decisions('rejected').length, 3, service.lines.join('\n'));
      const noise = await rawExchange(service.port, [f(kindFrame(KIND_ENROLLER)), f(new Uint8Array(32).fill(9))], { waitMs: 5000 });
      assert.equal(noise.how, 'end');
      assert.equal(noise.frames.length, 0, 'no Noise msg 2: the handshake never started');
      // One `limited` line a second per limit: the first, for the fourth enrollment message.
      await service.waitForLine(/ limited limit=rate-per-ip .*ERR_RATE_LIMITED: over 3\/m enrollment messages from this address/, 5000);

      // The enrollee CLI reports it clearly (exit 3, with a hint).
      const svc = await ServiceHome.open(home);
      const cli = await approveCliEnrollee(svc, enroller, join(root, 'device'), 'limited device').finally(() => svc.close());
      const r = await run(['enrollee', 'join', '--eka', 'v1', '--bundle', cli.bundle], { home: cli.home });
      assertFailure(r, 3, 'the service is rate-limiting this peer', 'wait and try again');
    } finally {
      await service.stop();
    }
  });

  it('the bucket refills at the rate: a limited peer is served again', async () => {
    const { service, enrollees } = await serviceWith(['--rate-per-ip', '1/s'], 1);
    try {
      const e = enrollees[0]!;
      const unknown = () => initiate({ bundle: e.bundle, eikB: generateX25519() }).message;
      // Both at once: one after the other, a busy machine can put a second between them, and
      // the bucket refills in that second.
      const two = await Promise.all([enrollRaw(service.port, unknown()), enrollRaw(service.port, unknown())]);
      assert.deepEqual(two.map((frame) => frame[0]).sort(), [ENROLL_STATUS.UNKNOWN, ENROLL_STATUS.RATE_LIMITED].sort());
      await sleep(1100);
      const a = messageFor(e);
      assert.ok(openAcceptance(a, await enrollRaw(service.port, a.message)), 'served again once the bucket refilled');
    } finally {
      await service.stop();
    }
  });
});

describe('limits: requests per enroller (--rate-per-enroller)', () => {
  it('over the rate, the enroller gets ERR_RATE_LIMITED with a hint (exit 3), for fetch and approve alike', async () => {
    const world = await labWorld({ bundles: 0, serviceFlags: ['--rate-per-enroller', '2/m'] });
    try {
      await world.fetchBundles(1);
      await world.fetchBundles(1);
      const fetch = await run(['enroller', 'bundle', 'fetch', '--service', world.address, '--count', '1'], { home: world.enrollerHome });
      assertFailure(fetch, 3, 'too many requests from this enroller (limit 2/m)', /wait \d+ s and try again/);
      const device = await okJson<{ card: string }>(['enrollee', 'init'], { home: join(world.root, 'device') });
      const approve = await run(['enroller', 'approve', device.card], { home: world.enrollerHome });
      assertFailure(approve, 3, 'too many requests from this enroller');
      await world.service.waitForLine(new RegExp(` limited limit=rate-per-enroller .*enroller=${world.enrollerKey} .*ERR_RATE_LIMITED`), 5000);
      // Another enroller has its own bucket.
      const other = join(world.root, 'other-enroller');
      const key = (await okJson<{ enroller_key: string }>(['enroller', 'init'], { home: other })).enroller_key;
      await okJson(['service', 'enroller', 'allow', key], { home: world.serviceHome });
      const r = await okJson<{ fetched: number }>(['enroller', 'bundle', 'fetch', '--service', world.address, '--service-key', world.serviceKey], { home: other });
      assert.equal(r.fetched, 1);
    } finally {
      await world.dispose();
    }
  });
});

describe('limits: lockout after failed attempts', () => {
  // docs/threat-model.md §5.4: only a message that decrypts under SK (its sender holds EIK_B's
  // private key and the bundle) counts against the enrollee. Check 5 (the POP) failing is
  // such a failure.
  it('after 20 failed attempts by a holder of EIK_B and the bundle, the enrollee is LOCKED, even with a valid message; a new approval unlocks it', async () => {
    const { service, enrollees, home, root, enroller } = await serviceWith([], 1, 'lockout');
    const e = enrollees[0]!;
    try {
      for (let i = 0; i < 20; i++) {
        assert.deepEqual(await enrollRaw(service.port, badPopMessage(e)), Uint8Array.of(ENROLL_STATUS.REJECTED), `attempt ${i + 1}`);
      }
      const valid = messageFor(e);
      assert.deepEqual(await enrollRaw(service.port, valid.message), Uint8Array.of(ENROLL_STATUS.LOCKED), 'locked: a valid message is refused too');
      assert.ok(service.decisions('rejected').some((l) => l.includes('ERR_ENROLLEE_LOCKED: 20 failed attempts')), service.lines.join('\n'));
      assert.equal(service.decisions('rejected').filter((l) => l.includes('ERR_POP_INVALID')).length, 20);
      const shown = await okJson<{ failed_attempts: number }>(['service', 'enrollee', 'show', e.hex], { home: join(root, 'service-home') });
      assert.equal(shown.failed_attempts, 20);

      // The enroller approves it again (same bundle): the count starts over.
      const svc = await ServiceHome.open(home);
      try {
        const now = Math.floor(Date.now() / 1000);
        await svc.store.approve({ enrolleeId: e.id, eikB: e.eikB.publicKey, bundleId: e.bundle.bundleId, petName: e.petName, enroller, now, expiresAt: now + 3600 });
      } finally {
        await svc.close();
      }
      const again = messageFor(e);
      assert.ok(openAcceptance(again, await enrollRaw(service.port, again.message)), 'accepted after the new approval');
    } finally {
      await service.stop();
    }
  });

  it('an outsider with the card (and the bundle) cannot lock the device out: its messages are charged to its source, which --fail-rate-per-ip stops', async () => {
    const { service, home, root, enroller } = await serviceWith([], 0, 'outsider');
    try {
      const svc = await ServiceHome.open(home);
      const device = await approveCliEnrollee(svc, enroller, join(root, 'device'), 'outsider-test device').finally(() => svc.close());
      const id = fromHex(device.id);
      const bundle = bundleFromText(device.bundle, { now: Math.floor(Date.now() / 1000) });
      // Two sources, each sending more than the 20 attempts that locked an enrollee out before.
      // The default limit is 20/m: the first 20 of a source are decrypted (REJECTED), then it
      // is RATE_LIMITED (a slow machine may see a token refill, hence "until").
      for (const source of ['127.0.0.2', '127.0.0.3']) {
        const statuses: number[] = [];
        for (let i = 0; i < 40 && !statuses.includes(ENROLL_STATUS.RATE_LIMITED); i++) {
          const m = i % 2 === 0 ? outsiderMessage(id, bundle) : concat(randomBytes(32), id, randomBytes(112));
          const frame = await enrollRaw(service.port, m, 15_000, source);
          assert.equal(frame.length, 1);
          statuses.push(frame[0]!);
        }
        assert.ok(statuses.length > 20, `${source}: more than 20 messages sent`);
        assert.deepEqual(statuses.slice(0, 20), Array(20).fill(ENROLL_STATUS.REJECTED), `${source}: ${statuses.join(',')}`);
        assert.equal(statuses.at(-1), ENROLL_STATUS.RATE_LIMITED, `${source}: the per-source limit bites: ${statuses.join(',')}`);
        assert.ok(!statuses.includes(ENROLL_STATUS.LOCKED), `${source}: never LOCKED`);
      }
      await service.waitForLine(/ limited limit=fail-rate-per-ip .*ERR_RATE_LIMITED: over 20\/m failed decryptions from this address/, 5000);
      assert.ok(service.decisions('rejected').filter((l) => l.includes('ERR_ENROLLMENT_DECRYPT')).length >= 40);
      const shown = await okJson<{ failed_attempts: number; state: string }>(['service', 'enrollee', 'show', device.id], { home: join(root, 'service-home') });
      assert.deepEqual([shown.state, shown.failed_attempts], ['pending', 0], 'nothing was counted against the enrollee');

      // The real device, from its own address, enrolls.
      // The lab's bundles are EKA v1 (approveCliEnrollee), as the outsider's messages are.
      const joined = await okJson<{ enrollee_id: string }>(['enrollee', 'join', '--eka', 'v1', '--bundle', device.bundle], { home: device.home });
      assert.equal(joined.enrollee_id, device.id);
    } finally {
      await service.stop();
    }
  });
});

describe('limits: 1 000 idle connections', () => {
  const fds = openFileLimit();
  const skip = fds === undefined ? 'the open-file limit is unknown (no /proc/self/limits)' : fds < 2200 ? `the open-file limit is ${fds}, below the 2 200 this test needs (ulimit -n)` : false;
  it('valid enrollments (library and `enrollee join`) still complete while 1 000 idle connections are held open', { skip, timeout: Math.ceil(120_000 * SLOW) }, async () => {
    // The idle connections must outlive the test: 60 s on an idle machine, scaled.
    const { service, enrollees, home, root, enroller } = await serviceWith(['--read-timeout', `${Math.ceil(60 * SLOW)}s`], 20, 'idle');
    const idle: Socket[] = [];
    let closedEarly = 0;
    try {
      const svc = await ServiceHome.open(home);
      const cli = await approveCliEnrollee(svc, enroller, join(root, 'device'), 'idle-test device').finally(() => svc.close());
      for (let batch = 0; batch < 10; batch++) {
        idle.push(...(await Promise.all(Array.from({ length: 100 }, () => openIdle(service.port)))));
      }
      for (const s of idle) s.once('close', () => closedEarly++);
      await sleep(300);
      const join1 = run(['enrollee', 'join', '--eka', 'v1', '--bundle', cli.bundle, '--json'], { home: cli.home, timeoutMs: 60_000 });
      const results = await Promise.all(
        enrollees.map(async (e) => {
          const a = messageFor(e);
          return openAcceptance(a, await enrollRaw(service.port, a.message, 30_000)) !== undefined;
        }),
      );
      assert.deepEqual(results.filter((x) => !x).length, 0, 'every enrollment was accepted');
      const r = await join1;
      assert.equal(r.code, 0, show(r));
      assert.equal(closedEarly, 0, 'the idle connections were all still open');
      assert.equal(idle.length, 1000);
    } finally {
      for (const s of idle) s.destroy();
      await service.stop();
    }
  });
});

/** Opens a TCP connection that sends nothing; resolves once connected. */
function openIdle(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
    s.on('error', () => {});
  });
}
