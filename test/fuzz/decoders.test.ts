/**
 * Fuzzing every decoder with a seeded fuzzer (fast-check; seed and run count from
 * OCKAM_ENROLL_FUZZ_SEED / OCKAM_ENROLL_FUZZ_RUNS, 5 000 runs per property by default,
 * 100 000 in `npm run test:long`). Inputs are random bytes or text, and valid encodings
 * mutated (bit flips, truncation, insertion, deletion, length fields at their extremes).
 *
 * Every property checks that the decoder returns or throws an EnrollError (never a
 * TypeError, RangeError or anything else), with a code from the decoder's documented set,
 * and where the format is canonical that what decodes re-encodes to the same bytes, and that
 * a mutated signed or authenticated input is never accepted.
 */
import { describe, it, before } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { concat, equalBytes, toHex } from '../../src/crypto/bytes.js';
import { generateX25519, importX25519Private, keyPairFromPrivate, type KeyPair } from '../../src/crypto/x25519.js';
import { EnrollError, isErrorCode } from '../../src/errors.js';
import { encodeKeyFile, KeyFile } from '../../src/keystore/keyfile.js';
import {
  bundleFromText,
  bundleToText,
  cardFromText,
  cardToText,
  decodeBundle,
  decodeCard,
  decodeText,
  encodeBundle,
  encodeCard,
  signBundle,
  signSpk,
  verifyBundle,
  type Bundle,
  type EnrolleeCard,
} from '../../src/protocol/codec/index.js';
import { BUNDLE_TEXT_PREFIX, CARD_TEXT_PREFIX } from '../../src/protocol/codec/text.js';
import {
  accept,
  acceptV2,
  enrolleeId,
  initiate,
  initiateV2,
  kemPrekeyHash,
  parseHeader,
  parseHeaderV2,
  type AcceptContext,
  type AcceptV2Context,
} from '../../src/protocol/enrollment/index.js';
import { mlKem768Keygen } from '../../src/crypto/mlkem.js';
import type { BundleV2 } from '../../src/protocol/codec/bundle.js';
import { decodeError, encodeError, MSG_ERROR } from '../../src/protocol/messages/common.js';
import {
  decodeCardMsg,
  decodeGo,
  decodeOffer,
  decodeResult,
  encodeCardMsg,
  encodeGo,
  encodeOffer,
  encodeResult,
} from '../../src/protocol/messages/onboard.js';
import {
  decodeAcceptance,
  decodeApprove,
  decodeApproved,
  decodeBundleStream,
  decodeEnrollResponse,
  decodeFetchBundles,
  decodeKindFrame,
  decodeStatus,
  decodeTokenCreate,
  decodeTokenCreated,
  encodeAcceptance,
  encodeApprove,
  encodeApproved,
  encodeBundleMsg,
  encodeBundlesEnd,
  encodeEnrollResponse,
  encodeFetchBundles,
  encodeStatus,
  encodeStatusRequest,
  encodeTokenCreate,
  encodeTokenCreated,
  ENROLL_STATUS,
} from '../../src/protocol/messages/service.js';
import { HandshakeState, type NoiseKeyPair } from '../../src/protocol/noise/index.js';
import { decodeTokenUnverified } from '../../src/protocol/token/claims.js';
import { signToken, verifyToken } from '../../src/protocol/token/jwt.js';
import { formatAddress, parseAddress } from '../../src/transport/address.js';
import { encodeFrame, FrameDecoder } from '../../src/transport/frame.js';
import { createRootCa, parseCertificate } from '../../src/x509/ca.js';
import { createCsr, parseCsr } from '../../src/x509/csr.js';
import { generateKeyPair } from '../../src/x509/keys.js';
import { decodeBase64Body, decodeCertsOnly, encodeBase64Body, encodeCertsOnly } from '../../src/x509/pkcs7.js';
import { x509 } from '../../src/x509/provider.js';
import { FUZZ_RUNS } from '../helpers/lab.js';
import { check, expectCode, hex, hostileBytes, hostileText, typed, typedAsync } from './arbitraries.js';

const NOW = 1_750_000_000;
/** Properties that run real crypto per input (a handshake, X3DH, ECDSA) use a fifth of the runs; still ≥ 1 000 by default. */
const HEAVY_RUNS = Math.max(1000, Math.floor(FUZZ_RUNS / 5));

let unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => unhandled.push(e);
before(() => {
  unhandled = [];
  process.on('unhandledRejection', onUnhandled);
});

function inSet(b: Uint8Array, set: readonly Uint8Array[]): boolean {
  return set.some((x) => equalBytes(x, b));
}

// ---- fixtures: one service, its bundles, cards

