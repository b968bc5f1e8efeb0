import type { Command } from 'commander';
import { resolve } from 'node:path';
import { EnrollError } from '../errors.js';
import { writeFileAtomic } from '../keystore/files.js';
import { EnrollerHome } from '../roles/enroller/home.js';
import { defaultService, requestToken } from '../roles/enroller/tokens.js';
import { IDENTITY_NAME_RULE, isIdentityName } from '../x509/identity.js';
import { action, groupExamples, isoTime, leaf, printQr, warnTrusted } from './command.js';
import { parseDuration, parseKeyHex, passphraseSource } from './options.js';

export function register(enroller: Command): void {
  const token = enroller
    .command('token')
    .description('one-time tokens for X.509 enrollment (docs/token-enrollment.md)')
    .addHelpText(
      'after',
      groupExamples([
        'ockam-enroll enroller token create --name sensor-12 --ttl 2h --out sensor-12.jwt',
        'ockam-enroll enrollee join --token @sensor-12.jwt  # on the device, with the token handed over',
      ]),
    );

  leaf(
    token,
    'create',
    'have the service create an identity and its one-time enrollment token (a JWT)',
    'ockam-enroll enroller token create --name sensor-12 --ttl 2h --out sensor-12.jwt\n# then on the device: ockam-enroll enrollee join --token @sensor-12.jwt',
  )
    .requiredOption('--name <name>', `the identity's name, the CN of its certificate (${IDENTITY_NAME_RULE})`)
    .option('--service <tcp://HOST:PORT>', 'the service\'s address (default: the one service this enroller knows)')
    .option('--service-key <key>', 'the service key to pin (hex); without it a known pin is checked, or the key is trusted on first use')
    .option('--ttl <duration>', 'how long the token stays usable', '1h')
    .option('--out <file>', 'write the token to FILE (mode 0600) instead of stdout')
    .option('--force', 'with --out: replace an existing file')
    .option('--qr', 'print the token as a QR code')
    .action(
      action(async ({ out, home, opts }) => {
        const name = opts.name as string;
        if (!isIdentityName(name)) throw new EnrollError('ERR_USAGE', `--name must be ${IDENTITY_NAME_RULE}`);
        const ttl = parseDuration(opts.ttl as string, '--ttl', 1, 30 * 86400);
        const serviceKey = opts.serviceKey ? parseKeyHex(opts.serviceKey as string, '--service-key') : undefined;
        if (opts.out !== undefined && opts.qr) throw new EnrollError('ERR_USAGE', 'choose one of --out and --qr');
        if (opts.force && opts.out === undefined) throw new EnrollError('ERR_USAGE', '--force only applies with --out');
        const outFile = opts.out === undefined ? undefined : resolve(opts.out as string);
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        const service = (opts.service as string | undefined) ?? defaultService(enr);
        const t = await requestToken(enr, { service, name, ttl, ...(serviceKey ? { serviceKey } : {}), onPinned: warnTrusted(out) });
        out.info(`created identity ${t.identityId} (${t.name}); its token enrolls one device at ${t.issuer} until ${isoTime(t.expiresAt)}`);
        const summary = { identity: t.identityId, name: t.name, expires_at: isoTime(t.expiresAt), service: t.address, issuer: t.issuer };
        if (outFile !== undefined) {
          writeFileAtomic(outFile, `${t.jwt}\n`, { mode: 0o600, overwrite: opts.force === true, existsHint: 'use --force to replace it, or choose another --out' });
          out.info(`wrote the token to ${outFile}; hand it to the device: ockam-enroll enrollee join --token @${outFile}`);
          out.result({ ...summary, out: outFile }, '');
          return;
        }
        out.info('hand this token to the device: ockam-enroll enrollee join --token <token>');
        if (opts.qr && !out.json) {
          await printQr(out, t.jwt);
          return;
        }
        out.result({ ...summary, token: t.jwt }, t.jwt);
      }),
    );
}
