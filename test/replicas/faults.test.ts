/**
 * Faults of a replicated service (docs/walkthrough.md "Running several replicas", docs/threat-model.md):
 * two `service start` replicas on one PostgreSQL store, on a cluster of this test's own. Under
 * a load of concurrent enrollments sent to both, replica 1 is killed with SIGKILL, and then
 * PostgreSQL is restarted.
 *
 * Checked: no acknowledged enrollment is lost (every message whose acceptance reached its
 * enrollee is in the database with its IK_B); the surviving replica answers UNAVAILABLE while
 * the database is down (never USED or UNKNOWN for an enrollee it could not look up), logs one
 * `store-unreachable` line rather than one per request, and serves again by itself once the
 * database is back; in the end every enrollee is enrolled exactly once, no OPK twice, and
 * `service audit verify` accepts the log.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { generateX25519 } from '../../src/crypto/x25519.js';
import type { InitiateResult } from '../../src/protocol/enrollment/index.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { freePort, removeTempHomes, run, show, sleep, tempHome } from '../helpers/cli.js';
import { alarmingLines, approveEnrollees, enrollChunks, messageFor, nowSeconds, openAcceptance, rawExchange, sigkill, startLiveService, type LabEnrollee, type LiveService } from '../helpers/lab.js';
import { freshDatabase, pgQuery, privateCluster, type TestCluster } from '../helpers/pg.js';
import { slowdown } from '../helpers/pace.js';

/** How much slower than idle the machine is (pace.ts): each test's timeout below is its idle bound times this. */
const SLOW = await slowdown();

const N = 600;
const FLAGS = ['--rate-per-ip', 'off', '--read-timeout', '30s'];

let cluster: TestCluster;
let url: string;
let home: string;
let enrollees: LabEnrollee[];
let ports: number[];

before(async () => {
  cluster = await privateCluster();
  url = await freshDatabase(cluster.url);
  const root = tempHome('replica-faults');
  home = join(root, 'service-home');
  ports = [await freePort(), await freePort()];
  const svc = await ServiceHome.init(home, { address: `tcp://127.0.0.1:${ports[0]}`, now: nowSeconds() - 60, store: url });
  try {
    const enroller = generateX25519().publicKey;
    await svc.store.allowEnroller(enroller, 'fault-test enroller', nowSeconds() - 60);
    enrollees = await approveEnrollees(svc, enroller, N, 'fault');
  } finally {
    await svc.close();
  }
});

after(() => {
  cluster?.stop();
  removeTempHomes();
});

async function send(port: number, message: Uint8Array): Promise<{ status: number; frame: Uint8Array | undefined }> {
  const out = await rawExchange(port, enrollChunks(message), { waitMs: 60_000 });
  const frame = out.frames[0];
  return { status: frame === undefined ? -1 : frame[0]!, frame };
}

async function enrolledIks(): Promise<Map<string, string>> {
  const rows = await pgQuery(url, `SELECT encode(id, 'hex') AS id, encode(ik_b, 'hex') AS ik FROM enrollees WHERE state = 'enrolled'`);
  return new Map(rows.map((r) => [String(r.id), String(r.ik)]));
}

