/**
 * Noise_XX_25519_AESGCM_SHA256 (Noise Protocol Framework rev 34): replays every public
 * vector in test/vectors/third-party/noise-xx, then the state-machine rules (turns, lengths,
 * poisoning, finish, nonce exhaustion) and the no-secrets-in-output rule.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createCipheriv } from 'node:crypto';
import { inspect } from 'node:util';
import { THIRD_PARTY_VECTORS, readVectorJson } from '../helpers/paths.js';
import { EnrollError, type ErrorCode } from '../../src/errors.js';
import { fromHex, toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { aesGcmEncrypt } from '../../src/crypto/aead.js';
import { generateX25519, keyPairFromPrivate, type KeyPair } from '../../src/crypto/x25519.js';
import {
  HandshakeState,
  NOISE_MAX_MESSAGE_LEN,
  NOISE_XX_AESGCM_SHA256,
  TransportState,
  type HandshakeOptions,
  type NoiseCipher,
} from '../../src/protocol/noise/index.js';
import { CipherState, NOISE_MAX_NONCE } from '../../src/protocol/noise/cipherstate.js';
import { SymmetricState } from '../../src/protocol/noise/symmetricstate.js';
import { XX, protocolName } from '../../src/protocol/noise/patterns.js';

// ---------------------------------------------------------------------------------------
// helpers

function assertCode(fn: () => unknown, code: ErrorCode, label?: string): void {
  assert.throws(
    fn,
    (e: unknown) => {
      assert.ok(e instanceof EnrollError, `${label ?? ''}: expected EnrollError, got ${String(e)}`);
      assert.equal(e.code, code, `${label ?? ''}: ${e.message}`);
      return true;
    },
    label,
  );
}

const hex = (b: Uint8Array): string => toHex(b);

interface NoiseVector {
  protocol_name?: string;
  name?: string;
  init_prologue: string;
  resp_prologue: string;
  init_static: string;
  init_ephemeral: string;
  resp_static: string;
  resp_ephemeral: string;
  handshake_hash?: string;
  messages: { payload: string; ciphertext: string }[];
}

const NAME_RE = /^Noise_XX_25519_(AESGCM|ChaChaPoly)_SHA256$/;

// Fixed keys for the non-vector tests (the cacophony keys), so every run is deterministic.
const I_STATIC = keyPairFromPrivate(fromHex('e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1'));
const I_EPHEMERAL = keyPairFromPrivate(fromHex('893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a'));
const R_STATIC = keyPairFromPrivate(fromHex('4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893'));
const R_EPHEMERAL = keyPairFromPrivate(fromHex('bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b'));

function pair(extra: Partial<HandshakeOptions> = {}): { i: HandshakeState; r: HandshakeState } {
  return {
    i: new HandshakeState({
      initiator: true,
      staticKeyPair: I_STATIC,
      fixedEphemeralKeyForTestingOnly: I_EPHEMERAL,
      ...extra,
    }),
    r: new HandshakeState({
      initiator: false,
      staticKeyPair: R_STATIC,
      fixedEphemeralKeyForTestingOnly: R_EPHEMERAL,
      ...extra,
    }),
  };
}

/** Runs XX to completion with fixed keys and returns both transports. */
function handshake(): { i: TransportState; r: TransportState } {
  const { i, r } = pair();
  r.readMessage(i.writeMessage(utf8('m1')));
  i.readMessage(r.writeMessage(utf8('m2')));
  r.readMessage(i.writeMessage(utf8('m3')));
  return { i: i.finish(), r: r.finish() };
}

function flipBit(m: Uint8Array, byte: number, bit: number): Uint8Array {
  const c = m.slice();
  c[byte]! ^= 1 << bit;
  return c;
}

// ---------------------------------------------------------------------------------------
// public vectors (test/vectors/third-party/noise-xx)

const vectorFiles = readdirSync(join(THIRD_PARTY_VECTORS, 'noise-xx'))
  .filter((f) => f.endsWith('.json'))
  .sort();
const counts: Record<string, Record<NoiseCipher, number>> = {};

