import type { Command } from 'commander';
import { formatAttributes } from '../protocol/codec/attributes.js';
import { parseKeyType } from '../x509/keys.js';
import { action, isoTime, leaf } from './command.js';
import { nowSeconds, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(
    enrollee,
    'renew',
    'renew the certificate from token enrollment (EST simplereenroll, authenticated by the current certificate), with a new key',
    'ockam-enroll enrollee renew\nockam-enroll enrollee renew --key-type ed25519 --json',
  )
    .option('--key-type <type>', 'the new key: p256 or ed25519 (default: the current key\'s type)')
    .action(
      action(async ({ out, home, opts }) => {
        const keyType = opts.keyType === undefined ? undefined : parseKeyType(opts.keyType as string);
        const { renewCertificate } = await import('../roles/enrollee/renew.js');
        const passphrase = passphraseSource(opts);
        const r = await renewCertificate(home, { now: nowSeconds, passphrase, ...(keyType ? { keyType } : {}) });
        out.info(`the previous certificate ${r.previousSerial} stays valid until it expires`);
        out.result(
          {
            renewed: true,
            identity: r.id,
            name: r.name,
            service: r.service,
            serial: r.serial,
            previous_serial: r.previousSerial,
            not_after: isoTime(r.notAfter),
            attributes: r.attributes,
            key_type: r.keyType,
            key: r.paths.key,
            key_encrypted: passphrase.kind !== 'none',
            cert: r.paths.cert,
            ca: r.paths.ca,
          },
          [
            `renewed ${r.name} (${r.id}): certificate ${r.serial} valid until ${isoTime(r.notAfter)}${Object.keys(r.attributes).length > 0 ? `, with ${formatAttributes(r.attributes)}` : ''}`,
            `  key   ${r.paths.key}`,
            `  cert  ${r.paths.cert}`,
            `  ca    ${r.paths.ca}`,
          ].join('\n'),
        );
      }),
    );
}
