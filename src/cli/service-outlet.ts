/**
 * `service outlet add|list|remove` (issue #19 item 1, docs/portals.md): service outlets kept
 * in the store (schema 4), so every replica serves them and a running service reads a change
 * at the next stream open, without a restart. Add and remove go into the audit chain.
 */
import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { compileAllow, describeAllow } from '../portal/allow.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds } from './options.js';
import type { OutletRecord } from '../store/types.js';
import { formatHostPort, OUTLET_NAME_HINT, OUTLET_NAME_RE, parseHostPort } from '../portal/target.js';

function parseOutletName(name: string): string {
  if (typeof name !== 'string' || !OUTLET_NAME_RE.test(name)) {
    throw new EnrollError('ERR_USAGE', `outlet name ${JSON.stringify(String(name).slice(0, 80))} is invalid`, { hint: OUTLET_NAME_HINT });
  }
  return name;
}

function outletView(r: OutletRecord) {
  return { name: r.name, to: formatHostPort(r.host, r.port), allow: r.allow, admits: describeAllow(r.allow), added_at: isoTime(r.createdAt) };
}

export function register(service: Command): void {
  const outlet = service.command('outlet').description('manage the service outlets enrolled devices reach with `enrollee inlet --to service/NAME`')
    .addHelpText('after', groupExamples([
      'ockam-enroll service outlet add web --to 127.0.0.1:8080  # every enrolled identity may open streams to it',
      `ockam-enroll service outlet add db --to 127.0.0.1:5432 --allow 'subject.name in ["pump-7", "robot-axiom"]'`,
      `ockam-enroll service outlet add ssh --to 127.0.0.1:22 --allow 'subject.attributes.role == "operator"'`,
      'ockam-enroll service outlet list',
      'ockam-enroll service outlet remove web',
    ]));

  leaf(outlet, 'add <name>', 'add (or replace) a service outlet; running services pick it up at the next stream open', 'ockam-enroll service outlet add web --to 127.0.0.1:8080')
    .requiredOption('--to <host:port>', 'where streams to service/NAME are connected')
    .option('--allow <expr>', 'CEL policy over subject (id, name, attributes…) and outlet.name (docs/policies.md); without it: every enrolled identity')
    .action(
      action(async ({ out, home, opts }, rawName: string) => {
        const name = parseOutletName(rawName);
        const { host, port } = parseHostPort(opts.to as string, '--to');
        const allowRaw = opts.allow as string | undefined;
        compileAllow(allowRaw); // ERR_POLICY (exit 2) before anything is written
        const allow = allowRaw === undefined || allowRaw.trim() === '' ? null : allowRaw.trim();
        await withService({ home, opts }, async (svc) => {
          const rec: OutletRecord = { name, host, port, allow, createdAt: nowSeconds() };
          const before = await svc.store.getOutlet(name);
          await svc.store.putOutlet(rec);
          await audit(svc, 'outlet-added', { outlet: name, to: outletView(rec).to, allow, ...(before ? { replaced: outletView(before).to } : {}) });
          const v = outletView(rec);
          out.result(v, `outlet ${name} -> ${v.to}; admits ${v.admits}`);
        });
      }),
    );

  leaf(outlet, 'list', 'list the service outlets and whom each admits', 'ockam-enroll service outlet list --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const rows = (await svc.store.listOutlets()).map(outletView);
          out.result({ outlets: rows }, () =>
            rows.length === 0
              ? 'no outlets'
              : [
                  ...rows.map((r, _i, all) => {
                    const nw = Math.max(...all.map((x) => x.name.length));
                    const tw = Math.max(...all.map((x) => x.to.length));
                    return `${r.name.padEnd(nw)}  ${r.to.padEnd(tw)}  admits: ${r.admits}`;
                  }),
                  'an outlet without --allow admits every enrolled identity (not revoked)',
                ].join('\n'),
          );
        });
      }),
    );

  leaf(outlet, 'remove <name>', 'remove a service outlet; new streams to it are refused as unknown', 'ockam-enroll service outlet remove web')
    .action(
      action(async ({ out, home, opts }, rawName: string) => {
        const name = parseOutletName(rawName);
        await withService({ home, opts }, async (svc) => {
          const before = await svc.store.getOutlet(name);
          if (!before || !(await svc.store.removeOutlet(name))) {
            throw new EnrollError('ERR_USAGE', `no outlet is named ${name}`, { hint: 'see `ockam-enroll service outlet list`' });
          }
          await audit(svc, 'outlet-removed', { outlet: name, to: outletView(before).to });
          out.result({ name, removed: true }, `removed outlet ${name}`);
        });
      }),
    );
}
