import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { compileAllow, describeAllow, MAX_ALLOW_LEN } from '../../src/portal/allow.js';

const ID1 = 'a'.repeat(64);
const ID2 = '0123456789abcdef'.repeat(4);
const outlet = { name: 'web', owner: 'service' };

test('no --allow admits every enrolled identity, and outlet list says so', () => {
  assert.equal(compileAllow(undefined)({ id: ID1 }, outlet), true);
  assert.equal(compileAllow('  ')({ id: ID2, name: 'x' }, outlet), true);
  assert.equal(describeAllow(undefined), 'every enrolled identity');
  assert.equal(describeAllow('sensor-1'), 'sensor-1');
});

test('the interim list admits the listed ids (any case) and pet names, and nobody else', () => {
  const allow = compileAllow(`${ID1.toUpperCase()}, sensor-1 ,kitchen cam`);
  assert.equal(allow({ id: ID1 }, outlet), true);
  assert.equal(allow({ id: ID2, name: 'sensor-1' }, outlet), true);
  assert.equal(allow({ id: ID2, name: 'kitchen cam' }, outlet), true);
  assert.equal(allow({ id: ID2, name: 'sensor-2' }, outlet), false);
  assert.equal(allow({ id: ID2 }, outlet), false);
  // A pet name equal to someone else's id prefix is not an id match.
  assert.equal(compileAllow(ID1.slice(0, 8))({ id: ID1 }, outlet), false);
});

test('bad --allow: empty entries, control characters, too long: ERR_USAGE naming the entry', () => {
  const usage = (e: unknown) => isEnrollError(e, 'ERR_USAGE');
  assert.throws(() => compileAllow('a,,b'), usage);
  assert.throws(() => compileAllow('ok,bad\u202ename'), (e: unknown) => usage(e) && /bad/.test((e as Error).message));
  assert.throws(() => compileAllow('x'.repeat(65)), usage);
  assert.throws(() => compileAllow('a,'.repeat(MAX_ALLOW_LEN)), usage);
  assert.throws(() => compileAllow(5 as unknown as string), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
});
