import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { ServiceHome } from '../roles/service/home.js';
import { rotatePrekey } from '../roles/service/rotation.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds, passphraseSource, storeOption } from './options.js';

export function register(service: Command): void {
  const prekey = service.command('prekey').description('the signed prekey (SPK_A, with its ML-KEM-768 prekey for EKA v2) put in new bundles')
    .addHelpText('after', groupExamples([
      'ockam-enroll service prekey rotate  # bundles fetched from now on carry the new signed prekey (and ML-KEM prekey)',
      'ockam-enroll service prekey list  # the retired ones serve the bundles already handed out',
    ]));

  leaf(prekey, 'rotate', 'make a new signed prekey for new bundles; bundles already handed out keep working until they expire', 'ockam-enroll service prekey rotate --json')
    .action(
      action(async ({ out, home, opts }) => {
        await withService({ home, opts }, async (svc) => {
          const { spk, retired, kemSeedsErased } = await rotatePrekey(svc, nowSeconds());
          out.info(`bundles fetched from now on carry the new signed prekey and its ML-KEM-768 prekey; ${retired === 1 ? 'the previous one stays' : `the ${retired} previous ones stay`} usable for the bundles already handed out`);
          if (kemSeedsErased > 0) out.info(`erased the ML-KEM-768 seed${kemSeedsErased === 1 ? '' : 's'} of ${kemSeedsErased} retired prekey${kemSeedsErased === 1 ? '' : 's'} whose bundles have all expired`);
          out.result(
            { spk_id: spk.id, spk_public: toHex(spk.publicKey), kem_hash: spk.kem ? toHex(spk.kem.hash) : null, created_at: isoTime(spk.createdAt), retired, kem_seeds_erased: kemSeedsErased },
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
            rows.map((r) => `${String(r.spk_id).padStart(4)}  ${r.spk_public}  ${r.state.padEnd(7)}  ${r.live_bundles} unused bundle${r.live_bundles === 1 ? '' : 's'}`).join('\n'),
          );
        } finally {
          await store.close();
          await svc.close();
        }
      }),
    );
}
