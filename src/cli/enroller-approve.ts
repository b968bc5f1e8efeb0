import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { formatAttributes, parseAttributeArgs } from '../protocol/codec/attributes.js';
import { cardFromText } from '../protocol/codec/index.js';
import { approveCard } from '../roles/enroller/approve.js';
import { cachedBundleEka, EnrollerHome } from '../roles/enroller/home.js';
import { action, isoTime, leaf, printQr, readTextArg, warnTrusted } from './command.js';
import { nowSeconds, parseDuration, parseEka, parsePetName, passphraseSource } from './options.js';

export function register(enroller: Command): void {
  leaf(enroller, 'approve <enrollee-card>', 'approve an enrollee\'s card (text, @FILE or -) with the service, binding it to one bundle', 'ockam-enroll enroller approve OEC1:7N3Q… --name "Robot Axiom" --ttl 30m\n# then hand the bundle it prints to the enrollee: ockam-enroll enrollee join --bundle OEB2:…')
    .option('--name <pet>', 'pet name for the enrollee (overrides the card\'s)')
    .option('--bundle <id>', 'the cached bundle to bind (default: the card\'s bundle, else the next fresh one)')
    .option('--ttl <duration>', 'how long the approval stays pending', '1h')
    .option('--eka <v1|v2>', 'without --bundle and a card naming none: bind the next fresh bundle of this Enrollment Key Agreement', 'v2')
    .option('--qr', 'print the bundle to hand over as a QR code')
    .option('--attr <key=value>', 'an attribute for the enrollee, within this enroller\'s scope (repeatable; docs/policies.md)', (v: string, acc: string[] = []) => [...acc, v])
    .action(
      action(async ({ out, home, opts }, cardArg: string) => {
        const card = cardFromText(await readTextArg(cardArg, 'enrollee card'));
        const ttl = parseDuration(opts.ttl as string, '--ttl', 1, 30 * 86400);
        const petName = parsePetName(opts.name as string | undefined);
        const eka = parseEka(opts.eka as string);
        const attributes = parseAttributeArgs((opts.attr as string[] | undefined) ?? []);
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        const r = await approveCard(enr, {
          card,
          ttl,
          eka,
          now: nowSeconds,
          onPinned: warnTrusted(out),
          ...(petName ? { petName } : {}),
          ...(opts.bundle ? { bundleId: opts.bundle as string } : {}),
          ...(Object.keys(attributes).length > 0 ? { attributes } : {}),
        });
        out.info(`approved enrollee ${toHex(r.enrolleeId)}${r.petName ? ` (${r.petName})` : ''}${Object.keys(attributes).length > 0 ? ` with ${formatAttributes(attributes)}` : ''} until ${isoTime(r.expiresAt)}`);
        if (card.bundleId) out.info('the enrollee already holds this bundle: it can now run `ockam-enroll enrollee join`');
        else out.info('hand this bundle to the enrollee: ockam-enroll enrollee join --bundle <text>');
        if (opts.qr && !out.json) {
          await printQr(out, r.bundle.text);
          return;
        }
        out.result(
          { enrollee: toHex(r.enrolleeId), name: r.petName ?? null, attributes, bundle: r.bundle.id, eka: `v${cachedBundleEka(r.bundle)}`, expires_at: isoTime(r.expiresAt), bundle_text: r.bundle.text },
          r.bundle.text,
        );
      }),
    );
}
