import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollerHome } from '../roles/enroller/home.js';
import { action, leaf } from './command.js';
import { passphraseSource } from './options.js';

export function register(enroller: Command): void {
  leaf(enroller, 'init', 'make the enroller\'s key and print its public key, for `service enroller allow`', 'ockam-enroll enroller init --home ~/.ockam-enroll')
    .option('--force', 'replace an existing enroller key')
    .action(
      action(async ({ out, home, opts }) => {
        const passphrase = passphraseSource(opts);
        const { enroller, publicKey } = await EnrollerHome.init(home, { force: opts.force === true, encrypt: passphrase.kind !== 'none', passphrase });
        const key = toHex(publicKey);
        out.info(`enroller initialised in ${enroller.keystore.dir}`);
        out.info(`on the service, run: ockam-enroll service enroller allow ${key}`);
        out.result({ enroller_key: key, dir: enroller.keystore.dir }, key);
      }),
    );
}
