import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { bundleFromText, bundleToText, cardToText } from '../protocol/codec/index.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { CREDENTIAL_FILE, credentialStatus } from '../roles/enrollee/credential.js';
import { enrollWithBundle, joinViaEnroller, requireEka, type JoinResult } from '../roles/enrollee/join.js';
import { connectTcp } from '../transport/tcp.js';
import { action, isoTime, leaf, readTextArg } from './command.js';
import { makeOutput } from './output.js';
import { nowSeconds, parseDuration, parseEka, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(
    enrollee,
    'join',
    'enroll with the service: from a bundle (text, @FILE or -), through an enroller over TCP or stdin/stdout, or with a one-time token for an X.509 certificate',
    'ockam-enroll enrollee join --enroller tcp://10.0.0.5:4200\nockam-enroll enrollee join --bundle @bundle.txt --wait 5m\nockam-enroll enrollee join --token @sensor-12.jwt',
  )
    .option('--bundle <text|@file|->', 'a bundle\'s text form (OEB2:… or OEB1:…), @FILE, or - for stdin')
    .option('--eka <v1|v2>', 'the Enrollment Key Agreement to use: v2 (X3DH + ML-KEM-768) or v1 (X3DH); a bundle of the other version is refused', 'v2')
    .option('--enroller <tcp://HOST:PORT>', 'meet an enroller running `enroller onboard --listen`')
    .option('--stdio', 'meet an enroller over stdin/stdout (as run by `enroller onboard --exec`)')
    .option('--wait <duration>', 'with --bundle: keep retrying while the service has no approval yet', '0s')
    .option('--token <jwt|@file|->', 'a one-time enrollment token (from `enroller token create`), @FILE, or - for stdin: enroll for an X.509 certificate')
    .option('--key-type <type>', 'with --token: the key to make, p256 (default) or ed25519')
    .option('--force', 'with --token: replace a certificate from an earlier token enrollment')
    .action(
      action(async (ctx) => {
        const { out, home, opts } = ctx;
        const modes = [opts.bundle, opts.enroller, opts.stdio, opts.token].filter((x) => x !== undefined && x !== false);
        if (modes.length !== 1) throw new EnrollError('ERR_USAGE', 'choose exactly one of --bundle, --enroller, --stdio or --token');
        if (opts.token === undefined && (opts.keyType !== undefined || opts.force)) throw new EnrollError('ERR_USAGE', '--key-type and --force apply only with --token');
        // The token mode loads the X.509 library: only when it is used.
        if (opts.token !== undefined) return (await import('./enrollee-token-join.js')).runTokenJoin(ctx);
        const eka = parseEka(opts.eka as string);
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        let r: JoinResult & { sas?: string };
        // In --stdio mode stdout is the channel: results go to stderr.
        const results = opts.stdio ? makeOutput({ json: out.json, quiet: true, resultsToStderr: true }) : out;
        if (opts.bundle !== undefined) {
          const bundle = requireEka(bundleFromText(await readTextArg(opts.bundle as string, 'bundle'), { now: nowSeconds() }), eka);
          e.holdBundle(bundleToText(bundle));
          const waitSeconds = parseDuration(opts.wait as string, '--wait', 0, 7 * 86400);
          out.info(`enrolling with the service at ${bundle.addr} (enrollee id ${toHex(e.enrolleeId())})`);
          r = await enrollWithBundle(e, bundle, {
            now: nowSeconds,
            waitSeconds,
            onWaiting: () => {
              out.info('the service has no approval for this enrollee yet; waiting. The enroller should approve this card:');
              out.info(cardToText(e.card(bundle.bundleId)));
            },
          });
        } else {
          const conn = opts.stdio
            ? (await import('../transport/stdio.js')).stdioConnection()
            : await connectTcp(opts.enroller as string, {
                unreachableHint: `is \`ockam-enroll enroller onboard --listen\` running at ${opts.enroller as string}?`,
              });
          try {
            r = await joinViaEnroller(e, conn, {
              now: nowSeconds,
              eka,
              onSas: (sas) => out.info(`short authentication string: ${sas} (check the enroller shows the same)`),
              onBundle: (b) => out.info(`received a bundle for ${b.addr}; waiting for the enroller's approval`),
            });
          } finally {
            conn.destroy();
          }
        }
        results.result(
          {
            enrolled: true,
            eka: `v${r.eka ?? eka}`,
            enrollee_id: r.enrolleeId,
            identity_key: r.identityKey,
            service_key: r.serviceKey,
            address: r.address,
            name: r.petName || null,
            enrolled_at: isoTime(r.enrolledAt),
            ...(r.sas ? { sas: r.sas } : {}),
            credential: r.credential !== undefined ? credentialStatus(e, nowSeconds()) : null,
          },
          `enrolled as ${r.enrolleeId}${r.petName ? ` (${r.petName})` : ''} with the service at ${r.address}`,
        );
        // The service's signed statement about this device (roles/enrollee/credential.ts).
        if (r.credential !== undefined) out.info(`the service issued a credential for this enrollee, in ${e.keystore.path(CREDENTIAL_FILE)}; others check it with \`ockam-enroll credential verify\``);
      }),
    );
}
