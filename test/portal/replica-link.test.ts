/**
 * The replica link's codecs (src/protocol/portal/replica-link.ts, docs/protocol.md §11.11):
 * test/vectors/replica-link.json reproduced byte for byte, each vector re-encoded from its
 * fields by a writer of this file's own, decoded back, and the invalid inputs refused with
 * ERR_FRAME_MALFORMED.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { isEnrollError } from '../../src/errors.js';
import { decodeForward, decodeReplicaHello, MAX_FORWARD_LEN } from '../../src/protocol/portal/replica-link.js';
import { REPLICA_LINK_VECTOR_FILE, renderReplicaLink } from '../vectors/generate-replica-link.js';

const v = JSON.parse(readFileSync(REPLICA_LINK_VECTOR_FILE, 'utf8'));
const b = (h: string) => Buffer.from(h, 'hex');

describe('replica-link.json', () => {
  it('is what the generator writes, byte for byte', () => {
    assert.equal(readFileSync(REPLICA_LINK_VECTOR_FILE, 'utf8'), renderReplicaLink());
  });

  it('the prologue is the ASCII of "ockam-enroll/v1/replica-replica"', () => {
    assert.equal(b(v.prologue).toString('latin1'), 'ockam-enroll/v1/replica-replica');
  });

  it('REPLICA_HELLO: 0x3b ‖ version 1 ‖ u8 len ‖ id, and back', () => {
    for (const h of v.hello) {
      const id = Buffer.from(h.id, 'ascii');
      assert.equal(Buffer.concat([Buffer.from([0x3b, 1, id.length]), id]).toString('hex'), h.hex, h.comment);
      assert.equal(decodeReplicaHello(b(h.hex)), h.id);
    }
  });

  it('FORWARD: version 3 ‖ device id ‖ RELAY_OPEN, and back, with nothing read past it', () => {
    for (const f of v.forward) {
      const name = Buffer.from(f.name, 'utf8');
      const mine = Buffer.concat([Buffer.from([3]), b(f.device_id), Buffer.from([2, name.length]), name, b(f.opener_id), b(f.opener_ik)]);
      assert.equal(mine.toString('hex'), f.hex, f.comment);
      const after = Buffer.from('e2e msg 1');
      const d = decodeForward(Buffer.concat([mine, after]))!;
      assert.equal(d.used, mine.length);
      assert.equal(Buffer.from(d.deviceId).toString('hex'), f.device_id);
      assert.equal(Buffer.from(d.enrolleeId).toString('hex'), f.opener_id);
      assert.equal(Buffer.from(d.ik).toString('hex'), f.opener_ik);
      assert.equal(d.name, f.name);
      assert.ok(mine.length <= MAX_FORWARD_LEN);
      // Every proper prefix is "not yet", never a wrong answer.
      for (let n = 0; n < mine.length; n++) assert.equal(decodeForward(mine.subarray(0, n)), undefined);
    }
  });

  it('the invalid inputs are refused with ERR_FRAME_MALFORMED', () => {
    assert.ok(v.invalid.length >= 5);
    for (const bad of v.invalid) {
      assert.equal(bad.error, 'ERR_FRAME_MALFORMED', bad.comment);
      assert.throws(() => (bad.kind === 'hello' ? decodeReplicaHello(b(bad.hex)) : decodeForward(b(bad.hex))), (e: unknown) => isEnrollError(e, 'ERR_FRAME_MALFORMED'), bad.comment);
    }
  });
});
