/**
 * Writes test/vectors/enrollment-v1.json: known answers for the Enrollment Key Agreement
 * v1 (src/protocol/enrollment) and the bundle v1 encoding (src/protocol/codec/bundle.ts).
 *
 * Run with `npm run vectors`. Every random input comes from a seeded DRBG (SHA-256 of the
 * seed ‖ a 64-bit block counter), so re-running reproduces the file byte for byte; the
 * KAT test (test/protocol/kat.test.ts) checks that too.
 *
 * The vectors are made with the library and then checked by the test against an
 * independent recomputation (@noble/curves X25519, @noble/hashes HKDF/SHA-256, node's
 * AES-GCM called directly), so they pin the format rather than merely echo the code.
 *
 * Field meanings: private keys (`ik_a`, `spk_a`, …) are the 32 random bytes before RFC 7748
 * clamping; `*_pub` are X25519 public keys; `spk_sig_z`, `pop_z`, `bundle_sig_z` are the
 * 64-byte XEdDSA Z inputs; `ik_a_sign`/`ik_b_sign` are the Edwards sign bits of kB for
 * the (clamped) signing keys, i.e. whether XEdDSA negates the scalar (XEdDSA spec §2.3).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ed25519 } from '@noble/curves/ed25519.js';
import { concat, equalBytes, toHex, utf8 } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import type { RandomSource } from '../../src/crypto/random.js';
import { keyPairFromPrivate, x25519PublicKey } from '../../src/crypto/x25519.js';
import { xeddsaSign } from '../../src/crypto/xeddsa.js';
import { encodeBundle, signBundle, signSpk } from '../../src/protocol/codec/bundle.js';
import { bundleToText } from '../../src/protocol/codec/text.js';
import { INFO, INFO_STRING } from '../../src/protocol/enrollment/constants.js';
import { accept, composeMessage, enrolleeId, enrollmentAad, initiate } from '../../src/protocol/enrollment/agreement.js';
import { deriveSessionKeys } from '../../src/protocol/enrollment/session.js';
import { x3dhInitiatorDh, x3dhKdf, x3dhStateHash } from '../../src/protocol/enrollment/x3dh.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';

export const VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'enrollment-v1.json');
export const SEED = 'ockam-enroll/v1/enrollment-kat/seed-1';
/** A fixed expiry (2030-01-01T00:00:00Z) for the vectors' bundles. */
export const EXPIRES_AT = 1893456000;

/** A deterministic byte stream: SHA-256(seed ‖ u64be(0)) ‖ SHA-256(seed ‖ u64be(1)) ‖ … */
export function seededDrbg(seed: string): RandomSource {
  const s = utf8(seed);
  let counter = 0n;
  let pool: Uint8Array = new Uint8Array(0);
  return (n: number) => {
    while (pool.length < n) {
      const c = new Uint8Array(8);
      new DataView(c.buffer).setBigUint64(0, counter++, false);
      pool = concat(pool, sha256(s, c));
    }
    const out = pool.slice(0, n);
    pool = pool.slice(n);
    return out;
  };
}

/**
 * The sign bit of E = kB, k the clamped private key (XEdDSA spec §2.3
 * calculate_key_pair): 1 means the signer negates k so that A has sign bit 0.
 */
export function edwardsSignBit(privateKey: Uint8Array): 0 | 1 {
  const k = Uint8Array.from(privateKey);
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  let n = 0n;
  for (let i = 31; i >= 0; i--) n = (n << 8n) | BigInt(k[i]!);
  const E = ed25519.Point.BASE.multiply(n % ed25519.Point.Fn.ORDER).toBytes();
  return (E[31]! >> 7) as 0 | 1;
}

/** A 32-byte private key drawn until its Edwards sign bit is `sign` (shared with the v2 generator). */
export function drawWithSign(random: RandomSource, sign: 0 | 1): Uint8Array {
  for (;;) {
    const k = random(32);
    if (edwardsSignBit(k) === sign) return k;
  }
}

interface Case {
  comment: string;
  ikASign: 0 | 1;
  ikBSign: 0 | 1;
  addr: string;
}

function longAscii(): string {
  let s = 'tcp://enrollment.factory-floor-7.eu-central-1.example.internal:4000';
  for (let i = 0; s.length < 240; i++) s += `/route-${i}`;
  return s;
}

