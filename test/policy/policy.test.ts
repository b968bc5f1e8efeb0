/**
 * Attributes (src/protocol/codec/attributes.ts), scopes (src/policy/scopes.ts) and CEL
 * policies (src/policy/cel.ts): the encoding byte by byte, every bound, canonical order,
 * parse and type errors with their column, the cost bound, and evaluation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { toHex, utf8 } from '../../src/crypto/bytes.js';
import { EnrollError, isEnrollError } from '../../src/errors.js';
import {
  ATTR_MAX_COUNT,
  ATTR_MAX_ENCODED_LEN,
  checkAttributes,
  decodeAttributes,
  encodeAttributes,
  parseAttributeArgs,
  sameAttributes,
} from '../../src/protocol/codec/attributes.js';
import { compilePolicy, PolicyError, type PolicySubject } from '../../src/policy/index.js';
import { checkScope, parseScopeArgs } from '../../src/policy/scopes.js';

const sensor: PolicySubject = {
  id: 'ab'.repeat(32),
  name: 'sensor-1',
  enroller: 'cd'.repeat(32),
  method: 'x3dh',
  attributes: { role: 'sensor', site: 'berlin' },
};

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof EnrollError, `expected EnrollError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

describe('attributes codec', () => {
  test('encoding is count, then sorted (key_len key value_len value)', () => {
    const b = encodeAttributes({ site: 'berlin', role: 'sensor' });
    assert.equal(toHex(b), '02' + '04' + toHex(utf8('role')) + '06' + toHex(utf8('sensor')) + '04' + toHex(utf8('site')) + '06' + toHex(utf8('berlin')));
    assert.deepEqual(decodeAttributes(b), { role: 'sensor', site: 'berlin' });
    assert.equal(toHex(encodeAttributes({})), '00');
  });

  test('the largest set encodes in ATTR_MAX_ENCODED_LEN bytes and decodes back', () => {
    const a: Record<string, string> = {};
    for (let i = 0; i < ATTR_MAX_COUNT; i++) a[`k${String(i).padStart(2, '0')}${'x'.repeat(29)}`] = 'é'.repeat(32);
    const b = encodeAttributes(a);
    assert.equal(b.length, ATTR_MAX_ENCODED_LEN);
    assert.ok(sameAttributes(decodeAttributes(b), a));
  });

  test('bounds and characters are checked, naming the attribute', () => {
    assert.match((() => { try { checkAttributes({ Role: 'x' }); } catch (e) { return (e as Error).message; } return ''; })(), /"Role"/);
    assert.equal(code(() => checkAttributes({ ['a'.repeat(33)]: 'x' })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ role: '' })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ role: 'x'.repeat(65) })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ role: 'a\nb' })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ role: 'a\u202Eb' })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ role: '\uD800' })), 'ERR_INVALID_ARG');
    assert.equal(code(() => checkAttributes({ '1x': 'a' })), 'ERR_INVALID_ARG');
    const many: Record<string, string> = {};
    for (let i = 0; i <= ATTR_MAX_COUNT; i++) many[`k${i}`] = 'v';
    assert.equal(code(() => checkAttributes(many)), 'ERR_INVALID_ARG');
    // 64 bytes of UTF-8 is the limit, not 64 characters.
    checkAttributes({ role: 'é'.repeat(32) });
    assert.equal(code(() => checkAttributes({ role: 'é'.repeat(33) })), 'ERR_INVALID_ARG');
  });

  test('--attr arguments: KEY=VALUE, a duplicated key is refused', () => {
    assert.deepEqual(parseAttributeArgs(['site=berlin', 'role=sensor=x']), { role: 'sensor=x', site: 'berlin' });
    assert.equal(code(() => parseAttributeArgs(['role=a', 'role=b'])), 'ERR_USAGE');
    assert.equal(code(() => parseAttributeArgs(['role'])), 'ERR_USAGE');
    assert.equal(code(() => parseAttributeArgs(['=x'])), 'ERR_USAGE');
  });

  test('the decoder refuses unsorted, duplicated, out-of-range and trailing input', () => {
    const good = encodeAttributes({ a: 'x', b: 'y' });
    const swapped = Uint8Array.from([2, 1, 0x62, 1, 0x79, 1, 0x61, 1, 0x78]);
    const dup = Uint8Array.from([2, 1, 0x61, 1, 0x78, 1, 0x61, 1, 0x79]);
    for (const bad of [swapped, dup, Uint8Array.from([17]), Uint8Array.from([1, 0]), Uint8Array.from([1, 1, 0x61, 0]), Uint8Array.from([1, 1, 0x41, 1, 0x78]), Uint8Array.from([...good, 0]), good.subarray(0, good.length - 1), Uint8Array.from([1, 1, 0x61, 1, 0xff])]) {
      assert.equal(code(() => decodeAttributes(bad, 'ERR_CREDENTIAL_MALFORMED')), 'ERR_CREDENTIAL_MALFORMED', toHex(bad));
    }
  });

  test('every single-byte change of an encoding decodes to another set or is refused', () => {
    const good = encodeAttributes({ role: 'sensor', site: 'berlin' });
    for (let i = 0; i < good.length; i++) {
      for (const x of [0x00, 0x41, 0x7a, 0xff]) {
        const m = Uint8Array.from(good);
        if (m[i] === x) continue;
        m[i] = x;
        try {
          const d = decodeAttributes(m);
          assert.ok(!sameAttributes(d, { role: 'sensor', site: 'berlin' }));
        } catch (err) {
          assert.ok(isEnrollError(err, 'ERR_DECODE'));
        }
      }
    }
  });
});

describe('scopes', () => {
  const scopes = parseScopeArgs(['role=sensor|camera', 'site=*']);
  test('parsed, sorted, and checked per attribute', () => {
    assert.deepEqual(scopes, { role: ['camera', 'sensor'], site: '*' });
    checkScope(scopes, { role: 'sensor', site: 'anywhere' }, 'line3');
    checkScope(scopes, {}, 'line3');
    checkScope(undefined, {}, 'line3');
  });
  test('an attribute outside the scope is refused, naming it', () => {
    assert.throws(() => checkScope(scopes, { role: 'operator' }, 'line3'), (e: unknown) => isEnrollError(e, 'ERR_ATTRIBUTE_SCOPE') && /role=operator/.test(e.message));
    assert.throws(() => checkScope(scopes, { floor: '3' }, 'line3'), (e: unknown) => isEnrollError(e, 'ERR_ATTRIBUTE_SCOPE') && /floor=3/.test(e.message));
    assert.throws(() => checkScope({}, { role: 'sensor' }, 'line3'), (e: unknown) => isEnrollError(e, 'ERR_ATTRIBUTE_SCOPE'));
  });
  test('bad --may-assign arguments are usage errors', () => {
    for (const bad of [['role'], ['role='], ['Role=x'], ['role=a|a'], ['role=a', 'role=b'], ['role=a||b']]) {
      assert.equal(code(() => parseScopeArgs(bad)), 'ERR_USAGE', bad.join(' '));
    }
  });
});

describe('CEL policies', () => {
  test('the three first expressions of docs/policies.md', () => {
    const role = compilePolicy('subject.attributes.role == "sensor"', 'subject');
    assert.equal(role.eval({ subject: sensor }), true);
    assert.equal(role.eval({ subject: { ...sensor, attributes: { role: 'camera' } } }), false);
    const site = compilePolicy('"site" in subject.attributes && subject.attributes.site in ["berlin", "paris"]', 'subject');
    assert.equal(site.eval({ subject: sensor }), true);
    assert.equal(site.eval({ subject: { ...sensor, attributes: {} } }), false);
    const ssh = compilePolicy('subject.attributes.role == "operator" && outlet.name.startsWith("ssh")', 'outlet');
    assert.equal(ssh.eval({ subject: { ...sensor, attributes: { role: 'operator' } }, outlet: { name: 'ssh-line3' } }), true);
    assert.equal(ssh.eval({ subject: { ...sensor, attributes: { role: 'operator' } }, outlet: { name: 'http' } }), false);
  });

  test('a missing attribute is a denial, not an error (fails closed)', () => {
    const p = compilePolicy('subject.attributes.role != "camera"', 'subject');
    assert.equal(p.eval({ subject: { ...sensor, attributes: {} } }), false);
  });

  test('the other subject fields', () => {
    assert.equal(compilePolicy(`subject.id == "${sensor.id}" && subject.method == "x3dh" && subject.name.startsWith("sensor") && size(subject.enroller) == 64`, 'subject').eval({ subject: sensor }), true);
    assert.equal(compilePolicy('subject.attributes.exists(k, k == "site")', 'subject').eval({ subject: sensor }), true);
  });

  function column(expr: string, kind: 'subject' | 'outlet' = 'subject'): number {
    try {
      compilePolicy(expr, kind);
    } catch (err) {
      assert.ok(err instanceof PolicyError, String(err));
      assert.equal(err.code, 'ERR_POLICY');
      assert.match(err.message, /^policy: /);
      return err.column;
    }
    assert.fail(`${expr} compiled`);
  }

  test('parse and type errors point at their column', () => {
    assert.equal(column('subject.attributes.role =='), 27);
    assert.equal(column('subject.atributes.role == "x"'), 9);
    assert.equal(column('subject.id == 1'), 1);
    assert.equal(column('outlet.name == "ssh"'), 1); // no outlet for a subject policy
    assert.equal(column('subject.attributes.role'), 1); // a string, not a bool
    assert.equal(column('size(subject.name) > 2 && subject.name.matches("(a+)+$")'), 27);
    assert.equal(column(' '), 0);
    assert.equal(column('x'.repeat(1025)), 0);
  });

  test('the cost bound refuses nested comprehensions before they run', () => {
    const big = `[${Array.from({ length: 60 }, (_, i) => i).join(',')}]`;
    const p = compilePolicy(`${big}.all(x, x >= 0)`, 'subject');
    assert.ok(p.cost > 60 && p.cost < 10_000);
    assert.equal(column(`${big}.all(x, ${big}.all(y, ${big}.all(z, x + y + z >= 0)))`), 1);
  });
});
