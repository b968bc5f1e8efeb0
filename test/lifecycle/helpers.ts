/**
 * Shared steps of the lifecycle tests (docs/protocol.md §7.9, §7.10): enrolling a device
 * through the real binary, and opening channels to a running service from the test itself.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { fromHex } from '../../src/crypto/bytes.js';
import type { KeyPair } from '../../src/crypto/x25519.js';
import { Keystore } from '../../src/keystore/keystore.js';
import type { Bundle } from '../../src/protocol/codec/bundle.js';
import { bundleFromText } from '../../src/protocol/codec/index.js';
import { KIND_ENROLLER, kindFrame, PROLOGUE_ENROLLER_SERVICE } from '../../src/protocol/messages/service.js';
import { openSession } from '../../src/roles/enrollee/lifecycle.js';
import { initiateChannel, type SecureChannel } from '../../src/transport/channel.js';
import { connectTcp } from '../../src/transport/tcp.js';
import { ok, okJson, type Enrollee, type World } from '../helpers/cli.js';

export const EXIT = { OK: 0, FAILURE: 1, USAGE: 2, REJECTED: 3, UNREACHABLE: 4, AUTH: 5 } as const;

export interface Enrolled extends Enrollee {
  identityKey: string;
}

/** Inits a device, approves it with `bundle` (else the next fresh one) and joins it. */
export async function enrollDevice(w: World, name: string, bundle?: string): Promise<Enrolled> {
  const e = await w.newEnrollee(name);
  const approved = await ok(['enroller', 'approve', e.card, ...(bundle ? ['--bundle', bundle] : [])], { home: w.enrollerHome });
  const joined = await okJson<{ identity_key: string; enrollee_id: string }>(['enrollee', 'join', '--bundle', approved.stdout.trim()], { home: e.home });
  assert.equal(joined.enrollee_id, e.id);
  return { ...e, identityKey: joined.identity_key };
}

/** The bundle with this id from the enroller's cache, decoded and verified under the service key. */
export async function cachedBundle(w: World, id: string): Promise<Bundle> {
  const shown = await okJson<{ text: string }>(['enroller', 'bundle', 'show', id], { home: w.enrollerHome });
  return bundleFromText(shown.text, { now: Math.floor(Date.now() / 1000), ikA: fromHex(w.serviceKey) });
}

/** A key pair from a role's key file (the test reads the device's or enroller's own files). */
export function loadKey(home: string, role: 'enrollee' | 'enroller', file: string): Promise<KeyPair> {
  return Keystore.open(home, role).loadKeyPair(file);
}

export function enrolleeKeystore(home: string): Keystore {
  return Keystore.open(home, 'enrollee');
}

/** A session channel (KIND_SESSION) to the world's service as `ikB`. */
export function sessionAs(w: World, ikB: KeyPair, address = w.address): Promise<SecureChannel> {
  return openSession(address, ikB, fromHex(w.serviceKey));
}

/** An enroller channel (KIND_ENROLLER) to the world's service with the enroller's own key. */
export async function enrollerChannel(w: World): Promise<SecureChannel> {
  const key = await loadKey(w.enrollerHome, 'enroller', 'enroller.key');
  const conn = await connectTcp(w.address);
  await conn.writeFrame(kindFrame(KIND_ENROLLER));
  return initiateChannel(conn, { staticKeyPair: key, prologue: PROLOGUE_ENROLLER_SERVICE });
}

export function enrolleeDir(home: string): string {
  return join(home, 'enrollee');
}
