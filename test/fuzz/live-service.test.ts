/**
 * Fuzzing a live `service start` process over real loopback TCP: random kind bytes, random
 * frames and raw bytes, mutated valid enrollment messages, truncated and garbled Noise
 * handshakes, oversized length headers, abrupt closes (RST), idle connections, and hostile
 * application messages inside authenticated and unauthenticated Noise channels.
 *
 * Inputs: OCKAM_ENROLL_FUZZ_RUNS (default 5 000; 100 000 in `npm run test:long`), drawn by
 * fast-check from the fixed seed OCKAM_ENROLL_FUZZ_SEED (printed with every failure, with the
 * input's index and description).
 *
 * Checked, for every input: the service answers or closes the connection within its read
 * timeout (no hang); a well-formed KIND_ENROLL message gets exactly one well-formed
 * ENROLL_RESPONSE. For the run: every logged failure carries an ERR_ code (typed), there is no
 * internal error, stack trace or crash; the service keeps completing valid enrollments, both
 * library-driven ones interleaved with the fuzz and real `enrollee join` processes running
 * alongside it; it stops cleanly; and its store passes an integrity check afterwards.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import fc from 'fast-check';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { isEnrollError } from '../../src/errors.js';
import { encodeCard } from '../../src/protocol/codec/index.js';
import { encodeError, MSG_ERROR } from '../../src/protocol/messages/common.js';
import {
  decodeEnrollResponse,
  encodeApprove,
  encodeFetchBundles,
  encodeStatusRequest,
  encodeTokenCreate,
  ENROLL_STATUS,
  KIND_ENROLL,
  KIND_ENROLL_STREAM,
  KIND_ENROLLER,
  KIND_SESSION,
  kindFrame,
  MSG_FETCH_BUNDLES,
  PROLOGUE_ENROLLEE_SERVICE,
  PROLOGUE_ENROLLER_SERVICE,
} from '../../src/protocol/messages/service.js';
import { HandshakeState } from '../../src/protocol/noise/index.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { initiateChannel } from '../../src/transport/channel.js';
import { encodeFrame } from '../../src/transport/frame.js';
import { connectTcp } from '../../src/transport/tcp.js';
import { EnrollError } from '../../src/errors.js';
import { freePort, removeTempHomes, run, show, tempHome, type RunResult } from '../helpers/cli.js';
import {
  alarmingLines,
  approveCliEnrollee,
  approveEnrollees,
  enrollChunks,
  enrollRaw,
  FUZZ_RUNS,
  FUZZ_SEED,
  initServiceHome,
  messageFor,
  openAcceptance,
  rawExchange,
  startLiveService,
  type LabEnrollee,
  type LiveService,
  type RawOutcome,
} from '../helpers/lab.js';
import { hostileBytes, mutatedBytes } from './arbitraries.js';

const READ_TIMEOUT_S = 2;
/** A connection still open this long after its input was sent counts as a hang. */
const HANG_MS = READ_TIMEOUT_S * 1000 + 6000;
const CONCURRENCY = 32;
/** One library-driven valid enrollment every this many fuzz inputs. */
const VALID_EVERY = 100;
const BATCH = 1000;

let root: string;
let port: number;
let home: string;
let service: LiveService;
let enroller: KeyPair;
let good: LabEnrollee[] = [];
let victimMessages: Uint8Array[] = [];
let cliJoins: { home: string; bundle: string }[] = [];
let serviceKey: Uint8Array;

before(async () => {
  root = tempHome('fuzz-live');
  port = await freePort();
  const made = await initServiceHome(root, port);
  home = made.home;
  enroller = made.enroller;
  serviceKey = made.svc.ikA.publicKey;
  const svc = made.svc;
  try {
    good = await approveEnrollees(svc, enroller.publicKey, Math.ceil(FUZZ_RUNS / VALID_EVERY) + 5, 'good');
    const victims = await approveEnrollees(svc, enroller.publicKey, 8, 'victim');
    victimMessages = victims.flatMap((v) => [messageFor(v).message, messageFor(v).message]);
    // Two real enrollee processes, approved through the store with bundles of their own.
    for (const n of [1, 2]) cliJoins.push(await approveCliEnrollee(svc, enroller.publicKey, join(root, `device-${n}`), `fuzz device ${n}`));
  } finally {
    await svc.close();
  }
  // The limits are off so that every input reaches the checks it targets (a mutated message
  // fails to decrypt, which --fail-rate-per-ip would cut off after 20; test/limits covers it).
  service = await startLiveService(home, port, ['--read-timeout', `${READ_TIMEOUT_S}s`, '--rate-per-ip', 'off', '--rate-per-enroller', 'off', '--fail-rate-per-ip', 'off']);
});

