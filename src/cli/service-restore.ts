/**
 * `service restore --from FILE`: puts a backup in place of the home's SQLite store
 * (src/ops/backup.ts): refused while a service runs on the home, refused for a file that is
 * not a store of this service or of a schema this build reads, or whose audit chain does
 * not verify; the store it replaces is kept aside. Enrollments made after the backup are
 * not in it: those devices must enroll again (`service status` shows the restore).
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EnrollError } from '../errors.js';
import { Keystore } from '../keystore/keystore.js';
import { IK_A_FILE, resolveStoreLocation, STORE_FILE, type ServiceSettings } from '../roles/service/home.js';
import { SCHEMA_VERSION } from '../store/sqlite.js';
import { restoreStore } from '../ops/backup.js';
import { action, leaf } from './command.js';

export function register(service: Command): void {
  leaf(
    service,
    'restore',
    'replace the home\'s SQLite store with a backup (the service must be stopped; the old store is kept aside); devices enrolled after the backup must enroll again',
    'ockam-enroll service restore --from /var/backups/ockam-enroll/store-2026-12-07.db --force',
  )
    .option('--from <file>', 'the backup (a file `service backup` wrote)')
    .option('--force', 'replace an existing store (kept aside as store.db.before-restore-<time>)')
    .action(
      action(async ({ out, home, opts }) => {
        const from = opts.from as string | undefined;
        if (from === undefined || from.trim() === '') throw new EnrollError('ERR_USAGE', 'service restore needs --from FILE');
        if (from.length > 4096) throw new EnrollError('ERR_USAGE', '--from is longer than 4096 characters');
        const dir = join(home, 'service');
        if (!existsSync(join(dir, IK_A_FILE))) {
          throw new EnrollError('ERR_KEY_MISSING', `no service identity in ${dir}: a store is served only with the key that sealed it`, {
            hint: `put the service's ${IK_A_FILE} and settings.json (from your copy of the home) in ${dir} first, then restore`,
          });
        }
        const { readRoleSettings } = await import('./settings.js');
        const location = resolveStoreLocation(readRoleSettings(dir) as Partial<ServiceSettings>, typeof opts.store === 'string' ? opts.store : undefined);
        if (location.kind === 'postgres') {
          throw new EnrollError('ERR_USAGE', `the store is PostgreSQL (${location.masked}): restore it with pg_restore`, {
            hint: 'pg_restore --dbname="$URL" enroll.dump into an empty database (docs/operations.md "Backup and restore")',
          });
        }
        // The public half only: no passphrase.
        const ikA = Keystore.open(home, 'service').loadPublicKey(IK_A_FILE);
        const r = await restoreStore({ dir, storePath: join(dir, STORE_FILE), from, ikA, schemaSupported: SCHEMA_VERSION, force: opts.force === true });
        out.result(
          { ...r },
          [
            `restored ${r.enrollees} enrollee${r.enrollees === 1 ? '' : 's'} from ${r.from} (taken ${r.backup_taken_at ?? 'at an unknown time'})${r.aside ? `; the previous store is kept as ${r.aside}` : ''}`,
            `audit: ${r.audit.entries} entr${r.audit.entries === 1 ? 'y' : 'ies'}, head seq ${r.audit.head?.seq} ${r.audit.head?.hash}`,
            'devices that enrolled after the backup was taken must enroll again',
          ].join('\n'),
        );
      }),
    );
}