const ikA = generateX25519();
const spk = generateX25519();
const spkSig = signSpk(ikA.privateKey, spk.publicKey);
/** PQSPK_A for the v2 bundles (EKA v2): their KEM_hash is its SHA-256. */
const kem = mlKem768Keygen();
const kemHash = kemPrekeyHash(kem.publicKey);
function makeBundle(addr: string, eka: 1 | 2 = 1): Bundle {
  return signBundle(
    {
      bundleId: new Uint8Array(randomBytes(16)),
      ikA: ikA.publicKey,
      spkA: spk.publicKey,
      spkSig,
      opkA: generateX25519().publicKey,
      ...(eka === 2 ? { kemHash } : {}),
      expiresAt: NOW + 86400,
      addr,
    },
    ikA.privateKey,
  );
}
const bundles = [
  makeBundle('tcp://127.0.0.1:4100'),
  makeBundle(''),
  makeBundle('tcp://[::1]:1'),
  makeBundle('é'.repeat(256)),
  makeBundle('x'.repeat(512)),
  makeBundle('tcp://127.0.0.1:4100', 2),
  makeBundle('', 2),
  makeBundle('x'.repeat(512), 2),
];
const bundleBytes = bundles.map(encodeBundle);
const cards: EnrolleeCard[] = [
  { version: 1, eikB: generateX25519().publicKey },
  { version: 1, eikB: generateX25519().publicKey, bundleId: bundles[0]!.bundleId, petName: 'Robot Axiom' },
  { version: 1, eikB: generateX25519().publicKey, petName: 'é'.repeat(32) },
  { version: 1, eikB: generateX25519().publicKey, bundleId: bundles[1]!.bundleId },
];
const cardBytes = cards.map(encodeCard);

describe('fuzz: bundle and card encodings', () => {
  it('decodeBundle throws only ERR_BUNDLE_MALFORMED/VERSION; what decodes re-encodes exactly; a mutated bundle never verifies', () =>
    check(
      fc.property(hostileBytes(bundleBytes, 900), (input) => {
        // v1 and v2 bundles, and each one's bytes under the other version byte, are among the inputs.
        const r = typed(() => decodeBundle(input));
        expectCode(r, ['ERR_BUNDLE_MALFORMED', 'ERR_BUNDLE_VERSION'], 'decodeBundle');
        if (!r.ok) return;
        assert.deepEqual(encodeBundle(r.value), input, 'decodeBundle is canonical');
        const v = typed(() => verifyBundle(r.value, { now: NOW, ikA: ikA.publicKey }));
        expectCode(v, ['ERR_BUNDLE_SIGNATURE', 'ERR_BUNDLE_EXPIRED', 'ERR_BUNDLE_MALFORMED'], 'verifyBundle');
        assert.equal(v.ok, inSet(input, bundleBytes), `verifyBundle accepted ${hex(input)}`);
      }),
    ));

  it('decodeCard throws only ERR_CARD_MALFORMED; what decodes re-encodes exactly', () =>
    check(
      fc.property(hostileBytes(cardBytes, 200), (input) => {
        const r = typed(() => decodeCard(input));
        expectCode(r, ['ERR_CARD_MALFORMED'], 'decodeCard');
        if (r.ok) assert.deepEqual(encodeCard(r.value), input, 'decodeCard is canonical');
      }),
    ));

  it('text forms: decodeText, bundleFromText, cardFromText throw only ERR_TEXT_*/decoder codes; only the original payloads ever decode', () => {
    const bundleTexts = bundles.map(bundleToText);
    const cardTexts = cards.map(cardToText);
    const textCodes = ['ERR_TEXT_PREFIX', 'ERR_TEXT_ALPHABET', 'ERR_TEXT_CHECKSUM'];
    return check(
      fc.property(hostileText([...bundleTexts, ...cardTexts], 1300), (input) => {
        const b = typed(() => bundleFromText(input, { now: NOW, ikA: ikA.publicKey }));
        expectCode(b, [...textCodes, 'ERR_BUNDLE_MALFORMED', 'ERR_BUNDLE_VERSION', 'ERR_BUNDLE_SIGNATURE', 'ERR_BUNDLE_EXPIRED'], 'bundleFromText');
        if (b.ok) assert.ok(inSet(encodeBundle(b.value), bundleBytes), `bundleFromText accepted a bundle that was never issued: ${JSON.stringify(input)}`);
        const c = typed(() => cardFromText(input));
        expectCode(c, [...textCodes, 'ERR_CARD_MALFORMED'], 'cardFromText');
        if (c.ok) assert.ok(inSet(encodeCard(c.value), cardBytes), `cardFromText accepted a card nobody made: ${JSON.stringify(input)}`);
        for (const prefix of [BUNDLE_TEXT_PREFIX, CARD_TEXT_PREFIX]) {
          expectCode(typed(() => decodeText(prefix, input)), textCodes, 'decodeText');
        }
      }),
    );
  });
});