after(async () => {
  if (service?.running()) {
    service.kill('SIGKILL');
    await service.done().catch(() => undefined);
  }
  removeTempHomes();
});

// ---- scenarios

type Scenario =
  | {
      type: 'raw';
      group: string;
      label: string;
      chunks: Uint8Array[];
      end: boolean;
      reset: boolean;
      /** A well-formed KIND_ENROLL: its one message. */
      enrollMessage?: Uint8Array;
      /** A well-formed KIND_ENROLL_STREAM: each message is owed a response, in order; then we close. */
      streamMessages?: Uint8Array[];
    }
  | { type: 'channel'; group: string; label: string; kind: typeof KIND_ENROLLER | typeof KIND_SESSION; stranger: boolean; payloads: Uint8Array[] };

const f = (b: Uint8Array): Uint8Array => encodeFrame(b);

function scenarioArb(): fc.Arbitrary<Scenario> {
  const msg1 = new HandshakeState({ initiator: true, staticKeyPair: generateX25519(), prologue: PROLOGUE_ENROLLER_SERVICE }).writeMessage();
  const validEnrollStream = concat(...enrollChunks(victimMessages[0]!));
  const anyFrames = fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 4 }).map((ps) => ps.map(f));
  // Most inputs half-close after writing (so an incomplete one ends at once); a few stay open
  // to meet the read timeout; some are reset.
  const ends = fc.tuple(fc.integer({ min: 0, max: 99 }), fc.boolean()).map(([p, reset]) => ({ end: p >= 3, reset: reset && p % 4 === 0 }));

  const randomKind = fc.tuple(fc.integer({ min: 0, max: 255 }), anyFrames, ends).map(([k, frames, e]): Scenario => ({
    type: 'raw',
    group: 'random-kind',
    label: `kind byte 0x${k.toString(16)} + ${frames.length} random frames`,
    chunks: [f(Uint8Array.of(k)), ...frames],
    ...e,
  }));
  const randomFrames = fc.tuple(fc.array(fc.uint8Array({ maxLength: 64 }), { minLength: 1, maxLength: 5 }), ends).map(([ps, e]): Scenario => ({
    type: 'raw',
    group: 'random-frames',
    label: `${ps.length} random frames`,
    chunks: ps.map(f),
    ...e,
  }));
  const rawBytes = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 600 }), ends).map(([b, e]): Scenario => ({ type: 'raw', group: 'random-bytes', label: 'random bytes', chunks: [b], ...e }));
  const mutatedMessage = mutatedBytes(victimMessages).map((m): Scenario => ({
    type: 'raw',
    group: 'mutated-message',
    label: `KIND_ENROLL + mutated message (${m.length} bytes)`,
    chunks: [concat(f(kindFrame(KIND_ENROLL)), f(m))],
    end: false,
    reset: false,
    enrollMessage: m,
  }));
  const streamOfMutated = fc.array(mutatedBytes(victimMessages), { minLength: 1, maxLength: 4 }).map((ms): Scenario => ({
    type: 'raw',
    group: 'enroll-stream',
    label: `KIND_ENROLL_STREAM + ${ms.length} mutated messages (${ms.map((m) => m.length).join(', ')} bytes)`,
    chunks: [concat(f(kindFrame(KIND_ENROLL_STREAM)), ...ms.map(f))],
    end: false,
    reset: false,
    streamMessages: ms,
  }));
  const mutatedStream = fc.tuple(mutatedBytes([validEnrollStream]), ends).map(([b, e]): Scenario => ({ type: 'raw', group: 'mutated-stream', label: 'mutated enrollment stream', chunks: [b], ...e }));
  const truncatedHandshake = fc
    .tuple(fc.constantFrom(KIND_ENROLLER, KIND_SESSION), fc.integer({ min: 0, max: msg1.length + 1 }), fc.boolean())
    .map(([k, cut, reset]): Scenario => ({
      type: 'raw',
      group: 'truncated-handshake',
      label: `kind ${k} + Noise msg 1 cut at ${cut}`,
      chunks: [concat(f(kindFrame(k)), f(msg1).subarray(0, cut))],
      end: true,
      reset,
    }));
  const garbledHandshake = fc
    .tuple(fc.constantFrom(KIND_ENROLLER, KIND_SESSION), hostileBytes([msg1], 100), fc.uint8Array({ maxLength: 120 }), ends)
    .map(([k, m1, m3, e]): Scenario => ({ type: 'raw', group: 'garbled-handshake', label: `kind ${k} + hostile msg 1 (${m1.length}) and msg 3 (${m3.length})`, chunks: [f(kindFrame(k)), f(m1), f(m3)], ...e }));
  const oversized = fc
    .tuple(fc.constantFrom(Uint8Array.of(0xff, 0xff), Uint8Array.of(0x20, 0x01), Uint8Array.of(0x80, 0x00)), fc.boolean(), fc.uint8Array({ maxLength: 64 }), fc.boolean())
    .map(([header, afterKind, body, end]): Scenario => ({
      type: 'raw',
      group: 'oversized-header',
      label: `oversized header ${toHex(header)}${afterKind ? ' after a kind frame' : ''}`,
      chunks: [concat(afterKind ? f(kindFrame(KIND_ENROLL)) : new Uint8Array(0), header, body)],
      end,
      reset: false,
    }));
  const idle = fc.boolean().map((reset): Scenario => ({ type: 'raw', group: 'connect-close', label: 'connect and close', chunks: [], end: true, reset }));
  const appPayloads = hostileBytes(
    [
      encodeFetchBundles(2),
      encodeApprove({ bundleId: new Uint8Array(16), ttl: 60, card: encodeCard({ version: 1, eikB: generateX25519().publicKey }) }),
      encodeStatusRequest(),
      encodeTokenCreate({ ttl: 600, name: 'fuzz-device' }),
      encodeError(new EnrollError('ERR_PROTOCOL', 'x')),
      new Uint8Array(0),
    ],
    200,
  ).map((p) => {
    // A FETCH_BUNDLES the fuzzer made well-formed asks for at most 3 bundles: bounded work.
    if (p.length === 3 && p[0] === MSG_FETCH_BUNDLES) return Uint8Array.of(MSG_FETCH_BUNDLES, 0, Math.min(3, p[2]!));
    return p;
  });
  const channel = fc
    .tuple(fc.constantFrom(KIND_ENROLLER, KIND_SESSION), fc.boolean(), fc.array(appPayloads, { minLength: 1, maxLength: 3 }))
    .map(([kind, stranger, payloads]): Scenario => ({ type: 'channel', group: 'noise-channel', label: `Noise kind ${kind} (${stranger ? 'unknown key' : 'allowed enroller'}) + ${payloads.length} hostile requests`, kind, stranger, payloads }));

  return fc.oneof(
    { weight: 3, arbitrary: randomKind },
    { weight: 2, arbitrary: randomFrames },
    { weight: 2, arbitrary: rawBytes },
    { weight: 5, arbitrary: mutatedMessage },
    { weight: 2, arbitrary: streamOfMutated },
    { weight: 2, arbitrary: mutatedStream },
    { weight: 2, arbitrary: truncatedHandshake },
    { weight: 2, arbitrary: garbledHandshake },
    { weight: 2, arbitrary: oversized },
    { weight: 1, arbitrary: idle },
    { weight: 2, arbitrary: channel },
  );
}

