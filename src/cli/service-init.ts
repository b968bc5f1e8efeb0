import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { ServiceHome } from '../roles/service/home.js';
import { hasInlineSecret } from '../store/location.js';
import { action, leaf } from './command.js';
import { nowSeconds, parseCount, passphraseSource, storeOption } from './options.js';

export function register(service: Command): void {
  leaf(service, 'init', 'make the service\'s identity key (IK_A), its first signed prekey and its store', 'ockam-enroll service init --home /var/lib/ockam-enroll --address tcp://enroll.example.com:4100')
    .option('--address <tcp://HOST:PORT>', 'the enrollment address put in bundles', 'tcp://127.0.0.1:4100')
    .option('--https-address <https://HOST:PORT>', 'token enrollment: the HTTPS URL put in tokens and in the server certificate (default: https://127.0.0.1:4443)')
    .option('--cert-days <n>', 'token enrollment: lifetime in days of the client certificates the CA issues', '90')
    .option('--force', 'replace an existing service identity (every device must enroll again)')
    .option('--from <home>', 'a replica: copy the identity (IK_A, CA, HTTPS key, settings) of the service in HOME, which shares a PostgreSQL store; makes no key')
    .action(
      action(async ({ out, home, opts, cmd }) => {
        const passphrase = passphraseSource(opts);
        if (opts.from !== undefined) {
          // Everything else comes from the source home: flags that would differ are refused.
          for (const flag of ['address', 'httpsAddress', 'certDays'] as const) {
            if (cmd.getOptionValueSource(flag) === 'cli') throw new EnrollError('ERR_USAGE', `--from takes the ${flag === 'certDays' ? '--cert-days' : flag === 'address' ? '--address' : '--https-address'} of the service it copies`);
          }
          const svc = await ServiceHome.initFrom(home, String(opts.from), { force: opts.force === true, passphrase, ...storeOption(opts) });
          const key = toHex(svc.ikA.publicKey);
          await svc.close();
          out.info(`replica of the service in ${String(opts.from)} initialised in ${svc.keystore.dir} (store ${svc.location.masked})`);
          out.result({ service_key: key, address: svc.settings.address, https_address: svc.settings.httpsAddress, dir: svc.keystore.dir, store: svc.location.masked }, key);
          return;
        }
        const svc = await ServiceHome.init(home, {
          address: opts.address as string,
          ...(opts.httpsAddress !== undefined ? { httpsAddress: opts.httpsAddress as string } : {}),
          certDays: parseCount(opts.certDays as string, '--cert-days', 1, 3650),
          force: opts.force === true,
          encrypt: passphrase.kind !== 'none',
          passphrase,
          ...storeOption(opts),
          now: nowSeconds(),
        });
        const key = toHex(svc.ikA.publicKey);
        const pki = await svc.requirePki();
        await svc.close();
        out.info(`service initialised in ${svc.keystore.dir}`);
        if (svc.location.kind === 'postgres') {
          out.info(`store: ${svc.location.masked}`);
          if (hasInlineSecret(svc.location)) out.warn('the store\'s password (and any secret parameter of its URL) is not saved in the home: give it with PGPASSWORD or ~/.pgpass (or the whole URL in OCKAM_ENROLL_STORE)');
        }
        out.info(`token enrollment: ${svc.settings.httpsAddress}, CA SHA-256 ${pki.caFingerprint}, certificates for ${svc.settings.certDays} days`);
        out.info('give enrollers this service key to pin (--service-key), and allow them with `service enroller allow`');
        out.result(
          {
            service_key: key,
            address: svc.settings.address,
            https_address: svc.settings.httpsAddress,
            ca_fingerprint: pki.caFingerprint,
            cert_days: svc.settings.certDays,
            dir: svc.keystore.dir,
          },
          key,
        );
      }),
    );
}
