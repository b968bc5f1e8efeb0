/**
 * The credential signing thread of `service start` (credentials.ts, CredentialSigner): one
 * XEdDSA signature with IK_A per accepted enrollment, off the thread that runs accept().
 * It receives IK_A's private key once, prepares the signer (xeddsaSigner) and wipes its copy
 * of the bytes; it signs only the messages it is sent, which the main thread builds with
 * credentialSignedBytes (the context label is always part of them).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { xeddsaSigner } from '../../crypto/xeddsa.js';

/** The messages of one turn of the main thread's event loop, signed as one batch. */
export type SignRequest = { batch: { id: number; message: Uint8Array }[] };
export type SignReply = { results: ({ id: number; signature: Uint8Array } | { id: number; error: string })[] };

const { ikAPrivate } = workerData as { ikAPrivate: Uint8Array };
const sign = xeddsaSigner(ikAPrivate);
ikAPrivate.fill(0);

parentPort!.on('message', (req: SignRequest) => {
  const results: SignReply['results'] = req.batch.map(({ id, message }) => {
    try {
      return { id, signature: sign(message) };
    } catch (err) {
      return { id, error: (err as Error).message };
    }
  });
  parentPort!.postMessage({ results } satisfies SignReply);
});