describe('Noise rev 34 public vectors (third-party/noise-xx)', () => {
  it('finds the vector files', () => {
    assert.deepEqual(vectorFiles, [
      'cacophony_XX_25519_SHA256.json',
      'noise-c-basic_XX_25519_SHA256.json',
      'ockam_XX_25519_AESGCM_SHA256.json',
      'snow_XX_25519_SHA256.json',
    ]);
  });

  for (const file of vectorFiles) {
    const vectors = readVectorJson<{ vectors: NoiseVector[] }>('noise-xx', file).vectors;
    counts[file] = { AESGCM: 0, ChaChaPoly: 0 };
    vectors.forEach((v, index) => {
      const name = v.protocol_name ?? v.name ?? '';
      const m = NAME_RE.exec(name);
      const label = `${file}#${index} ${name}`;
      it(label, () => {
        assert.ok(m, `${label}: unexpected protocol name`);
        const cipher = m[1] as NoiseCipher;
        counts[file]![cipher] += 1;
        replayVector(v, cipher, label);
      });
    });
  }

  it('replayed every AESGCM (required) and ChaChaPoly entry', (t) => {
    let aes = 0;
    let chacha = 0;
    for (const [file, c] of Object.entries(counts)) {
      t.diagnostic(`${file}: ${c.AESGCM} AESGCM, ${c.ChaChaPoly} ChaChaPoly`);
      aes += c.AESGCM;
      chacha += c.ChaChaPoly;
    }
    t.diagnostic(`total: ${aes} AESGCM, ${chacha} ChaChaPoly`);
    // Every file holds at least one AESGCM entry (README: 8 entries in all).
    for (const file of vectorFiles) assert.ok(counts[file]!.AESGCM >= 1, `${file}: no AESGCM entry replayed`);
    assert.equal(aes + chacha, 8);
  });
});

function replayVector(v: NoiseVector, cipher: NoiseCipher, label: string): void {
  const initStatic = keyPairFromPrivate(fromHex(v.init_static));
  const respStatic = keyPairFromPrivate(fromHex(v.resp_static));
  const init = new HandshakeState({
    initiator: true,
    cipher,
    prologue: fromHex(v.init_prologue),
    staticKeyPair: initStatic,
    fixedEphemeralKeyForTestingOnly: keyPairFromPrivate(fromHex(v.init_ephemeral)),
  });
  const resp = new HandshakeState({
    initiator: false,
    cipher,
    prologue: fromHex(v.resp_prologue),
    staticKeyPair: respStatic,
    fixedEphemeralKeyForTestingOnly: keyPairFromPrivate(fromHex(v.resp_ephemeral)),
  });
  const handshakeLen = XX.messagePatterns.length;
  assert.ok(v.messages.length >= handshakeLen, `${label}: fewer than ${handshakeLen} messages`);

  let ti: TransportState | undefined;
  let tr: TransportState | undefined;
  v.messages.forEach((msg, k) => {
    const at = `${label} message ${k}`;
    const payload = fromHex(msg.payload);
    const ciphertext = fromHex(msg.ciphertext);
    if (k < handshakeLen) {
      // messages[0..2]: the handshake, initiator first (§7).
      const [writer, reader] = k % 2 === 0 ? [init, resp] : [resp, init];
      assert.equal(writer.isFinished, false, at);
      assert.equal(hex(writer.writeMessage(payload)), msg.ciphertext, `${at}: writer's ciphertext`);
      assert.equal(hex(reader.readMessage(ciphertext)), msg.payload, `${at}: reader's payload`);
      if (k === handshakeLen - 1) {
        assert.equal(init.isFinished, true, at);
        assert.equal(resp.isFinished, true, at);
        const hi = init.getHandshakeHash();
        assert.equal(hex(hi), hex(resp.getHandshakeHash()), `${at}: both sides agree on h`);
        if (v.handshake_hash !== undefined) assert.equal(hex(hi), v.handshake_hash, `${at}: handshake_hash`);
        assert.equal(hex(init.remoteStaticKey!), hex(respStatic.publicKey), `${at}: initiator's rs`);
        assert.equal(hex(resp.remoteStaticKey!), hex(initStatic.publicKey), `${at}: responder's rs`);
        ti = init.finish();
        tr = resp.finish();
        assert.equal(hex(ti.handshakeHash), hex(hi), at);
        assert.equal(hex(tr.handshakeHash), hex(hi), at);
      }
    } else {
      // Transport messages alternate, responder first at index 3; the initiator sends with
      // Split()'s first CipherState, the responder with the second.
      const [writer, reader] = (k - handshakeLen) % 2 === 0 ? [tr!, ti!] : [ti!, tr!];
      assert.equal(hex(writer.encrypt(payload)), msg.ciphertext, `${at}: writer's ciphertext`);
      assert.equal(hex(reader.decrypt(ciphertext)), msg.payload, `${at}: reader's payload`);
    }
  });
}

