import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { ServiceHome } from '../roles/service/home.js';
import { action, leaf } from './command.js';
import { nowSeconds, passphraseSource } from './options.js';

export function register(service: Command): void {
  leaf(service, 'init', 'make the service\'s identity key (IK_A), its first signed prekey and its store', 'ockam-enroll service init --home /var/lib/ockam-enroll --address tcp://enroll.example.com:4100')
    .option('--address <tcp://HOST:PORT>', 'the enrollment address put in bundles', 'tcp://127.0.0.1:4100')
    .option('--force', 'replace an existing service identity (every device must enroll again)')
    .action(
      action(async ({ out, home, opts }) => {
        const passphrase = passphraseSource(opts);
        const svc = await ServiceHome.init(home, {
          address: opts.address as string,
          force: opts.force === true,
          encrypt: passphrase.kind !== 'none',
          passphrase,
          now: nowSeconds(),
        });
        const key = toHex(svc.ikA.publicKey);
        await svc.close();
        out.info(`service initialised in ${svc.keystore.dir}`);
        out.info('give enrollers this service key to pin (--service-key), and allow them with `service enroller allow`');
        out.result({ service_key: key, address: svc.settings.address, dir: svc.keystore.dir }, key);
      }),
    );
}
