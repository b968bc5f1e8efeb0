import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isEnrollError } from '../../src/errors.js';
import { decodeAnswer, decodeOpen, encodeAnswer, encodeOpen, OpenStatus } from '../../src/protocol/portal/open.js';

const malformed = (e: unknown) => isEnrollError(e, 'ERR_FRAME_MALFORMED');

test('OPEN and ANSWER round-trip, byte for byte as docs/protocol.md §11.6 lays them out', () => {
  assert.equal(encodeOpen('web').toString('hex'), '0103776562');
  assert.deepEqual(decodeOpen(Buffer.from('0103776562ff', 'hex')), { target: 'web', used: 5 });
  assert.equal(encodeAnswer(OpenStatus.OK).toString('hex'), '0000');
  assert.equal(encodeAnswer(OpenStatus.NOT_ALLOWED, 'no').toString('hex'), '03026e6f');
  assert.deepEqual(decodeAnswer(Buffer.from('03026e6f41', 'hex')), { status: 3, reason: 'no', used: 4 });
});

test('partial input waits; bad input is ERR_FRAME_MALFORMED; bad arguments ERR_INVALID_ARG', () => {
  assert.equal(decodeOpen(Buffer.alloc(0)), undefined);
  assert.equal(decodeOpen(Buffer.from('0105776562', 'hex')), undefined);
  assert.equal(decodeAnswer(Buffer.from('00', 'hex')), undefined);
  assert.throws(() => decodeOpen(Buffer.from('02', 'hex')), malformed);
  assert.throws(() => decodeOpen(Buffer.from('0100', 'hex')), malformed);
  assert.throws(() => decodeOpen(Buffer.from('0102c328', 'hex')), malformed);
  // Status 7 is UNKNOWN_DEVICE (§11.10); the first unknown status is 8.
  assert.deepEqual(decodeAnswer(Buffer.from('0700', 'hex')), { status: OpenStatus.UNKNOWN_DEVICE, reason: '', used: 2 });
  assert.throws(() => decodeAnswer(Buffer.from('08', 'hex')), malformed);
  assert.throws(() => decodeAnswer(Buffer.from('ff', 'hex')), malformed);
  assert.throws(() => encodeOpen(''), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
  assert.throws(() => encodeOpen('x'.repeat(256)), (e: unknown) => isEnrollError(e, 'ERR_INVALID_ARG'));
  assert.equal(encodeAnswer(OpenStatus.INTERNAL, 'r'.repeat(1000)).length, 2 + 200, 'long reasons are cut, not refused');
});