describe('fuzz: frames', () => {
  /** A reference parse of a byte stream into frames, by the spec (docs/protocol.md §7.1). */
  function reference(bytes: Uint8Array, max: number): { frames: Uint8Array[]; error: boolean } {
    const frames: Uint8Array[] = [];
    let i = 0;
    while (bytes.length - i >= 2) {
      const len = (bytes[i]! << 8) | bytes[i + 1]!;
      if (len > max) return { frames, error: true };
      if (bytes.length - i - 2 < len) break;
      frames.push(bytes.slice(i + 2, i + 2 + len));
      i += 2 + len;
    }
    return { frames, error: false };
  }

  const stream = fc.oneof(
    fc.uint8Array({ maxLength: 600 }),
    fc
      .tuple(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }), fc.uint8Array({ maxLength: 8 }))
      .map(([payloads, tail]) => concat(...payloads.map((p) => encodeFrame(p)), tail)),
    fc.constantFrom(Uint8Array.of(0xff, 0xff), Uint8Array.of(0x20, 0x01, 1, 2, 3), Uint8Array.of(0, 0, 0, 0, 0), Uint8Array.of(0x01)),
  );

  it('FrameDecoder matches the reference parse for any chunking, throws only ERR_FRAME_TOO_LARGE, and keeps throwing after', () =>
    check(
      fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), fc.integer({ min: 0, max: 400 }), (bytes, cuts, max) => {
        const ref = reference(bytes, max);
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        const decoder = new FrameDecoder(max);
        const got: Uint8Array[] = [];
        let error: EnrollError | undefined;
        let prev = 0;
        for (const p of [...points, bytes.length]) {
          const r = typed(() => decoder.push(bytes.subarray(prev, p)));
          prev = p;
          if (!r.ok) {
            error = r.error;
            break;
          }
          got.push(...r.value);
        }
        if (error) {
          assert.equal(error.code, 'ERR_FRAME_TOO_LARGE');
          const again = typed(() => decoder.push(Uint8Array.of(0, 0)));
          assert.ok(!again.ok && again.error.code === 'ERR_FRAME_TOO_LARGE', 'a failed decoder stays failed');
        }
        assert.equal(Boolean(error), ref.error, 'error iff the reference errs');
        assert.deepEqual(got, ref.frames.slice(0, got.length));
        if (!error) assert.equal(got.length, ref.frames.length);
      }),
    ));
});

// ---- Noise: fixed keys make every handshake message deterministic, so a fresh state can be
// driven to any step and then fed a hostile message.

const iStatic = generateX25519();
const rStatic = generateX25519();
const iEph = generateX25519();
const rEph = generateX25519();
const PROLOGUE = new TextEncoder().encode('ockam-enroll/v1/fuzz');
const noiseKp = (k: KeyPair): NoiseKeyPair => ({ publicKey: k.publicKey, privateKey: k.privateKey });
function initiator(): HandshakeState {
  return new HandshakeState({ initiator: true, staticKeyPair: noiseKp(iStatic), prologue: PROLOGUE, fixedEphemeralKeyForTestingOnly: noiseKp(iEph) });
}
function responder(): HandshakeState {
  return new HandshakeState({ initiator: false, staticKeyPair: noiseKp(rStatic), prologue: PROLOGUE, fixedEphemeralKeyForTestingOnly: noiseKp(rEph) });
}
const valid = (() => {
  const i = initiator();
  const r = responder();
  const m1 = i.writeMessage();
  r.readMessage(m1);
  const m2 = r.writeMessage();
  i.readMessage(m2);
  const m3 = i.writeMessage();
  r.readMessage(m3);
  const ti = i.finish();
  const tr = r.finish();
  const c0 = ti.encrypt(Uint8Array.of(0x30));
  const c1 = ti.encrypt(new Uint8Array(100).fill(7));
  return { m1, m2, m3, c0, c1, hh: tr.handshakeHash, tr };
})();
const NOISE_CODES = ['ERR_NOISE_SHORT', 'ERR_NOISE_TOO_LONG', 'ERR_NOISE_DECRYPT', 'ERR_DH_ZERO', 'ERR_KEY_INVALID'];

/** After a failed read, the state is poisoned: every further call says so. */
function assertPoisoned(hs: HandshakeState): void {
  const again = typed(() => hs.readMessage(valid.m1));
  assert.ok(!again.ok && again.error.code === 'ERR_NOISE_POISONED', `expected ERR_NOISE_POISONED, got ${again.ok ? 'ok' : again.error.code}`);
}

