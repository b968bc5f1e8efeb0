import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds, parseKeyHex, parsePetName } from './options.js';

export function register(service: Command): void {
  const enroller = service.command('enroller').description('manage the enrollers this service serves')
    .addHelpText('after', groupExamples([
      'ockam-enroll service enroller allow <enroller-key> --name "line 3 terminal"  # the key `enroller init` printed',
      'ockam-enroll service enroller list',
      'ockam-enroll service enroller revoke <enroller-key>  # its unused bundles and pending approvals stop working',
    ]));

  leaf(enroller, 'allow <enroller-public-key>', 'allow an enroller, by the key `enroller init` printed, to fetch bundles and approve enrollees', 'ockam-enroll service enroller allow 3b6a27bc…e1f0 --name "line 3 terminal"')
    .option('--name <name>', 'a name for the logs')
    .action(
      action(async ({ out, home, opts }, keyHex: string) => {
        const key = parseKeyHex(keyHex, 'the enroller public key');
        const name = parsePetName(opts.name as string | undefined) ?? null;
        await withService({ home, opts }, async (svc) => {
          const rec = await svc.store.allowEnroller(key, name, nowSeconds());
          await audit(svc, 'enroller-allowed', { enroller: toHex(rec.publicKey), enroller_name: rec.name });
          out.result({ enroller: toHex(rec.publicKey), name: rec.name, allowed_at: isoTime(rec.addedAt) }, `allowed ${toHex(rec.publicKey)}${rec.name ? ` (${rec.name})` : ''}`);
        });
      }),
    );

  leaf(enroller, 'list', 'list allowed and revoked enrollers', 'ockam-enroll service enroller list --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const rows = (await svc.store.listEnrollers()).map((r) => ({
            enroller: toHex(r.publicKey),
            name: r.name,
            state: r.revokedAt === null ? 'allowed' : 'revoked',
            allowed_at: isoTime(r.addedAt),
            revoked_at: isoTime(r.revokedAt),
          }));
          out.result({ enrollers: rows }, () =>
            rows.length === 0 ? 'no enrollers' : rows.map((r) => `${r.enroller}  ${r.state.padEnd(8)} ${r.name ?? ''}`).join('\n'),
          );
        });
      }),
    );

  leaf(enroller, 'revoke <enroller-public-key>', 'revoke an enroller: its unused bundles and pending approvals stop working at once', 'ockam-enroll service enroller revoke 3b6a27bc…e1f0')
    .action(
      action(async ({ out, home, opts }, keyHex: string) => {
        const key = parseKeyHex(keyHex, 'the enroller public key');
        await withService({ home, opts }, async (svc) => {
          if (!(await svc.store.revokeEnroller(key, nowSeconds()))) {
            throw new EnrollError('ERR_USAGE', `no allowed enroller has key ${toHex(key)}`, { hint: 'see `ockam-enroll service enroller list`' });
          }
          await audit(svc, 'enroller-revoked', { enroller: toHex(key) });
          out.result({ enroller: toHex(key), state: 'revoked' }, `revoked ${toHex(key)}`);
        });
      }),
    );
}