// ---------------------------------------------------------------------------------------
// spec objects

describe('§5.2 InitializeSymmetric protocol names', () => {
  it('pads a name shorter than HASHLEN with zeros (Noise_XX_25519_AESGCM_SHA256, 28 bytes)', () => {
    assert.equal(protocolName(XX, 'AESGCM'), NOISE_XX_AESGCM_SHA256);
    const name = utf8(NOISE_XX_AESGCM_SHA256);
    assert.equal(name.length, 28);
    const expected = new Uint8Array(32);
    expected.set(name);
    assert.equal(hex(new SymmetricState(NOISE_XX_AESGCM_SHA256, 'AESGCM').getHandshakeHash()), hex(expected));
  });

  it('uses a name of exactly HASHLEN bytes as is (Noise_XX_25519_ChaChaPoly_SHA256)', () => {
    const name = utf8(protocolName(XX, 'ChaChaPoly'));
    assert.equal(name.length, 32);
    assert.equal(hex(new SymmetricState(name, 'ChaChaPoly').getHandshakeHash()), hex(name));
  });

  it('hashes a name longer than HASHLEN', () => {
    const name = 'Noise_XXfallback+psk0_25519_AESGCM_SHA256';
    assert.equal(hex(new SymmetricState(name, 'AESGCM').getHandshakeHash()), hex(sha256(utf8(name))));
  });
});

describe('§5.1 CipherState nonces (§12.3 ChaChaPoly little-endian, §12.4 AESGCM big-endian)', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
  const ad = utf8('ad');
  const pt = utf8('plaintext');
  const n = 0x0102030405060708n;

  it('AESGCM nonce is 4 zero bytes then big-endian n', () => {
    const cs = new CipherState('AESGCM');
    cs.initializeKey(key);
    cs.setNonce(n);
    const nonce = fromHex('00000000' + '0102030405060708');
    assert.equal(hex(cs.encryptWithAd(ad, pt)), hex(aesGcmEncrypt(key, nonce, pt, ad)));
    assert.equal(cs.nonce, n + 1n);
  });

  it('ChaChaPoly nonce is 4 zero bytes then little-endian n', () => {
    const cs = new CipherState('ChaChaPoly');
    cs.initializeKey(key);
    cs.setNonce(n);
    const nonce = fromHex('00000000' + '0807060504030201');
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    c.setAAD(ad, { plaintextLength: pt.length });
    const expected = Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
    assert.equal(hex(cs.encryptWithAd(ad, pt)), hex(expected));
  });

  it('an empty CipherState passes data through; a failed decrypt does not advance n', () => {
    const cs = new CipherState('AESGCM');
    assert.equal(cs.hasKey(), false);
    assert.equal(hex(cs.encryptWithAd(ad, pt)), hex(pt));
    cs.initializeKey(key);
    const sealed = cs.encryptWithAd(ad, pt);
    const rx = new CipherState('AESGCM');
    rx.initializeKey(key);
    assertCode(() => rx.decryptWithAd(ad, flipBit(sealed, 0, 0)), 'ERR_NOISE_DECRYPT');
    assert.equal(rx.nonce, 0n);
    assert.equal(hex(rx.decryptWithAd(ad, sealed)), hex(pt));
    assert.equal(rx.nonce, 1n);
  });

  it('2^64-1 is reserved: ERR_NONCE_EXHAUSTED before it is used; setNonce range-checked', () => {
    for (const cipher of ['AESGCM', 'ChaChaPoly'] as const) {
      const cs = new CipherState(cipher);
      cs.initializeKey(key);
      cs.setNonce(NOISE_MAX_NONCE - 1n);
      const sealed = cs.encryptWithAd(ad, pt);
      assert.equal(cs.nonce, NOISE_MAX_NONCE);
      assertCode(() => cs.encryptWithAd(ad, pt), 'ERR_NONCE_EXHAUSTED', cipher);
      const rx = new CipherState(cipher);
      rx.initializeKey(key);
      rx.setNonce(NOISE_MAX_NONCE - 1n);
      assert.equal(hex(rx.decryptWithAd(ad, sealed)), hex(pt));
      assertCode(() => rx.decryptWithAd(ad, sealed), 'ERR_NONCE_EXHAUSTED', cipher);
      assertCode(() => cs.setNonce(NOISE_MAX_NONCE + 1n), 'ERR_INVALID_ARG');
      assertCode(() => cs.setNonce(-1n), 'ERR_INVALID_ARG');
    }
  });
});

