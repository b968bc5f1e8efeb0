/**
 * The enrollment bundle, v1 and v2 (docs/protocol.md §4.1 and §4.5).
 *
 * The service hands a bundle to an enroller, who passes it to an enrollee; it names the
 * service's keys for the Enrollment Key Agreement (IK_A, SPK_A, OPK_A) and the Ockam
 * address Addr to send the enrollment message to. Big-endian, fixed order:
 *
 *   version u8 = 1 | bundle_id 16 | IK_A 32 | SPK_A 32 | SPK_sig 64 | OPK_A 32 |
 *   expires_at u64 (unix seconds) | addr_len u16 (0..512) | Addr UTF-8 | bundle_sig 64
 *
 * SPK_sig = XEdDSA(IK_A, SPK_A) as in X3DH §3.2; bundle_sig = XEdDSA(IK_A, "ockam-enroll/
 * v1/bundle" ‖ every preceding byte), so the id, OPK_A, expiry and Addr, which X3DH leaves
 * unsigned, cannot be swapped by whoever carries the bundle. The context label keeps a
 * bundle signature from ever being a valid signature over some other message type.
 *
 * v2 (EKA v2, hybrid with ML-KEM-768, §4.5) inserts KEM_hash = SHA-256(PQSPK_A) after OPK_A
 * and signs under its own context `ockam-enroll/v2/bundle`. The version byte is the first
 * signed byte, so a v2 bundle cannot be presented as v1 (or the reverse) without breaking
 * bundle_sig: this is what makes a downgrade from v2 detectable (PQXDH rev. 3 §4.1 signs
 * the KEM prekey with IK for the same reason: here IK_A signs its hash).
 */
import { EnrollError } from '../../errors.js';
import { abytes, concat, equalBytes, utf8 } from '../../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../../crypto/random.js';
import { x25519PublicKey } from '../../crypto/x25519.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaSign, xeddsaSigner, xeddsaVerify, type XEdDSASigner } from '../../crypto/xeddsa.js';
import { ByteReader } from './reader.js';
import { ByteWriter, strictUtf8 } from './writer.js';

export const BUNDLE_VERSION = 1;
export const BUNDLE_VERSION_V2 = 2;
export const BUNDLE_ID_LEN = 16;
export const BUNDLE_KEY_LEN = 32;
/** KEM_hash = SHA-256(PQSPK_A), bundle v2 only. */
export const BUNDLE_KEM_HASH_LEN = 32;
export const BUNDLE_MAX_ADDR_LEN = 512;
/** The domain-separation label prepended to the signed bytes of bundle_sig. */
export const BUNDLE_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/bundle');
/** bundle_sig's label for v2: a v1 signature is never a valid v2 signature, and the reverse. */
export const BUNDLE_SIG_CONTEXT_V2: Uint8Array = utf8('ockam-enroll/v2/bundle');
/** Bytes of a bundle with an empty Addr: 1+16+32+32+64+32+8+2+64. */
export const BUNDLE_MIN_LEN = 1 + BUNDLE_ID_LEN + 3 * BUNDLE_KEY_LEN + 2 * XEDDSA_SIGNATURE_LEN + 8 + 2;
export const BUNDLE_MAX_LEN = BUNDLE_MIN_LEN + BUNDLE_MAX_ADDR_LEN;
/** v2 adds KEM_hash: 283 bytes with an empty Addr, 795 at most. */
export const BUNDLE_V2_MIN_LEN = BUNDLE_MIN_LEN + BUNDLE_KEM_HASH_LEN;
export const BUNDLE_V2_MAX_LEN = BUNDLE_V2_MIN_LEN + BUNDLE_MAX_ADDR_LEN;

/** The EKA version a bundle is for: its version byte (1: X3DH, 2: hybrid X3DH + ML-KEM-768). */
export type EkaVersion = 1 | 2;

export interface BundleV1 {
  version: 1;
  /** 16 random bytes naming this bundle (and its OPK) in the service's store. */
  bundleId: Uint8Array;
  /** The service's identity key IK_A (X25519 public, 32 bytes). */
  ikA: Uint8Array;
  /** The service's signed prekey SPK_A. */
  spkA: Uint8Array;
  /** XEdDSA(IK_A, SPK_A). */
  spkSig: Uint8Array;
  /** The one-time prekey OPK_A this bundle carries. */
  opkA: Uint8Array;
  /** Unix seconds; the bundle is refused at and after this instant. */
  expiresAt: number;
  /** The Ockam address the enrollment message goes to, at most 512 UTF-8 bytes. */
  addr: string;
  /** bundle_sig = XEdDSA(IK_A, BUNDLE_SIG_CONTEXT ‖ the preceding encoding). */
  signature: Uint8Array;
}

