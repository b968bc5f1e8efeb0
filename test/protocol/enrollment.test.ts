/**
 * The Enrollment Key Agreement v1 (src/protocol/enrollment): initiate / accept, the
 * service's five checks in order with their own codes, every single-bit flip of a valid
 * message, the "no DH for an unknown id" property, and the session ciphers.
 */
import { describe, test, mock } from 'node:test';
import assert from 'node:assert/strict';
import nodeCrypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { format, inspect } from 'node:util';
import { aesGcmEncrypt } from '../../src/crypto/aead.js';
import { concat, equalBytes, fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { hkdfSha256, sha256 } from '../../src/crypto/hash.js';
import { generateX25519, importX25519Private, keyPairFromPrivate, type KeyPair } from '../../src/crypto/x25519.js';
import { xeddsaSign, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { EnrollError, isEnrollError, type ErrorCode } from '../../src/errors.js';
import { signBundle, signSpk, type Bundle } from '../../src/protocol/codec/bundle.js';
import {
  ENROLLMENT_MESSAGE_LEN,
  HEADER_LEN,
  INFO,
  SESSION_MAX_COUNTER,
  SessionCipher,
  accept,
  composeMessage,
  deriveSessionKeys,
  enrolleeId,
  enrolleeSession,
  initiate,
  parseHeader,
  serviceSession,
  x3dhInitiatorDh,
  x3dhKdf,
  x3dhStateHash,
  type AcceptContext,
  type PendingEnrollee,
} from '../../src/protocol/enrollment/index.js';
import { seededDrbg } from '../vectors/generate-enrollment-v1.js';

function throwsCode(fn: () => unknown, code: ErrorCode, label = ''): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EnrollError, `${label}: expected EnrollError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `${label}: expected ${code}, got ${e.code}: ${e.message}`);
    return true;
  });
}

interface Fixture {
  ikA: KeyPair;
  spkA: KeyPair;
  opkA: KeyPair;
  bundle: Bundle;
  eikB: KeyPair;
  ikB: KeyPair;
  /** A copy of EK_B's private key, kept by the test (initiate wipes its own). */
  ekBPriv: Uint8Array;
  message: Uint8Array;
  init: ReturnType<typeof initiate>;
  pending: PendingEnrollee;
}

function makeFixture(seed: string, addr = 'tcp://127.0.0.1:4000'): Fixture {
  const random = seededDrbg(seed);
  const ikA = generateX25519(random);
  const spkA = generateX25519(random);
  const opkA = generateX25519(random);
  const bundle = signBundle(
    {
      bundleId: random(16),
      ikA: ikA.publicKey,
      spkA: spkA.publicKey,
      spkSig: signSpk(ikA.privateKey, spkA.publicKey, random),
      opkA: opkA.publicKey,
      expiresAt: 2_000_000_000,
      addr,
    },
    ikA.privateKey,
    random,
  );
  const eikB = generateX25519(random);
  const ikB = generateX25519(random);
  const ekBPriv = random(32);
  const init = initiate({ bundle, eikB, ikB, ekB: keyPairFromPrivate(Uint8Array.from(ekBPriv)), random });
  const pending = { eikB: eikB.publicKey, spkA: spkA.privateKey, opkA: opkA.privateKey, addr };
  return { ikA, spkA, opkA, bundle, eikB, ikB, ekBPriv, message: init.message, init, pending };
}

/** A store-like context: one pending enrollee, and a set of accepted EK_Bs. */
function makeCtx(pending: PendingEnrollee, accepted = new Set<string>()): AcceptContext & { lookups: string[] } {
  const id = toHex(sha256(pending.eikB));
  const lookups: string[] = [];
  return {
    lookups,
    isReplay: (ekB) => accepted.has(toHex(ekB)),
    lookupPending: (eid) => {
      lookups.push(toHex(eid));
      return toHex(eid) === id ? pending : undefined;
    },
  };
}

/** SK and h as the enrollee computed them, from the test's copy of EK_B. */
function skAndH(f: Fixture): { sk: Uint8Array; h: Uint8Array } {
  const km = concat(
    ...x3dhInitiatorDh({
      identity: f.eikB.privateKey,
      ephemeral: f.ekBPriv,
      peerIdentity: f.ikA.publicKey,
      peerSignedPrekey: f.spkA.publicKey,
      peerOneTimePrekey: f.opkA.publicKey,
    }),
  );
  return { sk: x3dhKdf(km), h: x3dhStateHash(km) };
}

describe('initiate / accept', () => {
  const f = makeFixture('enroll-happy');

  test('a valid message is accepted: IK_B, id, EK_B, h and session keys match', () => {
    const ctx = makeCtx(f.pending);
    const r = accept(f.message, f.ikA.privateKey, ctx);
    assert.deepEqual(r.ikB, f.ikB.publicKey);
    assert.deepEqual(r.enrolleeId, sha256(f.eikB.publicKey));
    assert.deepEqual(r.enrolleeId, f.init.enrolleeId);
    assert.deepEqual(r.ekB, keyPairFromPrivate(Uint8Array.from(f.ekBPriv)).publicKey);
    assert.deepEqual(r.h, f.init.h);
    assert.deepEqual(r.session.kS2e, f.init.session.kS2e);
    assert.deepEqual(r.session.kE2s, f.init.session.kE2s);
    assert.notDeepEqual(r.session.kS2e, r.session.kE2s);
    // With pre-imported KeyObjects, as the service caches them.
    const r2 = accept(f.message, importX25519Private(f.ikA.privateKey), makeCtx({
      ...f.pending,
      spkA: importX25519Private(f.spkA.privateKey),
      opkA: importX25519Private(f.opkA.privateKey),
    }));
    assert.deepEqual(r2.ikB, f.ikB.publicKey);
  });

  test('message layout: EK_B ‖ SHA-256(EIK_B) ‖ AES-256-GCM(SK, EK_B[0..12], IK_B ‖ POP, AAD), byte for byte', () => {
    assert.equal(ENROLLMENT_MESSAGE_LEN, 176);
    assert.equal(HEADER_LEN, 64);
    assert.equal(toHex(INFO), toHex(utf8('ockam-enroll/v1/X3DH_25519_AESGCM_SHA256')));
    const popZ = new Uint8Array(64).fill(0x5a);
    const ekB = keyPairFromPrivate(Uint8Array.from(f.ekBPriv));
    const ekBPub = ekB.publicKey;
    const r = initiate({ bundle: f.bundle, eikB: f.eikB, ikB: f.ikB, ekB, popZ });
    const { sk, h } = skAndH(f);
    const header = concat(ekBPub, sha256(f.eikB.publicKey));
    const aad = concat(header, INFO, utf8(f.bundle.addr), h);
    const pop = xeddsaSign(f.ikB.privateKey, f.eikB.publicKey, popZ);
    const body = aesGcmEncrypt(sk, ekBPub.subarray(0, 12), concat(f.ikB.publicKey, pop), aad);
    assert.equal(r.message.length, 176);
    assert.equal(toHex(r.message), toHex(concat(header, body)));
    assert.deepEqual(r.h, h);
    const parsed = parseHeader(r.message);
    assert.deepEqual(parsed.ekB, ekBPub);
    assert.deepEqual(parsed.enrolleeId, enrolleeId(f.eikB.publicKey));
  });

  test('initiate wipes EK_B\'s private key and does not touch EIK_B or IK_B', () => {
    const random = seededDrbg('enroll-wipe');
    const ekB = generateX25519(random);
    const eikCopy = Uint8Array.from(f.eikB.privateKey);
    initiate({ bundle: f.bundle, eikB: f.eikB, ikB: f.ikB, ekB, random });
    assert.ok(ekB.privateKey.every((b) => b === 0));
    assert.deepEqual(f.eikB.privateKey, eikCopy);
  });

  test('fresh randomness gives a fresh EK_B, IK_B and message each time; a seeded source repeats', () => {
    const a = initiate({ bundle: f.bundle, eikB: f.eikB });
    const b = initiate({ bundle: f.bundle, eikB: f.eikB });
    assert.notDeepEqual(a.message.subarray(0, 32), b.message.subarray(0, 32));
    assert.notDeepEqual(a.ikB.publicKey, b.ikB.publicKey);
    for (const r of [a, b]) assert.deepEqual(accept(r.message, f.ikA.privateKey, makeCtx(f.pending)).ikB, r.ikB.publicKey);
    const c = initiate({ bundle: f.bundle, eikB: f.eikB, random: seededDrbg('repeat') });
    const d = initiate({ bundle: f.bundle, eikB: f.eikB, random: seededDrbg('repeat') });
    assert.deepEqual(c.message, d.message);
  });

  test('session keys are K = HKDF(salt = h, IKM = SK, info = INFO ‖ "/session", 64) split s2e ‖ e2s', () => {
    const { sk, h } = skAndH(f);
    const k = hkdfSha256(sk, h, utf8('ockam-enroll/v1/X3DH_25519_AESGCM_SHA256/session'), 64);
    assert.deepEqual(f.init.session.kS2e, k.subarray(0, 32));
    assert.deepEqual(f.init.session.kE2s, k.subarray(32));
    assert.deepEqual(deriveSessionKeys(sk, h).kS2e, k.subarray(0, 32));
  });

  test('secrets do not print: session keys and IK_B are redacted in JSON, inspect and format', () => {
    const secrets = [toHex(f.init.session.kS2e), toHex(f.init.session.kE2s), toHex(f.ikB.privateKey)];
    const shown = [JSON.stringify(f.init), inspect(f.init, { depth: 5 }), format('%s %o', f.init.session, f.init), `${f.init.session}`].join('\n');
    for (const s of secrets) assert.ok(!shown.includes(s));
    const cipher = new SessionCipher(f.init.session.kE2s);
    assert.ok(!JSON.stringify(cipher).includes(secrets[1]!));
    assert.ok(!inspect(cipher).includes(secrets[1]!));
  });

  test('initiate argument checks', () => {
    const other = generateX25519(seededDrbg('other'));
    throwsCode(() => initiate({ bundle: f.bundle, eikB: { publicKey: other.publicKey, privateKey: f.eikB.privateKey } }), 'ERR_INVALID_ARG');
    const ekB = generateX25519(seededDrbg('unused-ek'));
    throwsCode(() => initiate({ bundle: f.bundle, eikB: f.eikB, ikB: f.eikB, ekB }), 'ERR_INVALID_ARG');
    assert.ok(ekB.privateKey.some((b) => b !== 0), 'a refused IK_B is checked before EK_B is used');
    throwsCode(() => initiate({ bundle: { ...f.bundle, opkA: new Uint8Array(31) }, eikB: f.eikB }), 'ERR_INVALID_ARG');
    throwsCode(() => initiate({ bundle: f.bundle, eikB: f.eikB, popZ: new Uint8Array(32) }), 'ERR_INVALID_ARG');
    // A low-order key in a bundle makes a DH output all zeros.
    throwsCode(() => initiate({ bundle: { ...f.bundle, opkA: new Uint8Array(32) }, eikB: f.eikB }), 'ERR_DH_ZERO');
  });
});

describe('service checks, in order, each with its own code', () => {
  const f = makeFixture('enroll-checks');

  test('1. wrong length → ERR_MESSAGE_LENGTH, before any lookup', () => {
    const ctx = makeCtx(f.pending);
    let replayCalls = 0;
    const spy: AcceptContext = { isReplay: (e) => (replayCalls++, ctx.isReplay(e)), lookupPending: ctx.lookupPending };
    for (const n of [0, 1, 64, 175, 177, 352]) {
      const m = n <= 176 ? f.message.subarray(0, n) : concat(f.message, new Uint8Array(n - 176));
      throwsCode(() => accept(m, f.ikA.privateKey, spy), 'ERR_MESSAGE_LENGTH', `length ${n}`);
      throwsCode(() => parseHeader(m), 'ERR_MESSAGE_LENGTH');
    }
    assert.equal(replayCalls, 0);
    assert.equal(ctx.lookups.length, 0);
  });

  test('2. a replayed EK_B → ERR_REPLAY, before the id lookup', () => {
    const accepted = new Set<string>();
    const ctx = makeCtx(f.pending, accepted);
    const r = accept(f.message, f.ikA.privateKey, ctx);
    accepted.add(toHex(r.ekB)); // what the service's store does on success
    const lookupsBefore = ctx.lookups.length;
    throwsCode(() => accept(f.message, f.ikA.privateKey, ctx), 'ERR_REPLAY');
    assert.equal(ctx.lookups.length, lookupsBefore);
    // The same EK_B with any other id is still a replay: check 2 comes before check 3.
    const m = Uint8Array.from(f.message);
    m[40]! ^= 1;
    throwsCode(() => accept(m, f.ikA.privateKey, ctx), 'ERR_REPLAY');
  });

  test('3. an unknown id → ERR_ENROLLEE_UNKNOWN, without computing any DH or reading any key', () => {
    const dh = mock.method(nodeCrypto, 'diffieHellman');
    syncBuiltinESMExports(); // make src/crypto/x25519.ts's named import see the spy
    try {
      // Any read of these throws: IK_A (a Proxy over a Uint8Array) and every field of the
      // one registered PendingEnrollee.
      const trappedIkA = new Proxy(new Uint8Array(32), {
        get() {
          throw new Error('IK_A was read');
        },
      });
      const trappedPending = {} as PendingEnrollee;
      for (const k of ['eikB', 'spkA', 'opkA', 'addr']) {
        Object.defineProperty(trappedPending, k, {
          get() {
            throw new Error(`pending.${k} was read`);
          },
        });
      }
      const realId = toHex(sha256(f.eikB.publicKey));
      const lookups: string[] = [];
      const ctx: AcceptContext = {
        isReplay: () => false,
        lookupPending: (id) => (lookups.push(toHex(id)), toHex(id) === realId ? trappedPending : undefined),
      };
      const unknown = Uint8Array.from(f.message);
      unknown[HEADER_LEN - 1]! ^= 0x80;
      throwsCode(() => accept(unknown, trappedIkA, ctx), 'ERR_ENROLLEE_UNKNOWN');
      assert.deepEqual(lookups, [toHex(unknown.subarray(32, 64))]);
      assert.equal(dh.mock.callCount(), 0);
      // Control: the spy does see the four DHs of a known id.
      accept(f.message, f.ikA.privateKey, makeCtx(f.pending));
      assert.equal(dh.mock.callCount(), 4);
      // And a store that refuses by throwing (e.g. an expired approval) also costs no DH.
      const expired: AcceptContext = {
        isReplay: () => false,
        lookupPending: () => {
          throw new EnrollError('ERR_APPROVAL_EXPIRED', 'approval expired');
        },
      };
      throwsCode(() => accept(f.message, trappedIkA, expired), 'ERR_APPROVAL_EXPIRED');
      assert.equal(dh.mock.callCount(), 4);
    } finally {
      dh.mock.restore();
      syncBuiltinESMExports();
    }
  });

  test('3. a store that returns a different enrollee\'s entry → ERR_ENROLLEE_UNKNOWN', () => {
    const g = makeFixture('enroll-checks-other');
    throwsCode(() => accept(f.message, f.ikA.privateKey, { isReplay: () => false, lookupPending: () => g.pending }), 'ERR_ENROLLEE_UNKNOWN');
  });

  test('4. wrong Addr, wrong OPK, wrong SPK, wrong IK_A → ERR_ENROLLMENT_DECRYPT', () => {
    const g = makeFixture('enroll-checks-other');
    const cases: [string, PendingEnrollee, Uint8Array][] = [
      ['Addr', { ...f.pending, addr: 'tcp://127.0.0.1:4001' }, f.ikA.privateKey],
      ['Addr (empty)', { ...f.pending, addr: '' }, f.ikA.privateKey],
      ['OPK', { ...f.pending, opkA: g.opkA.privateKey }, f.ikA.privateKey],
      ['SPK', { ...f.pending, spkA: g.spkA.privateKey }, f.ikA.privateKey],
      ['IK_A', f.pending, g.ikA.privateKey],
    ];
    for (const [what, pending, ikA] of cases) {
      throwsCode(() => accept(f.message, ikA, makeCtx(pending)), 'ERR_ENROLLMENT_DECRYPT', what);
    }
  });

  test('4. Addr is compared as bytes: a Unicode-equivalent spelling does not decrypt', () => {
    const composed = 'tcp://usine-m\u00fcnchen:4000';
    const h = makeFixture('enroll-nfc', composed);
    accept(h.message, h.ikA.privateKey, makeCtx(h.pending));
    const decomposed = composed.normalize('NFD');
    assert.notEqual(decomposed, composed);
    throwsCode(() => accept(h.message, h.ikA.privateKey, makeCtx({ ...h.pending, addr: decomposed })), 'ERR_ENROLLMENT_DECRYPT');
  });

  test('4. a low-order EK_B (all-zero DH) → ERR_ENROLLMENT_DECRYPT, not ERR_DH_ZERO', () => {
    const lowOrder = [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
      'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ];
    for (const hex of lowOrder) {
      const m = Uint8Array.from(f.message);
      m.set(fromHex(hex), 0);
      throwsCode(() => accept(m, f.ikA.privateKey, makeCtx(f.pending)), 'ERR_ENROLLMENT_DECRYPT', hex);
    }
  });

  test('5. a bad POP → ERR_POP_INVALID (message otherwise valid)', () => {
    const { sk, h } = skAndH(f);
    const ekB = f.message.subarray(0, 32);
    const id = f.message.subarray(32, 64);
    const other = generateX25519(seededDrbg('pop-other'));
    const Z = new Uint8Array(64).fill(7);
    const pops: [string, Uint8Array, Uint8Array][] = [
      ['POP over EK_B instead of EIK_B', f.ikB.publicKey, xeddsaSign(f.ikB.privateKey, ekB, Z)],
      ['POP by another key', f.ikB.publicKey, xeddsaSign(other.privateKey, f.eikB.publicKey, Z)],
      ['IK_B swapped, POP by the original IK_B', other.publicKey, xeddsaSign(f.ikB.privateKey, f.eikB.publicKey, Z)],
      ['all-zero POP', f.ikB.publicKey, new Uint8Array(64)],
      ['POP by EIK_B itself', f.ikB.publicKey, xeddsaSign(f.eikB.privateKey, f.eikB.publicKey, Z)],
    ];
    for (const [what, ikB, pop] of pops) {
      const m = composeMessage({ ekB, enrolleeId: id, sk, h, addr: f.bundle.addr, ikB, pop });
      throwsCode(() => accept(m, f.ikA.privateKey, makeCtx(f.pending)), 'ERR_POP_INVALID', what);
    }
    // Control: the same construction with a good POP is accepted.
    const good = composeMessage({ ekB, enrolleeId: id, sk, h, addr: f.bundle.addr, ikB: f.ikB.publicKey, pop: xeddsaSign(f.ikB.privateKey, f.eikB.publicKey, Z) });
    assert.deepEqual(accept(good, f.ikA.privateKey, makeCtx(f.pending)).ikB, f.ikB.publicKey);
    assert.ok(xeddsaVerify(f.ikB.publicKey, f.eikB.publicKey, xeddsaSign(f.ikB.privateKey, f.eikB.publicKey, Z)));
  });

  test('every single-bit flip of a valid message (176 × 8 = 1408) is rejected with the code of its region', () => {
    const ikA = importX25519Private(f.ikA.privateKey);
    const ctx = makeCtx({ ...f.pending, spkA: importX25519Private(f.spkA.privateKey), opkA: importX25519Private(f.opkA.privateKey) });
    const counts: Record<string, number> = {};
    for (let bit = 0; bit < 176 * 8; bit++) {
      const m = Uint8Array.from(f.message);
      m[bit >> 3]! ^= 1 << (bit & 7);
      const byte = bit >> 3;
      // EK_B flips change the DHs and (via the AAD) the header; even bit 255, which X25519
      // ignores (RFC 7748 §5), changes the AAD. Id flips miss the pending table.
      const expected: ErrorCode = byte >= 32 && byte < 64 ? 'ERR_ENROLLEE_UNKNOWN' : 'ERR_ENROLLMENT_DECRYPT';
      throwsCode(() => accept(m, ikA, ctx), expected, `bit ${bit}`);
      counts[expected] = (counts[expected] ?? 0) + 1;
    }
    assert.deepEqual(counts, { ERR_ENROLLMENT_DECRYPT: (32 + 112) * 8, ERR_ENROLLEE_UNKNOWN: 32 * 8 });
    // The original still passes: nothing above mutated shared state.
    assert.deepEqual(accept(f.message, ikA, ctx).ikB, f.ikB.publicKey);
  });

  test('accept argument checks', () => {
    throwsCode(() => accept('x' as unknown as Uint8Array, f.ikA.privateKey, makeCtx(f.pending)), 'ERR_INVALID_ARG');
    throwsCode(() => accept(f.message, new Uint8Array(31), makeCtx(f.pending)), 'ERR_INVALID_ARG');
    throwsCode(() => enrolleeId(new Uint8Array(31)), 'ERR_INVALID_ARG');
  });
});

describe('session ciphers', () => {
  const f = makeFixture('enroll-session');
  const r = accept(f.message, f.ikA.privateKey, makeCtx(f.pending));

  test('both directions, in order, with counters 0, 1, 2 and the nonce 0^4 ‖ u64be(counter)', () => {
    const e = enrolleeSession(f.init.session);
    const s = serviceSession(r.session);
    for (let i = 0; i < 3; i++) {
      const m = utf8(`e2s ${i}`);
      const sealed = e.send.seal(m, utf8('aad'));
      const nonce = new Uint8Array(12);
      new DataView(nonce.buffer).setBigUint64(4, BigInt(i));
      assert.deepEqual(sealed, aesGcmEncrypt(f.init.session.kE2s, nonce, m, utf8('aad')));
      assert.deepEqual(s.recv.open(sealed, utf8('aad')), m);
      const back = s.send.seal(utf8(`s2e ${i}`));
      assert.deepEqual(back, aesGcmEncrypt(r.session.kS2e, nonce, utf8(`s2e ${i}`)));
      assert.deepEqual(e.recv.open(back), utf8(`s2e ${i}`));
    }
    for (const c of [e.send, e.recv, s.send, s.recv]) assert.equal(c.counter, 3n);
  });

  test('out-of-order and replayed messages fail with ERR_SESSION_DECRYPT; a failed open poisons nothing', () => {
    const e = enrolleeSession(f.init.session);
    const s = serviceSession(r.session);
    const m0 = e.send.seal(utf8('zero'));
    const m1 = e.send.seal(utf8('one'));
    throwsCode(() => s.recv.open(m1), 'ERR_SESSION_DECRYPT', 'out of order');
    assert.equal(s.recv.counter, 0n);
    assert.deepEqual(s.recv.open(m0), utf8('zero'));
    throwsCode(() => s.recv.open(m0), 'ERR_SESSION_DECRYPT', 'replay');
    assert.deepEqual(s.recv.open(m1), utf8('one'));
    // Reflection: a message sent by the enrollee does not open in the enrollee's own receiver.
    throwsCode(() => e.recv.open(m0), 'ERR_SESSION_DECRYPT', 'reflection');
    const m2 = e.send.seal(utf8('two'), utf8('A'));
    throwsCode(() => s.recv.open(m2, utf8('B')), 'ERR_SESSION_DECRYPT', 'aad');
    const t = Uint8Array.from(m2);
    t[0]! ^= 1;
    throwsCode(() => s.recv.open(t, utf8('A')), 'ERR_SESSION_DECRYPT', 'tampered');
    throwsCode(() => s.recv.open(new Uint8Array(5)), 'ERR_SESSION_DECRYPT', 'short');
    assert.deepEqual(s.recv.open(m2, utf8('A')), utf8('two'));
  });

  test('nonce exhaustion: 2^64 - 1 is never used (ERR_NONCE_EXHAUSTED), for seal and open', () => {
    const key = f.init.session.kE2s;
    const a = new SessionCipher(key, SESSION_MAX_COUNTER - 1n);
    const b = new SessionCipher(key, SESSION_MAX_COUNTER - 1n);
    const last = a.seal(utf8('last'));
    assert.deepEqual(b.open(last), utf8('last'));
    assert.equal(a.counter, SESSION_MAX_COUNTER);
    throwsCode(() => a.seal(utf8('more')), 'ERR_NONCE_EXHAUSTED');
    throwsCode(() => b.open(last), 'ERR_NONCE_EXHAUSTED');
    assert.equal(a.counter, SESSION_MAX_COUNTER);
    throwsCode(() => new SessionCipher(key, SESSION_MAX_COUNTER + 1n), 'ERR_INVALID_ARG');
    throwsCode(() => new SessionCipher(key, -1n), 'ERR_INVALID_ARG');
    throwsCode(() => new SessionCipher(key, 0 as unknown as bigint), 'ERR_INVALID_ARG');
    throwsCode(() => new SessionCipher(new Uint8Array(16)), 'ERR_INVALID_ARG');
  });

  test('exportState resumes a cipher where it stopped; the cipher owns a copy of its key', () => {
    const key = Uint8Array.from(f.init.session.kS2e);
    const a = new SessionCipher(key);
    const recv = new SessionCipher(r.session.kS2e);
    key.fill(0); // the caller wiping its copy does not break the cipher
    recv.open(a.seal(utf8('1')));
    const st = a.exportState();
    assert.equal(st.counter, 1n);
    assert.deepEqual(st.key, f.init.session.kS2e);
    const resumed = new SessionCipher(st.key, st.counter);
    assert.deepEqual(recv.open(resumed.seal(utf8('2'))), utf8('2'));
    a.wipe();
    throwsCode(() => a.seal(utf8('x')), 'ERR_INVALID_ARG');
  });

  test('keys of different enrollments are unrelated', () => {
    const g = makeFixture('enroll-session-2');
    assert.ok(!equalBytes(g.init.session.kE2s, f.init.session.kE2s));
    const sealed = enrolleeSession(g.init.session).send.seal(utf8('x'));
    throwsCode(() => serviceSession(r.session).recv.open(sealed), 'ERR_SESSION_DECRYPT');
    assert.ok(isEnrollError(new EnrollError('ERR_SESSION_DECRYPT', 'x')));
  });
});
