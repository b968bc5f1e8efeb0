import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { cardToText } from '../protocol/codec/index.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { action, leaf, printQr } from './command.js';
import { parseKeyHex, parsePetName, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(enrollee, 'init', 'make the enrollment key EIK_B (once, before meeting an enroller) and print the card', 'ockam-enroll enrollee init --name "Robot Axiom" --qr')
    .option('--name <pet>', 'a pet name, e.g. "Robot Axiom"')
    .option('--qr', 'print the card as a QR code')
    .option('--force', 'replace an existing EIK_B')
    .option('--service-key <key>', 'pin the service key (64 hex, as `service init` prints it): `enrollee join` then refuses any bundle not signed by it')
    .action(
      action(async ({ out, home, opts }) => {
        const petName = parsePetName(opts.name as string | undefined);
        const serviceKey = opts.serviceKey !== undefined ? parseKeyHex(opts.serviceKey as string, '--service-key') : undefined;
        const e = await EnrolleeHome.init(home, {
          force: opts.force === true,
          passphrase: passphraseSource(opts),
          ...(petName ? { petName } : {}),
          ...(serviceKey ? { serviceKey } : {}),
        });
        const text = cardToText(e.card());
        out.info(`enrollee initialised in ${e.keystore.dir}; enrollee id ${toHex(e.enrolleeId())}`);
        if (serviceKey) out.info(`pinned the service key ${toHex(serviceKey)}: \`enrollee join\` refuses a bundle of any other`);
        if (opts.qr && !out.json) return void (await printQr(out, text));
        out.result({ ...e.describe(), card: text }, text);
      }),
    );
}
