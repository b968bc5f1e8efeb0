import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { fetchBundles } from '../roles/enroller/bundles.js';
import { cachedBundleEka, EnrollerHome } from '../roles/enroller/home.js';
import { action, groupExamples, isoTime, leaf, printQr, warnTrusted } from './command.js';
import { nowSeconds, parseCount, parseEka, parseKeyHex, passphraseSource } from './options.js';

export function register(enroller: Command): void {
  const bundle = enroller.command('bundle').description('fetch and inspect enrollment bundles')
    .addHelpText('after', groupExamples([
      'ockam-enroll enroller bundle fetch --service tcp://enroll.example.com:4100 --count 10 --service-key <service-key>',
      'ockam-enroll enroller bundle list',
      'ockam-enroll enroller bundle show <bundle-id> --qr  # 4 or more of its first hex digits will do',
    ]));

  leaf(bundle, 'fetch', 'fetch bundles from the service into the local cache', 'ockam-enroll enroller bundle fetch --service tcp://enroll.example.com:4100 --count 50 --service-key 9f2c…')
    .requiredOption('--service <tcp://HOST:PORT>', 'the service\'s address')
    .option('--count <n>', 'how many bundles (1..100000)', '1')
    .option('--service-key <key>', 'the service key to pin (hex); without it the key is trusted on first use and pinned')
    .option('--eka <v1|v2>', 'the bundles\' Enrollment Key Agreement: v2 (X3DH + ML-KEM-768) or v1 (X3DH)', 'v2')
    .action(
      action(async ({ out, home, opts }) => {
        const count = parseCount(opts.count as string, '--count', 1, 100_000);
        const eka = parseEka(opts.eka as string);
        const serviceKey = opts.serviceKey ? parseKeyHex(opts.serviceKey as string, '--service-key') : undefined;
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        const r = await fetchBundles(enr, {
          service: opts.service as string,
          count,
          eka,
          ...(serviceKey ? { serviceKey } : {}),
          now: nowSeconds,
          progress: (n) => count > 1000 && out.info(`fetched ${n}/${count}`),
          onPinned: warnTrusted(out),
        });
        out.result(
          { service: r.address, service_key: toHex(r.serviceKey), eka: `v${eka}`, fetched: r.fetched.length, bundles: r.fetched.map((b) => b.id) },
          `fetched ${r.fetched.length} EKA v${eka} bundle${r.fetched.length === 1 ? '' : 's'} from ${r.address}`,
        );
      }),
    );

  leaf(bundle, 'list', 'list cached bundles and what became of them', 'ockam-enroll enroller bundle list --json')
    .action(
      action(async ({ out, home, opts }) => {
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        const now = nowSeconds();
        const rows = enr.bundles().map((b) => ({
          id: b.id,
          service: b.service,
          eka: `v${cachedBundleEka(b)}`,
          state: b.state === 'fresh' && b.expires_at <= now ? 'expired' : b.state,
          expires_at: isoTime(b.expires_at),
          enrollee: b.enrollee ?? null,
          name: b.name ?? null,
        }));
        out.result({ bundles: rows }, () =>
          rows.length === 0 ? 'no bundles: fetch some with `ockam-enroll enroller bundle fetch`' : rows.map((r) => `${r.id}  ${r.eka}  ${r.state.padEnd(8)}  ${r.expires_at}  ${r.name ?? r.enrollee ?? ''}`).join('\n'),
        );
      }),
    );

  leaf(bundle, 'show <bundle-id>', 'print a bundle\'s text form (or a QR code) to hand to an enrollee', 'ockam-enroll enroller bundle show 4f0c --qr')
    .option('--qr', 'print it as a QR code')
    .action(
      action(async ({ out, home, opts }, id: string) => {
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        const b = enr.findBundle(id);
        if (b.state !== 'fresh') out.warn(`bundle ${b.id} is ${b.state}${b.enrollee ? ` (enrollee ${b.enrollee})` : ''}`);
        if (opts.qr && !out.json) {
          await printQr(out, b.text);
          return;
        }
        out.result({ id: b.id, service: b.service, eka: `v${cachedBundleEka(b)}`, state: b.state, expires_at: isoTime(b.expires_at), text: b.text }, b.text);
      }),
    );
}
