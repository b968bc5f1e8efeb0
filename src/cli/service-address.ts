import type { Command } from 'commander';
import { currentAnnouncement, announceAddress } from '../roles/service/address.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds } from './options.js';

export function register(service: Command): void {
  const address = service.command('address').description('the address the service announces: in new bundles, and to enrolled devices')
    .addHelpText('after', groupExamples([
      'ockam-enroll service address set tcp://enroll2.example.com:4100  # signed; devices learn it at their next session',
      'ockam-enroll service start --listen 0.0.0.0:4100  # on the new host, same home; keep the old one answering',
      'ockam-enroll service address show',
    ]));

  leaf(address, 'set <tcp://HOST:PORT>', 'move the service: sign an announcement of the new address with IK_A; new bundles carry it, and enrolled devices learn it at their next session', 'ockam-enroll service address set tcp://enroll.example.com:4200')
    .action(
      action(async ({ out, home, opts }, addr: string) => {
        await withService({ home, opts }, async (svc) => {
          const r = await announceAddress(svc, addr, nowSeconds());
          const a = r.announcement;
          if (r.changed) {
            out.info(`announced as number ${a.seq}, signed by the service key; a running service takes it within a second`);
            out.info(`the listen address is unchanged (${svc.settings.listen}): run \`ockam-enroll service start --listen HOST:PORT\` where the new address points, and keep the old one answering until the devices have moved`);
          } else {
            out.info('this address is already announced: nothing changed');
          }
          out.result(
            { address: a.address, previous: r.previous, seq: a.seq, changed: r.changed, announced_at: isoTime(a.createdAt) },
            r.changed ? `moved from ${r.previous} to ${a.address}` : `address ${a.address}`,
          );
        });
      }),
    );

  leaf(address, 'show', 'show the address in new bundles, and the latest signed announcement', 'ockam-enroll service address show --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const a = await currentAnnouncement(svc);
          out.result(
            { address: a?.address ?? svc.settings.address, seq: a?.seq ?? 0, announced_at: isoTime(a?.createdAt) },
            a ? `address ${a.address} (announcement ${a.seq}, ${isoTime(a.createdAt)})` : `address ${svc.settings.address} (never moved)`,
          );
        });
      }),
    );
}
