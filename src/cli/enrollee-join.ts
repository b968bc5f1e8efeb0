import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { bundleToText, cardToText, decodeBundleText, verifyBundle } from '../protocol/codec/index.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { CREDENTIAL_FILE, credentialStatus } from '../roles/enrollee/credential.js';
import { checkBundleServiceKey, enrollWithBundle, joinViaEnroller, requireEka, type ExpectedServiceKey, type JoinResult } from '../roles/enrollee/join.js';
import { connectTcp } from '../transport/tcp.js';
import { action, isoTime, leaf, readTextArg } from './command.js';
import { answerSource, askYesNo, noTerminalError } from './confirm.js';
import { makeOutput } from './output.js';
import { nowSeconds, parseDuration, parseEka, parseKeyHex, passphraseSource } from './options.js';

/**
 * The service key bundles must carry (bundle pinning, docs/threat-model.md §5.2): the flag,
 * else the key pinned at `enrollee init --service-key`. A flag that contradicts the pin is
 * a usage error: one of the two is a mistake, and guessing which would defeat the pin.
 */
function expectedServiceKey(e: EnrolleeHome, flag: Uint8Array | undefined): ExpectedServiceKey | undefined {
  const pinned = e.pinnedServiceKey();
  if (flag !== undefined && pinned !== undefined && toHex(flag) !== toHex(pinned)) {
    throw new EnrollError('ERR_USAGE', `--service-key ${toHex(flag)} differs from the service key ${toHex(pinned)} pinned at \`enrollee init\``, {
      hint: 'leave out --service-key to use the pinned key, or pin another with `enrollee init --force --service-key KEY` (a new EIK_B)',
    });
  }
  if (flag !== undefined) return { key: flag, from: '--service-key' };
  if (pinned !== undefined) return { key: pinned, from: `pinned in ${e.keystore.path('enrollee.json')}` };
  return undefined;
}

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
    .option('--yes', 'with --enroller or --stdio: do not ask "does the enroller show …? [y/N]" (the enroller\'s operator compares the short authentication string)')
    .option('--service-key <key>', 'the service key (64 hex, as `service init` prints it) the bundle must carry; any other is refused before anything is sent (default: the key pinned at `enrollee init --service-key`)')
    .action(
      action(async (ctx) => {
        const { out, home, opts } = ctx;
        const modes = [opts.bundle, opts.enroller, opts.stdio, opts.token].filter((x) => x !== undefined && x !== false);
        if (modes.length !== 1) throw new EnrollError('ERR_USAGE', 'choose exactly one of --bundle, --enroller, --stdio or --token');
        if (opts.token === undefined && (opts.keyType !== undefined || opts.force)) throw new EnrollError('ERR_USAGE', '--key-type and --force apply only with --token');
        if (opts.yes === true && opts.enroller === undefined && opts.stdio !== true) throw new EnrollError('ERR_USAGE', '--yes applies only with --enroller or --stdio');
        if (opts.token !== undefined && opts.serviceKey !== undefined) throw new EnrollError('ERR_USAGE', '--service-key applies to --bundle, --enroller and --stdio, not --token');
        const serviceKeyFlag = opts.serviceKey !== undefined ? parseKeyHex(opts.serviceKey as string, '--service-key') : undefined;
        // The token mode loads the X.509 library: only when it is used.
        if (opts.token !== undefined) return (await import('./enrollee-token-join.js')).runTokenJoin(ctx);
        const eka = parseEka(opts.eka as string);
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const expectServiceKey = expectedServiceKey(e, serviceKeyFlag);
        let r: JoinResult & { sas?: string };
        // In --stdio mode stdout is the channel: results go to stderr.
        const results = opts.stdio ? makeOutput({ json: out.json, quiet: true, resultsToStderr: true }) : out;
        if (opts.bundle !== undefined) {
          // The expected key and the EKA version are compared before the signatures are
          // checked (no curve arithmetic for a foreign bundle) and before anything is kept or sent.
          const offered = decodeBundleText(await readTextArg(opts.bundle as string, 'bundle'));
          checkBundleServiceKey(offered, expectServiceKey);
          const bundle = verifyBundle(requireEka(offered, eka), { now: nowSeconds() });
          e.holdBundle(bundleToText(bundle));
          const waitSeconds = parseDuration(opts.wait as string, '--wait', 0, 7 * 86400);
          out.info(`enrolling with the service at ${bundle.addr} (enrollee id ${toHex(e.enrolleeId())})`);
          r = await enrollWithBundle(e, bundle, {
            now: nowSeconds,
            ...(expectServiceKey ? { expectServiceKey } : {}),
            waitSeconds,
            onWaiting: () => {
              out.info('the service has no approval for this enrollee yet; waiting. The enroller should approve this card:');
              out.info(cardToText(e.card(bundle.bundleId)));
            },
          });
        } else {
          // The device's side of the comparison (docs/protocol.md §6.4): asked on its terminal
          // (stdin, or /dev/tty under --stdio), unless --yes leaves it to the enroller.
          const source = opts.yes === true ? undefined : answerSource(opts.stdio === true);
          if (opts.yes !== true && source === undefined) {
            throw noTerminalError('there is no terminal to ask on (stdin is neither a terminal nor a pipe, and there is no /dev/tty)', 'run it in a terminal, or pass --yes to leave the comparison to the enroller\'s operator');
          }
          const conn = opts.stdio
            ? (await import('../transport/stdio.js')).stdioConnection()
            : await connectTcp(opts.enroller as string, {
                unreachableHint: `is \`ockam-enroll enroller onboard --listen\` running at ${opts.enroller as string}?`,
              });
          try {
            r = await joinViaEnroller(e, conn, {
              now: nowSeconds,
              eka,
              ...(expectServiceKey ? { expectServiceKey } : {}),
              onSas: (sas) => out.info(`short authentication string: ${sas} (check the enroller shows the same)`),
              ...(source ? { confirm: (sas: string, signal: AbortSignal) => askYesNo(`does the enroller show ${sas}?`, { source, timeoutMs: 120_000, signal }) } : {}),
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
