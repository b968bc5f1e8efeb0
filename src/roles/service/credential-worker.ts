/**
 * The credential signing thread of `service start` (credentials.ts, CredentialSigner): one
 * XEdDSA signature with IK_A per accepted enrollment, off the thread that runs accept().
 * It receives IK_A's private key once, prepares the signer (xeddsaSigner) and wipes its copy
 * of the bytes; it signs only the messages it is sent, which the main thread builds with
 * credentialSignedBytes (the context label is always part of them).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { xeddsaSigner } from '../../crypto/xeddsa.js';

export type SignRequest = { id: number; message: Uint8Array };
export type SignReply = { id: number; signature: Uint8Array } | { id: number; error: string };

const { ikAPrivate } = workerData as { ikAPrivate: Uint8Array };
const sign = xeddsaSigner(ikAPrivate);
ikAPrivate.fill(0);

parentPort!.on('message', (req: SignRequest) => {
  try {
    parentPort!.postMessage({ id: req.id, signature: sign(req.message) } satisfies SignReply);
  } catch (err) {
    parentPort!.postMessage({ id: req.id, error: (err as Error).message } satisfies SignReply);
  }
});
