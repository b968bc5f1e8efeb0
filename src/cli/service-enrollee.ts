import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { audit } from '../audit/index.js';
import { ServiceHome } from '../roles/service/home.js';
import type { EnrolleeRecord, EnrolleeState } from '../store/types.js';
import { withService } from './service-home.js';
import { action, groupExamples, isoTime, leaf } from './command.js';
import { nowSeconds } from './options.js';
import { attributeKeyProblem, formatAttributes, parseAttributeArgs } from '../protocol/codec/attributes.js';
import { compilePolicy } from '../policy/cel.js';
import { subjectOf } from '../policy/subject.js';

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
    attributes: r.attributes ?? {},
  };
}

async function find(svc: ServiceHome, id: string): Promise<EnrolleeRecord> {
  const rec = await svc.store.findEnrollee(id);
  if (!rec) throw new EnrollError('ERR_USAGE', `no enrollee has id ${id}`, { hint: 'see `ockam-enroll service enrollee list`' });
  return rec;
}

export function register(service: Command): void {
  const enrollee = service.command('enrollee').description('inspect and revoke enrollees')
    .addHelpText('after', groupExamples([
      'ockam-enroll service enrollee list --state enrolled',
      'ockam-enroll service enrollee show <id>  # the id, or 8 or more of its first hex digits',
      'ockam-enroll service enrollee revoke <id>  # a running service closes its sessions within a second',
      'ockam-enroll service enrollee set-attr <id> role=sensor site=berlin  # docs/policies.md',
      'ockam-enroll service enrollee list --where \'subject.attributes.role == "sensor"\'',
    ]));

  leaf(enrollee, 'list', 'list enrollees (pending, enrolled, revoked)', 'ockam-enroll service enrollee list --state enrolled')
    .option('--state <state>', 'only this state: pending, enrolled or revoked')
    .option('--where <expr>', 'only enrollees for which this CEL expression holds (docs/policies.md)')
    .action(
      action(async ({ out, home, opts }) => {
        const state = opts.state as string | undefined;
        if (state !== undefined && !['pending', 'enrolled', 'revoked'].includes(state)) {
          throw new EnrollError('ERR_USAGE', `--state must be pending, enrolled or revoked, got "${state}"`);
        }
        // Compiled before the store is opened: a bad expression is an error, not an empty list.
        const where = opts.where === undefined ? undefined : compilePolicy(opts.where as string, 'subject');
        await withService({ home, opts }, async (svc) => {
          const now = nowSeconds();
          const recs = await svc.store.listEnrollees(state as EnrolleeState | undefined);
          const rows = (where ? recs.filter((r) => where.eval({ subject: subjectOf(r) })) : recs).map((r) => view(r, now));
          out.result({ enrollees: rows }, () =>
            rows.length === 0
              ? 'no enrollees'
              : [
                  `${'ID'.padEnd(16)}  ${'METHOD'.padEnd(6)}  ${'STATE'.padEnd(16)}  ${'NAME'.padEnd(20)}  ATTRIBUTES`,
                  ...rows.map((r) => `${r.id.slice(0, 16)}  ${r.method.padEnd(6)}  ${(r.state + (r.expired ? ' (expired)' : '')).padEnd(16)}  ${(r.name ?? '').padEnd(20)}  ${formatAttributes(r.attributes)}`.trimEnd()),
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
                  : k === 'attributes'
                    ? `${k.padEnd(16)} ${formatAttributes(val as Record<string, string>) || '-'}`
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

  // Attributes (docs/policies.md): a running service signs them into the next credential it
  // issues for this enrollee, and portals see them at the next stream open.
  const change = async (
    { out, home, opts }: Parameters<Parameters<typeof action>[0]>[0],
    id: string,
    set: Record<string, string>,
    unset: string[],
  ): Promise<void> => {
    await withService({ home, opts }, async (svc) => {
      const rec = await find(svc, id);
      const r = await svc.store.setAttributes(rec.id, set, unset);
      if (r === undefined) throw new EnrollError('ERR_USAGE', `no enrollee has id ${id}`);
      await audit(svc, 'enrollee-attributes-changed', {
        enrollee: toHex(rec.id),
        name: rec.petName,
        ...(Object.keys(set).length > 0 ? { set } : {}),
        ...(unset.length > 0 ? { unset } : {}),
        before: r.before.attributes ?? {},
        attributes: r.after.attributes ?? {},
      });
      out.result({ id: toHex(rec.id), attributes: r.after.attributes ?? {} }, `${toHex(rec.id)}: ${formatAttributes(r.after.attributes) || 'no attributes'}`);
    });
  };

  leaf(enrollee, 'set-attr <id> <key=value...>', 'set attributes of an enrollee (each KEY=VALUE; others are kept)', 'ockam-enroll service enrollee set-attr 5e1f03a2 role=sensor site=berlin')
    .action(
      action(async (ctx, id: string, pairs: string[]) => {
        await change(ctx, id, parseAttributeArgs(pairs, 'set-attr'), []);
      }),
    );

  leaf(enrollee, 'unset-attr <id> <key...>', 'remove attributes of an enrollee, by key', 'ockam-enroll service enrollee unset-attr 5e1f03a2 site')
    .action(
      action(async (ctx, id: string, keys: string[]) => {
        const seen = new Set<string>();
        for (const k of keys) {
          const p = attributeKeyProblem(k);
          if (p !== undefined) throw new EnrollError('ERR_USAGE', `unset-attr: the key "${k.slice(0, 40)}" ${p}`);
          if (seen.has(k)) throw new EnrollError('ERR_USAGE', `unset-attr: the key "${k}" is given twice`);
          seen.add(k);
        }
        await change(ctx, id, {}, keys);
      }),
    );
}
