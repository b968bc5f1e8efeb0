/**
 * The v1 encodings (src/protocol/codec): the byte reader and writer, base32 (RFC 4648 §10
 * vectors), the bundle and card layouts byte by byte, bundle verification (every field
 * tampered, expiry, pinned IK_A), the text form (every truncation, every mistyped
 * character, wrong prefixes) and seeded fuzzing: decoders throw only EnrollError.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { concat, toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import type { RandomSource } from '../../src/crypto/random.js';
import { generateX25519, type KeyPair } from '../../src/crypto/x25519.js';
import { xeddsaSign, xeddsaVerify } from '../../src/crypto/xeddsa.js';
import { EnrollError, isEnrollError, type ErrorCode } from '../../src/errors.js';
import { BASE32_ALPHABET, base32Decode, base32Encode } from '../../src/protocol/codec/base32.js';
import {
  BUNDLE_MAX_LEN,
  BUNDLE_MIN_LEN,
  BUNDLE_SIG_CONTEXT,
  decodeBundle,
  encodeBundle,
  signBundle,
  bundleSigner,
  signSpk,
  verifyBundle,
  type Bundle,
  type BundleSigner,
} from '../../src/protocol/codec/bundle.js';
import { CARD_MAX_LEN, decodeCard, encodeCard, type EnrolleeCard } from '../../src/protocol/codec/card.js';
import * as codecIndex from '../../src/protocol/codec/index.js';
import { ByteReader } from '../../src/protocol/codec/reader.js';
import {
  BUNDLE_TEXT_PREFIX,
  CARD_TEXT_PREFIX,
  TEXT_MAX_INPUT,
  bundleFromText,
  bundleToText,
  cardFromText,
  cardToText,
  decodeText,
  encodeText,
} from '../../src/protocol/codec/text.js';
import { ByteWriter, strictUtf8 } from '../../src/protocol/codec/writer.js';
import { seededDrbg } from '../vectors/generate-enrollment-v1.js';

function throwsCode(fn: () => unknown, code: ErrorCode, message?: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof EnrollError, `expected EnrollError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  });
}

/** Runs fn; it must return normally or throw an EnrollError, nothing else. */
function onlyEnrollError(fn: () => unknown, label: string): void {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof EnrollError, `${label}: threw ${String(e)}`);
  }
}

const NOW = 1_800_000_000;

interface Service {
  ikA: KeyPair;
  spkA: KeyPair;
  opkA: KeyPair;
  random: RandomSource;
}

function makeService(seed: string): Service {
  const random = seededDrbg(seed);
  return { ikA: generateX25519(random), spkA: generateX25519(random), opkA: generateX25519(random), random };
}

/** The fields of a bundle from `s`, before signing. */
function bundleFields(s: Service, over: Partial<Omit<Bundle, 'version' | 'signature'>> = {}): Omit<Bundle, 'version' | 'signature'> {
  return {
    bundleId: s.random(16),
    ikA: s.ikA.publicKey,
    spkA: s.spkA.publicKey,
    spkSig: signSpk(s.ikA.privateKey, s.spkA.publicKey, s.random),
    opkA: s.opkA.publicKey,
    expiresAt: NOW + 3600,
    addr: 'tcp://127.0.0.1:4000',
    ...over,
  };
}

function makeBundle(s: Service, over: Partial<Omit<Bundle, 'version' | 'signature'>> = {}): Bundle {
  return signBundle(bundleFields(s, over), s.ikA.privateKey, s.random);
}

describe('codec index', () => {
  test('re-exports the codec API', () => {
    for (const name of ['decodeBundle', 'encodeBundle', 'signBundle', 'bundleSigner', 'verifyBundle', 'decodeCard', 'encodeCard',
      'bundleToText', 'bundleFromText', 'cardToText', 'cardFromText', 'encodeText', 'decodeText', 'ByteReader', 'ByteWriter']) {
      assert.equal(typeof (codecIndex as Record<string, unknown>)[name], 'function', name);
    }
  });
});

