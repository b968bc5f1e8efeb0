/**
 * `service backup --to FILE`: an online, consistent copy of a SQLite store while the service
 * runs (src/ops/backup.ts), recorded in the store's audit log (`store-backup`, with the
 * copy's audit head) so that `service status` shows the last one. No passphrase needed.
 * A PostgreSQL store is backed up with pg_dump (docs/operations.md "Backup and restore").
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { resolveStoreLocation, STORE_FILE, type ServiceSettings } from '../roles/service/home.js';
import { backupStore } from '../ops/backup.js';
import { action, leaf } from './command.js';

export function register(service: Command): void {
  leaf(
    service,
    'backup',
    'copy the SQLite store to FILE while the service runs (consistent, mode 0600, written atomically); prints the copy\'s audit head. PostgreSQL: use pg_dump (docs/operations.md)',
    'ockam-enroll service backup --to /var/backups/ockam-enroll/store-$(date +%F).db',
  )
    .option('--to <file>', 'where to write the backup (replaced atomically if it exists)')
    .option('--out <file>', 'the same as --to')
    .action(
      action(async ({ out, home, opts }) => {
        const target = (opts.to ?? opts.out) as string | undefined;
        if (target === undefined || String(target).trim() === '') throw new EnrollError('ERR_USAGE', 'service backup needs --to FILE');
        if (opts.to !== undefined && opts.out !== undefined && opts.to !== opts.out) throw new EnrollError('ERR_USAGE', '--to and --out name different files; give one');
        if (String(target).length > 4096) throw new EnrollError('ERR_USAGE', '--to is longer than 4096 characters');
        const dir = join(home, 'service');
        if (!existsSync(join(dir, 'ik_a.key'))) {
          throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${dir}`, { hint: 'run `ockam-enroll service init` first, or pass the right --home' });
        }
        const { readRoleSettings } = await import('./settings.js');
        const location = resolveStoreLocation(readRoleSettings(dir) as Partial<ServiceSettings>, typeof opts.store === 'string' ? opts.store : undefined);
        if (location.kind === 'postgres') {
          throw new EnrollError('ERR_USAGE', `the store is PostgreSQL (${location.masked}): back it up with pg_dump`, {
            hint: 'pg_dump --format=custom --file=enroll.dump "$URL" (docs/operations.md "Backup and restore")',
          });
        }
        const storePath = join(dir, STORE_FILE);
        const r = await backupStore(storePath, String(target));
        // After the copy is durable: the entry is in the live store, not in the copy.
        await audit(storePath, 'store-backup', { to: r.to, head_seq: r.audit_head?.seq ?? 0, head_hash: r.audit_head?.hash ?? null, enrollees: r.enrollees });
        out.result(
          { ...r },
          `backed up ${r.enrollees} enrollee${r.enrollees === 1 ? '' : 's'} to ${r.to} (${r.bytes} bytes); ${r.audit_head ? `audit head seq ${r.audit_head.seq} ${r.audit_head.hash}` : 'the audit log is empty'}`,
        );
      }),
    );
}
