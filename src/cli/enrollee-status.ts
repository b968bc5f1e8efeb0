import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { serviceStatus } from '../roles/enrollee/status.js';
import { action, isoTime, leaf } from './command.js';
import { passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(enrollee, 'status', 'ask the service, over a mutually authenticated channel (IK_B ↔ IK_A), how it sees this enrollee', 'ockam-enroll enrollee status --json')
    .action(
      action(async ({ out, home, opts }) => {
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const s = await serviceStatus(e);
        out.result(
          { state: 'enrolled', enrollee_id: toHex(s.enrolleeId), name: s.petName || null, enrolled_at: isoTime(s.enrolledAt), address: s.addr },
          `enrolled as ${toHex(s.enrolleeId)}${s.petName ? ` (${s.petName})` : ''} since ${isoTime(s.enrolledAt)}; service at ${s.addr}`,
        );
      }),
    );
}
