/**
 * The rate-limit building blocks of src/roles/service/limits.ts, without a network: token
 * buckets (burst, refill, bounded memory), the rate flag's grammar, the per-IP bucket key
 * (IPv4, IPv6 /64, IPv4-mapped), the throttled `limited` log, and the enroller-request
 * wrapper (ERROR ERR_RATE_LIMITED, then the channel closes).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EnrollError, isEnrollError } from '../../src/errors.js';
import { decodeError } from '../../src/protocol/messages/common.js';
import {
  LIMIT_LOG_INTERVAL_MS,
  LimitLog,
  limitEnrollerRequests,
  parseRate,
  peerIpKey,
  TokenBuckets,
} from '../../src/roles/service/limits.js';
import type { Decision, DecisionFields } from '../../src/roles/service/log.js';
import type { SecureChannel } from '../../src/transport/channel.js';

function clock(start = 1000) {
  let t = start;
  const now = () => t;
  now.advance = (ms: number) => {
    t += ms;
  };
  return now;
}

describe('limits: parseRate (--rate-per-ip, --rate-per-enroller)', () => {
  it('reads N/s, N/m, N/h, bare N and off', () => {
    assert.deepEqual(parseRate('100/s', '--rate-per-ip'), { burst: 100, perSecond: 100, text: '100/s' });
    assert.deepEqual(parseRate('600/m', '--rate-per-ip'), { burst: 600, perSecond: 10, text: '600/m' });
    assert.deepEqual(parseRate('36/h', '--rate-per-ip'), { burst: 36, perSecond: 0.01, text: '36/h' });
    assert.deepEqual(parseRate(' 7 ', '--rate-per-ip'), { burst: 7, perSecond: 7, text: '7/s' });
    assert.equal(parseRate('off', '--rate-per-ip'), null);
    assert.equal(parseRate('OFF', '--rate-per-ip'), null);
  });
  it('refuses anything else with ERR_USAGE naming the flag', () => {
    for (const bad of ['', '0', '0/s', '-1/s', '1.5/s', '10/d', '10/', 'fast', '10000000/s', '1e3']) {
      assert.throws(
        () => parseRate(bad, '--rate-per-enroller'),
        (e: unknown) => isEnrollError(e, 'ERR_USAGE') && e.message.includes('--rate-per-enroller') && e.hint !== undefined,
        bad,
      );
    }
  });
});

describe('limits: TokenBuckets', () => {
  it('allows a burst, then refuses with the wait until the next token, then refills at the rate', () => {
    const now = clock();
    const b = new TokenBuckets({ burst: 3, perSecond: 2, text: '3/s' }, { clock: now });
    assert.deepEqual([b.take('a'), b.take('a'), b.take('a')], [0, 0, 0]);
    assert.equal(b.take('a'), 500, 'one token every 500 ms');
    now.advance(499);
    assert.ok(b.take('a') > 0, 'not yet');
    now.advance(1);
    assert.equal(b.take('a'), 0, 'refilled');
    assert.equal(b.take('b'), 0, 'another key has its own bucket');
    now.advance(60_000);
    assert.deepEqual([b.take('a'), b.take('a'), b.take('a'), b.take('a') > 0], [0, 0, 0, true], 'never more than the burst');
  });

  // --fail-rate-per-ip (enroll.ts): checked with available() before the work, charged with take() after it.
  it('available() says whether a token is there and how long until one, without taking it; an unknown key has a full bucket', () => {
    const now = clock();
    const b = new TokenBuckets({ burst: 2, perSecond: 1 / 3, text: '20/m' }, { clock: now });
    assert.equal(b.available('x'), 0);
    assert.equal(b.size, 0, 'asking tracks nothing');
    assert.deepEqual([b.available('a'), b.available('a'), b.available('a')], [0, 0, 0], 'asking takes nothing');
    assert.deepEqual([b.take('a'), b.take('a')], [0, 0]);
    assert.equal(b.available('a'), 3000, 'one token every 3 s');
    now.advance(2999);
    assert.ok(b.available('a') > 0);
    now.advance(1);
    assert.equal(b.available('a'), 0);
    assert.equal(b.take('a'), 0);
    assert.ok(b.available('a') > 0);
  });

  it('a refused request takes no token, so a peer that keeps retrying gets through at the rate', () => {
    const now = clock();
    const b = new TokenBuckets({ burst: 1, perSecond: 1, text: '1/s' }, { clock: now });
    assert.equal(b.take('x'), 0);
    let passed = 0;
    for (let i = 0; i < 100; i++) {
      now.advance(100);
      if (b.take('x') === 0) passed++;
    }
    assert.equal(passed, 10, '10 s of retries every 100 ms pass 10 times');
  });

  it('tracks at most maxTracked keys: full buckets are forgotten first, then the least recently used', () => {
    const now = clock();
    const b = new TokenBuckets({ burst: 2, perSecond: 1, text: '2/s' }, { clock: now, maxTracked: 100 });
    for (let i = 0; i < 10_000; i++) b.take(`ip-${i}`);
    assert.ok(b.size <= 100, `size ${b.size}`);
    // A busy key that keeps being used stays tracked (and limited) through a flood of new keys.
    const h = new TokenBuckets({ burst: 2, perSecond: 0.001, text: '2/s' }, { clock: now, maxTracked: 50 });
    h.take('busy');
    h.take('busy');
    for (let i = 0; i < 1000; i++) {
      h.take(`flood-${i}`);
      if (i % 5 === 0) assert.ok(h.take('busy') > 0, 'the busy key is still limited');
    }
  });
});

describe('limits: peerIpKey', () => {
  it('buckets IPv4 by address, IPv6 by /64, and IPv4-mapped IPv6 as IPv4', () => {
    assert.equal(peerIpKey('192.0.2.7:51000'), '192.0.2.7');
    assert.equal(peerIpKey('[::ffff:192.0.2.7]:51000'), '192.0.2.7');
    assert.equal(peerIpKey('[2001:db8:1:2:aaaa::1]:4100'), '2001:db8:1:2::/64');
    assert.equal(peerIpKey('[2001:0db8:0001:0002:ffff:ffff:ffff:ffff]:1'), '2001:db8:1:2::/64', 'every spelling of one /64 is one key');
    assert.equal(peerIpKey('[2001:db8::]:1'), '2001:db8:0:0::/64');
    assert.equal(peerIpKey('[::1]:1'), '0:0:0:0::/64');
    assert.equal(peerIpKey('[fe80::1%eth0]:1'), 'fe80:0:0:0::/64');
    assert.equal(peerIpKey(undefined), 'local');
  });
});

describe('limits: LimitLog', () => {
  it('logs the first refusal of each limit at once, then at most one line per interval with the count left out', () => {
    const now = clock();
    const lines: { d: Decision; f: DecisionFields }[] = [];
    const log = new LimitLog((d, f) => lines.push({ d, f }), now);
    for (let i = 0; i < 1000; i++) log.limited('rate-per-ip', { peer: '192.0.2.1:1', reason: 'ERR_RATE_LIMITED: x' });
    log.limited('max-frame', { reason: 'ERR_FRAME_TOO_LARGE: y' });
    assert.equal(lines.length, 2);
    assert.deepEqual(lines.map((l) => [l.d, l.f.limit]), [['limited', 'rate-per-ip'], ['limited', 'max-frame']]);
    now.advance(LIMIT_LOG_INTERVAL_MS);
    log.limited('rate-per-ip', { reason: 'ERR_RATE_LIMITED: x' });
    assert.equal(lines.length, 3);
    assert.equal(lines[2]!.f.suppressed, 999);
  });
});

describe('limits: limitEnrollerRequests', () => {
  it('passes requests within the rate; over it, sends ERROR ERR_RATE_LIMITED with a hint, closes, and reports the peer gone', async () => {
    const sent: Uint8Array[] = [];
    let closed = false;
    const inbox = [Uint8Array.of(0x10, 0, 1), Uint8Array.of(0x10, 0, 1), Uint8Array.of(0x10, 0, 1)];
    const channel: SecureChannel = {
      remoteStaticKey: new Uint8Array(32).fill(7),
      handshakeHash: new Uint8Array(32),
      connection: undefined as never,
      send: async (p) => void sent.push(p),
      close: async () => void (closed = true),
      receive: async () => inbox.shift()!,
    };
    const now = clock();
    const limited: [string, number][] = [];
    const wrapped = limitEnrollerRequests(channel, new TokenBuckets({ burst: 2, perSecond: 1 / 60, text: '2/m' }, { clock: now }), (k, ms) => limited.push([k, ms]));
    assert.deepEqual(await wrapped.receive(), Uint8Array.of(0x10, 0, 1));
    assert.deepEqual(await wrapped.receive(), Uint8Array.of(0x10, 0, 1));
    await assert.rejects(wrapped.receive(), (e: unknown) => isEnrollError(e, 'ERR_CONNECTION_CLOSED'));
    assert.equal(closed, true);
    assert.equal(sent.length, 1);
    const err = decodeError(sent[0]!);
    assert.ok(err instanceof EnrollError);
    assert.equal(err.code, 'ERR_RATE_LIMITED');
    assert.match(err.message, /too many requests from this enroller \(limit 2\/m\)/);
    assert.match(err.hint ?? '', /wait 60 s and try again/);
    assert.deepEqual(limited, [['07'.repeat(32), 60_000]]);
  });
});