// ---------------------------------------------------------------------------------------
// handshake state machine

describe('HandshakeState turn order', () => {
  it('the responder cannot write first; the state is unchanged and the handshake proceeds', () => {
    const { i, r } = pair();
    assertCode(() => r.writeMessage(), 'ERR_NOISE_TURN');
    r.readMessage(i.writeMessage());
    i.readMessage(r.writeMessage());
    r.readMessage(i.writeMessage());
    assert.equal(i.isFinished && r.isFinished, true);
  });

  it('writing twice in a row is refused without poisoning', () => {
    const { i, r } = pair();
    const m1 = i.writeMessage();
    assertCode(() => i.writeMessage(), 'ERR_NOISE_TURN');
    r.readMessage(m1);
    assertCode(() => r.readMessage(m1), 'ERR_NOISE_TURN', 'responder reads twice');
    assertCode(() => r.writeMessage(), 'ERR_NOISE_POISONED', 'a failed read poisons');
  });

  it('the initiator cannot read first, and that read poisons it', () => {
    const { i, r } = pair();
    assertCode(() => i.readMessage(new Uint8Array(32)), 'ERR_NOISE_TURN');
    assertCode(() => i.writeMessage(), 'ERR_NOISE_POISONED');
    assert.equal(r.isFinished, false);
  });

  it('after the last message, write and read are ERR_NOISE_STATE', () => {
    const { i, r } = pair();
    r.readMessage(i.writeMessage());
    i.readMessage(r.writeMessage());
    const m3 = i.writeMessage();
    r.readMessage(m3);
    assertCode(() => i.writeMessage(), 'ERR_NOISE_STATE');
    assertCode(() => r.readMessage(m3), 'ERR_NOISE_STATE');
    assert.ok(i.finish() instanceof TransportState);
  });
});

describe('HandshakeState §3 message length limit (65535) and short messages', () => {
  it('writes a message of exactly 65535 bytes, refuses 65536 without poisoning', () => {
    const { i, r } = pair();
    // Message 1 is `e` (32 bytes) and a plaintext payload (no key yet).
    assertCode(() => i.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 32 + 1)), 'ERR_NOISE_TOO_LONG');
    const m1 = i.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 32).fill(7));
    assert.equal(m1.length, NOISE_MAX_MESSAGE_LEN);
    assert.equal(r.readMessage(m1).length, NOISE_MAX_MESSAGE_LEN - 32);
    // Message 2 is e (32) + encrypted s (48) + payload + tag (16).
    assertCode(() => r.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 96 + 1)), 'ERR_NOISE_TOO_LONG');
    const m2 = r.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 96));
    assert.equal(m2.length, NOISE_MAX_MESSAGE_LEN);
    i.readMessage(m2);
    assertCode(() => i.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 64 + 1)), 'ERR_NOISE_TOO_LONG');
    assert.equal(i.writeMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 64)).length, NOISE_MAX_MESSAGE_LEN);
  });

  it('reading a 65536-byte message is ERR_NOISE_TOO_LONG and poisons', () => {
    const { r } = pair();
    assertCode(() => r.readMessage(new Uint8Array(NOISE_MAX_MESSAGE_LEN + 1)), 'ERR_NOISE_TOO_LONG');
    assertCode(() => r.writeMessage(), 'ERR_NOISE_POISONED');
  });

  it('a message shorter than its tokens + tag is ERR_NOISE_SHORT and poisons', () => {
    // Minimum sizes for XX: 32 (e), 96 (e, s+tag, tag), 64 (s+tag, tag).
    {
      const { r } = pair();
      assertCode(() => r.readMessage(new Uint8Array(31)), 'ERR_NOISE_SHORT', 'message 1');
      assertCode(() => r.readMessage(new Uint8Array(32)), 'ERR_NOISE_POISONED');
    }
    {
      const { i, r } = pair();
      r.readMessage(i.writeMessage());
      const m2 = r.writeMessage();
      assert.equal(m2.length, 96);
      assertCode(() => i.readMessage(m2.subarray(0, 95)), 'ERR_NOISE_SHORT', 'message 2');
      assertCode(() => i.readMessage(m2), 'ERR_NOISE_POISONED');
    }
    {
      const { i, r } = pair();
      r.readMessage(i.writeMessage());
      i.readMessage(r.writeMessage());
      const m3 = i.writeMessage();
      assert.equal(m3.length, 64);
      assertCode(() => r.readMessage(m3.subarray(0, 63)), 'ERR_NOISE_SHORT', 'message 3');
      assertCode(() => r.readMessage(m3), 'ERR_NOISE_POISONED');
    }
  });
});

