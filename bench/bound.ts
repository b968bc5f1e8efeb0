/**
 * The crypto bound: what one enrollment costs the service in crypto alone, back to back in
 * one thread with node:crypto. That is `accept()` (src/protocol/enrollment) with the
 * service's keys (IK_A, SPK_A, OPK_A) already imported, so what is left is exactly the
 * per-message work no implementation can skip:
 *   2 public-key imports (EK_B; EIK_B for DH1), 4 X25519 (DH1..DH4), SHA-256 (h and the
 *   id check), HKDF (SK, then the session keys), AES-256-GCM decrypt, and the POP check
 *   (xeddsaVerify: Montgomery→Edwards conversion, an Ed25519 import and verification).
 * Also times each primitive alone, for the breakdown in the table.
 */
import type { KeyObject } from 'node:crypto';
import { aesGcmDecrypt, aesGcmEncrypt } from '../src/crypto/aead.js';
import { hkdfSha256, sha256 } from '../src/crypto/hash.js';
import { generateX25519, importX25519Private, importX25519Public, x25519 } from '../src/crypto/x25519.js';
import { xeddsaSign, xeddsaVerify } from '../src/crypto/xeddsa.js';
import { accept, acceptV2, initiate, initiateV2, kemPrekeyHash, type PendingEnrollee, type PendingEnrolleeV2 } from '../src/protocol/enrollment/index.js';
import { mlKem768Decapsulate, mlKem768Decapsulator, mlKem768Encapsulate, mlKem768Keygen } from '../src/crypto/mlkem.js';
import type { Bundle } from '../src/protocol/codec/bundle.js';

export interface BoundResult {
  /** µs per accept() with pre-imported service keys (median of the passes). */
  accept_us: number;
  bound_per_core_per_s: number;
  /** µs per primitive, measured alone. */
  primitives_us: Record<string, number>;
  /** The sum the issue names: 4 X25519 + POP verify + GCM decrypt + SHA-256 + 2 imports. */
  primitive_sum_us: number;
  primitive_sum_per_s: number;
  enrollments: number;
  passes: number;
}

