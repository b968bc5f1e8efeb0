/**
 * `credential verify`: checks an enrollee credential (docs/protocol.md §4.4) offline — the
 * issuer is the given service key, the XEdDSA signature verifies, it has not expired — and
 * prints who it names. Any party that knows the service key can run it: one enrolled device
 * checking another, with no connection to the service.
 *
 * Exit statuses: 0 valid; 5 a bad signature or another issuer (ERR_CREDENTIAL_SIGNATURE,
 * ERR_CREDENTIAL_ISSUER); 1 expired (ERR_CREDENTIAL_EXPIRED) or unreadable; 2 usage (and an
 * expression that does not compile); 3 valid but `--require` does not hold (ERR_POLICY_DENIED).
 *
 * `--require EXPR` (docs/policies.md): a CEL expression over `subject`, evaluated on what
 * the credential states, after it verified: id, name, attributes; method is "x3dh" (only
 * X3DH enrollments get credentials); enroller is "" (a credential does not name it).
 */
import type { Command } from 'commander';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fromHex } from '../crypto/bytes.js';
import { EnrollError } from '../errors.js';
import { credentialFromText, verifyCredential } from '../protocol/credential.js';
import { formatAttributes } from '../protocol/codec/attributes.js';
import { compilePolicy } from '../policy/cel.js';
import { credentialView } from '../roles/enrollee/credential.js';
import { EIK_B_FILE, EnrolleeHome } from '../roles/enrollee/home.js';
import { action, leaf, readTextArg } from './command.js';
import { nowSeconds, parseKeyHex } from './options.js';

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
    'ockam-enroll credential verify @credential.txt --service-key 57f92e91…8374f\nockam-enroll credential verify - < robot-bolt.txt     # on an enrolled device: its own service key',
  )
    .option('--service-key <key>', 'the service key (hex) the credential must be issued by (default: the service this home\'s enrollee enrolled with)')
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
            ...(require !== undefined ? { required: require.expression } : {}),
          },
          [
            `valid credential for ${v.enrollee_id}${v.name ? ` (${v.name})` : ''}`,
            `identity_key  ${v.identity_key}`,
            `service_key   ${v.service_key}`,
            `issued_at     ${v.issued_at}`,
            `expires_at    ${v.expires_at}`,
            `attributes    ${formatAttributes(v.attributes) || '-'}`,
            ...(require !== undefined ? [`requirement   holds: ${require.expression}`] : []),
          ].join('\n'),
        );
      }),
    );
}
