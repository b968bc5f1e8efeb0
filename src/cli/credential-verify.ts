/**
 * `credential verify`: checks an enrollee credential (docs/protocol.md §4.4) offline — the
 * issuer is the given service key, the XEdDSA signature verifies, it has not expired — and
 * prints who it names. Any party that knows the service key can run it: one enrolled device
 * checking another, with no connection to the service.
 *
 * Exit statuses: 0 valid; 5 a bad signature or another issuer (ERR_CREDENTIAL_SIGNATURE,
 * ERR_CREDENTIAL_ISSUER), or a revocation list that is forged or from another service
 * (ERR_REVOCATIONS_SIGNATURE, ERR_REVOCATIONS_ISSUER); 1 expired (ERR_CREDENTIAL_EXPIRED), a
 * stale list (ERR_REVOCATIONS_STALE) or unreadable; 2 usage (and an expression that does not
 * compile); 3 the enrollee is on the revocation list (ERR_CREDENTIAL_REVOKED), or valid but
 * `--require` does not hold (ERR_POLICY_DENIED); 4 the list's URL could not be fetched.
 *
 * `--revocations FILE|URL` (docs/protocol.md §4.7): the service's signed revocation list,
 * checked (issuer, signature, freshness) before it is consulted. Without it, nothing says
 * whether the service revoked the device since it issued the credential, and the output
 * says so plainly: a revocation reaches this check only through the list, or when the
 * credential expires (24 h by default; docs/threat-model.md §5.13).
 *
 * `--require EXPR` (docs/policies.md): a CEL expression over `subject`, evaluated on what
 * the credential states, after it verified: id, name, attributes; method is "x3dh" (only
 * X3DH enrollments get credentials); enroller is "" (a credential does not name it).
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex, toHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { credentialFromText, verifyCredential } from '../protocol/credential.js';
import { findRevoked } from '../protocol/revocations.js';
import { formatAttributes } from '../protocol/codec/attributes.js';
import { compilePolicy } from '../policy/cel.js';
import { credentialView } from '../roles/enrollee/credential.js';
import { EIK_B_FILE, EnrolleeHome } from '../roles/enrollee/home.js';
import { action, leaf, readTextArg } from './command.js';
import { nowSeconds, parseKeyHex } from './options.js';

/** What the output says when no list was given (issue #18 finding 2: "say plainly"). */
export const NO_REVOCATION_CHECK = 'no revocation information was checked';

/** --service-key, else the service key of the enrollee in this home (if it is enrolled). */
function trustedServiceKey(flag: unknown, home: string): Uint8Array {
  if (flag !== undefined) return parseKeyHex(String(flag), '--service-key');
  // Checked before opening: a home that has no enrollee must not be created by this command.
  if (existsSync(join(home, 'enrollee', EIK_B_FILE))) {
    const svc = EnrolleeHome.open(home).enrolled();
    if (svc !== undefined) return fromHex(svc.service_key, 'service_key');
  }
  throw new EnrollError('ERR_USAGE', 'which service issued it? pass --service-key', {
    hint: 'the service key is what `service init` printed; on an enrolled device it is the default',
  });
}

export function register(credential: Command): void {
  leaf(
    credential,
    'verify <credential>',
    'check an enrollee credential (text, @FILE or -) offline: issued by the service key, signature, expiry; prints who it names',
    'ockam-enroll credential verify @credential.txt --service-key 57f92e91…8374f --revocations https://enroll.example.com:8443/revocations\nockam-enroll credential verify - < robot-bolt.txt     # on an enrolled device: its own service key',
  )
    .option('--service-key <key>', 'the service key (hex) the credential must be issued by (default: the service this home\'s enrollee enrolled with)')
    .option('--revocations <FILE|URL>', 'also refuse the credential if the service\'s signed revocation list names its enrollee: a file from `service revocations --out`, or the service\'s https://HOST:PORT/revocations (exit 3 if revoked)')
    .option('--require <expr>', 'also require this CEL expression over subject to hold (exit 3 if not; docs/policies.md)')
    .action(
      action(async ({ out, home, opts }, value: string) => {
        // Compiled first: a bad expression is a usage error whatever the credential.
        const require = opts.require === undefined ? undefined : compilePolicy(String(opts.require), 'subject');
        const issuer = trustedServiceKey(opts.serviceKey, home);
        const text = await readTextArg(value, 'credential');
        const now = nowSeconds();
        const c = verifyCredential(credentialFromText(text), { now, issuer });
        const v = credentialView(c, text.trim(), now);
        // After the credential verified (its checks are cheaper than a fetch; the HTTP client is
        // loaded only then, so a plain verify starts no faster or slower than before); the list is
        // checked against the same service key, so one service cannot revoke another's devices.
        const loaded = opts.revocations === undefined ? undefined : await (await import('../revocation/load.js')).loadRevocationList(String(opts.revocations), { issuer, now });
        if (loaded !== undefined) {
          const hit = findRevoked(loaded.list, c.enrolleeId);
          if (hit !== undefined) {
            throw new EnrollError('ERR_CREDENTIAL_REVOKED', `the credential is revoked: the service revoked ${toHex(c.enrolleeId)}${v.name ? ` (${v.name})` : ''} at ${new Date(hit.revokedAt * 1000).toISOString()} (revocation list issued at ${new Date(loaded.list.issuedAt * 1000).toISOString()})`, {
              hint: 'do not trust this device; it must be enrolled again, as a new enrollee, to be trusted',
            });
          }
        }
        const revocations = loaded === undefined
          ? { checked: false, message: NO_REVOCATION_CHECK }
          : {
              checked: true,
              revoked: false,
              source: loaded.source,
              issued_at: new Date(loaded.list.issuedAt * 1000).toISOString(),
              next_update: new Date(loaded.list.nextUpdate * 1000).toISOString(),
              entries: loaded.list.entries.length,
            };
        if (require !== undefined && !require.eval({ subject: { id: v.enrollee_id, name: v.name ?? '', enroller: '', method: 'x3dh', attributes: v.attributes } })) {
          throw new EnrollError('ERR_POLICY_DENIED', `the credential is valid, but --require does not hold for ${v.enrollee_id}${v.name ? ` (${v.name})` : ''}${Object.keys(v.attributes).length > 0 ? ` with ${formatAttributes(v.attributes)}` : ' (no attributes)'}`, {
            hint: `--require was: ${require.expression}`,
          });
        }
        out.result(
          {
            valid: true,
            enrollee_id: v.enrollee_id,
            name: v.name,
            identity_key: v.identity_key,
            service_key: v.service_key,
            issued_at: v.issued_at,
            expires_at: v.expires_at,
            version: v.version,
            attributes: v.attributes,
            revocations,
            ...(require !== undefined ? { required: require.expression } : {}),
          },
          [
            `valid credential for ${v.enrollee_id}${v.name ? ` (${v.name})` : ''}`,
            `identity_key  ${v.identity_key}`,
            `service_key   ${v.service_key}`,
            `issued_at     ${v.issued_at}`,
            `expires_at    ${v.expires_at}`,
            `attributes    ${formatAttributes(v.attributes) || '-'}`,
            loaded === undefined
              ? `revocations   ${NO_REVOCATION_CHECK} (pass --revocations FILE|URL)`
              : `revocations   not revoked (list from ${loaded.source}, issued ${revocations.issued_at}, next update ${(revocations as { next_update: string }).next_update})`,
            ...(require !== undefined ? [`requirement   holds: ${require.expression}`] : []),
          ].join('\n'),
        );
      }),
    );
}
