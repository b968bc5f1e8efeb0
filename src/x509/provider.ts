/**
 * @peculiar/x509, loaded the one way this project uses it: reflect-metadata first (its
 * dependency injection needs the Reflect API before the module body runs), then Node's own
 * WebCrypto as the crypto provider, so every signature goes through node:crypto.
 *
 * Every other file imports x509 from here, never from '@peculiar/x509' directly.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';

// The cast: the library types the provider with lib.dom's Crypto, which is structurally Node's.
x509.cryptoProvider.set(webcrypto as never);

export { x509 };

/** Node's WebCrypto, for key generation and import/export (lib.dom is not in this tsconfig). */
export const subtle = webcrypto.subtle;
