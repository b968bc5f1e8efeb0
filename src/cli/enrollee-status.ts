import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { credentialStatus } from '../roles/enrollee/credential.js';
import { checkStatus, watchStatus, type StatusResult } from '../roles/enrollee/lifecycle.js';
import { EnrollError } from '../errors.js';
import { action, isoTime, leaf } from './command.js';
import { nowSeconds, parseDuration, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(enrollee, 'status', 'ask the service, over a mutually authenticated channel (IK_B ↔ IK_A), how it sees this enrollee', 'ockam-enroll enrollee status --json\nockam-enroll enrollee status --watch --interval 5s')
    .option('--watch', 'keep the channel open, asking again every --interval; exit 3 as soon as the service revokes this enrollee')
    .option('--interval <duration>', 'with --watch: time between two status requests (default: 2s)')
    .action(
      action(async ({ out, home, opts }) => {
        if (opts.interval !== undefined && opts.watch !== true) throw new EnrollError('ERR_USAGE', '--interval needs --watch');
        // Below the service's 60 s idle limit between session requests (docs/protocol.md §7.7).
        const intervalS = opts.interval === undefined ? 2 : parseDuration(opts.interval as string, '--interval', 1, 50);
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const show = (s: StatusResult) =>
          out.result(
            // credential: the service's signed statement kept at enrollment (roles/enrollee/credential.ts), read locally.
            { state: 'enrolled', enrollee_id: toHex(s.enrolleeId), name: s.petName || null, enrolled_at: isoTime(s.enrolledAt), address: s.addr, credential: credentialStatus(e, nowSeconds()) },
            `enrolled as ${toHex(s.enrolleeId)}${s.petName ? ` (${s.petName})` : ''} since ${isoTime(s.enrolledAt)}; service at ${s.addr}`,
          );
        const info = (line: string) => out.info(line);
        const moved = (s: StatusResult) => {
          if (s.moved) out.info(`the service announced a new address, ${s.moved}: sessions go there from now on`);
        };
        if (opts.watch === true) {
          await watchStatus(e, { intervalMs: intervalS * 1000, onInfo: info, onStatus: (s) => (moved(s), show(s)) });
          return;
        }
        const s = await checkStatus(e, info);
        moved(s);
        show(s);
      }),
    );
}