describe('fuzz: Noise XX messages', () => {
  it('msg 1 (responder): any 32+ bytes are an ephemeral and an unauthenticated payload; shorter is ERR_NOISE_SHORT', () =>
    check(
      fc.property(hostileBytes([valid.m1], 200), (input) => {
        const r = responder();
        const res = typed(() => r.readMessage(input));
        expectCode(res, NOISE_CODES, 'readMessage(msg1)');
        if (input.length < 32) assert.ok(!res.ok && res.error.code === 'ERR_NOISE_SHORT');
        if (!res.ok) return assertPoisoned(r);
        // Writing msg 2 to a hostile ephemeral may still fail (a low-order point): typed too.
        expectCode(typed(() => r.writeMessage()), ['ERR_DH_ZERO'], 'writeMessage(msg2)');
      }),
    ));

  it('msg 2 (initiator): only the exact msg 2 is accepted; any change fails and poisons', () =>
    check(
      fc.property(hostileBytes([valid.m2], 200), (input) => {
        const i = initiator();
        i.writeMessage();
        const res = typed(() => i.readMessage(input));
        expectCode(res, NOISE_CODES, 'readMessage(msg2)');
        assert.equal(res.ok, equalBytes(input, valid.m2), `msg 2 ${res.ok ? 'accepted' : 'refused'}: ${hex(input)}`);
        if (!res.ok) assertPoisoned(i);
      }),
      HEAVY_RUNS,
    ));

  it('msg 3 (responder): only the exact msg 3 is accepted; any change fails and poisons', () =>
    check(
      fc.property(hostileBytes([valid.m3], 200), (input) => {
        const r = responder();
        r.readMessage(valid.m1);
        r.writeMessage();
        const res = typed(() => r.readMessage(input));
        expectCode(res, NOISE_CODES, 'readMessage(msg3)');
        assert.equal(res.ok, equalBytes(input, valid.m3), `msg 3 ${res.ok ? 'accepted' : 'refused'}: ${hex(input)}`);
        if (res.ok) assert.deepEqual(r.finish().handshakeHash, valid.hh);
        else assertPoisoned(r);
      }),
      HEAVY_RUNS,
    ));

  it('any sequence of handshake calls with hostile messages fails only with EnrollErrors', () =>
    check(
      fc.property(
        fc.boolean(),
        fc.array(fc.oneof(fc.constant('write' as const), fc.constant('finish' as const), fc.constant('hash' as const), hostileBytes([valid.m1, valid.m2, valid.m3], 100)), { maxLength: 6 }),
        (asInitiator, ops) => {
          const hs = asInitiator ? initiator() : responder();
          for (const op of ops) {
            if (op === 'write') typed(() => hs.writeMessage());
            else if (op === 'finish') typed(() => hs.finish());
            else if (op === 'hash') typed(() => hs.getHandshakeHash());
            else typed(() => hs.readMessage(op));
          }
        },
      ),
      HEAVY_RUNS,
    ));

  it('TransportState.decrypt: only the next ciphertext opens; anything else fails, poisons, and the state stays poisoned', () =>
    check(
      fc.property(hostileBytes([valid.c0, valid.c1], 300), (input) => {
        // A fresh responder transport each run: a failure poisons it.
        const i = initiator();
        const r = responder();
        r.readMessage(i.writeMessage());
        i.readMessage(r.writeMessage());
        r.readMessage(i.writeMessage());
        i.finish();
        const t = r.finish();
        const res = typed(() => t.decrypt(input));
        expectCode(res, ['ERR_NOISE_DECRYPT', 'ERR_NOISE_SHORT', 'ERR_NOISE_TOO_LONG'], 'decrypt');
        assert.equal(res.ok, equalBytes(input, valid.c0), `transport message ${res.ok ? 'accepted' : 'refused'}: ${hex(input)}`);
        if (!res.ok) {
          assert.equal(t.isPoisoned, true);
          const again = typed(() => t.decrypt(valid.c0));
          assert.ok(!again.ok && again.error.code === 'ERR_NOISE_POISONED');
        }
      }),
      HEAVY_RUNS,
    ));
});

describe('fuzz: the enrollment message', () => {
  const eikB = generateX25519();
  const opk = generateX25519();
  const id = enrolleeId(eikB.publicKey);
  const bundle = signBundle(
    { bundleId: new Uint8Array(16), ikA: ikA.publicKey, spkA: spk.publicKey, spkSig, opkA: opk.publicKey, expiresAt: NOW + 3600, addr: 'tcp://127.0.0.1:4100' },
    ikA.privateKey,
  );
  const attempts = [0, 1, 2, 3].map(() => initiate({ bundle, eikB }));
  const messages = attempts.map((a) => a.message);
  const replayed = toHex(messages[3]!.subarray(0, 32));
  const pending = { eikB: eikB.publicKey, spkA: importX25519Private(spk.privateKey, 'SPK_A'), opkA: importX25519Private(opk.privateKey, 'OPK_A'), addr: bundle.addr };
  const ctx: AcceptContext = {
    isReplay: (ekB) => toHex(ekB) === replayed,
    lookupPending: (enrollee) => (equalBytes(enrollee, id) ? pending : undefined),
  };
  const ikAKey = importX25519Private(ikA.privateKey, 'IK_A');

  it('parseHeader: only 176-byte messages split, others are ERR_MESSAGE_LENGTH', () =>
    check(
      fc.property(hostileBytes(messages, 400), (input) => {
        const r = typed(() => parseHeader(input));
        expectCode(r, ['ERR_MESSAGE_LENGTH'], 'parseHeader');
        assert.equal(r.ok, input.length === 176);
      }),
    ));

  it('accept with a store-like context: a mutated message is never accepted, and fails with a check code', () =>
    check(
      fc.property(hostileBytes(messages, 400), (input) => {
        const r = typed(() => accept(input, ikAKey, ctx));
        expectCode(r, ['ERR_MESSAGE_LENGTH', 'ERR_REPLAY', 'ERR_ENROLLEE_UNKNOWN', 'ERR_ENROLLMENT_DECRYPT', 'ERR_POP_INVALID'], 'accept');
        const which = messages.findIndex((m) => equalBytes(m, input));
        if (which >= 0 && which < 3) {
          assert.ok(r.ok, 'a genuine message is accepted');
          assert.deepEqual(r.value.ikB, attempts[which]!.ikB.publicKey);
        } else {
          assert.ok(!r.ok, `accept took a message nobody made: ${hex(input)}`);
        }
      }),
      HEAVY_RUNS,
    ));
});

