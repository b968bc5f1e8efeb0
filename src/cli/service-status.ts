/**
 * `service status [--json]`: the service's state at a glance, for an operator (issue #21
 * item 4, docs/operations.md "service status"). Read-only and without IK_A's passphrase: it
 * runs beside a live service, from a shell on the same home (SQLite) or on any host that
 * reaches the PostgreSQL database.
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { EnrollError } from '../errors.js';
import { DEFAULT_SERVICE_SETTINGS, resolveStoreLocation, STORE_FILE, type ServiceSettings } from '../roles/service/home.js';
import { SCHEMA_VERSION } from '../store/sqlite.js';
import { pgSource, readStatus, sqliteSource, type ServiceStatus, type StatusSource } from '../ops/status.js';
import { runningPid } from '../ops/running.js';
import { action, leaf } from './command.js';
import { nowSeconds } from './options.js';
import { version } from './main.js';

function text(s: ServiceStatus & { version: string; running: { pid: number } | null }): string {
  const e = s.enrollees;
  const lines = [
    `version          ${s.version}`,
    `store            ${s.store.kind} ${s.store.location} (schema ${s.store.schema_version ?? '?'}${s.store.schema_version !== s.store.schema_supported ? `; this build writes ${s.store.schema_supported}` : ''})`,
  ];
  if (s.store.kind === 'sqlite') lines.push(`service          ${s.running ? `running (pid ${s.running.pid})` : 'not running on this home'}`);
  lines.push(
    `enrollees        ${e.enrolled} enrolled, ${e.pending} pending (${e.pending_expired} expired, ${e.locked_out} locked out), ${e.revoked} revoked; ${e.x3dh} by bundle, ${e.token} by token`,
    `enrollers        ${s.enrollers.allowed} allowed, ${s.enrollers.revoked} revoked`,
    `bundles          ${s.bundles.in_stock} in stock at enrollers, ${s.bundles.approved} approved and not yet used; one-time prekeys left: ${s.bundles.opks_left}`,
  );
  for (const b of s.bundles.per_enroller) lines.push(`  ${b.enroller.slice(0, 16)}  ${String(b.in_stock).padStart(6)}  ${b.name ?? ''}`.trimEnd());
  lines.push(`tokens           ${s.tokens.outstanding} outstanding, ${s.tokens.expired_unused} expired unused`);
  lines.push(
    s.signed_prekey
      ? `signed prekey    ${s.signed_prekey.spk_id}, made ${s.signed_prekey.created_at} (${s.signed_prekey.age_days} days ago${s.signed_prekey.eka_v2 ? ', EKA v2' : ', EKA v1 only'}); next rotation: ${s.signed_prekey.next_rotation}`
      : 'signed prekey    none: new bundles cannot be made',
  );
  lines.push(s.ca ? `CA               expires ${s.ca.not_after} (in ${s.ca.days_left} days)` : 'CA               none (token enrollment is off)');
  lines.push(s.audit.head ? `audit            ${s.audit.entries} entr${s.audit.entries === 1 ? 'y' : 'ies'}, head seq ${s.audit.head.seq} ${s.audit.head.hash}` : 'audit            empty');
  lines.push(s.last_backup ? `last backup      ${s.last_backup.time}${s.last_backup.to ? ` to ${s.last_backup.to}` : ''}${s.last_backup.head_seq !== null ? ` (audit seq ${s.last_backup.head_seq})` : ''}` : 'last backup      none recorded (service backup)');
  if (s.restored) {
    lines.push(
      `restored         ${s.restored.time} from a backup taken ${s.restored.backup_taken_at ?? '(time unknown)'}${s.restored.backup_head_seq !== null ? ` (audit seq ${s.restored.backup_head_seq})` : ''}`,
      `                 ${s.restored.note}`,
    );
  }
  if (s.replicas) {
    lines.push(`replicas         ${s.replicas.length} connected now`);
    for (const r of s.replicas) lines.push(`  ${r.name.replace(/^ockam-enroll start /, '')}  from ${r.client ?? 'a local socket'}, ${r.connections} connection${r.connections === 1 ? '' : 's'}, since ${r.since}`);
  }
  if (s.replicas_seen) {
    const now = s.replicas_seen.filter((r) => r.connected).length;
    lines.push(`replicas seen    ${s.replicas_seen.length} in the last hour (heartbeats), ${now} connected now`);
    for (const r of s.replicas_seen) {
      lines.push(`  ${r.id}  ${r.address ?? 'no peer listener'}, ${r.connected ? `connected now (last seen ${r.last_seen})` : `seen ${r.seen_ago_s} s ago`}, started ${r.started_at}`);
    }
  }
  return lines.join('\n');
}

export function register(service: Command): void {
  leaf(
    service,
    'status',
    'the service at a glance: store, enrollees by state, bundles in stock, tokens, signed prekey, CA expiry, audit head, last backup (read-only, no passphrase needed)',
    'ockam-enroll service status\nockam-enroll service status --json',
  ).action(
    action(async ({ out, home, opts }) => {
      const dir = join(home, 'service');
      if (!existsSync(join(dir, 'ik_a.key'))) {
        throw new EnrollError('ERR_KEY_MISSING', `no service is initialised in ${dir}`, { hint: 'run `ockam-enroll service init` first, or pass the right --home' });
      }
      const { readRoleSettings } = await import('./settings.js');
      const settings = { ...DEFAULT_SERVICE_SETTINGS, ...(readRoleSettings(dir) as Partial<ServiceSettings>) };
      const location = resolveStoreLocation(settings, typeof opts.store === 'string' ? opts.store : undefined);
      let source: StatusSource;
      let where: string;
      let supported: number;
      if (location.kind === 'postgres') {
        const { PgDatabase, PG_SCHEMA_VERSION } = await import('../store/pg/database.js');
        source = pgSource(await PgDatabase.open(location, { poolSize: 2, applicationName: 'ockam-enroll status' }));
        where = location.masked;
        supported = PG_SCHEMA_VERSION;
      } else {
        where = join(dir, STORE_FILE);
        if (!existsSync(where)) throw new EnrollError('ERR_STORE', `the store ${where} is missing`, { hint: 'restore it with `ockam-enroll service restore --from FILE`, or run `service init`' });
        source = sqliteSource(where);
        supported = SCHEMA_VERSION;
      }
      let status: ServiceStatus;
      try {
        status = await readStatus({ source, location, where, dir, maxFailedAttempts: settings.maxFailedAttempts, now: nowSeconds(), schemaSupported: supported });
      } finally {
        await source.close();
      }
      const pid = location.kind === 'sqlite' ? runningPid(dir) : undefined;
      const full = { version: version(), ...status, running: pid === undefined ? null : { pid } };
      out.result(full, () => text(full));
    }),
  );
}
