/**
 * `enrollee join --token`: the token mode of `enrollee join` (enrollee-join.ts registers the
 * flags and calls here). Token enrollment needs no `enrollee init`: the key is made here.
 */
import { formatAttributes } from '../protocol/codec/attributes.js';
import { joinWithToken } from '../roles/enrollee/token-join.js';
import { parseKeyType } from '../x509/keys.js';
import { isoTime, readTextArg, type Ctx } from './command.js';
import { nowSeconds, passphraseSource } from './options.js';

export async function runTokenJoin({ out, home, opts }: Ctx): Promise<void> {
  const keyType = parseKeyType((opts.keyType as string | undefined) ?? 'p256');
  const token = await readTextArg(opts.token as string, 'token');
  const passphrase = passphraseSource(opts);
  const r = await joinWithToken(home, { token, keyType, force: opts.force === true, passphrase, now: nowSeconds, onStep: (line) => out.info(line) });
  out.result(
    {
      enrolled: true,
      method: 'token',
      identity: r.id,
      name: r.name,
      service: r.service,
      serial: r.serial,
      not_after: isoTime(r.notAfter),
      attributes: r.attributes,
      ca_fingerprint: r.caFingerprint,
      key_type: r.keyType,
      key: r.paths.key,
      key_encrypted: passphrase.kind !== 'none',
      cert: r.paths.cert,
      ca: r.paths.ca,
    },
    [
      `enrolled as ${r.name} (${r.id}) with the service at ${r.service}`,
      `certificate ${r.serial}, valid until ${isoTime(r.notAfter)}${Object.keys(r.attributes).length > 0 ? `, with ${formatAttributes(r.attributes)}` : ''}`,
      `  key   ${r.paths.key}`,
      `  cert  ${r.paths.cert}`,
      `  ca    ${r.paths.ca}`,
    ].join('\n'),
  );
}