describe('fuzz: the enrollment message v2 (hybrid, ML-KEM-768)', () => {
  const eikB = generateX25519();
  const opk = generateX25519();
  const id = enrolleeId(eikB.publicKey);
  const bundle = signBundle(
    { bundleId: new Uint8Array(16), ikA: ikA.publicKey, spkA: spk.publicKey, spkSig, opkA: opk.publicKey, kemHash, expiresAt: NOW + 3600, addr: 'tcp://127.0.0.1:4100' },
    ikA.privateKey,
  ) as BundleV2;
  const attempts = [0, 1, 2, 3].map(() => initiateV2({ bundle, kemPrekey: kem.publicKey, eikB }));
  const messages = attempts.map((a) => a.message);
  const replayed = toHex(messages[3]!.subarray(1, 33));
  const pending = {
    eikB: eikB.publicKey,
    spkA: importX25519Private(spk.privateKey, 'SPK_A'),
    opkA: importX25519Private(opk.privateKey, 'OPK_A'),
    addr: bundle.addr,
    kemHash,
    kemSecretKey: kem.secretKey,
  };
  const ctx: AcceptV2Context = {
    isReplay: (ekB) => toHex(ekB) === replayed,
    lookupPending: (enrollee) => (equalBytes(enrollee, id) ? pending : undefined),
  };
  const ikAKey = importX25519Private(ikA.privateKey, 'IK_A');
  // v1 messages of the same length class are hostile inputs too.
  const v1 = initiate({ bundle: makeBundle('tcp://127.0.0.1:4100') as Bundle, eikB }).message;

  it('parseHeaderV2: only 1265-byte messages starting with 0x02 split, others are ERR_MESSAGE_LENGTH', () =>
    check(
      fc.property(hostileBytes([...messages, v1], 1400), (input) => {
        const r = typed(() => parseHeaderV2(input));
        expectCode(r, ['ERR_MESSAGE_LENGTH'], 'parseHeaderV2');
        assert.equal(r.ok, input.length === 1265 && input[0] === 2);
      }),
    ));

  it('acceptV2 with a store-like context: a mutated message is never accepted, and fails with a check code', () =>
    check(
      fc.property(hostileBytes([...messages, v1], 1400), (input) => {
        const r = typed(() => acceptV2(input, ikAKey, ctx));
        expectCode(r, ['ERR_MESSAGE_LENGTH', 'ERR_REPLAY', 'ERR_ENROLLEE_UNKNOWN', 'ERR_ENROLLMENT_DECRYPT', 'ERR_POP_INVALID'], 'acceptV2');
        const which = messages.findIndex((m) => equalBytes(m, input));
        if (which >= 0 && which < 3) {
          assert.ok(r.ok, 'a genuine message is accepted');
          assert.deepEqual(r.value.ikB, attempts[which]!.ikB.publicKey);
        } else {
          assert.ok(!r.ok, `acceptV2 took a message nobody made: ${hex(input)}`);
        }
      }),
      HEAVY_RUNS,
    ));
});

