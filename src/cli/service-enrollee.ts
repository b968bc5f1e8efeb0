import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { ServiceHome } from '../roles/service/home.js';
import type { EnrolleeRecord, EnrolleeState } from '../store/types.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds } from './options.js';

function view(r: EnrolleeRecord, now: number) {
  const expired = r.state === 'pending' && r.expiresAt !== null && r.expiresAt <= now;
  return {
    id: toHex(r.id),
    method: r.method,
    state: r.state,
    expired,
    name: r.petName,
    identity_key: r.ikB ? toHex(r.ikB) : null,
    enroller: r.enroller ? toHex(r.enroller) : null,
    bundle: r.bundleId ? toHex(r.bundleId) : null,
    approved_at: isoTime(r.approvedAt),
    expires_at: isoTime(r.expiresAt),
    enrolled_at: isoTime(r.enrolledAt),
    revoked_at: isoTime(r.revokedAt),
    failed_attempts: r.failedAttempts,
  };
}

async function find(svc: ServiceHome, id: string): Promise<EnrolleeRecord> {
  const rec = await svc.store.findEnrollee(id);
  if (!rec) throw new EnrollError('ERR_NOT_FOUND', `no enrollee has id ${id}`, { hint: 'see `ockam-enroll service enrollee list`' });
  return rec;
}

export function register(service: Command): void {
  const enrollee = service.command('enrollee').description('inspect and revoke enrollees')
    .addHelpText('after', groupExamples([
      'ockam-enroll service enrollee list --state enrolled',
      'ockam-enroll service enrollee show <id>  # the id, or 8 or more of its first hex digits',
      'ockam-enroll service enrollee revoke <id>  # a running service closes its sessions within a second',
    ]));

  leaf(enrollee, 'list', 'list enrollees (pending, enrolled, revoked)', 'ockam-enroll service enrollee list --state enrolled')
    .option('--state <state>', 'only this state: pending, enrolled or revoked')
    .action(
      action(async ({ out, home, opts }) => {
        const state = opts.state as string | undefined;
        if (state !== undefined && !['pending', 'enrolled', 'revoked'].includes(state)) {
          throw new EnrollError('ERR_USAGE', `--state must be pending, enrolled or revoked, got "${state}"`);
        }
        await withService({ home, opts }, async (svc) => {
          const now = nowSeconds();
          const rows = (await svc.store.listEnrollees(state as EnrolleeState | undefined)).map((r) => view(r, now));
          out.result({ enrollees: rows }, () =>
            rows.length === 0
              ? 'no enrollees'
              : [
                  `${'ID'.padEnd(16)}  ${'METHOD'.padEnd(6)}  ${'STATE'.padEnd(16)}  NAME`,
                  ...rows.map((r) => `${r.id.slice(0, 16)}  ${r.method.padEnd(6)}  ${(r.state + (r.expired ? ' (expired)' : '')).padEnd(16)}  ${r.name ?? ''}`),
                ].join('\n'),
          );
        });
      }),
    );

  leaf(enrollee, 'show <id>', 'show one enrollee (full id or a prefix of at least 8 hex characters)', 'ockam-enroll service enrollee show 5e1f03a2')
    .action(
      action(async ({ out, home, opts }, id: string) => {
        await withService({ home, opts }, async (svc) => {
          const rec = await find(svc, id);
          const now = nowSeconds();
          // A token identity also lists its certificates (serial, expiry, revoked or not).
          const certificates =
            rec.method === 'token'
              ? (await svc.tokens.listCertificates(rec.id)).map((c) => ({
                  serial: c.serial,
                  kind: c.kind,
                  not_after: isoTime(c.notAfter),
                  revoked: c.revokedAt !== null || rec.state === 'revoked',
                }))
              : undefined;
          const v = { ...view(rec, now), ...(certificates ? { certificates } : {}) };
          out.result(v, () =>
            Object.entries(v)
              .map(([k, val]) =>
                Array.isArray(val)
                  ? `${k.padEnd(16)} ${val.length === 0 ? '-' : val.map((c) => `${c.serial} ${c.kind} until ${c.not_after}${c.revoked ? ' (revoked)' : ''}`).join(`\n${' '.repeat(17)}`)}`
                  : `${k.padEnd(16)} ${val ?? '-'}`,
              )
              .join('\n'),
          );
        });
      }),
    );

  leaf(enrollee, 'revoke <id>', 'revoke an enrollee: the service refuses it from now on', 'ockam-enroll service enrollee revoke 5e1f03a2')
    .action(
      action(async ({ out, home, opts }, id: string) => {
        await withService({ home, opts }, async (svc) => {
          const rec = await find(svc, id);
          const now = nowSeconds();
          if (!(await svc.store.revokeEnrollee(rec.id, now))) {
            throw new EnrollError('ERR_USAGE', `enrollee ${toHex(rec.id)} is already revoked`);
          }
          // A token identity's certificates are revoked with it: they go on the CRL (GET /crl) and /whoami refuses them.
          const certs = rec.method === 'token' ? await svc.tokens.revokeCertificates(rec.id, now) : 0;
          await audit(svc, 'enrollee-revoked', { enrollee: toHex(rec.id), name: rec.petName, method: rec.method, ...(rec.method === 'token' ? { certificates_revoked: certs } : {}) });
          out.result(
            { id: toHex(rec.id), state: 'revoked', ...(rec.method === 'token' ? { certificates_revoked: certs } : {}) },
            `revoked ${toHex(rec.id)}${rec.method === 'token' ? ` and ${certs} certificate${certs === 1 ? '' : 's'}` : ''}`,
          );
        });
      }),
    );
}