describe('ByteReader / ByteWriter', () => {
  test('round trip of every field type', () => {
    const bytes = new ByteWriter()
      .u8(0xab, 'a')
      .u16be(0x1234, 'b')
      .u64be(Number.MAX_SAFE_INTEGER, 'c')
      .bytes(Uint8Array.of(1, 2, 3), 3, 'd')
      .utf8('hé🤖', 'e')
      .finish();
    assert.equal(toHex(bytes), 'ab1234001fffffffffffff010203' + toHex(utf8('hé🤖')));
    const r = new ByteReader(bytes, 'ERR_DECODE', 'test');
    assert.equal(r.u8('a'), 0xab);
    assert.equal(r.u16be('b'), 0x1234);
    assert.equal(r.u64be('c'), Number.MAX_SAFE_INTEGER);
    const d = r.bytes(3, 'd');
    assert.deepEqual(d, Uint8Array.of(1, 2, 3));
    assert.equal(r.utf8(utf8('hé🤖').length, 'e'), 'hé🤖');
    r.end();
    // bytes() copies: changing the input does not change what was read.
    bytes[14] = 0xff;
    assert.deepEqual(d, Uint8Array.of(1, 2, 3));
  });

  test('short input, trailing bytes, a u64 above 2^53 - 1 and bad UTF-8 throw the caller code', () => {
    throwsCode(() => new ByteReader(new Uint8Array(0), 'ERR_CARD_MALFORMED', 'card').u8('x'), 'ERR_CARD_MALFORMED', /truncated at "x"/);
    throwsCode(() => new ByteReader(new Uint8Array(1), 'ERR_CARD_MALFORMED', 'card').u16be('x'), 'ERR_CARD_MALFORMED');
    throwsCode(() => new ByteReader(new Uint8Array(7), 'ERR_BUNDLE_MALFORMED', 'b').u64be('x'), 'ERR_BUNDLE_MALFORMED');
    throwsCode(() => new ByteReader(new Uint8Array(2), 'ERR_BUNDLE_MALFORMED', 'b').bytes(3, 'x'), 'ERR_BUNDLE_MALFORMED');
    throwsCode(
      () => new ByteReader(Uint8Array.of(0, 0x20, 0, 0, 0, 0, 0, 0), 'ERR_BUNDLE_MALFORMED', 'b').u64be('t'),
      'ERR_BUNDLE_MALFORMED',
      /2\^53/,
    );
    const r = new ByteReader(new Uint8Array(3), 'ERR_DECODE', 't');
    r.u8('a');
    throwsCode(() => r.end(), 'ERR_DECODE', /2 trailing bytes/);
    for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0xff]]) {
      throwsCode(() => new ByteReader(Uint8Array.from(bad), 'ERR_DECODE', 't').utf8(bad.length, 's'), 'ERR_DECODE', /UTF-8/);
    }
    // A leading BOM is a character, not dropped: decode → encode must give the same bytes.
    const bom = utf8('\uFEFFx');
    assert.equal(new ByteReader(bom, 'ERR_DECODE', 't').utf8(bom.length, 's'), '\uFEFFx');
  });

  test('writer refuses out-of-range values and lone surrogates (ERR_INVALID_ARG)', () => {
    throwsCode(() => new ByteWriter().u8(256, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => new ByteWriter().u8(-1, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => new ByteWriter().u16be(65536, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => new ByteWriter().u64be(2 ** 53, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => new ByteWriter().u64be(1.5, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => new ByteWriter().bytes(new Uint8Array(2), 3, 'x'), 'ERR_INVALID_ARG');
    throwsCode(() => strictUtf8('a\uD800b', 'x'), 'ERR_INVALID_ARG', /surrogate/);
    assert.deepEqual(strictUtf8('🤖', 'x'), Uint8Array.of(0xf0, 0x9f, 0xa4, 0x96));
  });
});

describe('base32 (RFC 4648 §6, no padding)', () => {
  // RFC 4648 §10 test vectors, padding removed.
  for (const [plain, enc] of [['', ''], ['f', 'MY'], ['fo', 'MZXQ'], ['foo', 'MZXW6'], ['foob', 'MZXW6YQ'], ['fooba', 'MZXW6YTB'], ['foobar', 'MZXW6YTBOI']]) {
    test(`RFC 4648 §10: BASE32("${plain}") = "${enc}"`, () => {
      assert.equal(base32Encode(utf8(plain!)), enc);
      assert.deepEqual(base32Decode(enc!), utf8(plain!));
    });
  }

  test('round trips 0..200 seeded bytes; impossible lengths and non-zero pad bits are refused', () => {
    const random = seededDrbg('base32');
    for (let n = 0; n <= 200; n++) {
      const b = random(n);
      const s = base32Encode(b);
      assert.equal(s.length, Math.ceil((n * 8) / 5));
      assert.deepEqual(base32Decode(s), b);
    }
    for (const s of ['A', 'AAA', 'AAAAAA', 'AAAAAAAAA']) assert.equal(base32Decode(s), undefined);
    // "MY" = 'f' with 2 zero pad bits; "MZ" sets a pad bit.
    assert.equal(base32Decode('MZ'), undefined);
    assert.equal(base32Decode('my'), undefined);
    assert.equal(BASE32_ALPHABET.length, 32);
  });
});

describe('bundle v1', () => {
  const s = makeService('codec-bundle');
  const bundle = makeBundle(s);
  const enc = encodeBundle(bundle);

  test('layout: version | id | IK_A | SPK_A | SPK_sig | OPK_A | expires_at | addr_len | Addr | bundle_sig', () => {
    const addr = utf8(bundle.addr);
    assert.equal(enc.length, BUNDLE_MIN_LEN + addr.length);
    assert.equal(BUNDLE_MIN_LEN, 251);
    assert.equal(BUNDLE_MAX_LEN, 763);
    const expires = new Uint8Array(8);
    new DataView(expires.buffer).setBigUint64(0, BigInt(bundle.expiresAt));
    const signed = concat(
      Uint8Array.of(1),
      bundle.bundleId,
      s.ikA.publicKey,
      s.spkA.publicKey,
      bundle.spkSig,
      s.opkA.publicKey,
      expires,
      Uint8Array.of(addr.length >> 8, addr.length & 0xff),
      addr,
    );
    assert.equal(toHex(enc), toHex(concat(signed, bundle.signature)));
    // bundle_sig covers the context label and every preceding byte; SPK_sig covers SPK_A.
    assert.equal(toHex(BUNDLE_SIG_CONTEXT), toHex(utf8('ockam-enroll/v1/bundle')));
    assert.ok(xeddsaVerify(s.ikA.publicKey, concat(BUNDLE_SIG_CONTEXT, signed), bundle.signature));
    assert.ok(xeddsaVerify(s.ikA.publicKey, s.spkA.publicKey, bundle.spkSig));
  });

  test('decode(encode(b)) gives back every field, and it verifies', () => {
    const d = decodeBundle(enc);
    assert.deepEqual(d, bundle);
    assert.equal(verifyBundle(d, { now: NOW }), d);
    assert.equal(verifyBundle(d, { now: NOW, ikA: s.ikA.publicKey }), d);
    assert.deepEqual(encodeBundle(d), enc);
  });

  test('Addr edge cases round trip: empty, 512 bytes of multi-byte UTF-8, a leading BOM', () => {
    let long = '';
    while (utf8(long).length + 3 <= 512) long += 'ロ';
    while (utf8(long).length < 512) long += 'a';
    for (const addr of ['', long, '\uFEFFtcp://x:1']) {
      const b = makeBundle(s, { addr });
      const d = decodeBundle(encodeBundle(b));
      assert.equal(d.addr, addr);
      verifyBundle(d, { now: NOW });
    }
    throwsCode(() => makeBundle(s, { addr: long + 'a' }), 'ERR_INVALID_ARG', /at most 512/);
  });

  test('a prepared bundleSigner signs byte for byte as the private key does, and is checked the same way', () => {
    const fields = bundleFields(s);
    const Z = s.random(64);
    const signer = bundleSigner(s.ikA.privateKey);
    assert.deepEqual(encodeBundle(signBundle(fields, signer, Z)), encodeBundle(signBundle(fields, s.ikA.privateKey, Z)));
    verifyBundle(signBundle(fields, signer), { now: NOW });
    throwsCode(() => signBundle({ ...fields, ikA: s.spkA.publicKey }, signer), 'ERR_INVALID_ARG', /ikA/);
    throwsCode(() => bundleSigner(new Uint8Array(31)), 'ERR_INVALID_ARG', /ikAPrivate/);
    throwsCode(() => signBundle(fields, { ikA: s.ikA.publicKey } as unknown as BundleSigner), 'ERR_INVALID_ARG', /bundleSigner/);
    throwsCode(() => signBundle(fields, 'key' as unknown as Uint8Array), 'ERR_INVALID_ARG', /bundleSigner/);
  });

  test('signBundle refuses an IK_A that is not the signing key, and bad field sizes', () => {
    throwsCode(() => makeBundle(s, { ikA: s.spkA.publicKey }), 'ERR_INVALID_ARG', /ikA/);
    throwsCode(() => makeBundle(s, { bundleId: new Uint8Array(15) }), 'ERR_INVALID_ARG', /bundleId/);
    throwsCode(() => makeBundle(s, { expiresAt: -1 }), 'ERR_INVALID_ARG', /expiresAt/);
  });

  test('each field tampered in the object → ERR_BUNDLE_SIGNATURE', () => {
    const other = makeService('codec-other');
    const tampered: [string, Bundle][] = [
      ['bundleId', { ...bundle, bundleId: other.random(16) }],
      ['ikA', { ...bundle, ikA: other.ikA.publicKey }],
      ['spkA', { ...bundle, spkA: other.spkA.publicKey }],
      ['spkSig', { ...bundle, spkSig: signSpk(other.ikA.privateKey, s.spkA.publicKey, other.random) }],
      ['opkA', { ...bundle, opkA: other.opkA.publicKey }],
      ['expiresAt', { ...bundle, expiresAt: bundle.expiresAt + 1 }],
      ['addr', { ...bundle, addr: 'tcp://127.0.0.1:4001' }],
      ['signature', { ...bundle, signature: xeddsaSign(s.ikA.privateKey, utf8('something else'), s.random) }],
    ];
    const isSig = (e: unknown): boolean => isEnrollError(e, 'ERR_BUNDLE_SIGNATURE');
    for (const [field, b] of tampered) {
      assert.throws(() => verifyBundle(b, { now: NOW }), isSig, field);
      assert.throws(() => verifyBundle(decodeBundle(encodeBundle(b)), { now: NOW }), isSig, `${field} (encoded)`);
    }
  });

  test('a bundle_sig that verifies over a bad SPK_sig still fails (ERR_BUNDLE_SIGNATURE, SPK_sig)', () => {
    const b = makeBundle(s, { spkSig: signSpk(s.ikA.privateKey, s.opkA.publicKey, s.random) });
    throwsCode(() => verifyBundle(b, { now: NOW }), 'ERR_BUNDLE_SIGNATURE', /SPK_sig/);
  });

  test('one flipped bit in every byte of the encoding is refused with its own code', () => {
    // expires_at = 2^40 + x: flipping any bit of bytes 1..7 leaves it far above NOW = 1000
    // (so never "expired"); flipping bit 56 (byte 0) exceeds 2^53 - 1.
    const b = makeBundle(s, { expiresAt: 2 ** 40 + 1_893_456_000 });
    const e = encodeBundle(b);
    const addrStart = 1 + 16 + 32 + 32 + 64 + 32 + 8 + 2;
    const counts = new Map<string, number>();
    for (let i = 0; i < e.length; i++) {
      const x = Uint8Array.from(e);
      x[i]! ^= 1;
      let expected: ErrorCode = 'ERR_BUNDLE_SIGNATURE';
      if (i === 0) expected = 'ERR_BUNDLE_VERSION';
      else if (i === 177) expected = 'ERR_BUNDLE_MALFORMED'; // expires_at bit 56
      else if (i === addrStart - 2 || i === addrStart - 1) expected = 'ERR_BUNDLE_MALFORMED'; // addr_len
      throwsCode(() => verifyBundle(decodeBundle(x), { now: 1000 }), expected);
      counts.set(expected, (counts.get(expected) ?? 0) + 1);
    }
    assert.equal(counts.get('ERR_BUNDLE_VERSION'), 1);
    assert.equal(counts.get('ERR_BUNDLE_MALFORMED'), 3);
    assert.equal(counts.get('ERR_BUNDLE_SIGNATURE'), e.length - 4);
  });

  test('expiry: refused at and after expires_at (ERR_BUNDLE_EXPIRED), and checked before signatures', () => {
    verifyBundle(bundle, { now: bundle.expiresAt - 1 });
    throwsCode(() => verifyBundle(bundle, { now: bundle.expiresAt }), 'ERR_BUNDLE_EXPIRED');
    throwsCode(() => verifyBundle(bundle, { now: bundle.expiresAt + 10 }), 'ERR_BUNDLE_EXPIRED');
    const forged = { ...bundle, signature: new Uint8Array(64) };
    throwsCode(() => verifyBundle(forged, { now: bundle.expiresAt }), 'ERR_BUNDLE_EXPIRED');
  });

  test('pinned IK_A mismatch → ERR_BUNDLE_SIGNATURE, even for a well-signed bundle', () => {
    const mallory = makeService('codec-mallory');
    const b = makeBundle(mallory);
    verifyBundle(b, { now: NOW });
    throwsCode(() => verifyBundle(b, { now: NOW, ikA: s.ikA.publicKey }), 'ERR_BUNDLE_SIGNATURE', /pinned/);
  });

  test('verifyBundle argument checks', () => {
    throwsCode(() => verifyBundle(bundle, { now: Number.NaN }), 'ERR_INVALID_ARG');
    throwsCode(() => verifyBundle(bundle, { now: NOW, ikA: new Uint8Array(31) }), 'ERR_INVALID_ARG');
    throwsCode(() => verifyBundle({ ...bundle, version: 3 as 1 }, { now: NOW }), 'ERR_BUNDLE_VERSION');
    // A v1 object labelled 2 lacks KEM_hash: refused, never verified as either version.
    throwsCode(() => verifyBundle({ ...bundle, version: 2 as 1 }, { now: NOW }), 'ERR_BUNDLE_MALFORMED', /kemHash/);
    throwsCode(() => verifyBundle({ ...bundle, opkA: new Uint8Array(31) }, { now: NOW }), 'ERR_BUNDLE_MALFORMED');
    throwsCode(() => verifyBundle({ ...bundle, addr: 'x'.repeat(513) }, { now: NOW }), 'ERR_BUNDLE_MALFORMED');
  });

  test('structure errors: version, addr_len > 512, bad UTF-8, trailing bytes, every truncation', () => {
    throwsCode(() => decodeBundle(new Uint8Array(0)), 'ERR_BUNDLE_MALFORMED');
    const v3 = Uint8Array.from(enc);
    v3[0] = 3;
    throwsCode(() => decodeBundle(v3), 'ERR_BUNDLE_VERSION', /version 3/);
    throwsCode(() => decodeBundle(Uint8Array.of(0)), 'ERR_BUNDLE_VERSION');
    throwsCode(() => decodeBundle(concat(enc, Uint8Array.of(0))), 'ERR_BUNDLE_MALFORMED', /trailing/);
    for (let n = 1; n < enc.length; n++) throwsCode(() => decodeBundle(enc.subarray(0, n)), 'ERR_BUNDLE_MALFORMED');

    const head = enc.subarray(0, BUNDLE_MIN_LEN - 64 - 2);
    const withAddr = (len: number, addr: Uint8Array): Uint8Array =>
      concat(head, Uint8Array.of(len >> 8, len & 0xff), addr, new Uint8Array(64));
    throwsCode(() => decodeBundle(withAddr(513, new Uint8Array(513).fill(0x61))), 'ERR_BUNDLE_MALFORMED');
    throwsCode(() => decodeBundle(withAddr(2, Uint8Array.of(0xc3, 0x28))), 'ERR_BUNDLE_MALFORMED', /UTF-8/);
    assert.equal(decodeBundle(withAddr(2, Uint8Array.of(0xc3, 0xa9))).addr, 'é');
    const hugeExpiry = Uint8Array.from(enc);
    hugeExpiry.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 177);
    throwsCode(() => decodeBundle(hugeExpiry), 'ERR_BUNDLE_MALFORMED', /expires_at/);
  });
});

describe('enrollee card v1', () => {
  const random = seededDrbg('codec-card');
  const eikB = generateX25519(random).publicKey;
  const bundleId = random(16);

  test('layout with and without bundle_id and pet name', () => {
    assert.equal(toHex(encodeCard({ version: 1, eikB })), toHex(concat(Uint8Array.of(1), eikB, Uint8Array.of(0, 0))));
    const pet = utf8('robot-7 🤖');
    assert.equal(
      toHex(encodeCard({ version: 1, eikB, bundleId, petName: 'robot-7 🤖' })),
      toHex(concat(Uint8Array.of(1), eikB, Uint8Array.of(1), bundleId, Uint8Array.of(pet.length), pet)),
    );
  });

  test('round trips; an empty pet name decodes as absent', () => {
    const cards: EnrolleeCard[] = [
      { version: 1, eikB },
      { version: 1, eikB, bundleId },
      { version: 1, eikB, petName: 'x' },
      { version: 1, eikB, bundleId, petName: 'ü'.repeat(32) },
    ];
    for (const c of cards) assert.deepEqual(decodeCard(encodeCard(c)), c);
    assert.deepEqual(decodeCard(encodeCard({ version: 1, eikB, petName: '' })), { version: 1, eikB });
    assert.equal(encodeCard(cards[3]!).length, CARD_MAX_LEN);
  });

  test('encodeCard refuses bad pet names and sizes (ERR_INVALID_ARG)', () => {
    throwsCode(() => encodeCard({ version: 1, eikB, petName: 'a'.repeat(65) }), 'ERR_INVALID_ARG', /at most 64/);
    throwsCode(() => encodeCard({ version: 1, eikB, petName: 'evil\u001b[2J' }), 'ERR_INVALID_ARG', /U\+001B/);
    throwsCode(() => encodeCard({ version: 1, eikB: new Uint8Array(31) }), 'ERR_INVALID_ARG');
    throwsCode(() => encodeCard({ version: 1, eikB, bundleId: new Uint8Array(8) }), 'ERR_INVALID_ARG');
  });

  test('decodeCard refuses every structural fault with ERR_CARD_MALFORMED', () => {
    const enc = encodeCard({ version: 1, eikB, bundleId, petName: 'robot' });
    throwsCode(() => decodeCard(new Uint8Array(0)), 'ERR_CARD_MALFORMED');
    for (let n = 1; n < enc.length; n++) throwsCode(() => decodeCard(enc.subarray(0, n)), 'ERR_CARD_MALFORMED');
    throwsCode(() => decodeCard(concat(enc, Uint8Array.of(0))), 'ERR_CARD_MALFORMED', /trailing/);
    const v2 = Uint8Array.from(enc);
    v2[0] = 2;
    throwsCode(() => decodeCard(v2), 'ERR_CARD_MALFORMED', /version 2/);
    const hb = Uint8Array.from(enc);
    hb[33] = 2;
    throwsCode(() => decodeCard(hb), 'ERR_CARD_MALFORMED', /has_bundle/);
    const base = concat(Uint8Array.of(1), eikB, Uint8Array.of(0));
    const withPet = (b: number[]): Uint8Array => concat(base, Uint8Array.of(b.length), Uint8Array.from(b));
    throwsCode(() => decodeCard(concat(base, Uint8Array.of(65), new Uint8Array(65).fill(0x61))), 'ERR_CARD_MALFORMED');
    throwsCode(() => decodeCard(withPet([0xc3])), 'ERR_CARD_MALFORMED', /UTF-8/);
    // C0, DEL, C1 (U+0085), line separator, bidi override: all refused.
    for (const cp of [0x00, 0x0a, 0x1b, 0x7f, 0x85, 0x2028, 0x202e, 0x2066]) {
      throwsCode(() => decodeCard(withPet([...utf8(`a${String.fromCodePoint(cp)}b`)])), 'ERR_CARD_MALFORMED', /control character/);
    }
    assert.equal(decodeCard(withPet([...utf8('Robot Nº 7 — hall B')])).petName, 'Robot Nº 7 — hall B');
  });
});

describe('text form', () => {
  const s = makeService('codec-text');
  const bundle = makeBundle(s);
  const bText = bundleToText(bundle);
  const card: EnrolleeCard = { version: 1, eikB: generateX25519(s.random).publicKey, bundleId: bundle.bundleId, petName: 'robot-7' };
  const cText = cardToText(card);
  const alphabet = new Set(BASE32_ALPHABET);

  test('format: PREFIX ‖ BASE32(payload ‖ SHA-256(PREFIX ‖ payload)[0..4]), QR alphanumeric only', () => {
    const payload = encodeBundle(bundle);
    const sum = sha256(utf8('OEB1:'), payload).subarray(0, 4);
    assert.equal(bText, 'OEB1:' + base32Encode(concat(payload, sum)));
    assert.ok(cText.startsWith('OEC1:'));
    for (const t of [bText, cText]) assert.match(t, /^[0-9A-Z $%*+\-./:]+$/);
  });

  test('round trips, also lower-cased and wrapped with whitespace', () => {
    assert.deepEqual(bundleFromText(bText, { now: NOW, ikA: s.ikA.publicKey }), bundle);
    assert.deepEqual(cardFromText(cText), card);
    const wrapped = '  \n' + bText.toLowerCase().replace(/(.{60})/g, '$1\r\n\t ') + '\n\n';
    assert.deepEqual(bundleFromText(wrapped, { now: NOW }), bundle);
    assert.deepEqual(cardFromText(cText.replace(/(.{4})/g, '$1 ')), card);
  });

  test('every truncation fails: ERR_TEXT_PREFIX inside the prefix, ERR_TEXT_CHECKSUM after it', () => {
    for (const [text, from] of [[bText, (t: string) => bundleFromText(t, { now: NOW })], [cText, cardFromText]] as const) {
      for (let n = 0; n < text.length; n++) {
        throwsCode(() => from(text.slice(0, n)), n < 5 ? 'ERR_TEXT_PREFIX' : 'ERR_TEXT_CHECKSUM');
      }
    }
  });

  test('every single mistyped character fails with ERR_TEXT_CHECKSUM', () => {
    for (const [text, from] of [[bText, (t: string) => bundleFromText(t, { now: NOW })], [cText, cardFromText]] as const) {
      for (let i = 5; i < text.length; i++) {
        const c = text[i]!;
        const sub = BASE32_ALPHABET[(BASE32_ALPHABET.indexOf(c) + 1 + (i % 31)) % 32]!;
        assert.notEqual(sub, c);
        throwsCode(() => from(text.slice(0, i) + sub + text.slice(i + 1)), 'ERR_TEXT_CHECKSUM', /mistyped or truncated/);
      }
      // Two neighbours swapped (a classic typing error).
      const i = text.length - 10;
      if (text[i] !== text[i + 1]) {
        throwsCode(() => from(text.slice(0, i) + text[i + 1] + text[i] + text.slice(i + 2)), 'ERR_TEXT_CHECKSUM');
      }
    }
  });

  test('a character outside the alphabet is named with its position in the text as given', () => {
    for (const bad of ['0', '1', '8', '9', '=', '-', 'é']) {
      const t = `${cText.slice(0, 12)}${bad}${cText.slice(13)}`;
      throwsCode(() => cardFromText(t), 'ERR_TEXT_ALPHABET', /position 13\b/);
    }
    // With leading whitespace the reported position still points into the original text.
    throwsCode(() => cardFromText(`\n  ${cText.slice(0, 12)}0${cText.slice(13)}`), 'ERR_TEXT_ALPHABET', /'0'.*position 16\b/);
    assert.ok(alphabet.has('A'));
  });

  test('wrong prefix: the other type is named; unknown versions and missing prefixes too', () => {
    throwsCode(() => bundleFromText(cText, { now: NOW }), 'ERR_TEXT_PREFIX', /enrollee card \(OEC1:\), not a bundle/);
    throwsCode(() => cardFromText(bText), 'ERR_TEXT_PREFIX', /bundle \(OEB1:\), not an enrollee card/);
    throwsCode(() => bundleFromText('OEB3:' + bText.slice(5), { now: NOW }), 'ERR_TEXT_PREFIX', /unsupported text form OEB3:/);
    // OEB2: (EKA v2) is known, and the checksum covers the prefix: a v1 payload relabelled
    // as v2 fails before any decoding.
    throwsCode(() => bundleFromText('OEB2:' + bText.slice(5), { now: NOW }), 'ERR_TEXT_CHECKSUM');
    throwsCode(() => bundleFromText(bText.slice(5), { now: NOW }), 'ERR_TEXT_PREFIX', /must start with OEB1:/);
    throwsCode(() => bundleFromText('', { now: NOW }), 'ERR_TEXT_PREFIX');
  });

  test('the checksum covers the prefix: relabelling a payload fails', () => {
    // A card's base32 body under the bundle prefix: the right alphabet, the wrong checksum.
    throwsCode(() => bundleFromText('OEB1:' + cText.slice(5), { now: NOW }), 'ERR_TEXT_CHECKSUM');
    throwsCode(() => decodeText(BUNDLE_TEXT_PREFIX, 'OEB1:' + cText.slice(5)), 'ERR_TEXT_CHECKSUM');
  });

  test('input longer than the cap is refused before any work', () => {
    throwsCode(() => cardFromText(cText + ' '.repeat(TEXT_MAX_INPUT)), 'ERR_TEXT_CHECKSUM', /at most 4096/);
  });

  test('bundleFromText verifies: a valid text of an expired or foreign bundle fails', () => {
    throwsCode(() => bundleFromText(bText, { now: bundle.expiresAt }), 'ERR_BUNDLE_EXPIRED');
    throwsCode(() => bundleFromText(bText, { now: NOW, ikA: card.eikB }), 'ERR_BUNDLE_SIGNATURE');
    const bad = { ...bundle, addr: 'tcp://evil:1' };
    throwsCode(() => bundleFromText(bundleToText(bad), { now: NOW }), 'ERR_BUNDLE_SIGNATURE');
    const v2 = encodeBundle(bundle);
    v2[0] = 2;
    throwsCode(() => bundleFromText(encodeText(BUNDLE_TEXT_PREFIX, v2), { now: NOW }), 'ERR_BUNDLE_VERSION');
    throwsCode(() => cardFromText(encodeText(CARD_TEXT_PREFIX, Uint8Array.of(1, 2, 3))), 'ERR_CARD_MALFORMED');
  });

  test('encodeText / decodeText are generic; a prefix must be QR alphanumeric ending in ":"', () => {
    const payload = utf8('hello');
    assert.deepEqual(decodeText('X1:', encodeText('X1:', payload)), payload);
    throwsCode(() => encodeText('x1:', payload), 'ERR_INVALID_ARG');
    throwsCode(() => encodeText('X1', payload), 'ERR_INVALID_ARG');
    throwsCode(() => decodeText('X1:', encodeText('X2:', payload)), 'ERR_TEXT_PREFIX');
    assert.deepEqual(decodeText('X1:', encodeText('X1:', new Uint8Array(0))), new Uint8Array(0));
  });
});

describe('decoders fed seeded random input throw only EnrollError', () => {
  const random = seededDrbg('codec-fuzz');
  const s = makeService('codec-fuzz-service');
  const bundleEnc = encodeBundle(makeBundle(s, { addr: 'tcp://fuzz:1' }));
  const cardEnc = encodeCard({ version: 1, eikB: s.ikA.publicKey, bundleId: random(16), petName: 'fuzz' });

  test('3000 random byte strings to decodeBundle and decodeCard', () => {
    for (let i = 0; i < 3000; i++) {
      const len = random(2)[0]! + (i % 3 === 0 ? 250 : 0);
      const b = random(len);
      if (i % 2 === 0 && b.length > 0) b[0] = 1; // get past the version byte half of the time
      onlyEnrollError(() => decodeBundle(b), `bundle #${i}`);
      onlyEnrollError(() => decodeCard(b), `card #${i}`);
    }
  });

  test('3000 random mutations of valid encodings (flips, truncations, insertions)', () => {
    for (let i = 0; i < 3000; i++) {
      for (const [base, decode] of [[bundleEnc, decodeBundle], [cardEnc, decodeCard]] as const) {
        let b: Uint8Array = Uint8Array.from(base);
        const r = random(4);
        const pos = ((r[0]! << 8) | r[1]!) % b.length;
        switch (r[2]! % 3) {
          case 0:
            b[pos] = r[3]!;
            break;
          case 1:
            b = b.subarray(0, pos);
            break;
          default:
            b = concat(b.subarray(0, pos), Uint8Array.of(r[3]!), b.subarray(pos));
        }
        onlyEnrollError(() => {
          const d = decode(b);
          if ('signature' in d) verifyBundle(d, { now: NOW });
        }, `mutation #${i}`);
      }
    }
  });

  test('3000 random strings to bundleFromText and cardFromText', () => {
    const chars = BASE32_ALPHABET + 'OEBC1: \n0189=-éa🤖\u0000';
    const charList = [...chars];
    for (let i = 0; i < 3000; i++) {
      const r = random(64);
      let t = i % 2 === 0 ? 'OEB1:' : 'OEC1:';
      for (let j = 0; j < r[0]! % 60; j++) t += charList[r[j + 1]! % charList.length];
      onlyEnrollError(() => bundleFromText(t, { now: NOW }), `text #${i}`);
      onlyEnrollError(() => cardFromText(t), `text #${i}`);
      // Valid checksums over random payloads reach the binary decoders.
      const payload = random(r[1]! % 80);
      onlyEnrollError(() => bundleFromText(encodeText(BUNDLE_TEXT_PREFIX, payload), { now: NOW }), `payload #${i}`);
      onlyEnrollError(() => cardFromText(encodeText(CARD_TEXT_PREFIX, payload)), `payload #${i}`);
    }
  });

  test('non-string and non-bytes arguments are ERR_INVALID_ARG', () => {
    throwsCode(() => decodeBundle('x' as unknown as Uint8Array), 'ERR_INVALID_ARG');
    throwsCode(() => decodeCard(null as unknown as Uint8Array), 'ERR_INVALID_ARG');
    throwsCode(() => cardFromText(42 as unknown as string), 'ERR_INVALID_ARG');
    assert.ok(isEnrollError(new EnrollError('ERR_DECODE', 'x')));
  });
});
