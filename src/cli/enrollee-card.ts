import type { Command } from 'commander';
import { bundleFromText, cardToText } from '../protocol/codec/index.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { action, leaf, printQr } from './command.js';
import { nowSeconds, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(enrollee, 'card', 'print this enrollee\'s card (EIK_B, pet name, held bundle id) for `enroller approve`', 'ockam-enroll enrollee card --qr')
    .option('--qr', 'print the card as a QR code')
    .action(
      action(async ({ out, home, opts }) => {
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const held = e.heldBundleText();
        let bundleId: Uint8Array | undefined;
        if (held) {
          try {
            bundleId = bundleFromText(held, { now: nowSeconds() }).bundleId;
          } catch {
            bundleId = undefined; // an expired or damaged held bundle is simply not named
          }
        }
        const text = cardToText(e.card(bundleId));
        if (opts.qr && !out.json) return void (await printQr(out, text));
        out.result({ ...e.describe(), card: text }, text);
      }),
    );
}