/** Bundle v2 (§4.5): v1's fields and KEM_hash, signed under BUNDLE_SIG_CONTEXT_V2. */
export interface BundleV2 extends Omit<BundleV1, 'version'> {
  version: 2;
  /** SHA-256 of the service's ML-KEM-768 prekey PQSPK_A (1184 bytes), which the enrollee fetches (§7.2). */
  kemHash: Uint8Array;
}

export type Bundle = BundleV1 | BundleV2;

/**
 * What signBundle signs. With `kemHash` the bundle is v2 (EKA v2), without it v1.
 */
export type BundleFields = Omit<BundleV1, 'version' | 'signature'> & { kemHash?: Uint8Array };

export interface VerifyBundleOptions {
  /** Current time in unix seconds. */
  now: number;
  /** The service's identity key the caller has pinned; a bundle under any other IK_A fails. */
  ikA?: Uint8Array;
}

/** Validates field types and lengths; the error code is the caller's. */
function checkFields(b: BundleFields, fail: (m: string) => never): void {
  const key = (v: unknown, n: number, name: string): void => {
    if (!(v instanceof Uint8Array) || v.length !== n) fail(`"${name}" must be ${n} bytes`);
  };
  key(b.bundleId, BUNDLE_ID_LEN, 'bundleId');
  key(b.ikA, BUNDLE_KEY_LEN, 'ikA');
  key(b.spkA, BUNDLE_KEY_LEN, 'spkA');
  key(b.spkSig, XEDDSA_SIGNATURE_LEN, 'spkSig');
  key(b.opkA, BUNDLE_KEY_LEN, 'opkA');
  if (b.kemHash !== undefined) key(b.kemHash, BUNDLE_KEM_HASH_LEN, 'kemHash');
  if (!Number.isSafeInteger(b.expiresAt) || b.expiresAt < 0) fail('"expiresAt" must be an integer in 0..2^53-1');
  if (typeof b.addr !== 'string') fail('"addr" must be a string');
}

/** The signed part of the encoding: every field before bundle_sig. */
function encodeSignedPart(b: BundleFields): Uint8Array {
  const fail = (m: string): never => {
    throw new EnrollError('ERR_INVALID_ARG', `bundle: ${m}`);
  };
  checkFields(b, fail);
  const addr = strictUtf8(b.addr, 'addr');
  if (addr.length > BUNDLE_MAX_ADDR_LEN) fail(`"addr" is ${addr.length} bytes, at most ${BUNDLE_MAX_ADDR_LEN}`);
  const w = new ByteWriter()
    .u8(b.kemHash === undefined ? BUNDLE_VERSION : BUNDLE_VERSION_V2, 'version')
    .bytes(b.bundleId, BUNDLE_ID_LEN, 'bundleId')
    .bytes(b.ikA, BUNDLE_KEY_LEN, 'ikA')
    .bytes(b.spkA, BUNDLE_KEY_LEN, 'spkA')
    .bytes(b.spkSig, XEDDSA_SIGNATURE_LEN, 'spkSig')
    .bytes(b.opkA, BUNDLE_KEY_LEN, 'opkA');
  if (b.kemHash !== undefined) w.bytes(b.kemHash, BUNDLE_KEM_HASH_LEN, 'kemHash');
  return w
    .u64be(b.expiresAt, 'expiresAt')
    .u16be(addr.length, 'addr_len')
    .bytes(addr, undefined, 'addr')
    .finish();
}

/** SPK_sig = XEdDSA(IK_A, SPK_A) over the 32 raw bytes of SPK_A (X3DH §3.2). */
export function signSpk(ikAPrivate: Uint8Array, spkA: Uint8Array, random: Uint8Array | RandomSource = systemRandom): Uint8Array {
  abytes(ikAPrivate, BUNDLE_KEY_LEN, 'ikAPrivate');
  abytes(spkA, BUNDLE_KEY_LEN, 'spkA');
  return xeddsaSign(ikAPrivate, spkA, random);
}

/** IK_A prepared once for signing many bundles: its public key and an XEdDSA signer. */
export interface BundleSigner {
  readonly ikA: Uint8Array;
  readonly sign: XEdDSASigner;
}

/**
 * Prepares IK_A for {@link signBundle}: the public key and XEdDSA's calculate_key_pair are
 * computed once, not once per bundle (the service signs thousands in one fetch).
 */
