/** Shared fixtures for the x509 tests: a CA, and an assertion on EnrollError codes. */
import assert from 'node:assert/strict';
import { isEnrollError, type ErrorCode } from '../../src/errors.js';
import { createRootCa, parseCertificate, type X509Certificate } from '../../src/x509/ca.js';
import { generateKeyPair, type CryptoKeyPair } from '../../src/x509/keys.js';

export const NOW = Math.floor(Date.now() / 1000);
export const ID = 'ab'.repeat(32);

export async function makeCa(commonName?: string): Promise<{ ca: X509Certificate; der: Uint8Array; keys: CryptoKeyPair }> {
  const keys = await generateKeyPair('p256');
  const der = await createRootCa({ keys, now: NOW, ...(commonName ? { commonName } : {}) });
  return { ca: parseCertificate(der, 'test CA'), der, keys };
}

export function isCode(code: ErrorCode, includes?: string | RegExp) {
  return (e: unknown): boolean => {
    assert.ok(isEnrollError(e), `expected EnrollError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (includes !== undefined) {
      if (typeof includes === 'string') assert.ok(e.message.includes(includes), `"${e.message}" should mention "${includes}"`);
      else assert.match(e.message, includes);
    }
    return true;
  };
}