describe('fuzz: application messages', () => {
  const ERR_SAMPLES = [
    encodeError(new EnrollError('ERR_BUNDLE_USED', 'msg', { hint: 'h' })),
    encodeError(new EnrollError('ERR_RATE_LIMITED', 'é'.repeat(500))),
    encodeError(new EnrollError('ERR_PROTOCOL', '')),
  ];
  /** Codes a decoder of a non-ERROR message may throw; an ERROR message is the peer's and may carry any code. */
  function expectMessageCode(input: Uint8Array, r: ReturnType<typeof typed>, what: string): void {
    if (r.ok) return;
    assert.ok(isErrorCode(r.error.code), `${what}: ${r.error.code} is not a known code`);
    if (input[0] !== MSG_ERROR) expectCode(r, ['ERR_FRAME_MALFORMED', 'ERR_PROTOCOL'], what);
  }
  const withErrors = (valid: Uint8Array[]) => hostileBytes([...valid, ...ERR_SAMPLES], 300);

  it('decodeKindFrame accepts exactly the four kind bytes', () =>
    check(
      fc.property(withErrors([Uint8Array.of(1), Uint8Array.of(2), Uint8Array.of(3), Uint8Array.of(4), Uint8Array.of(5)]), (input) => {
        const r = typed(() => decodeKindFrame(input));
        expectCode(r, ['ERR_FRAME_MALFORMED'], 'decodeKindFrame');
        assert.equal(r.ok, input.length === 1 && input[0]! >= 1 && input[0]! <= 5);
      }),
    ));

  it('decodeError returns or throws an EnrollError with a known code', () =>
    check(
      fc.property(withErrors([]), (input) => {
        const r = typed(() => decodeError(input));
        expectCode(r, ['ERR_FRAME_MALFORMED'], 'decodeError');
        if (r.ok) {
          assert.ok(r.value instanceof EnrollError);
          assert.ok(isErrorCode(r.value.code));
        }
      }),
    ));

  const roundTrips: { name: string; valid: Uint8Array[]; decode: (m: Uint8Array) => unknown; encode?: (v: any) => Uint8Array }[] = [
    {
      name: 'decodeFetchBundles',
      valid: [encodeFetchBundles(1), encodeFetchBundles(1000), encodeFetchBundles(5), encodeFetchBundles(5, 2), encodeFetchBundles(1000, 2)],
      decode: decodeFetchBundles,
      encode: (v) => encodeFetchBundles(v.count, v.eka),
    },
    {
      name: 'decodeBundleStream',
      valid: [encodeBundleMsg(bundleBytes[0]!), encodeBundlesEnd(3), encodeBundlesEnd(0)],
      decode: decodeBundleStream,
      encode: (v) => ('end' in v ? encodeBundlesEnd(v.end) : encodeBundleMsg(v.bundle)),
    },
    {
      name: 'decodeApprove',
      valid: [encodeApprove({ bundleId: bundles[0]!.bundleId, ttl: 3600, card: cardBytes[1]! }), encodeApprove({ bundleId: new Uint8Array(16), ttl: 1, card: new Uint8Array(0) })],
      decode: decodeApprove,
      encode: encodeApprove,
    },
    { name: 'decodeApproved', valid: [encodeApproved({ enrolleeId: new Uint8Array(32).fill(9), expiresAt: NOW })], decode: decodeApproved, encode: encodeApproved },
    {
      name: 'decodeStatus',
      valid: [encodeStatus({ enrolleeId: new Uint8Array(32).fill(1), enrolledAt: NOW, petName: 'Robot', addr: 'tcp://127.0.0.1:4100' }), encodeStatus({ enrolleeId: new Uint8Array(32), enrolledAt: 0, petName: '', addr: '' })],
      decode: decodeStatus,
      encode: encodeStatus,
    },
    { name: 'decodeOffer', valid: [encodeOffer(bundleBytes[0]!)], decode: decodeOffer, encode: encodeOffer },
    { name: 'decodeCardMsg', valid: [encodeCardMsg(cardBytes[1]!)], decode: decodeCardMsg, encode: encodeCardMsg },
    { name: 'decodeGo', valid: [encodeGo(new Uint8Array(32).fill(3), NOW)], decode: decodeGo, encode: (v) => encodeGo(v.enrolleeId, v.expiresAt) },
    { name: 'decodeResult', valid: [encodeResult(0), encodeResult(ENROLL_STATUS.REPLAY)], decode: decodeResult, encode: encodeResult },
    {
      name: 'decodeTokenCreate',
      valid: [encodeTokenCreate({ ttl: 3600, name: 'robot-1' }), encodeTokenCreate({ ttl: 1, name: 'a.b_c@d e' })],
      decode: decodeTokenCreate,
      encode: encodeTokenCreate,
    },
    {
      name: 'decodeTokenCreated',
      valid: [encodeTokenCreated({ identityId: new Uint8Array(32).fill(4), expiresAt: NOW, jwt: 'eyJhbGciOiJFUzI1NiJ9.e30.c2ln' })],
      decode: decodeTokenCreated,
      encode: encodeTokenCreated,
    },
  ];
  for (const t of roundTrips) {
    it(`${t.name} throws only typed errors, and what decodes re-encodes exactly`, () =>
      check(
        fc.property(withErrors(t.valid), (input) => {
          const r = typed(() => t.decode(input));
          expectMessageCode(input, r, t.name);
          if (r.ok && t.encode) assert.deepEqual(t.encode(r.value), input, `${t.name} is canonical`);
        }),
      ));
  }

  it('decodeEnrollResponse: a sealed acceptance (status 0, ≥ 17 bytes) or a typed rejection', () =>
    check(
      fc.property(withErrors([encodeEnrollResponse(ENROLL_STATUS.ACCEPTED, new Uint8Array(60)), encodeEnrollResponse(ENROLL_STATUS.LOCKED), Uint8Array.of(8)]), (input) => {
        const r = typed(() => decodeEnrollResponse(input));
        assert.ok(r.ok || isErrorCode(r.error.code));
        if (r.ok) assert.ok(input[0] === 0 && input.length >= 17 && equalBytes(r.value, input.subarray(1)));
        else if (input.length === 1 && input[0] === ENROLL_STATUS.RATE_LIMITED) assert.equal(r.error.code, 'ERR_RATE_LIMITED');
      }),
    ));

  it('decodeAcceptance throws only ERR_FRAME_MALFORMED, and what decodes re-encodes exactly', () =>
    check(
      fc.property(
        hostileBytes([encodeAcceptance({ enrolleeId: new Uint8Array(32).fill(5), enrolledAt: NOW, petName: 'Robot Axiom', addr: 'tcp://127.0.0.1:4100' })], 300),
        (input) => {
          const r = typed(() => decodeAcceptance(input));
          expectCode(r, ['ERR_FRAME_MALFORMED'], 'decodeAcceptance');
          if (r.ok) assert.deepEqual(encodeAcceptance(r.value), input);
        },
      ),
    ));

  it('the status request is a single type byte', () => assert.deepEqual(encodeStatusRequest(), Uint8Array.of(0x30)));
});