interface Result {
  index: number;
  label: string;
  problem?: string;
  accepted?: boolean;
}

const STATUSES = new Set<number>(Object.values(ENROLL_STATUS));

async function runRaw(s: Extract<Scenario, { type: 'raw' }>): Promise<string | undefined> {
  const out: RawOutcome = await rawExchange(port, s.chunks, {
    endAfterWrite: s.end,
    resetAfterWrite: s.reset,
    waitMs: HANG_MS,
    ...(s.streamMessages ? { closeAfterFrames: s.streamMessages.length } : {}),
  });
  if (out.how === 'timeout') return `still open ${out.ms} ms after the input (a hang)`;
  if (out.how === 'refused') return 'connection refused: is the service down?';
  if (s.enrollMessage !== undefined && !s.end && !s.reset) {
    if (out.frames.length !== 1) return `a well-formed KIND_ENROLL got ${out.frames.length} response frames (${out.how})`;
    return checkEnrollResponse(s.enrollMessage, out.frames[0]!);
  }
  if (s.streamMessages !== undefined) {
    if (out.frames.length !== s.streamMessages.length) return `a KIND_ENROLL_STREAM of ${s.streamMessages.length} messages got ${out.frames.length} response frames (${out.how})`;
    for (let i = 0; i < out.frames.length; i++) {
      const problem = checkEnrollResponse(s.streamMessages[i]!, out.frames[i]!);
      if (problem !== undefined) return `stream message ${i}: ${problem}`;
    }
  }
  return undefined;
}

