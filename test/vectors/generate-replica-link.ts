/**
 * Writes test/vectors/replica-link.json: known answers for the frames of replica links
 * (src/protocol/portal/replica-link.ts; docs/protocol.md §11.11): REPLICA_HELLO, FORWARD, the
 * prologue, and inputs that must fail.
 *
 * Run with `npm run vectors`. No randomness: the file is reproduced byte for byte, and
 * test/portal/replica-link.test.ts checks that, then re-encodes each vector from its fields
 * with a writer of its own.
 */
import { join } from 'node:path';
import { encodeRelayOpen } from '../../src/protocol/portal/e2e.js';
import { decodeForward, decodeReplicaHello, encodeForward, encodeReplicaHello, PROLOGUE_REPLICA_REPLICA } from '../../src/protocol/portal/replica-link.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { isMain } from '../helpers/is-main.js';
import { failsWith, hex, seq, writeVectors } from './kit.js';

export const REPLICA_LINK_VECTOR_FILE = join(REPO_ROOT, 'test', 'vectors', 'replica-link.json');

export function renderReplicaLink(): string {
  const device = seq(0x20);
  const opener = seq(0x10);
  const ik = seq(0x80);
  const hello = [
    { comment: 'REPLICA_HELLO of a replica named after its host', id: 'db-1-0a1b2c3d4e5f' },
    { comment: 'REPLICA_HELLO with a 64-character id', id: `r${'0'.repeat(63)}` },
  ].map((v) => ({ ...v, hex: hex(encodeReplicaHello(v.id)) }));
  const forward = [
    { comment: 'FORWARD to outlet "ssh" of device 0x20.. for opener 0x10..', name: 'ssh' },
    { comment: 'FORWARD with a 64-byte outlet name', name: 'n'.repeat(64) },
  ].map((v) => ({ ...v, device_id: hex(device), opener_id: hex(opener), opener_ik: hex(ik), hex: hex(encodeForward(device, encodeRelayOpen({ name: v.name, enrolleeId: opener, ik }))) }));
  const invalid = [
    { comment: 'REPLICA_HELLO with version 2', kind: 'hello', hex: '3b020161' },
    { comment: 'REPLICA_HELLO with an empty id', kind: 'hello', hex: '3b0100' },
    { comment: 'REPLICA_HELLO with an upper-case id', kind: 'hello', hex: '3b010141' },
    { comment: 'REPLICA_HELLO with a trailing byte', kind: 'hello', hex: '3b01016100' },
    { comment: 'REPLICA_HELLO with type 0x3a', kind: 'hello', hex: '3a010161' },
    { comment: 'FORWARD with version 2 (a RELAY_OPEN)', kind: 'forward', hex: '0203737368' },
    { comment: 'FORWARD whose RELAY_OPEN has version 1', kind: 'forward', hex: `03${hex(device)}0103737368` },
  ].map((v) => ({
    ...v,
    error: failsWith(() => (v.kind === 'hello' ? decodeReplicaHello(Buffer.from(v.hex, 'hex')) : decodeForward(Buffer.from(v.hex, 'hex')))),
  }));
  return `${JSON.stringify({ description: 'replica-link frames, docs/protocol.md §11.11', prologue: hex(PROLOGUE_REPLICA_REPLICA), hello, forward, invalid }, null, 2)}\n`;
}

if (isMain(import.meta.url)) {
  writeVectors(REPLICA_LINK_VECTOR_FILE, renderReplicaLink());
}
