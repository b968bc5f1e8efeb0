import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds, parseKeyHex, parsePetName } from './options.js';
import { formatScopes, parseScopeArgs } from '../policy/scopes.js';
import type { EnrollerRecord } from '../store/types.js';

function enrollerView(r: EnrollerRecord) {
  return {
    enroller: toHex(r.publicKey),
    name: r.name,
    state: r.revokedAt === null ? 'allowed' : 'revoked',
    allowed_at: isoTime(r.addedAt),
    revoked_at: isoTime(r.revokedAt),
    may_assign: r.scopes ?? {},
  };
}

export function register(service: Command): void {
  const enroller = service.command('enroller').description('manage the enrollers this service serves')
    .addHelpText('after', groupExamples([
      'ockam-enroll service enroller allow <enroller-key> --name "line 3 terminal"  # the key `enroller init` printed',
      'ockam-enroll service enroller allow <enroller-key> --may-assign role=sensor|camera --may-assign site=*  # what it may assign',
      'ockam-enroll service enroller list',
      'ockam-enroll service enroller revoke <enroller-key>  # its unused bundles and pending approvals stop working',
    ]));

  leaf(enroller, 'allow <enroller-public-key>', 'allow an enroller, by the key `enroller init` printed, to fetch bundles and approve enrollees', 'ockam-enroll service enroller allow 3b6a27bc…e1f0 --name "line 3 terminal"')
    .option('--name <name>', 'a name for the logs')
    .option('--may-assign <key=v1|v2>', 'attributes it may assign: KEY=V1|V2|… or KEY=* for any value (repeatable; without it, none; replaces the previous scope)', (v: string, acc: string[] = []) => [...acc, v])
    .action(
      action(async ({ out, home, opts }, keyHex: string) => {
        const key = parseKeyHex(keyHex, 'the enroller public key');
        const name = parsePetName(opts.name as string | undefined) ?? null;
        const scopes = parseScopeArgs((opts.mayAssign as string[] | undefined) ?? []);
        await withService({ home, opts }, async (svc) => {
          const before = await svc.store.getEnroller(key);
          const rec = await svc.store.allowEnroller(key, name, nowSeconds(), scopes);
          await audit(svc, 'enroller-allowed', {
            enroller: toHex(rec.publicKey),
            enroller_name: rec.name,
            may_assign: rec.scopes ?? {},
            ...(before ? { previous_may_assign: before.scopes ?? {} } : {}),
          });
          out.result(
            { enroller: toHex(rec.publicKey), name: rec.name, allowed_at: isoTime(rec.addedAt), may_assign: rec.scopes ?? {} },
            `allowed ${toHex(rec.publicKey)}${rec.name ? ` (${rec.name})` : ''}; may assign: ${formatScopes(rec.scopes)}`,
          );
        });
      }),
    );

  leaf(enroller, 'show <enroller-public-key>', 'show one enroller and the attributes it may assign', 'ockam-enroll service enroller show 3b6a27bc…e1f0 --json')
    .action(
      action(async ({ out, home, opts }, keyHex: string) => {
        const key = parseKeyHex(keyHex, 'the enroller public key');
        await withService({ home, opts }, async (svc) => {
          const rec = await svc.store.getEnroller(key);
          if (!rec) throw new EnrollError('ERR_USAGE', `no enroller has key ${toHex(key)}`, { hint: 'see `ockam-enroll service enroller list`' });
          const v = enrollerView(rec);
          out.result(v, () =>
            Object.entries(v)
              .map(([k, val]) => `${k.padEnd(12)} ${k === 'may_assign' ? formatScopes(rec.scopes) : (val as string | null) ?? '-'}`)
              .join('\n'),
          );
        });
      }),
    );

  leaf(enroller, 'list', 'list allowed and revoked enrollers', 'ockam-enroll service enroller list --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const recs = await svc.store.listEnrollers();
          const rows = recs.map(enrollerView);
          out.result({ enrollers: rows }, () =>
            rows.length === 0 ? 'no enrollers' : rows.map((r, i) => `${r.enroller}  ${r.state.padEnd(8)} ${(r.name ?? '').padEnd(20)} may assign: ${formatScopes(recs[i]!.scopes)}`).join('\n'),
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
