/**
 * `service revocations --out FILE`: writes the service's current signed revocation list
 * (docs/protocol.md §4.7) — every revoked enrollee, signed with IK_A, fresh for --validity —
 * for verifiers that cannot reach the service's `GET /revocations` (issue #18 finding 2).
 * The list is public: the file is written 0644, and `--out -` writes it to stdout (never
 * to a terminal: it is binary).
 */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { EnrollError } from '../errors.js';
import { DEFAULT_REVOCATIONS_VALIDITY, issueRevocationList, revokedEntries } from '../revocation/issue.js';
import { REVOCATIONS_MAX_VALIDITY } from '../protocol/revocations.js';
import { withService } from './service-home.js';
import { action, leaf } from './command.js';
import { nowSeconds, parseDuration } from './options.js';

export function register(service: Command): void {
  leaf(
    service,
    'revocations',
    'write the signed list of revoked enrollees, for `credential verify --revocations` offline (the running service also serves it at https://HOST:PORT/revocations)',
    'ockam-enroll service revocations --out revocations.bin --validity 6h',
  )
    .option('--out <FILE>', 'where to write the list (binary, docs/protocol.md §4.7); - for stdout')
    .option('--validity <duration>', `how long verifiers accept this list (its next_update), 1s..30d (default: ${DEFAULT_REVOCATIONS_VALIDITY / 3600}h)`)
    .action(
      action(async ({ out, home, opts }) => {
        // Flags first: a typo must not cost a passphrase prompt.
        const to = opts.out as string | undefined;
        if (to === undefined) throw new EnrollError('ERR_USAGE', 'where should the list go? pass --out FILE', { hint: 'e.g. --out revocations.bin, or --out - to pipe it' });
        if (to === '-' && process.stdout.isTTY) throw new EnrollError('ERR_USAGE', 'the list is binary: it is not written to a terminal', { hint: 'redirect stdout, or pass --out FILE' });
        if (to === '-' && opts.json === true) throw new EnrollError('ERR_USAGE', '--out - and --json both want stdout');
        const validity = opts.validity === undefined ? DEFAULT_REVOCATIONS_VALIDITY : parseDuration(String(opts.validity), '--validity', 1, REVOCATIONS_MAX_VALIDITY);
        const issued = await withService({ home, opts }, async (svc) => issueRevocationList(svc, await revokedEntries(svc), nowSeconds(), validity));
        if (to === '-') process.stdout.write(issued.bytes);
        else {
          try {
            writeFileSync(to, issued.bytes, { mode: 0o644 });
          } catch (cause) {
            throw new EnrollError('ERR_USAGE', `cannot write the revocation list to ${to}: ${(cause as NodeJS.ErrnoException).code ?? (cause as Error).message}`);
          }
        }
        const data = {
          file: to === '-' ? null : to,
          issued_at: new Date(issued.issuedAt * 1000).toISOString(),
          next_update: new Date(issued.nextUpdate * 1000).toISOString(),
          entries: issued.count,
          bytes: issued.bytes.length,
        };
        if (to === '-') {
          out.info(`wrote a revocation list of ${issued.count} revoked enrollee(s), valid until ${data.next_update}`);
          return;
        }
        out.result(data, `wrote ${to}: ${issued.count} revoked enrollee(s), issued ${data.issued_at}, next update ${data.next_update}`);
      }),
    );
}