describe('HandshakeState poisoning on tampering', () => {
  const payloads = [utf8('one'), utf8('two'), utf8('three')];

  function honest(): Uint8Array[] {
    const { i, r } = pair();
    const m1 = i.writeMessage(payloads[0]);
    r.readMessage(m1);
    const m2 = r.writeMessage(payloads[1]);
    i.readMessage(m2);
    return [m1, m2, i.writeMessage(payloads[2])];
  }
  const [m1, m2, m3] = honest() as [Uint8Array, Uint8Array, Uint8Array];

  it('message 1 (unauthenticated e and payload): any flipped bit fails the initiator at message 2', () => {
    for (let b = 0; b < m1.length; b++) {
      const { i, r } = pair();
      i.writeMessage(payloads[0]);
      r.readMessage(flipBit(m1, b, b % 8)); // §7.7: message 1 has no authentication
      const forged = r.writeMessage(payloads[1]);
      assertCode(() => i.readMessage(forged), 'ERR_NOISE_DECRYPT', `m1 byte ${b}`);
      assertCode(() => i.writeMessage(), 'ERR_NOISE_POISONED', `m1 byte ${b}`);
      assertCode(() => i.readMessage(m2), 'ERR_NOISE_POISONED', `m1 byte ${b}`);
      assertCode(() => i.getHandshakeHash(), 'ERR_NOISE_POISONED', `m1 byte ${b}`);
      assertCode(() => i.finish(), 'ERR_NOISE_POISONED', `m1 byte ${b}`);
    }
  });

  it('message 2: every flipped bit is ERR_NOISE_DECRYPT, then ERR_NOISE_POISONED', () => {
    for (let b = 0; b < m2.length; b++) {
      const { i, r } = pair();
      r.readMessage(i.writeMessage(payloads[0]));
      r.writeMessage(payloads[1]);
      assertCode(() => i.readMessage(flipBit(m2, b, b % 8)), 'ERR_NOISE_DECRYPT', `m2 byte ${b}`);
      assert.equal(i.remoteStaticKey, undefined, `m2 byte ${b}: no rs from a failed handshake`);
      assertCode(() => i.readMessage(m2), 'ERR_NOISE_POISONED', `m2 byte ${b}`);
      assertCode(() => i.writeMessage(), 'ERR_NOISE_POISONED', `m2 byte ${b}`);
    }
  });

  it('message 3: every flipped bit is ERR_NOISE_DECRYPT, then ERR_NOISE_POISONED', () => {
    for (let b = 0; b < m3.length; b++) {
      const { i, r } = pair();
      r.readMessage(i.writeMessage(payloads[0]));
      i.readMessage(r.writeMessage(payloads[1]));
      i.writeMessage(payloads[2]);
      assertCode(() => r.readMessage(flipBit(m3, b, b % 8)), 'ERR_NOISE_DECRYPT', `m3 byte ${b}`);
      assert.equal(r.isFinished, false);
      assertCode(() => r.readMessage(m3), 'ERR_NOISE_POISONED', `m3 byte ${b}`);
      assertCode(() => r.finish(), 'ERR_NOISE_POISONED', `m3 byte ${b}`);
    }
  });

  it('a different prologue fails at message 2 (§6)', () => {
    const i = new HandshakeState({ initiator: true, staticKeyPair: I_STATIC, prologue: utf8('a') });
    const r = new HandshakeState({ initiator: false, staticKeyPair: R_STATIC, prologue: utf8('b') });
    r.readMessage(i.writeMessage());
    assertCode(() => i.readMessage(r.writeMessage()), 'ERR_NOISE_DECRYPT');
    assertCode(() => i.writeMessage(), 'ERR_NOISE_POISONED');
  });

  // u = 0 and u = 1 are low-order points: X25519 with them is all zeros (RFC 7748 §6.1).
  for (const [lowName, low] of [
    ['u=0', new Uint8Array(32)],
    ['u=1', fromHex('01'.padEnd(64, '0'))],
  ] as const) {
    it(`a low-order e in message 1 (${lowName}) is ERR_DH_ZERO at the responder's ee, and poisons`, () => {
      const { r } = pair();
      const m = new Uint8Array(32);
      m.set(low);
      r.readMessage(m); // message 1 carries no DH: the check comes with ee in message 2
      assertCode(() => r.writeMessage(), 'ERR_DH_ZERO');
      assertCode(() => r.writeMessage(), 'ERR_NOISE_POISONED');
    });

    it(`a low-order e in message 2 (${lowName}) is ERR_DH_ZERO at the initiator, and poisons`, () => {
      const { i, r } = pair();
      r.readMessage(i.writeMessage());
      const m = r.writeMessage().slice();
      m.set(low, 0);
      assertCode(() => i.readMessage(m), 'ERR_DH_ZERO');
      assertCode(() => i.readMessage(m), 'ERR_NOISE_POISONED');
    });
  }
});