describe('replicas: SIGKILL of one replica and a PostgreSQL restart under load', () => {
  it(`loses no acknowledged enrollment, answers UNAVAILABLE while the database is down, and recovers by itself (${N} enrollments)`, { timeout: Math.ceil(300_000 * SLOW) }, async () => {
    const replicas: LiveService[] = [await startLiveService(home, ports[0]!, FLAGS), await startLiveService(home, ports[1]!, FLAGS)];
    const attempts: InitiateResult[] = enrollees.map(messageFor);
    const opened: boolean[] = new Array(N).fill(false);
    const statuses = new Map<number, number>();
    let acks = 0;
    let killedAt = -1;
    let restartedAt = -1;
    try {
      let next = 0;
      const worker = async () => {
        while (next < N) {
          const i = next++;
          const { status, frame } = await send(ports[i % 2]!, attempts[i]!.message);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status === ENROLL_STATUS.USED || status === ENROLL_STATUS.UNKNOWN) assert.fail(`enrollee ${i} was answered ${status}: a fault must never read as used or unknown`);
          if (frame && openAcceptance(attempts[i]!, frame)) {
            opened[i] = true;
            acks++;
            if (acks === Math.floor(N / 5) && killedAt < 0) {
              killedAt = acks;
              await sigkill(replicas[0]!);
            } else if (acks === Math.floor((2 * N) / 5) && restartedAt < 0) {
              restartedAt = acks;
              // Fast shutdown cuts every connection; the server is down for a second.
              cluster.restart(1_000);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
      assert.ok(killedAt > 0 && restartedAt > 0, `both faults happened under load (acks ${acks})`);
      process.stderr.write(`# replica faults: ${acks} acknowledged under load; statuses ${JSON.stringify(Object.fromEntries(statuses))}\n`);

      // Every acknowledged enrollment is in the database, with the IK_B its message carried.
      const iks = await enrolledIks();
      for (let i = 0; i < N; i++) {
        if (opened[i]) assert.equal(iks.get(enrollees[i]!.hex), Buffer.from(attempts[i]!.ikB.publicKey).toString('hex'), `acknowledged enrollee ${i} is enrolled with its IK_B`);
      }

      // The survivor serves again by itself: every unanswered or refused message, sent again
      // to it, is accepted, or is REPLAY (committed, but its answer was lost with the fault).
      const survivor = replicas[1]!;
      for (let i = 0; i < N; i++) {
        if (opened[i]) continue;
        for (let tries = 0; ; tries++) {
          const { status, frame } = await send(survivor.port, attempts[i]!.message);
          if (frame && openAcceptance(attempts[i]!, frame)) break;
          if (status === ENROLL_STATUS.REPLAY) {
            assert.ok(iks.has(enrollees[i]!.hex) || (await enrolledIks()).has(enrollees[i]!.hex), `enrollee ${i}: REPLAY means its commit made it`);
            break;
          }
          assert.equal(status, ENROLL_STATUS.UNAVAILABLE, `enrollee ${i}: accepted, REPLAY or UNAVAILABLE, got ${status}`);
          assert.ok(tries < 150, `enrollee ${i}: still UNAVAILABLE after ${tries} tries`);
          await sleep(200);
        }
      }
      const [row] = await pgQuery(
        url,
        `SELECT (SELECT count(*) FROM enrollees WHERE state = 'enrolled') AS enrolled,
                (SELECT count(*) FROM bundles WHERE state = 'consumed') AS consumed,
                (SELECT count(*) FROM accepted_ek) AS accepted_ek,
                (SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM enrollees WHERE state = 'enrolled' GROUP BY bundle_id) x) AS per_bundle`,
      );
      assert.deepEqual(
        { enrolled: Number(row!.enrolled), consumed: Number(row!.consumed), accepted_ek: Number(row!.accepted_ek), per_bundle: Number(row!.per_bundle) },
        { enrolled: N, consumed: N, accepted_ek: N, per_bundle: 1 },
      );

      // One line when the database went away, one when it came back; not one per request.
      const down = survivor.decisions('store-unreachable');
      const up = survivor.decisions('store-reachable');
      assert.ok(down.length >= 1, `the survivor logged store-unreachable:\n${survivor.lines.slice(-30).join('\n')}`);
      assert.ok(up.length >= 1, 'and store-reachable once it was back');
      assert.ok(down.length <= 3, `a few store-unreachable lines, not one per request (${down.length}):\n${[...down, ...up].join('\n')}`);
      const storeErrors = survivor.lines.filter((l) => l.includes(' error ') && l.includes('ERR_STORE'));
      assert.ok(storeErrors.length <= 20, `per-request store errors are not logged while it is down (${storeErrors.length}):\n${storeErrors.slice(0, 5).join('\n')}`);
      assert.deepEqual(alarmingLines(survivor.lines), []);
      for (const l of survivor.lines) assert.ok(!l.includes('postgres://ockam@') || !/:[^@/]*@/.test(l.split('postgres://')[1] ?? ''), 'no password in a log line');

      // The killed replica starts again on the same store and refuses the replays.
      replicas[0] = await startLiveService(home, ports[0]!, FLAGS);
      const first = opened.indexOf(true);
      assert.equal((await send(ports[0]!, attempts[first]!.message)).status, ENROLL_STATUS.REPLAY);
    } finally {
      for (const r of replicas) if (r.running()) await r.stop().catch(() => sigkill(r));
    }
    // The audit log is one chain across both replicas, the killed one and the restart included.
    const verify = await run(['service', 'audit', 'verify', '--json', '--store', url], { home });
    assert.equal(verify.code, 0, show(verify));
  });
});
