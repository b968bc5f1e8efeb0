import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { compileAllow, describeAllow, MAX_ALLOW_LEN } from '../../src/portal/allow.js';

const ID1 = 'a'.repeat(64);
const ID2 = '0123456789abcdef'.repeat(4);
const outlet = { name: 'web', owner: 'service' };
const subject = (id: string, name = '', attributes: Record<string, string> = {}) => ({ id, name, enroller: '', method: 'x3dh', attributes });

test('no --allow admits every enrolled identity, and outlet list says so', () => {
  assert.equal(compileAllow(undefined)(subject(ID1), outlet), true);
  assert.equal(compileAllow('  ')(subject(ID2, 'x'), outlet), true);
  assert.equal(describeAllow(undefined), 'every enrolled identity');
  assert.equal(describeAllow(null), 'every enrolled identity');
  assert.equal(describeAllow('subject.name == "sensor-1"'), 'subject.name == "sensor-1"');
});

test('--allow is a CEL outlet policy over the subject (id, name, attributes) and the outlet name', () => {
  const byName = compileAllow(`subject.name in ["sensor-1", "kitchen cam"] || subject.id == "${ID1}"`);
  assert.equal(byName(subject(ID1), outlet), true);
  assert.equal(byName(subject(ID2, 'sensor-1'), outlet), true);
  assert.equal(byName(subject(ID2, 'kitchen cam'), outlet), true);
  assert.equal(byName(subject(ID2, 'sensor-2'), outlet), false);
  assert.equal(byName(subject(ID2), outlet), false);
  const byRole = compileAllow('subject.attributes.role == "operator" && outlet.name.startsWith("ssh")');
  assert.equal(byRole(subject(ID2, '', { role: 'operator' }), { name: 'ssh-1', owner: 'service' }), true);
  assert.equal(byRole(subject(ID2, '', { role: 'operator' }), outlet), false);
  // Fails closed: a subject without the attribute is denied, not an error.
  assert.equal(byRole(subject(ID2), { name: 'ssh-1', owner: 'service' }), false);
});

test('bad --allow: syntax, unknown variable, not a bool, too long: ERR_POLICY before anything is stored', () => {
  const policy = (e: unknown) => isEnrollError(e, 'ERR_POLICY');
  assert.throws(() => compileAllow('pump-7,robot-axiom'), policy);
  assert.throws(() => compileAllow('subject.atributes.role == "x"'), policy);
  assert.throws(() => compileAllow('subject.name'), policy);
  assert.throws(() => compileAllow(`subject.name == "${'x'.repeat(MAX_ALLOW_LEN)}"`), policy);
  assert.throws(() => compileAllow(5 as unknown as string), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
});
