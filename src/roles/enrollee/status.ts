/**
 * `enrollee status`: a mutually authenticated channel to the service — Noise XX with IK_B
 * and IK_A as the static keys — that asks the service how it sees this enrollee.
 */
import { equalBytes, fromHex, toHex } from '../../crypto/bytes.js';
import type { KeyPair } from '../../crypto/x25519.js';
import { EnrollError } from '../../errors.js';
import {
  decodeStatus,
  encodeStatusRequest,
  KIND_SESSION,
  kindFrame,
  PROLOGUE_ENROLLEE_SERVICE,
  type StatusReport,
} from '../../protocol/messages/service.js';
import { initiateChannel } from '../../transport/channel.js';
import { connectTcp } from '../../transport/tcp.js';
import type { EnrolleeHome } from './home.js';

/** Asks the service at `address`, authenticating as `ikB` and requiring the service key `ikA`. */
export async function statusWithKey(address: string, ikB: KeyPair, ikA: Uint8Array): Promise<StatusReport> {
  const conn = await connectTcp(address);
  try {
    await conn.writeFrame(kindFrame(KIND_SESSION));
    const channel = await initiateChannel(conn, {
      staticKeyPair: ikB,
      prologue: PROLOGUE_ENROLLEE_SERVICE,
      verifyRemote(key) {
        if (!equalBytes(key, ikA)) {
          throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `the service at ${address} presented ${toHex(key)}, not the key this enrollee enrolled with`);
        }
      },
    });
    await channel.send(encodeStatusRequest());
    const report = decodeStatus(await channel.receive(15_000));
    await channel.close();
    return report;
  } finally {
    conn.destroy();
  }
}

export async function serviceStatus(enrollee: EnrolleeHome): Promise<StatusReport & { address: string }> {
  const svc = enrollee.enrolled();
  if (!svc) throw new EnrollError('ERR_KEY_MISSING', 'this enrollee is not enrolled yet', { hint: 'run `ockam-enroll enrollee join` first' });
  const report = await statusWithKey(svc.address, await enrollee.identity(), fromHex(svc.service_key, 'service_key'));
  return { ...report, address: svc.address };
}