describe('HandshakeState finish() and remoteStaticKey', () => {
  it('finish() before the last message is ERR_NOISE_STATE and does not poison', () => {
    const { i, r } = pair();
    assertCode(() => i.finish(), 'ERR_NOISE_STATE', 'initiator, start');
    assertCode(() => r.finish(), 'ERR_NOISE_STATE', 'responder, start');
    r.readMessage(i.writeMessage());
    assertCode(() => i.finish(), 'ERR_NOISE_STATE', 'initiator, after 1');
    assertCode(() => r.finish(), 'ERR_NOISE_STATE', 'responder, after 1');
    i.readMessage(r.writeMessage());
    assertCode(() => i.finish(), 'ERR_NOISE_STATE', 'initiator, after 2');
    const m3 = i.writeMessage();
    assertCode(() => r.finish(), 'ERR_NOISE_STATE', 'responder, after 2');
    r.readMessage(m3);
    assert.ok(i.finish() instanceof TransportState);
    assert.ok(r.finish() instanceof TransportState);
  });

  it('finish() consumes the HandshakeState: every later call is ERR_NOISE_STATE', () => {
    const { i, r } = pair();
    r.readMessage(i.writeMessage());
    i.readMessage(r.writeMessage());
    r.readMessage(i.writeMessage());
    const h = i.getHandshakeHash();
    const t = i.finish();
    assert.equal(hex(t.handshakeHash), hex(h));
    assertCode(() => i.finish(), 'ERR_NOISE_STATE', 'finish twice');
    assertCode(() => i.writeMessage(), 'ERR_NOISE_STATE');
    assertCode(() => i.readMessage(new Uint8Array(64)), 'ERR_NOISE_STATE');
    assertCode(() => i.getHandshakeHash(), 'ERR_NOISE_STATE');
    assert.equal(i.isFinished, true);
    assert.ok(r.finish() instanceof TransportState);
  });

  it('remoteStaticKey appears once the peer\'s s token is read, and is a copy', () => {
    const { i, r } = pair();
    assert.equal(i.remoteStaticKey, undefined);
    assert.equal(r.remoteStaticKey, undefined);
    r.readMessage(i.writeMessage());
    assert.equal(r.remoteStaticKey, undefined);
    i.readMessage(r.writeMessage());
    assert.equal(hex(i.remoteStaticKey!), hex(R_STATIC.publicKey));
    assert.equal(r.remoteStaticKey, undefined);
    r.readMessage(i.writeMessage());
    assert.equal(hex(r.remoteStaticKey!), hex(I_STATIC.publicKey));
    i.remoteStaticKey!.fill(0);
    assert.equal(hex(i.remoteStaticKey!), hex(R_STATIC.publicKey));
    const ti = i.finish();
    const tr = r.finish();
    assert.equal(hex(ti.remoteStaticKey), hex(R_STATIC.publicKey));
    assert.equal(hex(tr.remoteStaticKey), hex(I_STATIC.publicKey));
    assert.equal(ti.initiator, true);
    assert.equal(tr.initiator, false);
  });

  it('rejects bad options and payloads with ERR_INVALID_ARG', () => {
    assertCode(
      () =>
        new HandshakeState({
          initiator: true,
          staticKeyPair: { publicKey: new Uint8Array(31), privateKey: new Uint8Array(32) },
        }),
      'ERR_INVALID_ARG',
    );
    assertCode(
      () => new HandshakeState({ initiator: true, staticKeyPair: I_STATIC, cipher: 'AES' as NoiseCipher }),
      'ERR_INVALID_ARG',
    );
    const { i } = pair();
    assertCode(() => i.writeMessage('x' as unknown as Uint8Array), 'ERR_INVALID_ARG');
  });
});

