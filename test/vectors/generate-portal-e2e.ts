/**
 * Writes test/vectors/portal-e2e.json: known answers for the frames of device-to-device
 * streams (src/protocol/portal/e2e.ts, device-outlets.ts; docs/protocol.md §11.10): RELAY_OPEN,
 * PEER, DEVICE_OUTLETS, E2E framing and the handshake prologue, and inputs that must fail.
 *
 * Run with `npm run vectors`. No randomness: the file is reproduced byte for byte, and
 * test/portal/e2e.test.ts checks that, then re-encodes each vector from its fields with a
 * writer of its own.
 */
import { join } from 'node:path';
import { encodeDeviceOutlets, decodeDeviceOutlets } from '../../src/protocol/portal/device-outlets.js';
import { decodeRelayOpen, E2eDeframer, e2ePrologue, encodeE2e, encodePeer, encodeRelayOpen } from '../../src/protocol/portal/e2e.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';
import { failsWith, hex, seq, writeVectors } from './kit.js';

export const E2E_VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'portal-e2e.json');

export function renderPortalE2e(): string {
  const id = seq(0x10);
  const ik = seq(0x80);
  const relayOpen = [
    { comment: 'RELAY_OPEN for outlet "ssh"', name: 'ssh' },
    { comment: 'RELAY_OPEN with a 64-byte name', name: 'n'.repeat(64) },
  ].map((v) => ({ ...v, enrollee_id: hex(id), ik: hex(ik), hex: hex(encodeRelayOpen({ name: v.name, enrolleeId: id, ik })) }));
  const peer = { comment: 'PEER: the outlet device as the directory knows it', enrollee_id: hex(id), ik: hex(ik), hex: hex(encodePeer({ enrolleeId: id, ik })) };
  const deviceOutlets = [
    { comment: 'one outlet', names: ['web'] },
    { comment: 'three outlets', names: ['ssh', 'web-8080', 'db.main_1'] },
  ].map((v) => ({ ...v, hex: hex(encodeDeviceOutlets(v.names)) }));
  const e2e = [
    { comment: 'E2E frame around a 32-byte XX msg 1', message: hex(seq(0xe0)) },
    { comment: 'E2E frame around a 16-byte message (an empty transport message: the tag only, a FIN)', message: hex(seq(0x40, 16)) },
  ].map((v) => ({ ...v, hex: hex(encodeE2e(Buffer.from(v.message, 'hex'))) }));
  const prologue = ['ssh', 'web'].map((name) => ({ outlet: name, hex: hex(e2ePrologue(name)) }));
  const invalid = [
    { comment: 'RELAY_OPEN with version 1 (an OPEN)', kind: 'relay_open', hex: '0103737368' },
    { comment: 'RELAY_OPEN naming no outlet', kind: 'relay_open', hex: '0200' },
    { comment: 'RELAY_OPEN with an ill-formed UTF-8 name', kind: 'relay_open', hex: `0201ff${hex(id)}${hex(ik)}` },
    { comment: 'E2E frame of length 0', kind: 'e2e', hex: '0000' },
    { comment: 'DEVICE_OUTLETS with count 0', kind: 'device_outlets', hex: '3a0100' },
    { comment: 'DEVICE_OUTLETS with version 2', kind: 'device_outlets', hex: '3a020103776562' },
    { comment: 'DEVICE_OUTLETS with a name holding "/"', kind: 'device_outlets', hex: '3a010103612f62' },
    { comment: 'DEVICE_OUTLETS with a name given twice', kind: 'device_outlets', hex: '3a01020161' + '0161' },
    { comment: 'DEVICE_OUTLETS with a trailing byte', kind: 'device_outlets', hex: '3a0101016100' },
  ].map((v) => ({
    ...v,
    error: failsWith(() => {
      const b = Buffer.from(v.hex, 'hex');
      if (v.kind === 'relay_open') decodeRelayOpen(b);
      else if (v.kind === 'device_outlets') decodeDeviceOutlets(b);
      else {
        const d = new E2eDeframer();
        d.push(b);
        d.next();
      }
    }),
  }));
  return `${JSON.stringify({ comment: 'docs/protocol.md §11.10; made by test/vectors/generate-portal-e2e.ts', relay_open: relayOpen, peer, device_outlets: deviceOutlets, e2e, prologue, invalid }, null, 2)}\n`;
}

if (isMain(import.meta.url)) {
  writeVectors(E2E_VECTOR_FILE, renderPortalE2e());
}
