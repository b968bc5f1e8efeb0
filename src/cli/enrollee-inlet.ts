/**
 * `enrollee inlet --from HOST:PORT --to TARGET` (issue #19 item 2, docs/portals.md): runs in
 * the foreground until SIGINT or SIGTERM (exit 0), carrying every TCP connection accepted
 * on --from as one stream over this enrollee's authenticated session to TARGET.
 */
import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { serviceRecord } from '../roles/enrollee/lifecycle.js';
import { runInlet } from '../portal/inlet.js';
import { parseHostPort, parseTargetArg } from '../portal/target.js';
import { action, leaf } from './command.js';
import { passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(
    enrollee,
    'inlet',
    'listen on --from and carry each TCP connection to TARGET (service/NAME or DEVICE/NAME) over this enrollee\'s authenticated session, until SIGINT or SIGTERM',
    'ockam-enroll enrollee inlet --from 127.0.0.1:8080 --to service/web\ncurl http://127.0.0.1:8080/',
  )
    .requiredOption('--from <host:port>', 'the local address to listen on (e.g. 127.0.0.1:8080)')
    .requiredOption('--to <target>', 'service/NAME (a service outlet) or DEVICE/NAME (a device outlet; DEVICE: enrollee id, unique id prefix or pet name)')
    .action(
      action(async ({ out, home, opts }) => {
        const from = parseHostPort(opts.from as string, '--from');
        const target = parseTargetArg(opts.to as string);
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        serviceRecord(e); // not enrolled: said now, not after listening
        const ac = new AbortController();
        const onSignal = () => ac.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        try {
          await runInlet(
            {
              enrollee: e,
              from,
              target: `${target.owner}/${target.name}`,
              onInfo: (line) => out.info(line),
              onReady: (r) =>
                out.result({ event: 'ready', listen: r.listen, target: r.target, service: r.service }, `inlet ${r.listen} -> ${r.target} (service at ${r.service}); Ctrl-C stops it`),
            },
            ac.signal,
          );
        } catch (err) {
          if (err instanceof EnrollError && err.code === 'ERR_ENROLLEE_REVOKED') {
            throw new EnrollError('ERR_ENROLLEE_REVOKED', 'the service revoked this enrollee: the inlet stops', {
              cause: err,
              hint: 'this device must be onboarded again (`ockam-enroll enrollee init --force`, then join) to reach the service',
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