function timeUs(n: number, f: (i: number) => void): number {
  for (let i = 0; i < Math.min(n, 200); i++) f(i); // warm the JIT and OpenSSL's caches
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f(i);
  return Number(process.hrtime.bigint() - t0) / 1e3 / n;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * `eka: 2`: acceptV2() instead, the same work plus one ML-KEM-768 decapsulation (the
 * decapsulation key expanded beforehand, as the service caches it per SPK) and a longer
 * AAD and message (docs/protocol.md §5A.5).
 */
export function measureBound(opts: { enrollments?: number; passes?: number; eka?: 1 | 2 } = {}): BoundResult {
  const m = opts.enrollments ?? 1000;
  const passes = opts.passes ?? 5;
  const eka = opts.eka ?? 1;
  const kem = mlKem768Keygen();
  const kemHash = kemPrekeyHash(kem.publicKey);
  // Prepared once, as the service caches it per SPK (src/roles/service/enroll.ts).
  const decapsulator = mlKem768Decapsulator(kem.secretKey);
  const addr = 'tcp://127.0.0.1:4100';
  const ikA = generateX25519();
  const spk = generateX25519();
  const ikAKey = importX25519Private(ikA.privateKey, 'IK_A');
  const spkKey = importX25519Private(spk.privateKey, 'SPK_A');
  const messages: Uint8Array[] = [];
  const pendings: PendingEnrollee[] = [];
  for (let i = 0; i < m; i++) {
    const opk = generateX25519();
    const eikB = generateX25519();
    const bundle: Bundle = {
      version: 1,
      bundleId: new Uint8Array(16).fill(i & 0xff),
      ikA: ikA.publicKey,
      spkA: spk.publicKey,
      spkSig: new Uint8Array(64),
      opkA: opk.publicKey,
      expiresAt: 2_000_000_000,
      addr,
      signature: new Uint8Array(64),
    };
    messages.push(eka === 2 ? initiateV2({ bundle: { ...bundle, version: 2, kemHash }, kemPrekey: kem.publicKey, eikB }).message : initiate({ bundle, eikB }).message);
    pendings.push({ eikB: eikB.publicKey, spkA: spkKey, opkA: importX25519Private(opk.privateKey, 'OPK_A'), addr, kemHash, kemSecretKey: decapsulator } as PendingEnrollee & PendingEnrolleeV2);
  }

  const perPass: number[] = [];
  for (let p = 0; p < passes; p++) {
    perPass.push(
      timeUs(m, (i) => {
        const pending = pendings[i]! as PendingEnrollee & PendingEnrolleeV2;
        if (eka === 2) acceptV2(messages[i]!, ikAKey, { isReplay: () => false, lookupPending: () => pending });
        else accept(messages[i]!, ikAKey, { isReplay: () => false, lookupPending: () => pending });
      }),
    );
  }
  const acceptUs = median(perPass);

  // The primitives alone.
  const a = generateX25519();
  const b = generateX25519();
  const aKey: KeyObject = importX25519Private(a.privateKey);
  const bKey: KeyObject = importX25519Public(b.publicKey);
  const popKey = generateX25519();
  const pop = xeddsaSign(popKey.privateKey, b.publicKey);
  const key = new Uint8Array(32).fill(7);
  const nonce = new Uint8Array(12);
  const aad = new Uint8Array(64 + 40 + addr.length + 32);
  const sealed = aesGcmEncrypt(key, nonce, new Uint8Array(96), aad);
  const km = new Uint8Array(128).fill(3);
  const prim: Record<string, number> = {
    x25519: timeUs(4000, () => x25519(aKey, bKey)),
    import_x25519_public_jwk: timeUs(4000, () => importX25519Public(b.publicKey)),
    import_x25519_private_jwk: timeUs(2000, () => importX25519Private(a.privateKey)),
    xeddsa_verify: timeUs(3000, () => xeddsaVerify(popKey.publicKey, b.publicKey, pop)),
    aes_gcm_decrypt: timeUs(10000, () => aesGcmDecrypt(key, nonce, sealed, aad)),
    sha256: timeUs(10000, () => sha256(km, km)),
    hkdf_sha256: timeUs(10000, () => hkdfSha256(km, key, aad, 32)),
    ...(eka === 2
      ? (() => {
          const { cipherText } = mlKem768Encapsulate(kem.publicKey);
          return {
            mlkem768_decapsulate: timeUs(1000, () => decapsulator.decapsulate(cipherText)),
            mlkem768_decapsulate_one_shot: timeUs(1000, () => mlKem768Decapsulate(cipherText, kem.secretKey)),
            mlkem768_encapsulate: timeUs(500, () => mlKem768Encapsulate(kem.publicKey)),
            mlkem768_keygen: timeUs(500, () => mlKem768Keygen()),
          };
        })()
      : {}),
  };
  const sum = 4 * prim.x25519! + prim.xeddsa_verify! + prim.aes_gcm_decrypt! + prim.sha256! + 2 * prim.import_x25519_public_jwk! + (prim.mlkem768_decapsulate ?? 0);
  return {
    accept_us: round(acceptUs),
    bound_per_core_per_s: Math.round(1e6 / acceptUs),
    primitives_us: Object.fromEntries(Object.entries(prim).map(([k, v]) => [k, round(v)])),
    primitive_sum_us: round(sum),
    primitive_sum_per_s: Math.round(1e6 / sum),
    enrollments: m,
    passes,
  };
}

function round(x: number, d = 2): number {
  const f = 10 ** d;
  return Math.round(x * f) / f;
}

/**
 * Per-enrollment crypto the service does beyond accept(), when this tree has it: the
 * credential issued with every acceptance (an XEdDSA signature with IK_A, its key pair
 * prepared once, as src/roles/service/credentials.ts does). Loaded by URL so that the
 * benchmark still builds in a tree without it. Returns µs per operation.
 */
export async function measureExtras(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const spec = new URL('../src/protocol/credential.js', import.meta.url).href;
    const cred = (await import(spec)) as {
      signCredential(fields: Record<string, unknown>, key: unknown): unknown;
      encodeCredential(c: unknown): Uint8Array;
    };
    const xs = (await import(new URL('../src/crypto/xeddsa.js', import.meta.url).href)) as Record<string, unknown>;
    const signerOf = xs.xeddsaSigner as ((k: Uint8Array) => unknown) | undefined;
    if (typeof cred.signCredential === 'function' && typeof signerOf === 'function') {
      const ikA = generateX25519();
      const sign = signerOf(ikA.privateKey);
      const fields = { issuer: ikA.publicKey, enrolleeId: new Uint8Array(32).fill(1), ikB: generateX25519().publicKey, petName: 'bench device', issuedAt: 1_750_000_000, expiresAt: 1_781_536_000 };
      out.credential_sign_us = round(timeUs(1000, () => cred.encodeCredential(cred.signCredential(fields, sign))));
    }
  } catch {
    // No credentials in this tree.
  }
  return out;
}
