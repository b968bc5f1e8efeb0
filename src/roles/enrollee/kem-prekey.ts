/**
 * Fetching PQSPK_A for a v2 bundle (docs/protocol.md §4.5, §7.2 KIND_KEM_PREKEY). A v2
 * bundle carries only KEM_hash = SHA-256(PQSPK_A) under IK_A's signature, so that it stays
 * small enough for a QR code; the enrollee fetches the 1184-byte key from the bundle's
 * address, which it must reach to enroll anyway, and accepts it only if its SHA-256 is the
 * signed KEM_hash. Whoever answers is not trusted: a wrong key is ERR_KEM_PREKEY, before
 * anything is encapsulated or sent.
 */
import { toHex } from '../../crypto/bytes.js';
import { EnrollError } from '../../errors.js';
import type { BundleV2 } from '../../protocol/codec/bundle.js';
import { checkKemPrekey } from '../../protocol/enrollment/index.js';
import { ENROLL_STATUS, enrollStatusError, KEM_PREKEY_LEN, KIND_KEM_PREKEY, kindFrame } from '../../protocol/messages/service.js';
import { connectTcp } from '../../transport/tcp.js';

export async function fetchKemPrekey(bundle: BundleV2, timeoutMs = 15_000): Promise<Uint8Array> {
  const conn = await connectTcp(bundle.addr, { readTimeoutMs: timeoutMs });
  let answer: Uint8Array;
  try {
    await conn.writeFrame(kindFrame(KIND_KEM_PREKEY));
    await conn.writeFrame(bundle.kemHash);
    answer = await conn.readFrame(timeoutMs);
  } finally {
    conn.destroy();
  }
  if (answer.length === 1) {
    if (answer[0] === ENROLL_STATUS.UNKNOWN) {
      throw new EnrollError('ERR_KEM_PREKEY', `the service at ${bundle.addr} has no KEM prekey with the bundle's hash ${toHex(bundle.kemHash).slice(0, 16)}…`, {
        hint: 'the bundle comes from another service than the one at its address, or from a store that was re-initialised',
      });
    }
    throw enrollStatusError(answer[0]!);
  }
  if (answer.length !== KEM_PREKEY_LEN) {
    // Not a key at all: as untrusted as a key with the wrong hash (§5A.4), and refused alike.
    throw new EnrollError('ERR_KEM_PREKEY', `the service at ${bundle.addr} answered the KEM prekey request with ${answer.length} bytes, expected ${KEM_PREKEY_LEN}`, {
      hint: 'what answers at the bundle\'s address is not the service that signed the bundle; check the bundle\'s address',
    });
  }
  return checkKemPrekey(bundle, answer);
}