export function bundleSigner(ikAPrivate: Uint8Array): BundleSigner {
  abytes(ikAPrivate, BUNDLE_KEY_LEN, 'ikAPrivate');
  return { ikA: x25519PublicKey(ikAPrivate), sign: xeddsaSigner(ikAPrivate) };
}

/**
 * Signs a bundle with IK_A's private key, or with a signer prepared from it
 * ({@link bundleSigner}). `fields.spkSig` must already hold XEdDSA(IK_A, SPK_A) (see
 * {@link signSpk}); `fields.ikA` must be the public key of IK_A, which is checked so that
 * the service never hands out a bundle that cannot verify.
 */
export function signBundle(
  fields: BundleFields,
  ikA: Uint8Array | BundleSigner,
  random: Uint8Array | RandomSource = systemRandom,
): Bundle {
  const signer = ikA instanceof Uint8Array ? bundleSigner(ikA) : ikA;
  if (signer === null || typeof signer !== 'object' || !(signer.ikA instanceof Uint8Array) || typeof signer.sign !== 'function') {
    throw new EnrollError('ERR_INVALID_ARG', '"ikA" expected IK_A\'s private key (Uint8Array) or a bundleSigner');
  }
  const signed = encodeSignedPart(fields);
  if (!equalBytes(signer.ikA, fields.ikA)) {
    throw new EnrollError('ERR_INVALID_ARG', 'bundle: "ikA" is not the public key of the signing key');
  }
  const v2 = fields.kemHash !== undefined;
  const signature = signer.sign(concat(v2 ? BUNDLE_SIG_CONTEXT_V2 : BUNDLE_SIG_CONTEXT, signed), random);
  const common = {
    bundleId: Uint8Array.from(fields.bundleId),
    ikA: Uint8Array.from(fields.ikA),
    spkA: Uint8Array.from(fields.spkA),
    spkSig: Uint8Array.from(fields.spkSig),
    opkA: Uint8Array.from(fields.opkA),
    expiresAt: fields.expiresAt,
    addr: fields.addr,
    signature,
  };
  return v2 ? { version: BUNDLE_VERSION_V2, ...common, kemHash: Uint8Array.from(fields.kemHash!) } : { version: BUNDLE_VERSION, ...common };
}

/** The fields a bundle of its version signs; a v1 object carrying a stray kemHash is refused. */
function fieldsOf(b: Bundle, fail: (m: string) => never): BundleFields {
  if (b.version === BUNDLE_VERSION) {
    if ((b as { kemHash?: unknown }).kemHash !== undefined) fail('a version 1 bundle has no "kemHash"');
    return b;
  }
  if (!((b as BundleV2).kemHash instanceof Uint8Array)) fail('a version 2 bundle needs "kemHash"');
  return b;
}

export function encodeBundle(b: Bundle): Uint8Array {
  if (b === null || typeof b !== 'object' || (b.version !== BUNDLE_VERSION && b.version !== BUNDLE_VERSION_V2)) {
    throw new EnrollError('ERR_INVALID_ARG', `bundle: "version" must be ${BUNDLE_VERSION} or ${BUNDLE_VERSION_V2}`);
  }
  abytes(b.signature, XEDDSA_SIGNATURE_LEN, 'signature');
  const fields = fieldsOf(b, (m) => {
    throw new EnrollError('ERR_INVALID_ARG', `bundle: ${m}`);
  });
  return concat(encodeSignedPart(fields), b.signature);
}

/**
 * Parses a bundle's structure only: no signature or expiry check (see verifyBundle).
 * Throws ERR_BUNDLE_VERSION for a version other than 1 or 2, and ERR_BUNDLE_MALFORMED for
 * anything else that does not parse, including trailing bytes and ill-formed UTF-8.
 */
