import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { ServiceHome } from '../roles/service/home.js';
import { rotatePrekey } from '../roles/service/rotation.js';
import { withService } from './service-home.js';
import { action, isoTime, leaf } from './command.js';
import { nowSeconds, passphraseSource, storeOption } from './options.js';

export function register(service: Command): void {
  const prekey = service.command('prekey').description('the signed prekey (SPK_A) put in new bundles')
    .addHelpText('after', '\nExample:\n  ockam-enroll service prekey rotate --json\n');

  leaf(prekey, 'rotate', 'make a new signed prekey for new bundles; bundles already handed out keep working until they expire', 'ockam-enroll service prekey rotate --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const { spk, retired } = await rotatePrekey(svc, nowSeconds());
          out.info(`bundles fetched from now on carry the new signed prekey; ${retired === 1 ? 'the previous one stays' : `the ${retired} previous ones stay`} usable for the bundles already handed out`);
          out.result(
            { spk_id: spk.id, spk_public: toHex(spk.publicKey), created_at: isoTime(spk.createdAt), retired },
            `signed prekey ${spk.id}: ${toHex(spk.publicKey)}`,
          );
        });
      }),
    );

  leaf(prekey, 'list', 'list the signed prekeys: the current one, and retired ones that unused bundles still name', 'ockam-enroll service prekey list --json')
    .action(
      action(async ({ out, home, opts }) => {
        const svc = await ServiceHome.open(home, { passphrase: passphraseSource(opts), ...storeOption(opts) });
        const store = await svc.lifecycleStore();
        try {
          const rows = (await store.listSignedPrekeys(nowSeconds())).map((s) => ({
            spk_id: s.id,
            spk_public: toHex(s.publicKey),
            state: s.retiredAt === null ? 'current' : 'retired',
            created_at: isoTime(s.createdAt),
            retired_at: isoTime(s.retiredAt),
            live_bundles: s.liveBundles,
          }));
          out.result({ prekeys: rows }, () =>
            rows.map((r) => `${String(r.spk_id).padStart(4)}  ${r.spk_public}  ${r.state.padEnd(7)}  ${r.live_bundles} unused bundles`).join('\n'),
          );
        } finally {
          await store.close();
          await svc.close();
        }
      }),
    );
}