describe('random (non-fixed) handshake round trip', () => {
  for (const cipher of ['AESGCM', 'ChaChaPoly'] as const) {
    it(`${cipher}: fresh statics and ephemerals, payloads, transport both ways`, () => {
      const si = generateX25519();
      const sr = generateX25519();
      const prologue = utf8('ockam-enroll test');
      const i = new HandshakeState({ initiator: true, staticKeyPair: si, prologue, cipher });
      const r = new HandshakeState({ initiator: false, staticKeyPair: sr, prologue, cipher });
      assert.equal(hex(r.readMessage(i.writeMessage(utf8('hello')))), hex(utf8('hello')));
      assert.equal(hex(i.readMessage(r.writeMessage(utf8('bundle')))), hex(utf8('bundle')));
      assert.equal(hex(r.readMessage(i.writeMessage(utf8('card')))), hex(utf8('card')));
      const ti = i.finish();
      const tr = r.finish();
      assert.equal(hex(ti.handshakeHash), hex(tr.handshakeHash));
      assert.equal(hex(ti.remoteStaticKey), hex(sr.publicKey));
      assert.equal(hex(tr.remoteStaticKey), hex(si.publicKey));
      for (let n = 0; n < 5; n++) {
        const a = utf8(`i->r ${n}`);
        const b = utf8(`r->i ${n}`);
        const ca = ti.encrypt(a);
        assert.equal(ca.length, a.length + 16);
        assert.equal(hex(tr.decrypt(ca)), hex(a));
        assert.equal(hex(ti.decrypt(tr.encrypt(b))), hex(b));
      }
      // The two directions use different keys: the initiator's message does not open as
      // the responder's own.
      const own = ti.encrypt(utf8('x'));
      assertCode(() => ti.decrypt(own), 'ERR_NOISE_DECRYPT');
    });
  }

  it('each handshake draws a new ephemeral from `random`', () => {
    const a = new HandshakeState({ initiator: true, staticKeyPair: I_STATIC }).writeMessage();
    const b = new HandshakeState({ initiator: true, staticKeyPair: I_STATIC }).writeMessage();
    assert.notEqual(hex(a), hex(b));
    let calls = 0;
    const fixed = fromHex('893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a');
    const random = (n: number): Uint8Array => {
      calls++;
      assert.equal(n, 32);
      return fixed.slice();
    };
    const c = new HandshakeState({ initiator: true, staticKeyPair: I_STATIC, random }).writeMessage();
    assert.equal(calls, 1);
    assert.equal(hex(c), hex(I_EPHEMERAL.publicKey), 'e comes from `random`');
  });
});

// ---------------------------------------------------------------------------------------
// transport

