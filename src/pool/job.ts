/**
 * The per-message work of an enrollment that the pool runs off the main thread (issue 23
 * item 1): checks 4 and 5 (docs/protocol.md §5.4, §5A.5: the ML-KEM decapsulation, the DHs,
 * the AEAD, the POP), the credential signature (§4.4: XEdDSA with IK_A; or §4.6: a version 2
 * credential with the enrollee's attributes, Ed25519 with the CSK) and the sealed acceptance
 * (§5.7).
 * Bytes in, bytes out: no I/O, no store. The main thread ran checks 1–3 and keeps the
 * commit; it sends only what is public or sealed under the store key (the message, the
 * sealed OPK, public keys, the acceptance's fields), and gets back only what is public or
 * sealed under the enrollee's session key (IK_B, the credential, the response frame).
 */
import type { KeyObject } from 'node:crypto';
import { concat, equalBytes } from '../crypto/bytes.js';
import { importX25519Private } from '../crypto/x25519.js';
import type { XEdDSASigner } from '../crypto/xeddsa.js';
import { EnrollError } from '../errors.js';
import type { Attributes } from '../protocol/codec/attributes.js';
import { credentialSignedBytes, encodeCredential, type CredentialFields } from '../protocol/credential.js';
import { encodeCredentialV2, signCredentialV2 } from '../protocol/credential-v2.js';
import { accept, acceptV2, serviceSession } from '../protocol/enrollment/index.js';
import { ACCEPT_AAD, ENROLL_STATUS, encodeAcceptance, encodeEnrollResponse } from '../protocol/messages/service.js';
import type { Sealer } from '../store/sealing.js';
import type { SignedPrekeyRecord } from '../store/types.js';
import { kemSecretKey, spkKey, type PreparedCsk } from './keys.js';

/** One enrollment message whose checks 1–3 passed on the main thread. */
export interface OpenJob {
  id: number;
  eka: 1 | 2;
  message: Uint8Array;
  /** The approval's SPK, by id: the worker was sent its record (sealed) beforehand. */
  spkId: number;
  /** Which public key that SPK id must have (a store replaced under the same id is not trusted). */
  spkPublicKey: Uint8Array;
  eikB: Uint8Array;
  bundleId: Uint8Array;
  opkSealed: Uint8Array;
  /** The bundle's Addr (in the AAD). */
  bundleAddr: string;
  enrolleeId: Uint8Array;
  issuedAt: number;
  expiresAt: number;
  /** The pet name and address the acceptance and the credential carry. */
  petName: string;
  addr: string;
  /**
   * A version 2 credential (§4.6) instead of version 1: the attributes it carries (the
   * approval's, read from the store and checked there; encodeAttributes checks their bounds
   * again when signing) and which CSK signs it (cskKey of its certificate: the worker was
   * sent that CSK, sealed, beforehand).
   */
  v2?: { attributes: Attributes; csk: string };
}

export type OpenResult =
  | { id: number; ok: true; ikB: Uint8Array; credential: Uint8Array; response: Uint8Array }
  /** code and message of the EnrollError: fixed texts of the protocol code, never key material. */
  | { id: number; ok: false; code: string; message: string };

/** What a worker holds: IK_A (as a KeyObject and a signer), the store's sealer, the SPKs and CSKs it was sent. */
export interface JobKeys {
  ikAPublic: Uint8Array;
  ikAPrivate: KeyObject;
  sign: XEdDSASigner;
  sealer: Sealer;
  spks: Map<number, SignedPrekeyRecord>;
  /** By cskKey (keys.ts). */
  csks: Map<string, PreparedCsk>;
}

export function runOpenJob(keys: JobKeys, job: OpenJob): OpenResult {
  try {
    const spk = keys.spks.get(job.spkId);
    if (spk === undefined || !equalBytes(spk.publicKey, job.spkPublicKey)) {
      throw new EnrollError('ERR_INTERNAL', `signed prekey ${job.spkId} was not sent to this worker`);
    }
    const csk = job.v2 === undefined ? undefined : keys.csks.get(job.v2.csk);
    if (job.v2 !== undefined && csk === undefined) throw new EnrollError('ERR_INTERNAL', 'the credential-signing key was not sent to this worker');
    const spkA = spkKey(keys.sealer, spk);
    const kem = job.eka === 2 ? kemSecretKey(keys.sealer, spk) : undefined;
    const opkPrivate = keys.sealer.open(job.opkSealed, 'opk', job.bundleId);
    let opkA: KeyObject;
    try {
      opkA = importX25519Private(opkPrivate, 'OPK_A');
    } finally {
      opkPrivate.fill(0);
    }
    const pending = { eikB: job.eikB, spkA, opkA, addr: job.bundleAddr };
    const result =
      kem === undefined
        ? accept(job.message, keys.ikAPrivate, { isReplay: () => false, lookupPending: () => pending })
        : acceptV2(job.message, keys.ikAPrivate, {
            isReplay: () => false,
            lookupPending: () => ({ ...pending, kemHash: kem.hash, kemSecretKey: kem.decapsulator }),
          });
    const fields: CredentialFields = {
      issuer: keys.ikAPublic,
      enrolleeId: job.enrolleeId,
      ikB: result.ikB,
      petName: job.petName,
      issuedAt: job.issuedAt,
      expiresAt: job.expiresAt,
    };
    // As issueCredential (roles/service/credentials.ts) makes them in the main thread.
    const credential =
      csk === undefined
        ? encodeCredential({ version: 1, ...fields, signature: keys.sign(credentialSignedBytes(fields)) })
        : encodeCredentialV2(signCredentialV2({ ...fields, attributes: job.v2!.attributes }, csk.certificate, csk.privateKey));
    // A fresh SessionCipher (counter 0) per job: a resealed acceptance (the pet name changed
    // before the commit, enroll.ts) reuses nonce 0 with another plaintext, but only one of the
    // two ciphertexts ever leaves the process; the other is dropped on the main thread.
    const session = serviceSession(result.session);
    const sealed = session.send.seal(
      encodeAcceptance({ enrolleeId: job.enrolleeId, enrolledAt: job.issuedAt, petName: job.petName, addr: job.addr, credential }),
      concat(ACCEPT_AAD, job.enrolleeId),
    );
    result.session.wipe();
    return { id: job.id, ok: true, ikB: result.ikB, credential, response: encodeEnrollResponse(ENROLL_STATUS.ACCEPTED, sealed) };
  } catch (err) {
    if (err instanceof EnrollError) return { id: job.id, ok: false, code: err.code, message: err.message };
    return { id: job.id, ok: false, code: 'ERR_INTERNAL', message: (err as Error)?.message ?? String(err) };
  }
}