/** What a response to one enrollment message may be, whatever the message. */
function checkEnrollResponse(message: Uint8Array, frame: Uint8Array): string | undefined {
  if (!STATUSES.has(frame[0]!)) return `unknown status ${frame[0]}`;
  if (frame[0] !== ENROLL_STATUS.ACCEPTED && frame.length !== 1) return `a rejection of ${frame.length} bytes`;
  if (frame[0] === ENROLL_STATUS.MALFORMED && message.length === 176) return 'a 176-byte message was called MALFORMED';
  if (frame[0] !== ENROLL_STATUS.MALFORMED && message.length !== 176) return `a ${message.length}-byte message got status ${frame[0]}`;
  if (frame[0] === ENROLL_STATUS.ACCEPTED && !victimMessages.some((m) => equalBytes(m, message))) return 'a mutated message was ACCEPTED';
  try {
    decodeEnrollResponse(frame);
  } catch (e) {
    if (!(e instanceof EnrollError)) return `decodeEnrollResponse threw ${String(e)}`;
  }
  return undefined;
}

async function runChannel(s: Extract<Scenario, { type: 'channel' }>): Promise<string | undefined> {
  const conn = await connectTcp({ host: '127.0.0.1', port }, { readTimeoutMs: HANG_MS });
  try {
    await conn.writeFrame(kindFrame(s.kind));
    const channel = await initiateChannel(conn, {
      staticKeyPair: s.stranger || s.kind === KIND_SESSION ? generateX25519() : enroller,
      prologue: s.kind === KIND_ENROLLER ? PROLOGUE_ENROLLER_SERVICE : PROLOGUE_ENROLLEE_SERVICE,
      handshakeTimeoutMs: HANG_MS,
      verifyRemote: (k) => assert.ok(equalBytes(k, serviceKey), 'the service key'),
    });
    for (const p of s.payloads) await channel.send(p).catch(() => undefined);
    // The service answers every request (a reply, or an ERROR) or closes; we stop at the
    // first ERROR, at close, or once each request had a reply.
    let replies = 0;
    let answered = 0;
    for (;;) {
      let m: Uint8Array;
      try {
        m = await channel.receive(HANG_MS);
      } catch (e) {
        if (isEnrollError(e, 'ERR_CONNECTION_CLOSED')) return undefined;
        if (isEnrollError(e, 'ERR_TIMEOUT')) return replies > 0 ? undefined : 'no reply and no close (a hang)';
        return `channel failed with ${(e as Error).message}`;
      }
      replies++;
      if (m[0] === MSG_ERROR || replies >= 50) return undefined;
      if (m[0] === 0x12 || m[0] === 0x21 || m[0] === 0x31 || m[0] === 0x51) {
        // BUNDLES_END, APPROVED, STATUS or TOKEN: that request is done.
        if (++answered >= s.payloads.length) return undefined;
      }
    }
  } catch (e) {
    // The service may refuse the handshake's peer outright, which ends in a closed connection.
    if (e instanceof EnrollError && ['ERR_CONNECTION_CLOSED', 'ERR_NOISE_DECRYPT'].includes(e.code)) return undefined;
    return `channel set-up failed with ${(e as Error).message}`;
  } finally {
    conn.destroy();
  }
}

