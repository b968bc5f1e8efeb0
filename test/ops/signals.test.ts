/**
 * The stop signals of `service start` (issue #21 item 8, docs/operations.md "Stopping:
 * SIGTERM drains"):
 * - a second SIGTERM (or SIGINT) while the first one drains exits at once, 143 (130), with a
 *   line saying so; the enrollment it cut was never acknowledged and is not in the store;
 * - the HTTPS listener drains too: a request whose body is still arriving when SIGTERM
 *   comes is read and answered, and the service then exits 0.
 * Real processes, real loopback TCP and TLS, real SQLite.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { removeTempHomes, shellQuote, sleep } from '../helpers/cli.js';
import { enrollChunks, labWorld, messageFor, rawExchange, serviceWithEnrollees } from '../helpers/lab.js';
import { patience } from '../helpers/pace.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { EST_SIMPLEENROLL } from '../../src/protocol/token/est.js';

after(() => removeTempHomes());

async function until(what: string, cond: () => boolean, maxMs: number): Promise<void> {
  const bound = await patience(maxMs);
  const t0 = Date.now();
  while (!cond()) {
    assert.ok(Date.now() - t0 < bound, `timed out after ${bound} ms waiting for ${what}`);
    await sleep(50);
  }
}

for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  describe(`a second ${signal} during the drain`, () => {
    it(`exits ${code} at once; the enrollment it cut was never acknowledged and is not recorded`, { timeout: 120_000 }, async () => {
      const marker = join(process.env.TMPDIR ?? '/tmp', `ockam-hook-${process.pid}-${signal}`);
      // A hook that holds the one enrollment in flight far longer than the test waits.
      const { service, enrollees, home } = await serviceWithEnrollees(
        ['--on-enroll', `touch ${shellQuote(marker)}; sleep 10`, '--on-enroll-timeout', '12s', '--drain-timeout', '60s', '--workers', '0'],
        1,
        `signal-${signal}`,
      );
      const e = enrollees[0]!;
      const exchange = rawExchange(service.port, enrollChunks(messageFor(e).message), { waitMs: 60_000 });
      await until('the hook to start', () => existsSync(marker), 20_000);
      service.kill(signal);
      await service.waitForLine(` stopped `);
      // Past the window in which a repeat is the first signal's echo (service-start.ts SIGNAL_ECHO_MS).
      await sleep(700);
      const t0 = Date.now();
      service.kill(signal);
      const r = await service.done(30_000);
      const took = Date.now() - t0;
      process.stderr.write(`# second ${signal}: exit ${r.code} ${took} ms later\n`);
      assert.equal(r.code, code, r.stderr.slice(-1500));
      assert.ok(took < 8_000, `exited before the hook's 10 s were up (${took} ms)`);
      assert.match(r.stderr, new RegExp(`ockam-enroll: ${signal} again: exiting without waiting for requests in flight`));
      const out = await exchange;
      assert.equal(out.frames.length, 0, 'the cut enrollment got no answer');
      const svc = await ServiceHome.open(home);
      try {
        assert.equal((await svc.store.findEnrollee(e.hex))?.state, 'pending', 'nothing recorded for it: the device retries');
      } finally {
        await svc.close();
        rmSync(marker, { force: true });
      }
    });
  });
}

describe('the HTTPS listener drains on SIGTERM', () => {
  it('a request still sending its body when SIGTERM comes is answered; then exit 0', { timeout: 120_000 }, async () => {
    const w = await labWorld({ bundles: 0 });
    try {
      const line = await w.service.waitForLine(' https-listening ');
      const port = Number(/address=[^ ]*:(\d+)/.exec(line)![1]);
      const body = Buffer.from('A'.repeat(400));
      let sent = false;
      const answered = new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path: EST_SIMPLEENROLL,
            method: 'POST',
            rejectUnauthorized: false,
            headers: { Authorization: 'Bearer not-a-token', 'Content-Type': 'application/pkcs10', 'Content-Length': String(body.length) },
          },
          (res) => {
            res.resume();
            res.on('end', () => resolve(res.statusCode ?? 0));
          },
        );
        req.on('error', reject);
        // SIGTERM once TLS is up and the headers and the first part of the body are sent.
        req.on('socket', (sock) => sock.once('secureConnect', () => void sleep(300).then(() => (sent = true))));
        req.write(body.subarray(0, 100));
        // The rest only once the service is draining.
        void w.service
          .waitForLine(' stopped ')
          .then(() => sleep(300))
          .then(() => req.end(body.subarray(100)));
      });
      await until('the request to be in flight', () => sent, 20_000);
      w.service.kill('SIGTERM');
      const status = await answered;
      assert.ok(status >= 400 && status < 500, `answered with a refusal of the bogus request, not cut (${status})`);
      const r = await w.service.done(30_000);
      assert.equal(r.code, 0, r.stderr.slice(-1500));
    } finally {
      await w.dispose().catch(() => undefined);
    }
  });
});
