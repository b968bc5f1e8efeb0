/**
 * The signed address announcement (docs/protocol.md §7.10): how a service that moves tells
 * the enrollees already enrolled with it where it is now.
 *
 *   signed    = "ockam-enroll/v1/address" ‖ seq u64 ‖ address (UTF-8, no length: it is last)
 *   signature = XEdDSA(IK_A, signed)
 *   encoding  = seq u64 ‖ addr_len u16 ‖ address ‖ signature 64
 *
 * The enrollee verifies it with the IK_A it pinned at enrollment, so an announcement is
 * good wherever it comes from (a stale service instance, a relay), and it keeps only an
 * announcement whose seq is higher than the last one it took: an old, validly signed
 * announcement cannot be replayed to move the device back. The context label keeps the
 * signature from ever verifying as a bundle or SPK signature (§4.1), whose signed bytes
 * start with other labels or with a key.
 */
import { EnrollError, type ErrorCode } from '../errors.js';
import { abytes, concat, utf8 } from '../crypto/bytes.js';
import { systemRandom, type RandomSource } from '../crypto/random.js';
import { XEDDSA_SIGNATURE_LEN, xeddsaSign, xeddsaVerify } from '../crypto/xeddsa.js';
import { BUNDLE_MAX_ADDR_LEN } from './codec/bundle.js';
import { ByteReader } from './codec/reader.js';
import { ByteWriter, strictUtf8 } from './codec/writer.js';

export const ADDRESS_SIG_CONTEXT: Uint8Array = utf8('ockam-enroll/v1/address');
/** An announced address is an Addr like the bundle's (§4.1): at most 512 UTF-8 bytes. */
export const ANNOUNCE_MAX_ADDR_LEN = BUNDLE_MAX_ADDR_LEN;
/** Bytes of an encoded announcement with an empty address: seq, addr_len, signature. */
export const ANNOUNCE_MIN_LEN = 8 + 2 + XEDDSA_SIGNATURE_LEN;

export interface AddressAnnouncement {
  /** 1, 2, …: each `service address set` takes the next one. */
  seq: number;
  /** The service's new address, `tcp://HOST:PORT` in practice. */
  address: string;
  /** XEdDSA(IK_A, ADDRESS_SIG_CONTEXT ‖ seq u64 ‖ address). */
  signature: Uint8Array;
}

function checkSeq(seq: unknown, fail: (m: string) => never): number {
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) fail(`"seq" must be an integer in 1..2^53-1, got ${String(seq)}`);
  return seq as number;
}

/** The bytes the signature covers. */
export function announcementSignedBytes(seq: number, address: string): Uint8Array {
  const fail = (m: string): never => {
    throw new EnrollError('ERR_INVALID_ARG', `address announcement: ${m}`);
  };
  checkSeq(seq, fail);
  const addr = strictUtf8(address, 'address');
  if (addr.length > ANNOUNCE_MAX_ADDR_LEN) fail(`"address" is ${addr.length} bytes, at most ${ANNOUNCE_MAX_ADDR_LEN}`);
  return concat(ADDRESS_SIG_CONTEXT, new ByteWriter().u64be(seq, 'seq').finish(), addr);
}

/** Signs an announcement with IK_A's private key. */
export function signAnnouncement(
  ikAPrivate: Uint8Array,
  seq: number,
  address: string,
  random: Uint8Array | RandomSource = systemRandom,
): AddressAnnouncement {
  abytes(ikAPrivate, 32, 'ikAPrivate');
  const signature = xeddsaSign(ikAPrivate, announcementSignedBytes(seq, address), random);
  return { seq, address, signature };
}

export function encodeAnnouncement(a: AddressAnnouncement): Uint8Array {
  abytes(a.signature, XEDDSA_SIGNATURE_LEN, 'signature');
  // Validates seq and the address as the signer does.
  announcementSignedBytes(a.seq, a.address);
  return new ByteWriter()
    .u64be(a.seq, 'seq')
    .u16be(Buffer.byteLength(a.address), 'addr_len')
    .utf8(a.address, 'address')
    .bytes(a.signature, XEDDSA_SIGNATURE_LEN, 'signature')
    .finish();
}

/**
 * Reads an announcement from `r` (structure only, no signature check). Every length is
 * checked before it is sliced; `code` is the caller's malformed code.
 */
export function readAnnouncement(r: ByteReader): AddressAnnouncement {
  const seq = r.u64be('seq');
  if (seq < 1) r.fail('"seq" must be at least 1');
  const len = r.u16be('addr_len');
  if (len > ANNOUNCE_MAX_ADDR_LEN) r.fail(`"addr_len" is ${len}, at most ${ANNOUNCE_MAX_ADDR_LEN}`);
  const address = r.utf8(len, 'address');
  const signature = r.bytes(XEDDSA_SIGNATURE_LEN, 'signature');
  return { seq, address, signature };
}

/** Decodes a whole encoded announcement; malformed input is `code` (ERR_ANNOUNCEMENT_INVALID by default). */
export function decodeAnnouncement(bytes: Uint8Array, code: ErrorCode = 'ERR_ANNOUNCEMENT_INVALID'): AddressAnnouncement {
  const r = new ByteReader(bytes, code, 'address announcement');
  const a = readAnnouncement(r);
  r.end();
  return a;
}

export interface VerifyAnnouncementOptions {
  /** The IK_A the enrollee pinned at enrollment. */
  ikA: Uint8Array;
  /** The highest seq already taken (0 for none): only a newer announcement is accepted. */
  knownSeq: number;
  /** Checks the address is usable (e.g. parses as tcp://HOST:PORT); throw to refuse. Runs before the signature check. */
  checkAddress?: (address: string) => void;
}

/**
 * Checks an announcement: cheap checks first (seq newer than `knownSeq`, the address
 * usable), then the signature under the pinned IK_A. Returns false for an announcement
 * that is not newer (nothing to learn: not an error, since every session hears the
 * current one again); throws ERR_ANNOUNCEMENT_INVALID for one that must not be believed.
 */
export function verifyAnnouncement(a: AddressAnnouncement, opts: VerifyAnnouncementOptions): boolean {
  abytes(opts.ikA, 32, 'ikA');
  if (!Number.isSafeInteger(opts.knownSeq) || opts.knownSeq < 0) {
    throw new EnrollError('ERR_INVALID_ARG', '"knownSeq" must be an integer in 0..2^53-1');
  }
  const bad = (m: string, cause?: unknown): never => {
    throw new EnrollError('ERR_ANNOUNCEMENT_INVALID', `address announcement: ${m}`, cause === undefined ? {} : { cause });
  };
  checkSeq(a.seq, bad);
  if (a.seq <= opts.knownSeq) return false;
  if (opts.checkAddress) {
    try {
      opts.checkAddress(a.address);
    } catch (cause) {
      bad(`the announced address is not usable: ${(cause as Error).message}`, cause);
    }
  }
  let signed: Uint8Array;
  try {
    signed = announcementSignedBytes(a.seq, a.address);
  } catch (cause) {
    return bad('its fields cannot be encoded', cause);
  }
  if (!(a.signature instanceof Uint8Array) || !xeddsaVerify(opts.ikA, signed, a.signature)) {
    bad('the signature does not verify under the pinned service key (IK_A)');
  }
  return true;
}