export function decodeBundle(bytes: Uint8Array): Bundle {
  abytes(bytes, undefined, 'bundle');
  const r = new ByteReader(bytes, 'ERR_BUNDLE_MALFORMED', 'bundle');
  const version = r.u8('version');
  if (version !== BUNDLE_VERSION && version !== BUNDLE_VERSION_V2) {
    throw new EnrollError('ERR_BUNDLE_VERSION', `bundle: version ${version} is not supported (expected ${BUNDLE_VERSION} or ${BUNDLE_VERSION_V2})`, {
      hint: 'this bundle was made by a different version of ockam-enroll',
    });
  }
  const max = version === BUNDLE_VERSION ? BUNDLE_MAX_LEN : BUNDLE_V2_MAX_LEN;
  if (bytes.length > max) r.fail(`${bytes.length} bytes, at most ${max}`);
  const bundleId = r.bytes(BUNDLE_ID_LEN, 'bundle_id');
  const ikA = r.bytes(BUNDLE_KEY_LEN, 'IK_A');
  const spkA = r.bytes(BUNDLE_KEY_LEN, 'SPK_A');
  const spkSig = r.bytes(XEDDSA_SIGNATURE_LEN, 'SPK_sig');
  const opkA = r.bytes(BUNDLE_KEY_LEN, 'OPK_A');
  const kemHash = version === BUNDLE_VERSION_V2 ? r.bytes(BUNDLE_KEM_HASH_LEN, 'KEM_hash') : undefined;
  const expiresAt = r.u64be('expires_at');
  const addrLen = r.u16be('addr_len');
  if (addrLen > BUNDLE_MAX_ADDR_LEN) r.fail(`"addr_len" is ${addrLen}, at most ${BUNDLE_MAX_ADDR_LEN}`);
  const addr = r.utf8(addrLen, 'Addr');
  const signature = r.bytes(XEDDSA_SIGNATURE_LEN, 'bundle_sig');
  r.end();
  const common = { bundleId, ikA, spkA, spkSig, opkA, expiresAt, addr, signature };
  return kemHash === undefined ? { version: BUNDLE_VERSION, ...common } : { version: BUNDLE_VERSION_V2, ...common, kemHash };
}

/**
 * Checks a decoded bundle and returns it. Cheap checks run first, so a stale or foreign
 * bundle costs no curve arithmetic: expiry (ERR_BUNDLE_EXPIRED, when now >= expiresAt),
 * then the pinned IK_A, then bundle_sig, then SPK_sig (all ERR_BUNDLE_SIGNATURE).
 *
 * Without a pinned `ikA` this only proves the bundle is internally consistent: anyone can
 * make a self-signed bundle, so callers that know the service's key must pin it.
 */
export function verifyBundle(b: Bundle, options: VerifyBundleOptions): Bundle {
  const { now, ikA: pinned } = options ?? ({} as VerifyBundleOptions);
  if (typeof now !== 'number' || !Number.isFinite(now)) {
    throw new EnrollError('ERR_INVALID_ARG', '"now" must be a finite number of unix seconds');
  }
  if (pinned !== undefined) abytes(pinned, BUNDLE_KEY_LEN, 'ikA');
  if (b === null || typeof b !== 'object') throw new EnrollError('ERR_BUNDLE_MALFORMED', 'bundle: not an object');
  if (b.version !== BUNDLE_VERSION && b.version !== BUNDLE_VERSION_V2) {
    throw new EnrollError('ERR_BUNDLE_VERSION', `bundle: version ${String((b as { version: unknown }).version)} is not supported`);
  }
  const malformed = (m: string): never => {
    throw new EnrollError('ERR_BUNDLE_MALFORMED', `bundle: ${m}`);
  };
  const fields = fieldsOf(b, malformed);
  checkFields(fields, malformed);
  if (!(b.signature instanceof Uint8Array) || b.signature.length !== XEDDSA_SIGNATURE_LEN) {
    malformed(`"signature" must be ${XEDDSA_SIGNATURE_LEN} bytes`);
  }

  if (now >= b.expiresAt) {
    throw new EnrollError('ERR_BUNDLE_EXPIRED', `bundle: expired at ${b.expiresAt} (now ${Math.floor(now)})`, {
      hint: 'fetch a new bundle from the service',
    });
  }
  if (pinned !== undefined && !equalBytes(pinned, b.ikA)) {
    throw new EnrollError('ERR_BUNDLE_SIGNATURE', 'bundle: "IK_A" is not the pinned service identity key', {
      hint: 'the bundle comes from a different service than the one you pinned',
    });
  }
  let signed: Uint8Array;
  try {
    signed = encodeSignedPart(fields);
  } catch (cause) {
    // e.g. an Addr over 512 bytes or with a lone surrogate in a hand-built object.
    throw new EnrollError('ERR_BUNDLE_MALFORMED', 'bundle: fields cannot be encoded', { cause });
  }
  const context = b.version === BUNDLE_VERSION ? BUNDLE_SIG_CONTEXT : BUNDLE_SIG_CONTEXT_V2;
  if (!xeddsaVerify(b.ikA, concat(context, signed), b.signature)) {
    throw new EnrollError('ERR_BUNDLE_SIGNATURE', 'bundle: "bundle_sig" does not verify under IK_A');
  }
  if (!xeddsaVerify(b.ikA, b.spkA, b.spkSig)) {
    throw new EnrollError('ERR_BUNDLE_SIGNATURE', 'bundle: "SPK_sig" does not verify under IK_A');
  }
  return b;
}
