/**
 * The service's side of the signed revocation list (docs/protocol.md §4.7, issue #18
 * finding 2): reads the revoked enrollees from the store and signs the list with IK_A.
 * `service revocations --out` writes one; `GET /revocations` on the HTTPS listener serves one
 * from memory (RevocationListCache), rebuilt when the set changes or half of its freshness
 * window has passed, so an unauthenticated request costs no signature (compare finding 5).
 */
import { xeddsaSigner, type XEdDSASigner } from '../crypto/xeddsa.js';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { REVOCATIONS_MAX_ENTRIES, REVOCATIONS_MAX_VALIDITY, signRevocationList, type RevokedEntry } from '../protocol/revocations.js';
import type { ServiceHome } from '../roles/service/home.js';

/** A list's freshness window by default: a revocation reaches a verifier that refreshes its list this often within this long. */
export const DEFAULT_REVOCATIONS_VALIDITY = 3600;
/** The HTTPS listener reads the store for the set at most this often (ms); a burst of requests shares one read. */
export const REVOCATIONS_REFRESH_MS = 1000;

export interface IssuedRevocationList {
  bytes: Uint8Array;
  issuedAt: number;
  nextUpdate: number;
  count: number;
}

/** The revoked enrollees, as the list carries them. */
export async function revokedEntries(svc: ServiceHome): Promise<RevokedEntry[]> {
  const revoked = await svc.store.listEnrollees('revoked');
  if (revoked.length > REVOCATIONS_MAX_ENTRIES) {
    throw new EnrollError('ERR_USAGE', `${revoked.length} enrollees are revoked, more than a revocation list holds (${REVOCATIONS_MAX_ENTRIES})`);
  }
  return revoked.map((r) => ({ enrolleeId: r.id, revokedAt: r.revokedAt ?? 0 }));
}

export function checkValidity(seconds: number): number {
  if (!Number.isSafeInteger(seconds) || seconds < 1 || seconds > REVOCATIONS_MAX_VALIDITY) {
    throw new EnrollError('ERR_USAGE', `a revocation list's validity must be 1..${REVOCATIONS_MAX_VALIDITY} seconds, got ${String(seconds)}`);
  }
  return seconds;
}

export function issueRevocationList(svc: ServiceHome, entries: readonly RevokedEntry[], now: number, validity: number, sign: XEdDSASigner = xeddsaSigner(svc.ikA.privateKey)): IssuedRevocationList {
  const nextUpdate = now + checkValidity(validity);
  const bytes = signRevocationList({ issuer: svc.ikA.publicKey, issuedAt: now, nextUpdate, entries }, sign);
  return { bytes, issuedAt: now, nextUpdate, count: entries.length };
}

/**
 * The list the HTTPS listener serves. The set is read from the store at most once per
 * REVOCATIONS_REFRESH_MS (so a revocation made on another replica shows within about a
 * second), and the list is signed again only when the set changed or half of its window
 * has passed; concurrent requests share one read and one build.
 */
export class RevocationListCache {
  readonly #svc: ServiceHome;
  readonly #validity: number;
  readonly #now: () => number;
  readonly #clockMs: () => number;
  #sign: XEdDSASigner | undefined;
  #current: { key: string; list: IssuedRevocationList; readAtMs: number } | undefined;
  #pending: Promise<IssuedRevocationList> | undefined;

  constructor(svc: ServiceHome, opts: { validity?: number; now: () => number; clockMs?: () => number }) {
    this.#svc = svc;
    this.#validity = checkValidity(opts.validity ?? DEFAULT_REVOCATIONS_VALIDITY);
    this.#now = opts.now;
    this.#clockMs = opts.clockMs ?? (() => performance.now());
  }

  current(): Promise<IssuedRevocationList> {
    const c = this.#current;
    const t = this.#now();
    if (c && this.#clockMs() - c.readAtMs < REVOCATIONS_REFRESH_MS && t - c.list.issuedAt < this.#validity / 2) return Promise.resolve(c.list);
    this.#pending ??= (async () => {
      try {
        const entries = await revokedEntries(this.#svc);
        const key = entries.map((e) => toHex(e.enrolleeId)).sort().join(',');
        const now = this.#now();
        const prev = this.#current;
        let list: IssuedRevocationList;
        if (prev && prev.key === key && now - prev.list.issuedAt < this.#validity / 2) list = prev.list;
        else {
          this.#sign ??= xeddsaSigner(this.#svc.ikA.privateKey);
          list = issueRevocationList(this.#svc, entries, now, this.#validity, this.#sign);
        }
        this.#current = { key, list, readAtMs: this.#clockMs() };
        return list;
      } finally {
        this.#pending = undefined;
      }
    })();
    return this.#pending;
  }
}
