/**
 * The credential the service issues with every acceptance (docs/protocol.md §4.4, §5.7):
 * IK_B, the enrollee id and pet name, issued_at = the enrollment time and expires_at =
 * issued_at + the credential lifetime, signed with IK_A.
 *
 * The lifetime is `service start --credential-ttl`, else the `credentialTtl` setting in the
 * service's settings.json (default DEFAULT_CREDENTIAL_TTL, 24 hours).
 *
 * Cost: one XEdDSA signature per enrollment, about half the CPU of accept() (R = rB takes
 * two X25519 base-point multiplications in node:crypto and a field inversion, see
 * crypto/base-mult.ts; node:crypto cannot sign with a bare scalar). IK_A's key pair (spec
 * §2.3) is prepared once. `service start` signs on a thread of its own (CredentialSigner),
 * the requests of one event-loop turn in one message, and enroll.ts starts the signature
 * before the commit, so it runs beside the commit's fsync and off the thread that runs
 * accept(); without a signer thread (library use, tests) it signs in this thread.
 */
import { Worker } from 'node:worker_threads';
import { xeddsaSigner, type XEdDSASigner } from '../../crypto/xeddsa.js';
import { EnrollError } from '../../errors.js';
import { CREDENTIAL_MAX_TTL, credentialSignedBytes, encodeCredential, type CredentialFields } from '../../protocol/credential.js';
import type { SignReply, SignRequest } from './credential-worker.js';
import type { ServiceHome } from './home.js';
import type { Attributes } from '../../protocol/codec/attributes.js';
import { credentialSubjectDigest } from '../../protocol/credential-fields.js';
import { encodeCredentialV2, signCredentialV2 } from '../../protocol/credential-v2.js';
import { serviceCsk } from './csk.js';
import { enrollLifecycleFor } from './hooks.js';

/**
 * 24 h: the bound on how long a revoked device's credential still verifies offline (issue #18
 * finding 2); devices renew theirs over the session (roles/enrollee/lifecycle.ts).
 */
export const DEFAULT_CREDENTIAL_TTL = 24 * 3600;

const signers = new WeakMap<ServiceHome, XEdDSASigner>();

/** IK_A's signer in this thread, prepared once per service home. */
function localSigner(svc: ServiceHome): XEdDSASigner {
  let sign = signers.get(svc);
  if (sign === undefined) {
    sign = xeddsaSigner(svc.ikA.privateKey);
    signers.set(svc, sign);
  }
  return sign;
}

/** The credential lifetime in force for this service, checked. */
export function credentialTtl(svc: ServiceHome): number {
  const ttl = enrollLifecycleFor(svc)?.credentialTtl ?? (svc.settings.credentialTtl as unknown) ?? DEFAULT_CREDENTIAL_TTL;
  if (typeof ttl !== 'number' || !Number.isSafeInteger(ttl) || ttl < 1 || ttl > CREDENTIAL_MAX_TTL) {
    throw new EnrollError('ERR_USAGE', `the credential lifetime must be 1..${CREDENTIAL_MAX_TTL} seconds, got ${String(ttl)}`, {
      hint: `fix "credentialTtl" in ${svc.keystore.dir}/settings.json, or pass --credential-ttl`,
    });
  }
  return ttl;
}

/**
 * The credential version this service issues for an enrollee with `attributes`: settings.json
 * `"credentialVersion"` 2 (always v2: attributes, CSK signature, §4.6; the cheaper signature)
 * or 1 (always v1, no attributes signed); by default v2 for an enrollee that has attributes
 * and v1 for one that has none, so that enrollees that predate v2 (they refuse a credential
 * outside 178..242 bytes) keep enrolling until attributes are given to them.
 */
export function credentialVersion(svc: ServiceHome, attributes: Attributes | undefined): 1 | 2 {
  const v = (svc.settings as unknown as { credentialVersion?: unknown }).credentialVersion;
  if (v === 1 || v === 2) return v;
  return attributes !== undefined && Object.keys(attributes).length > 0 ? 2 : 1;
}

/**
 * The subject digest (protocol/credential-fields.ts) of the credential issueCredential would
 * make now for `rec`: sent in STATUS when the device asks, so that a device holding a
 * credential with other attributes (a `set-attr`, `unset-attr`) fetches a new one.
 */
export function subjectDigestFor(svc: ServiceHome, rec: { petName: string | null; attributes?: Attributes | undefined }): Uint8Array {
  const attributes = credentialVersion(svc, rec.attributes) === 2 ? (rec.attributes ?? {}) : {};
  return credentialSubjectDigest(rec.petName ?? '', attributes);
}

