/**
 * `enrollee outlet --name NAME --to HOST:PORT [--allow EXPR]` (issue #19 item 3,
 * docs/portals.md "Device outlets"): runs in the foreground until SIGINT or SIGTERM (exit 0),
 * keeping an outbound session to the service open (reconnecting with backoff) on which this
 * device's outlet NAME is registered. Another enrolled device reaches it with
 * `enrollee inlet --to DEVICE/NAME`; the two devices run Noise end to end, so the service
 * relays ciphertext only. `--allow` is evaluated here, on the other device's credential.
 */
import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { admittedSession, serviceRecord } from '../roles/enrollee/lifecycle.js';
import { compileAllow, describeAllow } from '../portal/allow.js';
import { loadDeviceIdentity } from '../portal/device-identity.js';
import { runDeviceOutlet, type DeviceOutletSpec } from '../portal/device-outlet.js';
import { outletNameProblem } from '../protocol/portal/device-outlets.js';
import { OPEN_STATUS_NAMES, OpenStatus } from '../protocol/portal/open.js';
import { formatHostPort, OUTLET_NAME_HINT, parseHostPort } from '../portal/target.js';
import { action, leaf } from './command.js';
import { passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(
    enrollee,
    'outlet',
    'serve HOST:PORT of this device as outlet NAME to other enrolled devices (`enrollee inlet --to DEVICE/NAME`), relayed by the service with Noise end to end between the devices, until SIGINT or SIGTERM',
    'ockam-enroll enrollee outlet --name ssh --to 127.0.0.1:22\nockam-enroll enrollee outlet --name web --to 127.0.0.1:8080 --allow \'subject.attributes.role == "operator"\'',
  )
    .requiredOption('--name <name>', `the outlet's name (${OUTLET_NAME_HINT.replace(/^use /, '')})`)
    .requiredOption('--to <host:port>', 'where this device connects each admitted stream (e.g. 127.0.0.1:22)')
    .option('--allow <expr>', 'a CEL policy over the other device\'s credential (subject.id, subject.name, subject.attributes; docs/policies.md); default: every device enrolled with this service')
    .action(
      action(async ({ out, home, opts }) => {
        const name = opts.name as string;
        const problem = outletNameProblem(name);
        if (problem !== undefined) throw new EnrollError('ERR_USAGE', `--name ${JSON.stringify(name)} ${problem}`, { hint: OUTLET_NAME_HINT });
        const to = parseHostPort(opts.to as string, '--to');
        const allowExpr = opts.allow as string | undefined;
        const allow = compileAllow(allowExpr);
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const svc = serviceRecord(e); // not enrolled: said now, not after connecting
        const outlets = new Map<string, DeviceOutletSpec>([[name, { name, host: to.host, port: to.port, allow }]]);
        const ac = new AbortController();
        const onSignal = () => ac.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        let ready = false;
        try {
          await runDeviceOutlet({
            connect: async () => {
              const s = await admittedSession(e, (line) => out.info(line));
              try {
                return { channel: s.channel, me: await loadDeviceIdentity(e, s.ikB) };
              } catch (err) {
                s.channel.connection.destroy();
                throw err;
              }
            },
            outlets,
            signal: ac.signal,
            onInfo: (line) => out.info(line),
            onReady: (r) => {
              if (ready) {
                out.info(`reconnected to the service at ${serviceRecord(e).address}`);
                return;
              }
              ready = true;
              out.result(
                { event: 'ready', outlet: name, to: formatHostPort(to.host, to.port), device: r.enrolleeId, allow: describeAllow(allowExpr), service: svc.address },
                `outlet ${r.enrolleeId.slice(0, 16)}/${name} -> ${formatHostPort(to.host, to.port)} (admits ${describeAllow(allowExpr)}; service at ${svc.address}); Ctrl-C stops it`,
              );
            },
            onRecord: (r) => {
              const who = r.peerName ? `${r.peerName} (${r.peer?.slice(0, 16)})` : r.peer?.slice(0, 16) ?? 'a device';
              if (r.counts !== undefined) out.info(`stream from ${who} to ${r.outlet} closed (${r.how}): ${r.counts.bytesIn} bytes in, ${r.counts.bytesOut} out${r.reason !== 'closed' ? `; ${r.reason}` : ''}`);
              else if (r.status === OpenStatus.OK) out.info(`stream from ${who} to ${r.outlet} opened`);
              else out.info(`stream from ${who} to ${r.outlet} refused: ${OPEN_STATUS_NAMES[r.status] ?? 'refused'}: ${r.reason}`);
            },
          });
        } catch (err) {
          if (err instanceof EnrollError && err.code === 'ERR_ENROLLEE_REVOKED') {
            throw new EnrollError('ERR_ENROLLEE_REVOKED', 'the service revoked this enrollee: the outlet stops', {
              cause: err,
              hint: 'this device must be onboarded again to serve outlets',
            });
          }
          throw err;
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        }
        if (ac.signal.aborted) out.info('stopped');
      }),
    );
}