/** Exactly 512 UTF-8 bytes (the maximum), mixing 1-, 2-, 3- and 4-byte characters. */
function maxUtf8(): string {
  let s = 'tcp://[::1]:4000/';
  const pieces = ['é', 'ロ', '🤖', 'a'];
  for (let i = 0; utf8(s).length < 512 - 4; i++) s += pieces[i % pieces.length];
  while (utf8(s).length < 512) s += 'z';
  return s;
}

export const CASES: readonly Case[] = [
  { comment: 'IK_A sign 0, IK_B sign 0, loopback address', ikASign: 0, ikBSign: 0, addr: 'tcp://127.0.0.1:4000' },
  { comment: 'IK_A sign 0, IK_B sign 1, empty Addr', ikASign: 0, ikBSign: 1, addr: '' },
  { comment: 'IK_A sign 1, IK_B sign 0, long ASCII Addr (>= 200 bytes)', ikASign: 1, ikBSign: 0, addr: longAscii() },
  { comment: 'IK_A sign 1, IK_B sign 1, non-ASCII UTF-8 Addr', ikASign: 1, ikBSign: 1, addr: 'tcp://[::1]:4000/usine-münchen/ロボット/🤖' },
  { comment: 'IK_A sign 0, IK_B sign 0, Addr of exactly 512 UTF-8 bytes (the maximum)', ikASign: 0, ikBSign: 0, addr: maxUtf8() },
  { comment: 'IK_A sign 1, IK_B sign 1, host name address', ikASign: 1, ikBSign: 1, addr: 'tcp://enroll.example.com:4100' },
  { comment: 'IK_A sign 0, IK_B sign 1, one-character Addr', ikASign: 0, ikBSign: 1, addr: '/' },
  { comment: 'IK_A sign 1, IK_B sign 0, Addr with a leading BOM and a space', ikASign: 1, ikBSign: 0, addr: '\uFEFFtcp://10.0.0.7:14000 node-b' },
  { comment: 'IK_A sign 0, IK_B sign 0, IPv6 address', ikASign: 0, ikBSign: 0, addr: 'tcp://[2001:db8::17]:4000' },
  { comment: 'IK_A sign 1, IK_B sign 1, Ockam route', ikASign: 1, ikBSign: 1, addr: '/dnsaddr/enroll.example.com/tcp/4000/service/enrollment' },
];

export type Vector = Record<string, string | number>;