describe('fuzz: addresses and key files', () => {
  it('parseAddress throws only ERR_ADDRESS, and what parses formats back to itself', () =>
    check(
      fc.property(hostileText(['tcp://127.0.0.1:4100', '[::1]:80', 'tcp://enroll.example.com:65535', 'host_1.local:1'], 300), (input) => {
        const r = typed(() => parseAddress(input));
        expectCode(r, ['ERR_ADDRESS'], 'parseAddress');
        if (r.ok) assert.deepEqual(parseAddress(formatAddress(r.value)), r.value);
      }),
    ));

  it('KeyFile.parse throws only ERR_KEYSTORE_CORRUPT; a parsed file unlocks to its own public key or fails typed', async () => {
    const kp = generateX25519();
    const plain = await encodeKeyFile(kp, { purpose: 'IK_B' });
    const encrypted = await encodeKeyFile(kp, { purpose: 'IK_B', passphrase: 'correct horse', insecureScryptNForTestingOnly: 1024 });
    return check(
      fc.asyncProperty(hostileText([plain, encrypted], 400), async (input) => {
        const r = typed(() => KeyFile.parse(input, 'fuzz.key'));
        expectCode(r, ['ERR_KEYSTORE_CORRUPT'], 'KeyFile.parse');
        if (!r.ok) return;
        const json = JSON.parse(input) as { encrypted?: { N?: number } };
        if (json.encrypted && !(typeof json.encrypted.N === 'number' && json.encrypted.N <= 4096)) return; // costly scrypt: skip
        const u = await typedAsync(() => r.value.unlock('correct horse'));
        expectCode(u, ['ERR_KEYSTORE_CORRUPT', 'ERR_PASSPHRASE'], 'KeyFile.unlock');
        if (u.ok) {
          assert.deepEqual(u.value.publicKey, r.value.publicKey);
          assert.deepEqual(keyPairFromPrivate(u.value.privateKey).publicKey, kp.publicKey, 'only the original key unlocks');
        }
      }),
      HEAVY_RUNS,
    );
  });
});

