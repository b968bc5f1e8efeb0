/**
 * Writes test/vectors/enrollment-v2.json: known answers for the Enrollment Key Agreement
 * v2 (hybrid X3DH + ML-KEM-768, src/protocol/enrollment/agreement-v2.ts) and the bundle v2
 * encoding (src/protocol/codec/bundle.ts), in the format of enrollment-v1.json with the
 * KEM's values added (docs/protocol.md §10.4).
 *
 * Run with `npm run vectors` (it writes both files). Every random input comes from the same
 * seeded DRBG as v1's generator, under another seed; the KAT test
 * (test/protocol/kat-v2.test.ts) checks the file is reproduced byte for byte and recomputes
 * every field with independent primitives.
 *
 * Added fields: `kem_seed` (the 64-byte ML-KEM.KeyGen_internal seed d ‖ z of PQSPK_A),
 * `kem_pub` (PQSPK_A, 1184 bytes), `kem_hash` = SHA-256(kem_pub), `kem_m` (the 32-byte m of
 * ML-KEM.Encaps_internal), `kem_ct` (CT, 1088 bytes), `ss` (the KEM shared secret).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { concat, equalBytes, toHex, utf8 } from '../../src/crypto/bytes.js';
import { mlKem768Encapsulate, mlKem768Keygen } from '../../src/crypto/mlkem.js';
import type { RandomSource } from '../../src/crypto/random.js';
import { keyPairFromPrivate, x25519PublicKey } from '../../src/crypto/x25519.js';
import { xeddsaSign } from '../../src/crypto/xeddsa.js';
import { encodeBundle, signBundle, signSpk } from '../../src/protocol/codec/bundle.js';
import { bundleToText } from '../../src/protocol/codec/text.js';
import { INFO_V2, INFO_V2_STRING, MESSAGE_VERSION_V2, SESSION_INFO_V2 } from '../../src/protocol/enrollment/constants.js';
import { enrolleeId } from '../../src/protocol/enrollment/agreement.js';
import { acceptV2, composeMessageV2, enrollmentAadV2, initiateV2, kemPrekeyHash } from '../../src/protocol/enrollment/agreement-v2.js';
import { deriveSessionKeys } from '../../src/protocol/enrollment/session.js';
import { x3dhInitiatorDh, x3dhKdf, x3dhStateHash } from '../../src/protocol/enrollment/x3dh.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { CASES, drawWithSign, EXPIRES_AT, seededDrbg, type Vector } from './generate-enrollment-v1.js';
import { isMain } from '../helpers/is-main.js';

export const VECTOR_FILE_V2 = join(REPO_ROOT, 'test', 'vectors', 'enrollment-v2.json');
export const SEED_V2 = 'ockam-enroll/v2/enrollment-kat/seed-1';

function makeVector(random: RandomSource, c: (typeof CASES)[number]): Vector {
  // Draw order is part of the file's reproducibility: do not reorder. It is v1's, with the
  // KEM seed after OPK_A and m after EK_B (the order initiateV2 draws in production).
  const ik_a = drawWithSign(random, c.ikASign);
  const spk_a = random(32);
  const opk_a = random(32);
  const kem_seed = random(64);
  const eik_b = random(32);
  const ek_b = random(32);
  const kem_m = random(32);
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
  const kem = mlKem768Keygen(kem_seed);
  const kem_hash = kemPrekeyHash(kem.publicKey);

  const spk_sig = signSpk(ik_a, spk_a_pub, spk_sig_z);
  const bundle = signBundle(
    { bundleId: bundle_id, ikA: ik_a_pub, spkA: spk_a_pub, spkSig: spk_sig, opkA: opk_a_pub, kemHash: kem_hash, expiresAt: EXPIRES_AT, addr: c.addr },
    ik_a,
    bundle_sig_z,
  );
  if (bundle.version !== 2) throw new Error('expected a v2 bundle');

  const [dh1, dh2, dh3, dh4] = x3dhInitiatorDh({
    identity: eik_b,
    ephemeral: ek_b,
    peerIdentity: ik_a_pub,
    peerSignedPrekey: spk_a_pub,
    peerOneTimePrekey: opk_a_pub,
  }) as [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
  const { cipherText: kem_ct, sharedSecret: ss } = mlKem768Encapsulate(kem.publicKey, kem_m);
  const km = concat(dh1, dh2, dh3, dh4, ss);
  const sk = x3dhKdf(km, { info: INFO_V2 });
  const h = x3dhStateHash(km, INFO_V2);
  const enrollee_id = enrolleeId(eik_b_pub);
  const header = concat(Uint8Array.of(MESSAGE_VERSION_V2), ek_b_pub, enrollee_id, kem_ct);
  const aad = enrollmentAadV2(header, kem_hash, c.addr, h);
  const pop = xeddsaSign(ik_b, eik_b_pub, pop_z);
  const plaintext = concat(ik_b_pub, pop);
  const message = composeMessageV2({ ekB: ek_b_pub, enrolleeId: enrollee_id, kemCiphertext: kem_ct, kemHash: kem_hash, sk, h, addr: c.addr, ikB: ik_b_pub, pop });
  const session = deriveSessionKeys(sk, h, SESSION_INFO_V2);

  const init = initiateV2({
    bundle,
    kemPrekey: kem.publicKey,
    eikB: keyPairFromPrivate(Uint8Array.from(eik_b)),
    ikB: keyPairFromPrivate(Uint8Array.from(ik_b)),
    ekB: keyPairFromPrivate(Uint8Array.from(ek_b)),
    kemM: kem_m,
    popZ: pop_z,
  });
  const acc = acceptV2(init.message, ik_a, {
    isReplay: () => false,
    lookupPending: () => ({ eikB: eik_b_pub, spkA: spk_a, opkA: opk_a, addr: c.addr, kemHash: kem_hash, kemSecretKey: kem.secretKey }),
  });
  if (
    !equalBytes(init.message, message) ||
    !equalBytes(init.h, h) ||
    !equalBytes(init.session.kS2e, session.kS2e) ||
    !equalBytes(acc.ikB, ik_b_pub) ||
    !equalBytes(acc.session.kE2s, session.kE2s)
  ) {
    throw new Error(`vector "${c.comment}": initiateV2/acceptV2 disagree with the step-by-step computation`);
  }

  return {
    comment: c.comment,
    ik_a: toHex(ik_a),
    spk_a: toHex(spk_a),
    opk_a: toHex(opk_a),
    kem_seed: toHex(kem_seed),
    eik_b: toHex(eik_b),
    ek_b: toHex(ek_b),
    kem_m: toHex(kem_m),
    ik_b: toHex(ik_b),
    addr: c.addr,
    spk_sig_z: toHex(spk_sig_z),
    pop_z: toHex(pop_z),
    ik_a_pub: toHex(ik_a_pub),
    spk_a_pub: toHex(spk_a_pub),
    opk_a_pub: toHex(opk_a_pub),
    kem_pub: toHex(kem.publicKey),
    kem_hash: toHex(kem_hash),
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
    kem_ct: toHex(kem_ct),
    ss: toHex(ss),
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

export function generateEnrollmentV2(): { info: string; description: string; seed: string; vectors: Vector[] } {
  const random = seededDrbg(SEED_V2);
  return {
    info: INFO_V2_STRING,
    description:
      'Enrollment Key Agreement v2 (hybrid X3DH + ML-KEM-768) known answers, made by test/vectors/generate-enrollment-v2.ts (npm run vectors). ' +
      'Hex except addr, comment, *_sign, expires_at and bundle_text. Private keys are the 32 random bytes before clamping; ' +
      'kem_seed is ML-KEM.KeyGen_internal d ‖ z, kem_m is ML-KEM.Encaps_internal m. ' +
      'bundle = the bundle v2 encoding of (bundle_id, IK_A, SPK_A, spk_sig, OPK_A, kem_hash, expires_at, addr) signed with bundle_sig_z.',
    seed: SEED_V2,
    vectors: CASES.map((c) => makeVector(random, c)),
  };
}

/** The exact file contents. */
export function renderEnrollmentV2(): string {
  if (toHex(INFO_V2) !== toHex(utf8(INFO_V2_STRING))) throw new Error('INFO_V2 mismatch');
  return `${JSON.stringify(generateEnrollmentV2(), null, 2)}\n`;
}

if (isMain(import.meta.url)) {
  writeFileSync(VECTOR_FILE_V2, renderEnrollmentV2());
  console.log(`wrote ${VECTOR_FILE_V2}`);
}