describe('TransportState', () => {
  it('a failed decrypt is ERR_NOISE_DECRYPT and poisons both directions', () => {
    const { i, r } = handshake();
    const c = i.encrypt(utf8('hi'));
    assertCode(() => r.decrypt(flipBit(c, c.length - 1, 3)), 'ERR_NOISE_DECRYPT');
    assert.equal(r.isPoisoned, true);
    assertCode(() => r.decrypt(c), 'ERR_NOISE_POISONED');
    assertCode(() => r.encrypt(utf8('x')), 'ERR_NOISE_POISONED');
    assertCode(() => r.setNoncesForTestingOnly({ receive: 0n }), 'ERR_NOISE_POISONED');
  });

  it('a replayed message fails (the receive nonce moved on) and poisons', () => {
    const { i, r } = handshake();
    const c = i.encrypt(utf8('once'));
    r.decrypt(c);
    assertCode(() => r.decrypt(c), 'ERR_NOISE_DECRYPT');
    assertCode(() => r.decrypt(i.encrypt(utf8('next'))), 'ERR_NOISE_POISONED');
  });

  it('messages shorter than a tag are ERR_NOISE_SHORT and poison', () => {
    const { r } = handshake();
    assertCode(() => r.decrypt(new Uint8Array(15)), 'ERR_NOISE_SHORT');
    assertCode(() => r.encrypt(new Uint8Array(1)), 'ERR_NOISE_POISONED');
  });

  it('§3 limit: 65535 bytes with the tag; longer is ERR_NOISE_TOO_LONG (decrypt poisons)', () => {
    const { i, r } = handshake();
    assertCode(() => i.encrypt(new Uint8Array(NOISE_MAX_MESSAGE_LEN - 16 + 1)), 'ERR_NOISE_TOO_LONG');
    const big = new Uint8Array(NOISE_MAX_MESSAGE_LEN - 16).fill(0xab);
    const c = i.encrypt(big);
    assert.equal(c.length, NOISE_MAX_MESSAGE_LEN);
    assert.equal(hex(r.decrypt(c)), hex(big));
    assertCode(() => r.decrypt(new Uint8Array(NOISE_MAX_MESSAGE_LEN + 1)), 'ERR_NOISE_TOO_LONG');
    assertCode(() => r.decrypt(c), 'ERR_NOISE_POISONED');
  });

  it('nonce exhaustion: n = 2^64-2 is the last usable nonce, then ERR_NONCE_EXHAUSTED', () => {
    const { i, r } = handshake();
    i.setNoncesForTestingOnly({ send: NOISE_MAX_NONCE - 1n });
    r.setNoncesForTestingOnly({ receive: NOISE_MAX_NONCE - 1n });
    const c = i.encrypt(utf8('last'));
    assert.equal(hex(r.decrypt(c)), hex(utf8('last')));
    assertCode(() => i.encrypt(utf8('one more')), 'ERR_NONCE_EXHAUSTED');
    assertCode(() => i.encrypt(utf8('one more')), 'ERR_NONCE_EXHAUSTED', 'stays exhausted');
    // The other direction has its own counter and still works.
    assert.equal(hex(i.decrypt(r.encrypt(utf8('back')))), hex(utf8('back')));
    assertCode(() => r.decrypt(c), 'ERR_NONCE_EXHAUSTED');
    assertCode(() => r.decrypt(c), 'ERR_NOISE_POISONED');
  });
});

// ---------------------------------------------------------------------------------------
// no key material in output

describe('no key material in toJSON / util.inspect / String', () => {
  const secrets = (kps: KeyPair[]): string[] => kps.map((k) => hex(k.privateKey));

  it('HandshakeState, TransportState, SymmetricState and CipherState print no keys', () => {
    const { i, r } = pair();
    const outputs: string[] = [];
    const show = (o: object): void => {
      outputs.push(JSON.stringify(o), inspect(o, { showHidden: true, depth: 10 }), String(o));
    };
    show(i);
    r.readMessage(i.writeMessage());
    i.readMessage(r.writeMessage());
    show(i);
    r.readMessage(i.writeMessage());
    show(r);
    const ti = i.finish();
    show(ti);
    const key = Uint8Array.from({ length: 32 }, (_, k) => 0xa0 + (k % 16));
    const cs = new CipherState('AESGCM');
    cs.initializeKey(key);
    show(cs);
    show(new SymmetricState(NOISE_XX_AESGCM_SHA256, 'AESGCM'));
    const all = outputs.join('\n');
    for (const s of [...secrets([I_STATIC, I_EPHEMERAL, R_STATIC, R_EPHEMERAL]), hex(key)]) {
      assert.equal(all.includes(s), false, 'secret printed');
    }
    assert.ok(all.includes(hex(R_STATIC.publicKey)), 'the remote public key is shown');
  });
});
