/**
 * PORTAL / PORTAL_READY (docs/protocol.md §11.8) and portal targets (src/portal/target.ts):
 * the exact bytes, every malformed form refused with ERR_FRAME_MALFORMED, an ERROR surfacing
 * as its own code.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toHex } from '../../src/crypto/bytes.js';
import { EnrollError } from '../../src/errors.js';
import { encodeError } from '../../src/protocol/messages/common.js';
import { decodePortal, decodePortalReady, encodePortal, encodePortalReady, MSG_PORTAL, MSG_PORTAL_READY } from '../../src/protocol/messages/session.js';
import { parseTarget } from '../../src/portal/target.js';

const code = (c: EnrollError['code']) => (e: unknown) => e instanceof EnrollError && e.code === c;

test('PORTAL is 38 01, PORTAL_READY 39 01; both decode; other lengths or versions are ERR_FRAME_MALFORMED', () => {
  assert.equal(toHex(encodePortal()), '3801');
  assert.equal(toHex(encodePortalReady()), '3901');
  decodePortal(encodePortal());
  decodePortalReady(encodePortalReady());
  for (const bad of [[MSG_PORTAL], [MSG_PORTAL, 2], [MSG_PORTAL, 1, 0], [MSG_PORTAL, 0]]) {
    assert.throws(() => decodePortal(Uint8Array.from(bad)), code('ERR_FRAME_MALFORMED'), String(bad));
  }
  assert.throws(() => decodePortalReady(Uint8Array.of(MSG_PORTAL_READY)), code('ERR_FRAME_MALFORMED'));
  assert.throws(() => decodePortalReady(encodePortal()), code('ERR_PROTOCOL'));
  // A service that refuses: its ERROR, with its code.
  assert.throws(() => decodePortalReady(encodeError(new EnrollError('ERR_ENROLLEE_REVOKED', 'revoked'))), code('ERR_ENROLLEE_REVOKED'));
});

test('targets: service/NAME and DEVICE/NAME, split at the last "/"; anything else undefined', () => {
  assert.deepEqual(parseTarget('service/web'), { owner: 'service', name: 'web' });
  assert.deepEqual(parseTarget('kitchen/cam/ssh'), { owner: 'kitchen/cam', name: 'ssh' });
  assert.deepEqual(parseTarget(`${'ab'.repeat(32)}/db.1`), { owner: 'ab'.repeat(32), name: 'db.1' });
  for (const bad of ['web', '/web', 'service/', 'service/a/', 'service/-x', `${'x'.repeat(65)}/web`, ' pad/web', 'a\u0001/web', `service/${'n'.repeat(65)}`]) {
    assert.equal(parseTarget(bad), undefined, bad);
  }
});
