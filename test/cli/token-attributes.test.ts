/**
 * Attributes on the token flow through the CLI (issue #20, docs/policies.md): `enroller token
 * create --attr` is checked against the enroller's scope by the service (refused naming the
 * attribute, nothing written); the redeemed identity has them and its certificate carries
 * them in the attributes extension, which `openssl x509 -text` shows; a `set-attr` reaches
 * the next `enrollee renew`'s certificate.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { certificateAttributes } from '../../src/x509/attributes-ext.js';
import { ATTRIBUTES_EXT_OID } from '../../src/x509/attributes-ext.js';
import { x509 } from '../../src/x509/provider.js';
import { assertFailure, initService, ok, okJson, removeTempHomes, run, show, startService, tempHome, type ServiceHandle } from '../helpers/cli.js';
import { EXIT, audited } from '../helpers/lifecycle.js';

const SVC = tempHome('svc');
const ENR = tempHome('enr');
let service: ServiceHandle | undefined;
let tcp = '';
let enrollerKey = '';

before(async () => {
  const init = await initService(SVC);
  assert.ok(init.httpsPort !== undefined, 'this build serves token enrollment');
  tcp = init.address;
  service = await startService(SVC, init.port, init.httpsPort);
  enrollerKey = (await ok(['enroller', 'init'], { home: ENR })).stdout.trim();
});
after(async () => {
  try {
    await service?.stop();
  } finally {
    removeTempHomes();
  }
});

interface EnrolleeJson {
  id: string;
  name: string | null;
  method: string;
  state: string;
  attributes: Record<string, string>;
}

async function list(): Promise<EnrolleeJson[]> {
  return (await okJson<{ enrollees: EnrolleeJson[] }>(['service', 'enrollee', 'list'], { home: SVC })).enrollees;
}

function token(name: string, attrs: string[]) {
  const file = join(ENR, `${name}.jwt`);
  return { file, run: run(['enroller', 'token', 'create', '--name', name, '--service', tcp, '--out', file, ...attrs.flatMap((a) => ['--attr', a])], { home: ENR }) };
}

const certDer = (dev: string) => new Uint8Array(x509.PemConverter.decode(readFileSync(join(dev, 'enrollee', 'tls-cert.pem'), 'utf8'))[0]!);

describe('token flow attributes', () => {
  const dev = tempHome('dev');
  let identity = '';

  test('an enroller allowed without --may-assign gets no token with an attribute: refused by the service, nothing written', async () => {
    await ok(['service', 'enroller', 'allow', enrollerKey], { home: SVC });
    const before = await list();
    const t = token('cam-1', ['role=sensor']);
    assertFailure(await t.run, EXIT.REJECTED, /may not assign role=sensor/);
    assert.deepEqual(await list(), before, 'the refused token wrote nothing');
  });

  test('a scoped enroller is refused role=operator, naming the attribute; nothing written', async () => {
    await ok(['service', 'enroller', 'allow', enrollerKey, '--may-assign', 'role=sensor|camera', '--may-assign', 'site=*'], { home: SVC });
    const before = await list();
    const t = token('laptop-1', ['role=operator', 'site=berlin']);
    assertFailure(await t.run, EXIT.REJECTED, /may not assign role=operator/);
    assert.deepEqual(await list(), before);
    // Bad input is refused before anything is sent.
    assertFailure(await token('x-1', ['role=a', 'role=b']).run, EXIT.USAGE, /"role" is given twice/);
    assertFailure(await token('x-2', ['Site=x']).run, EXIT.USAGE, /"Site"/);
  });

  test('token create --attr role=sensor --attr site=berlin: the identity has them, and so does its certificate', async () => {
    const t = token('sensor-1', ['role=sensor', 'site=berlin']);
    const created = await t.run;
    assert.equal(created.code, EXIT.OK, show(created));
    const pending = (await list()).find((e) => e.name === 'sensor-1');
    assert.ok(pending, 'the pending identity is listed');
    assert.deepEqual([pending.method, pending.state, pending.attributes], ['token', 'pending', { role: 'sensor', site: 'berlin' }]);
    await audited(SVC, (x) => x.event === 'token-created' && x.fields.enrollee === pending.id && JSON.stringify(x.fields.attributes) === JSON.stringify({ role: 'sensor', site: 'berlin' }));
    const joined = await okJson(['enrollee', 'join', '--token', `@${t.file}`], { home: dev });
    assert.deepEqual(joined.attributes, { role: 'sensor', site: 'berlin' });
    identity = joined.identity;
    assert.equal(identity, pending.id);
    assert.deepEqual(certificateAttributes(certDer(dev)), { role: 'sensor', site: 'berlin' });
    // openssl, independently: the extension by its OID, the strings readable in its value.
    const text = execFileSync('openssl', ['x509', '-in', join(dev, 'enrollee', 'tls-cert.pem'), '-noout', '-text'], { encoding: 'utf8' });
    const at = text.indexOf(`${ATTRIBUTES_EXT_OID}:`);
    assert.ok(at > 0, text);
    assert.match(text.slice(at).split('\n')[1]!, /role\.\.sensor.*site\.\.berlin/);
    const ca = join(dev, 'enrollee', 'tls-ca.pem');
    assert.match(execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', ca, join(dev, 'enrollee', 'tls-cert.pem')], { encoding: 'utf8' }), /: OK/);
    const shown = await okJson<EnrolleeJson>(['service', 'enrollee', 'show', identity], { home: SVC });
    assert.deepEqual([shown.state, shown.attributes], ['enrolled', { role: 'sensor', site: 'berlin' }]);
  });

  test('after set-attr, the next enrollee renew gets a certificate with the new attributes', async () => {
    await ok(['service', 'enrollee', 'set-attr', identity, 'site=paris', 'floor=3'], { home: SVC });
    await ok(['service', 'enrollee', 'unset-attr', identity, 'floor'], { home: SVC });
    const renewed = await okJson(['enrollee', 'renew'], { home: dev });
    assert.deepEqual(renewed.attributes, { role: 'sensor', site: 'paris' });
    assert.deepEqual(certificateAttributes(certDer(dev)), { role: 'sensor', site: 'paris' });
    const human = await run(['enrollee', 'renew'], { home: dev });
    assert.equal(human.code, EXIT.OK, show(human));
    assert.match(human.stdout, /with role=sensor,site=paris/);
  });

  test('a token without attributes makes a certificate without the extension', async () => {
    const t = token('sensor-2', []);
    assert.equal((await t.run).code, EXIT.OK);
    const dev2 = tempHome('dev2');
    const joined = await okJson(['enrollee', 'join', '--token', `@${t.file}`], { home: dev2 });
    assert.deepEqual(joined.attributes, {});
    const text = execFileSync('openssl', ['x509', '-in', join(dev2, 'enrollee', 'tls-cert.pem'), '-noout', '-text'], { encoding: 'utf8' });
    assert.ok(!text.includes(ATTRIBUTES_EXT_OID), 'no attributes extension');
  });
});
