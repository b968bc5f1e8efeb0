import type { Command } from 'commander';
import { CREDENTIAL_FILE, credentialStatus } from '../roles/enrollee/credential.js';
import { EnrolleeHome } from '../roles/enrollee/home.js';
import { rotateIdentity } from '../roles/enrollee/rotate.js';
import { action, isoTime, leaf } from './command.js';
import { nowSeconds, passphraseSource } from './options.js';

export function register(enrollee: Command): void {
  leaf(enrollee, 'rotate', 'replace the identity key (IK_B) with a new one, proving both to the service over the authenticated channel', 'ockam-enroll enrollee rotate --json')
    .action(
      action(async ({ out, home, opts }) => {
        const e = EnrolleeHome.open(home, { passphrase: passphraseSource(opts) });
        const r = await rotateIdentity(e, { onInfo: (line) => out.info(line) });
        out.result(
          {
            rotated: true,
            enrollee_id: r.enrolleeId,
            identity_key: r.identityKey,
            previous_key: r.previousKey,
            rotated_at: isoTime(r.rotatedAt),
            recovered: r.recovered,
            // The credential reissued within the rotation, for the new key (docs/protocol.md §7.9.2).
            credential: r.credential ? credentialStatus(e, nowSeconds()) : null,
          },
          `rotated the identity key of ${r.enrolleeId}: ${r.identityKey} (was ${r.previousKey})`,
        );
        if (r.credential) out.info(`the service issued a credential for the new key, in ${e.keystore.path(CREDENTIAL_FILE)}`);
      }),
    );
}
