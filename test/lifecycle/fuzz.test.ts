/**
 * The lifecycle decoders under the suite's seeded fuzzer (test/fuzz/arbitraries.ts: seed and
 * runs from OCKAM_ENROLL_FUZZ_SEED / OCKAM_ENROLL_FUZZ_RUNS). Each decoder returns or throws
 * an EnrollError with a code from its documented set (docs/protocol.md §7.9, §7.10); what
 * decodes re-encodes to the same bytes; a mutated announcement never verifies.
 */
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { equalBytes } from '../../src/crypto/bytes.js';
import { generateX25519 } from '../../src/crypto/x25519.js';
import { decodeAnnouncement, encodeAnnouncement, signAnnouncement, verifyAnnouncement } from '../../src/protocol/announce.js';
import {
  decodeAddress,
  decodeAddressRequest,
  decodeRotate,
  decodeCredentialMsg,
  decodeCredentialRequest,
  decodeRotated,
  encodeCredentialMsg,
  encodeCredentialRequest,
  encodeAddress,
  encodeAddressRequest,
  encodeRotate,
  encodeRotated,
} from '../../src/protocol/messages/session.js';
import { check, expectCode, hostileBytes, typed } from '../fuzz/arbitraries.js';

const ikA = generateX25519();
const announcements = [
  signAnnouncement(ikA.privateKey, 1, 'tcp://127.0.0.1:4100'),
  signAnnouncement(ikA.privateKey, 2 ** 40, 'tcp://[2001:db8::7]:65535'),
  signAnnouncement(ikA.privateKey, 3, ''),
];
const encodedAnnouncements = announcements.map(encodeAnnouncement);
// Message decoders may also meet an ERROR in place of their message (any known code), or a wrong type.
const MESSAGE_CODES = ['ERR_FRAME_MALFORMED', 'ERR_PROTOCOL', 'ERR_REJECTED'];
const anyPeerCode = (code: string) => code.startsWith('ERR_');

describe('lifecycle decoders under hostile input', () => {
  it('decodeAnnouncement throws only ERR_ANNOUNCEMENT_INVALID; what decodes re-encodes exactly; a mutated one never verifies', () =>
    check(
      fc.property(hostileBytes(encodedAnnouncements, 700), (bytes) => {
        const r = typed(() => decodeAnnouncement(bytes));
        expectCode(r, ['ERR_ANNOUNCEMENT_INVALID'], 'decodeAnnouncement');
        if (!r.ok) return;
        if (!equalBytes(encodeAnnouncement(r.value), bytes)) throw new Error('not canonical');
        const v = typed(() => verifyAnnouncement(r.value, { ikA: ikA.publicKey, knownSeq: 0 }));
        expectCode(v, ['ERR_ANNOUNCEMENT_INVALID'], 'verifyAnnouncement');
        if (v.ok && !encodedAnnouncements.some((e) => equalBytes(e, bytes))) throw new Error('a mutated announcement verified');
      }),
    ));

  it('ADDRESS_REQUEST, ADDRESS, ROTATE and ROTATED decoders throw only their documented codes, and re-encode exactly', () => {
    const valid = {
      addressRequest: [encodeAddressRequest()],
      address: [encodeAddress(undefined), ...announcements.map((a) => encodeAddress(a))],
      rotate: [encodeRotate({ newIkB: new Uint8Array(32).fill(1), sigOld: new Uint8Array(64).fill(2), sigNew: new Uint8Array(64).fill(3) })],
      rotated: [
        encodeRotated({ enrolleeId: new Uint8Array(32).fill(4), newIkB: new Uint8Array(32).fill(5), rotatedAt: 1_800_000_000 }),
        encodeRotated({ enrolleeId: new Uint8Array(32).fill(4), newIkB: new Uint8Array(32).fill(5), rotatedAt: 1_800_000_000, credential: new Uint8Array(200).fill(6) }),
      ],
      credential: [encodeCredentialRequest(), encodeCredentialMsg(new Uint8Array(178).fill(7))],
    };
    const all = Object.values(valid).flat();
    return check(
      fc.property(hostileBytes(all, 700), (bytes) => {
        const peer = (what: string, r: ReturnType<typeof typed>) => {
          if (r.ok) return;
          // An ERROR decodes to the peer's code: any known one is allowed there.
          if (bytes[0] === 0x7f && anyPeerCode(r.error!.code)) return;
          expectCode(r, MESSAGE_CODES, what);
        };
        peer('decodeAddressRequest', typed(() => decodeAddressRequest(bytes)));
        const a = typed(() => decodeAddress(bytes));
        peer('decodeAddress', a);
        if (a.ok && !equalBytes(encodeAddress(a.value), bytes)) throw new Error('ADDRESS not canonical');
        const r = typed(() => decodeRotate(bytes));
        peer('decodeRotate', r);
        if (r.ok && !equalBytes(encodeRotate(r.value), bytes)) throw new Error('ROTATE not canonical');
        const d = typed(() => decodeRotated(bytes));
        peer('decodeRotated', d);
        if (d.ok && !equalBytes(encodeRotated(d.value), bytes)) throw new Error('ROTATED not canonical');
        peer('decodeCredentialRequest', typed(() => decodeCredentialRequest(bytes)));
        const c = typed(() => decodeCredentialMsg(bytes));
        peer('decodeCredentialMsg', c);
        if (c.ok && !equalBytes(encodeCredentialMsg(c.value), bytes)) throw new Error('CREDENTIAL not canonical');
      }),
    );
  });
});