describe('fuzz: token enrollment decoders (JWT, CSR, certificates, PKCS#7)', () => {
  let token: string;
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  before(async () => {
    token = await signToken(
      {
        iss: 'https://127.0.0.1:4443',
        sub: 'ab'.repeat(32),
        jti: 'AAAAAAAAAAAAAAAAAAAAAAAA',
        iat: NOW,
        exp: NOW + 3600,
        em: 'ott',
        ca_fp: 'cd'.repeat(32),
        name: 'robot-1',
      },
      ec.privateKey,
      'ES256',
    );
  });

  it('decodeTokenUnverified throws only ERR_TOKEN_INVALID; a changed token never verifies', () =>
    check(
      fc.asyncProperty(
        hostileText([token], 800),
        async (input) => {
          const r = typed(() => decodeTokenUnverified(input));
          expectCode(r, ['ERR_TOKEN_INVALID'], 'decodeTokenUnverified');
          if (!r.ok) return;
          const v = await typedAsync(() => verifyToken(input, ec.publicKey, { alg: 'ES256', now: NOW + 1 }));
          expectCode(v, ['ERR_TOKEN_INVALID', 'ERR_TOKEN_SIGNATURE', 'ERR_TOKEN_EXPIRED'], 'verifyToken');
          if (v.ok) assert.equal(input.trim(), token, 'only the token the service signed verifies');
        },
      ),
      HEAVY_RUNS,
    ));

  let csrs: Uint8Array[] = [];
  let caDer: Uint8Array;
  before(async () => {
    const p = await generateKeyPair('p256');
    const e = await generateKeyPair('ed25519');
    csrs = [
      await createCsr({ keys: p, keyType: 'p256', name: 'robot-1', idHex: 'ab'.repeat(32) }),
      await createCsr({ keys: e, keyType: 'ed25519', name: 'robot 2', idHex: 'cd'.repeat(32) }),
    ];
    caDer = await createRootCa({ keys: await generateKeyPair('p256'), now: NOW });
  });

  it('parseCsr throws only ERR_CSR_INVALID for mutated requests', () =>
    check(
      fc.asyncProperty(hostileBytes(csrs, 600), async (input) => {
        const r = await typedAsync(() => parseCsr(input));
        expectCode(r, ['ERR_CSR_INVALID'], 'parseCsr');
        if (r.ok) assert.ok(inSet(input, csrs), `parseCsr accepted a request nobody signed: ${hex(input)}`);
      }),
      HEAVY_RUNS,
    ));

  it('parseCsr throws only ERR_CSR_INVALID for signed requests whose subjectAltName holds hostile bytes', async () => {
    const keys = await generateKeyPair('p256');
    const san = await createCsr({ keys, keyType: 'p256', name: 'robot-1', idHex: 'ab'.repeat(32) });
    const sanValue = new Uint8Array(new x509.Pkcs10CertificateRequest(san).getExtension('2.5.29.17')!.value);
    return check(
      fc.asyncProperty(hostileBytes([sanValue], 120), fc.boolean(), async (value, critical) => {
        const csr = await x509.Pkcs10CertificateRequestGenerator.create({
          name: [{ CN: ['robot-1'] }],
          keys,
          signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' },
          extensions: [new x509.Extension('2.5.29.17', critical, value)],
        });
        const r = await typedAsync(() => parseCsr(new Uint8Array(csr.rawData)));
        expectCode(r, ['ERR_CSR_INVALID'], 'parseCsr (hostile SAN)');
      }),
      Math.max(200, Math.floor(FUZZ_RUNS / 25)),
    );
  });

  it('parseCsr throws only ERR_CSR_INVALID for signed requests whose subject holds hostile bytes', async () => {
    const keys = await generateKeyPair('p256');
    const subject = new Uint8Array(new x509.Name([{ CN: ['robot-1'] }, { O: ['ockam'] }]).toArrayBuffer());
    return check(
      fc.asyncProperty(hostileBytes([subject], 120), async (der) => {
        let name: InstanceType<typeof x509.Name>;
        try {
          name = new x509.Name(der);
          name.toString();
        } catch {
          return; // the generator cannot even carry it
        }
        let csr: InstanceType<typeof x509.Pkcs10CertificateRequest>;
        try {
          csr = await x509.Pkcs10CertificateRequestGenerator.create({ name, keys, signingAlgorithm: { name: 'ECDSA', hash: 'SHA-256' } });
        } catch {
          return;
        }
        const r = await typedAsync(() => parseCsr(new Uint8Array(csr.rawData)));
        expectCode(r, ['ERR_CSR_INVALID'], 'parseCsr (hostile subject)');
      }),
      Math.max(200, Math.floor(FUZZ_RUNS / 25)),
    );
  });

  it('parseCertificate, decodeCertsOnly and decodeBase64Body throw only the code they are given', () => {
    const p7 = encodeCertsOnly([caDer]);
    return check(
      fc.property(hostileBytes([caDer, p7], 600), (input) => {
        expectCode(typed(() => parseCertificate(input, 'fuzz certificate', 'ERR_DECODE')), ['ERR_DECODE'], 'parseCertificate');
        const d = typed(() => decodeCertsOnly(input, 'ERR_HTTP', 'fuzz body'));
        expectCode(d, ['ERR_HTTP'], 'decodeCertsOnly');
        const b = typed(() => decodeBase64Body(encodeBase64Body(input), 8192, 'ERR_HTTP', 'fuzz body'));
        expectCode(b, ['ERR_HTTP'], 'decodeBase64Body');
      }),
      HEAVY_RUNS,
    );
  });

  it('decodeBase64Body throws only the code it is given for hostile text', () =>
    check(
      fc.property(hostileText([encodeBase64Body(encodeCertsOnly([caDer])), 'AAAA\r\n', 'QQ==\r\n'], 400), (input) => {
        const r = typed(() => decodeBase64Body(input, 4096, 'ERR_HTTP', 'fuzz body'));
        expectCode(r, ['ERR_HTTP'], 'decodeBase64Body');
      }),
    ));
});

describe('fuzz: no unhandled rejections', () => {
  it('none were seen while fuzzing', () => {
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, []);
  });
});
