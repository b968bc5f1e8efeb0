/**
 * Graceful shutdown (issue #21 item 8, README "Graceful shutdown"): SIGTERM while 16
 * enrollment messages are in flight stops accepting, answers what it had read, and exits 0
 * well within --drain-timeout (10 s by default); every enrollment whose acceptance reached
 * its enrollee is in the store afterwards. Real process, real SQLite, real loopback TCP.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ServiceHome } from '../../src/roles/service/home.js';
import { toHex } from '../../src/crypto/bytes.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { removeTempHomes } from '../helpers/cli.js';
import { enrollChunks, messageFor, openAcceptance, rawExchange, serviceWithEnrollees } from '../helpers/lab.js';

after(() => removeTempHomes());

const N = 400;

describe('service start: SIGTERM under load', () => {
  it('exits 0 within the drain bound, and loses no acknowledged enrollment', { timeout: 240_000 }, async () => {
    const { service, enrollees, home } = await serviceWithEnrollees(['--rate-per-ip', 'off', '--read-timeout', '30s'], N, 'drain');
    const acked: string[] = [];
    const outcomes = new Map<string, number>();
    let next = 0;
    let signalledAt = 0;
    const worker = async () => {
      while (next < N) {
        const e = enrollees[next++]!;
        const attempt = messageFor(e);
        const out = await rawExchange(service.port, enrollChunks(attempt.message), { waitMs: 30_000 });
        const key = out.frames.length > 0 ? `status ${out.frames[0]![0]}` : out.how;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
        if (out.frames[0] && openAcceptance(attempt, out.frames[0])) {
          acked.push(e.hex);
          if (acked.length === 50 && signalledAt === 0) {
            signalledAt = Date.now();
            service.kill('SIGTERM');
          }
        }
        if (out.how === 'refused') return; // the listener is gone: the stop has begun
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const r = await service.done(30_000);
    const took = Date.now() - signalledAt;
    process.stderr.write(`# shutdown: ${acked.length} acknowledged; exit ${r.code} ${took} ms after SIGTERM; outcomes ${JSON.stringify(Object.fromEntries(outcomes))}\n`);
    assert.ok(signalledAt > 0, 'SIGTERM was sent under load');
    assert.equal(r.code, 0, r.stderr.slice(-2000));
    assert.ok(took < 10_000, `exited within the 10 s drain bound (${took} ms)`);
    assert.ok(service.lines.some((l) => l.includes(' stopped ') && l.includes('signal=SIGTERM')), 'logged the stop');
    assert.equal(outcomes.get(`status ${ENROLL_STATUS.UNAVAILABLE}`) ?? 0, 0, 'nothing answered UNAVAILABLE');
    // Every acknowledged enrollment is durable.
    const svc = await ServiceHome.open(home);
    try {
      const enrolled = new Set((await svc.store.listEnrollees('enrolled')).map((e) => toHex(e.id)));
      for (const hex of acked) assert.ok(enrolled.has(hex), `acknowledged enrollee ${hex} is enrolled`);
    } finally {
      await svc.close();
    }
  });
});