describe('fuzz: a live service', () => {
  it(`answers or closes every one of ${FUZZ_RUNS} hostile inputs, keeps enrolling, and logs only typed errors`, { timeout: 30 * 60_000 }, async () => {
    const problems: Result[] = [];
    let validDone = 0;
    let nextGood = 0;
    const validEnrollment = async (at: number) => {
      const e = good[nextGood++]!;
      const attempt = messageFor(e);
      const frame = await enrollRaw(port, attempt.message);
      const acc = openAcceptance(attempt, frame);
      if (!acc) problems.push({ index: at, label: `valid enrollment of ${e.petName}`, problem: `not accepted: status ${frame[0]}` });
      else validDone++;
    };
    // Real enrollee processes, alongside the fuzz.
    const joins: Promise<RunResult>[] = cliJoins.map((j) => run(['enrollee', 'join', '--eka', 'v1', '--bundle', j.bundle, '--json'], { home: j.home, timeoutMs: 120_000 }));

    const arb = scenarioArb();
    let index = 0;
    const kinds = new Map<string, number>();
    for (let batch = 0; index < FUZZ_RUNS; batch++) {
      const scenarios = fc.sample(arb, { seed: FUZZ_SEED + batch, numRuns: Math.min(BATCH, FUZZ_RUNS - index) });
      let next = 0;
      const worker = async () => {
        for (;;) {
          const i = next++;
          if (i >= scenarios.length) return;
          const at = index + i;
          const s = scenarios[i]!;
          kinds.set(s.group, (kinds.get(s.group) ?? 0) + 1);
          if (at % VALID_EVERY === VALID_EVERY - 1) await validEnrollment(at);
          const problem = s.type === 'raw' ? await runRaw(s) : await runChannel(s);
          if (problem) problems.push({ index: at, label: s.label, problem });
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      index += scenarios.length;
      assert.ok(service.running(), `the service died during batch ${batch}:\n${service.lines.slice(-30).join('\n')}`);
    }

    // One more valid enrollment after the storm.
    await validEnrollment(FUZZ_RUNS);
    const joined = await Promise.all(joins);
    const describeProblems = () =>
      problems
        .slice(0, 20)
        .map((p) => `#${p.index} (seed ${FUZZ_SEED + Math.floor(p.index / BATCH)}, sample ${p.index % BATCH}) ${p.label}: ${p.problem}`)
        .join('\n');
    assert.deepEqual(problems.length, 0, `${problems.length} inputs misbehaved:\n${describeProblems()}`);
    assert.equal(validDone, Math.floor(FUZZ_RUNS / VALID_EVERY) + 1, 'every interleaved valid enrollment was accepted');
    for (const r of joined) {
      assert.equal(r.code, 0, `enrollee join alongside the fuzz: ${show(r)}`);
      assert.equal(JSON.parse(r.stdout).enrolled, true);
    }

    assert.ok(service.running(), 'the service is still running');
    const alarming = alarmingLines(service.lines);
    assert.deepEqual(alarming.slice(0, 10), [], 'no internal errors, stack traces or crashes in the service log');
    const untyped = service.decisions('error').filter((l) => !/reason="?ERR_[A-Z_]+:/.test(l));
    assert.deepEqual(untyped.slice(0, 10), [], 'every logged failure carries an error code');
    assert.ok(service.decisions('rejected').length > 0 && service.decisions('error').length > 0, 'the fuzz reached the handlers');
    await service.stop();

    // The store the fuzz hammered opens cleanly and has exactly the enrollments that happened.
    const store = SqliteStore.open(join(home, 'service', 'store.db'));
    try {
      const counts = await store.counts();
      assert.ok(counts.enrolled >= validDone + cliJoins.length, `enrolled ${counts.enrolled}, expected at least ${validDone + cliJoins.length}`);
    } finally {
      await store.close();
    }
    const svc = await ServiceHome.open(home);
    await svc.close();
    process.stderr.write(`# live fuzz: ${FUZZ_RUNS} inputs (${[...kinds].map(([k, n]) => `${k} ${n}`).join(', ')}), ${validDone} interleaved enrollments, ${joined.length} enrollee joins\n`);
  });
});