function makeVector(random: RandomSource, c: Case): Vector {
  // Draw order is part of the file's reproducibility: do not reorder.
  const ik_a = drawWithSign(random, c.ikASign);
  const spk_a = random(32);
  const opk_a = random(32);
  const eik_b = random(32);
  const ek_b = random(32);
  const ik_b = drawWithSign(random, c.ikBSign);
  const spk_sig_z = random(64);
  const pop_z = random(64);
  const bundle_id = random(16);
  const bundle_sig_z = random(64);

  const ik_a_pub = x25519PublicKey(ik_a);
  const spk_a_pub = x25519PublicKey(spk_a);
  const opk_a_pub = x25519PublicKey(opk_a);
  const eik_b_pub = x25519PublicKey(eik_b);
  const ek_b_pub = x25519PublicKey(ek_b);
  const ik_b_pub = x25519PublicKey(ik_b);

  const spk_sig = signSpk(ik_a, spk_a_pub, spk_sig_z);
  const bundle = signBundle(
    { bundleId: bundle_id, ikA: ik_a_pub, spkA: spk_a_pub, spkSig: spk_sig, opkA: opk_a_pub, expiresAt: EXPIRES_AT, addr: c.addr },
    ik_a,
    bundle_sig_z,
  );

  const [dh1, dh2, dh3, dh4] = x3dhInitiatorDh({
    identity: eik_b,
    ephemeral: ek_b,
    peerIdentity: ik_a_pub,
    peerSignedPrekey: spk_a_pub,
    peerOneTimePrekey: opk_a_pub,
  }) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const km = concat(dh1, dh2, dh3, dh4);
  const sk = x3dhKdf(km);
  const h = x3dhStateHash(km);
  const enrollee_id = enrolleeId(eik_b_pub);
  const header = concat(ek_b_pub, enrollee_id);
  const aad = enrollmentAad(header, c.addr, h);
  const pop = xeddsaSign(ik_b, eik_b_pub, pop_z);
  const plaintext = concat(ik_b_pub, pop);
  const message = composeMessage({ ekB: ek_b_pub, enrolleeId: enrollee_id, sk, h, addr: c.addr, ikB: ik_b_pub, pop });
  const session = deriveSessionKeys(sk, h);

  // Cross-check against the public API; initiate wipes EK_B, so give it a copy.
  const init = initiate({
    bundle,
    eikB: keyPairFromPrivate(Uint8Array.from(eik_b)),
    ikB: keyPairFromPrivate(Uint8Array.from(ik_b)),
    ekB: keyPairFromPrivate(Uint8Array.from(ek_b)),
    popZ: pop_z,
  });
  const acc = accept(init.message, ik_a, {
    isReplay: () => false,
    lookupPending: () => ({ eikB: eik_b_pub, spkA: spk_a, opkA: opk_a, addr: c.addr }),
  });
  if (
    !equalBytes(init.message, message) ||
    !equalBytes(init.h, h) ||
    !equalBytes(init.session.kS2e, session.kS2e) ||
    !equalBytes(acc.ikB, ik_b_pub) ||
    !equalBytes(acc.session.kE2s, session.kE2s)
  ) {
    throw new Error(`vector "${c.comment}": initiate/accept disagree with the step-by-step computation`);
  }

  return {
    comment: c.comment,
    ik_a: toHex(ik_a),
    spk_a: toHex(spk_a),
    opk_a: toHex(opk_a),
    eik_b: toHex(eik_b),
    ek_b: toHex(ek_b),
    ik_b: toHex(ik_b),
    addr: c.addr,
    spk_sig_z: toHex(spk_sig_z),
    pop_z: toHex(pop_z),
    ik_a_pub: toHex(ik_a_pub),
    spk_a_pub: toHex(spk_a_pub),
    opk_a_pub: toHex(opk_a_pub),
    eik_b_pub: toHex(eik_b_pub),
    ek_b_pub: toHex(ek_b_pub),
    ik_b_pub: toHex(ik_b_pub),
    ik_a_sign: c.ikASign,
    ik_b_sign: c.ikBSign,
    spk_sig: toHex(spk_sig),
    dh1: toHex(dh1),
    dh2: toHex(dh2),
    dh3: toHex(dh3),
    dh4: toHex(dh4),
    sk: toHex(sk),
    h: toHex(h),
    enrollee_id: toHex(enrollee_id),
    header: toHex(header),
    aad: toHex(aad),
    plaintext: toHex(plaintext),
    pop: toHex(pop),
    message: toHex(message),
    k_s2e: toHex(session.kS2e),
    k_e2s: toHex(session.kE2s),
    bundle_id: toHex(bundle_id),
    expires_at: EXPIRES_AT,
    bundle_sig_z: toHex(bundle_sig_z),
    bundle: toHex(encodeBundle(bundle)),
    bundle_text: bundleToText(bundle),
  };
}

export function generateEnrollmentV1(): { info: string; description: string; seed: string; vectors: Vector[] } {
  const random = seededDrbg(SEED);
  return {
    info: INFO_STRING,
    description:
      'Enrollment Key Agreement v1 known answers, made by test/vectors/generate-enrollment-v1.ts (npm run vectors). ' +
      'Hex except addr, comment, *_sign, expires_at and bundle_text. Private keys are the 32 random bytes before clamping. ' +
      'bundle = the bundle v1 encoding of (bundle_id, IK_A, SPK_A, spk_sig, OPK_A, expires_at, addr) signed with bundle_sig_z.',
    seed: SEED,
    vectors: CASES.map((c) => makeVector(random, c)),
  };
}

/** The exact file contents. */
export function renderEnrollmentV1(): string {
  if (toHex(INFO) !== toHex(utf8(INFO_STRING))) throw new Error('INFO mismatch');
  return `${JSON.stringify(generateEnrollmentV1(), null, 2)}\n`;
}

if (isMain(import.meta.url)) {
  writeFileSync(VECTOR_FILE, renderEnrollmentV1());
  console.log(`wrote ${VECTOR_FILE}`);
}