/** Signs and encodes the credential for an enrollee accepted at `now`. */
export async function issueCredential(
  svc: ServiceHome,
  e: { enrolleeId: Uint8Array; ikB: Uint8Array; petName: string | null; now: number; attributes?: Attributes | undefined },
): Promise<{ credential: Uint8Array; expiresAt: number; petName: string; attributes: Attributes }> {
  if (credentialVersion(svc, e.attributes) === 2) {
    // Ed25519 with the CSK in this thread: cheaper than a message to the signing thread.
    const csk = serviceCsk(svc);
    const attributes = e.attributes ?? {};
    const c = signCredentialV2(
      { issuer: svc.ikA.publicKey, enrolleeId: e.enrolleeId, ikB: e.ikB, petName: e.petName ?? '', issuedAt: e.now, expiresAt: e.now + credentialTtl(svc), attributes },
      csk.certificate,
      csk.privateKey,
    );
    return { credential: encodeCredentialV2(c), expiresAt: c.expiresAt, petName: c.petName, attributes };
  }
  const fields: CredentialFields = {
    issuer: svc.ikA.publicKey,
    enrolleeId: e.enrolleeId,
    ikB: e.ikB,
    petName: e.petName ?? '',
    issuedAt: e.now,
    expiresAt: e.now + credentialTtl(svc),
  };
  const message = credentialSignedBytes(fields);
  const thread = enrollLifecycleFor(svc)?.signer;
  const signature = thread !== undefined ? await thread.sign(message) : localSigner(svc)(message);
  return { credential: encodeCredential({ version: 1, ...fields, signature }), expiresAt: fields.expiresAt, petName: fields.petName, attributes: {} };
}

/**
 * IK_A's signatures on a thread of their own (credential-worker.ts). If the thread cannot
 * start or stops, signing goes on in this thread, and the failure is reported once.
 */
export class CredentialSigner {
  readonly #fallback: XEdDSASigner;
  readonly #onError: (reason: string) => void;
  #worker: Worker | undefined;
  /** IK_A's private key (the service home's own buffer), until the thread is started or the signer closed. */
  #ikAPrivate: Uint8Array | undefined;
  #next = 1;
  readonly #pending = new Map<number, { message: Uint8Array; resolve(sig: Uint8Array): void; reject(err: unknown): void }>();
  /** Requests of this turn, posted together at its end. */
  #batch: SignRequest['batch'] = [];

  private constructor(fallback: XEdDSASigner, onError: (reason: string) => void) {
    this.#fallback = fallback;
    this.#onError = onError;
  }

  /**
   * The signer of `service start`. Its thread is started by the first signature, not here:
   * with the enrollment pool (the default) the workers sign every enrollment's credential,
   * and this thread signs only the reissues of `enrollee status`, `renew` and `rotate`, so a
   * service that makes none does not pay a thread's start-up (issue 24: the suite's time is
   * mostly start-ups). IK_A still reaches the thread once, when it starts.
   */
  static start(svc: ServiceHome, onError: (reason: string) => void): CredentialSigner {
    const s = new CredentialSigner(localSigner(svc), onError);
    s.#ikAPrivate = svc.ikA.privateKey;
    return s;
  }

  /** Starts the thread (the first signature does); on failure signing stays in this thread. */
  #spawn(ikAPrivate: Uint8Array): Worker | undefined {
    try {
      // The worker gets its own copy of IK_A's private key (a structured clone) and wipes it once prepared.
      const w = new Worker(new URL('./credential-worker.js', import.meta.url), { workerData: { ikAPrivate: Uint8Array.from(ikAPrivate) } });
      w.unref();
      w.on('message', (m: SignReply) => {
        for (const r of m.results) {
          const p = this.#pending.get(r.id);
          if (p === undefined) continue;
          this.#pending.delete(r.id);
          if ('signature' in r) p.resolve(r.signature);
          else p.reject(new EnrollError('ERR_INTERNAL', `credential signing failed: ${r.error}`));
        }
        if (this.#pending.size === 0) w.unref();
      });
      w.on('error', (err) => this.#lost(w, `the credential signing thread failed: ${err.message}`));
      w.on('exit', (code) => this.#lost(w, `the credential signing thread exited (${code})`));
      this.#worker = w;
      return w;
    } catch (err) {
      this.#onError(`cannot start the credential signing thread: ${(err as Error).message}; signing on the main thread`);
      return undefined;
    }
  }

  #lost(w: Worker, reason: string): void {
    if (this.#worker !== w) return;
    this.#worker = undefined;
    this.#onError(`${reason}; signing on the main thread from now on`);
    // What was in flight is signed here instead.
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      try {
        p.resolve(this.#fallback(p.message));
      } catch (err) {
        p.reject(err);
      }
    }
  }

  sign(message: Uint8Array): Promise<Uint8Array> {
    const ikAPrivate = this.#ikAPrivate;
    this.#ikAPrivate = undefined;
    const w = this.#worker ?? (ikAPrivate !== undefined ? this.#spawn(ikAPrivate) : undefined);
    if (w === undefined) return Promise.resolve(this.#fallback(message));
    return new Promise((resolve, reject) => {
      const id = this.#next++;
      this.#pending.set(id, { message, resolve, reject });
      w.ref(); // a signature in flight keeps the process alive
      this.#batch.push({ id, message });
      if (this.#batch.length === 1) setImmediate(() => this.#post());
    });
  }

  #post(): void {
    const batch = this.#batch;
    this.#batch = [];
    // If the thread was lost or closed meanwhile, #lost or close() signed these here already.
    if (batch.length === 0 || this.#worker === undefined) return;
    this.#worker.postMessage({ batch } satisfies SignRequest);
  }

  /** Stops the thread; later signatures are made in this thread. */
  async close(): Promise<void> {
    this.#ikAPrivate = undefined;
    const w = this.#worker;
    if (w === undefined) return;
    // Whatever is still in flight is signed here.
    this.#worker = undefined;
    for (const [id, p] of this.#pending) {
      this.#pending.delete(id);
      try {
        p.resolve(this.#fallback(p.message));
      } catch (err) {
        p.reject(err);
      }
    }
    await w.terminate();
  }
}
