/**
 * The enroller's channel to the service: TCP, the KIND_ENROLLER frame, then Noise XX with
 * the enroller's static key. The service's static key is checked before the enroller sends
 * its third handshake message: against `--service-key` when given, else against the key
 * pinned for this address, else it is trusted on first use and pinned (ssh known_hosts),
 * but only once an exchange has succeeded (commitPin).
 */
import { equalBytes, toHex } from '../../crypto/bytes.js';
import type { KeyPair } from '../../crypto/x25519.js';
import { EnrollError } from '../../errors.js';
import type { KnownServices } from '../../keystore/known-services.js';
import { KIND_ENROLLER, kindFrame, PROLOGUE_ENROLLER_SERVICE } from '../../protocol/messages/service.js';
import { formatAddress, parseAddress } from '../../transport/address.js';
import { initiateChannel, type SecureChannel } from '../../transport/channel.js';
import { connectTcp } from '../../transport/tcp.js';

export interface ServiceConnection {
  channel: SecureChannel;
  address: string;
  serviceKey: Uint8Array;
  /** True once this connection has pinned the key for the first time (TOFU): see commitPin. */
  readonly pinnedNow: boolean;
  /**
   * Pins the service's key (first use, or the --service-key given), once an exchange over the
   * channel has succeeded (issue #22: a first contact that is refused, e.g. "not allowed",
   * pins nothing). Idempotent; calls `onPinned` the one time a key is pinned on first use.
   */
  commitPin(): void;
}

export async function connectService(opts: {
  address: string;
  keyPair: KeyPair;
  known: KnownServices;
  serviceKey?: Uint8Array;
  timeoutMs?: number;
  /** Told when a key is trusted on first use and pinned: the caller shows the warning. */
  onPinned?: (address: string, key: Uint8Array) => void;
}): Promise<ServiceConnection> {
  const address = formatAddress(parseAddress(opts.address));
  const conn = await connectTcp(address, opts.timeoutMs ? { connectTimeoutMs: opts.timeoutMs } : {});
  let tofu = false;
  try {
    await conn.writeFrame(kindFrame(KIND_ENROLLER));
    const channel = await initiateChannel(conn, {
      staticKeyPair: opts.keyPair,
      prologue: PROLOGUE_ENROLLER_SERVICE,
      verifyRemote(key) {
        if (opts.serviceKey) {
          if (!equalBytes(key, opts.serviceKey)) {
            throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `the service at ${address} has key ${toHex(key)}, not the --service-key given`, {
              hint: 'check the key printed by `ockam-enroll service init` on the service',
            });
          }
          return;
        }
        const seen = opts.known.check(address, key);
        if (seen === 'mismatch') {
          throw new EnrollError('ERR_SERVICE_KEY_MISMATCH', `the service at ${address} presented key ${toHex(key)}, which differs from the key pinned for it`, {
            hint: `if the service was re-initialised on purpose, pass --service-key with its new key; the pin is in ${opts.known.file}`,
          });
        }
        tofu = seen === 'unknown';
      },
    });
    const serviceKey = channel.remoteStaticKey;
    let committed = false;
    let pinnedNow = false;
    return {
      channel,
      address,
      serviceKey,
      get pinnedNow() {
        return pinnedNow;
      },
      commitPin() {
        if (committed) return;
        committed = true;
        // An explicit --service-key replaces an older pin; first use pins.
        if (opts.serviceKey) opts.known.pin(address, serviceKey, { replace: true });
        else if (tofu) {
          opts.known.pin(address, serviceKey);
          pinnedNow = true;
          opts.onPinned?.(address, serviceKey);
        }
      },
    };
  } catch (err) {
    conn.destroy();
    throw err;
  }
}
