/**
 * Crash safety of the service: `service start` is killed with SIGKILL in the middle of 600
 * concurrent enrollments, then started again.
 *
 * Set-up: 600 enrollees approved straight through the store (each with a bundle of its own)
 * and their enrollment messages computed ahead of time; the test process sends them all at
 * once over loopback TCP and kills the service once a seeded number of acceptances came back.
 *
 * Checked after the kill: the store opens cleanly and passes SQLite's integrity check; every
 * enrollment whose acceptance reached the enrollee (status 0 and the sealed acceptance opens
 * under its session key) is enrolled, with the IK_B of that message; no OPK was used twice
 * (consumed bundles = enrolled enrollees = accepted EK_Bs, each enrollee on its own bundle).
 * After the restart: every accepted message replayed is refused as REPLAY; every message that
 * got no answer is either accepted now or refused as REPLAY (its commit made it to disk but
 * its answer did not), and in the end every enrollee is enrolled exactly once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { toHex } from '../../src/crypto/bytes.js';
import type { InitiateResult } from '../../src/protocol/enrollment/index.js';
import { ENROLL_STATUS } from '../../src/protocol/messages/service.js';
import { ServiceHome } from '../../src/roles/service/home.js';
import { freePort, removeTempHomes, tempHome } from '../helpers/cli.js';
import {
  approveEnrollees,
  enrollChunks,
  enrollRaw,
  FUZZ_SEED,
  initServiceHome,
  messageFor,
  openAcceptance,
  rawExchange,
  sigkill,
  startLiveService,
  type LabEnrollee,
  type LiveService,
} from '../helpers/lab.js';
import { slowdown } from '../helpers/pace.js';

/** How much slower than idle the machine is (pace.ts): each test's timeout below is its idle bound times this. */
const SLOW = await slowdown();

const N = 600;
/** Kill once this many acceptances have come back: between 60 and 359, from the seed. */
const KILL_AFTER = 60 + (FUZZ_SEED % 300);
const FLAGS = ['--rate-per-ip', 'off', '--read-timeout', '30s'];

let root: string;
let port: number;
let home: string;
let enrollees: LabEnrollee[];
let attempts: InitiateResult[];

before(async () => {
  root = tempHome('crash-service');
  port = await freePort();
  const made = await initServiceHome(root, port);
  home = made.home;
  try {
    enrollees = await approveEnrollees(made.svc, made.enroller.publicKey, N, 'crash');
  } finally {
    await made.svc.close();
  }
  attempts = enrollees.map(messageFor);
});
after(() => removeTempHomes());

interface StoreView {
  integrity: string;
  enrolled: Map<string, string>; // enrollee id hex → ik_b hex
  consumed: number;
  acceptedEk: number;
  enrolleesPerBundle: number;
}

function inspectStore(): StoreView {
  // Read-write: opening a WAL database after a crash may need to recover it.
  const db = new Database(join(home, 'service', 'store.db'), { fileMustExist: true });
  try {
    const integrity = String(db.pragma('integrity_check', { simple: true }));
    const enrolled = new Map<string, string>();
    for (const r of db.prepare(`SELECT id, ik_b FROM enrollees WHERE state = 'enrolled'`).all() as { id: Buffer; ik_b: Buffer }[]) {
      enrolled.set(r.id.toString('hex'), r.ik_b.toString('hex'));
    }
    const consumed = Number(db.prepare(`SELECT count(*) FROM bundles WHERE state = 'consumed'`).pluck().get());
    const acceptedEk = Number(db.prepare(`SELECT count(*) FROM accepted_ek`).pluck().get());
    // Each enrolled enrollee consumed its own bundle: no bundle serves two.
    const enrolleesPerBundle = Number(
      db.prepare(`SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM enrollees WHERE state = 'enrolled' GROUP BY bundle_id)`).pluck().get(),
    );
    const orphan = Number(
      db.prepare(`SELECT count(*) FROM enrollees e JOIN bundles b ON b.id = e.bundle_id WHERE e.state = 'enrolled' AND b.state != 'consumed'`).pluck().get(),
    );
    assert.equal(orphan, 0, 'every enrolled enrollee consumed its bundle');
    return { integrity, enrolled, consumed, acceptedEk, enrolleesPerBundle };
  } finally {
    db.close();
  }
}

describe('crash: SIGKILL of `service start` during concurrent enrollments', () => {
  it(`loses no acceptance and uses no OPK twice (${N} concurrent enrollments, kill after ${KILL_AFTER} acceptances)`, { timeout: Math.ceil(180_000 * SLOW) }, async () => {
    let service: LiveService | undefined = await startLiveService(home, port, FLAGS);
    const frames: (Uint8Array | undefined)[] = new Array(N).fill(undefined);
    const opened: boolean[] = new Array(N).fill(false);
    let acceptedSoFar = 0;
    let killed: Promise<void> | undefined;
    try {
      await Promise.all(
        attempts.map(async (a, i) => {
          const out = await rawExchange(port, enrollChunks(a.message), { waitMs: 60_000 });
          assert.notEqual(out.how, 'timeout', `enrollment ${i} hung`);
          if (out.frames.length === 1) {
            frames[i] = out.frames[0]!;
            if (openAcceptance(a, out.frames[0]!)) {
              opened[i] = true;
              if (++acceptedSoFar === KILL_AFTER) killed = sigkill(service!);
            }
          }
        }),
      );
      await killed;
      assert.ok(killed, `the service was killed (only ${acceptedSoFar} acceptances came back)`);
      assert.ok(acceptedSoFar < N, `the kill came before every enrollment was answered (${acceptedSoFar} of ${N} were)`);
    } finally {
      if (service.running()) await sigkill(service);
    }

    // The store after the crash.
    const view = inspectStore();
    assert.equal(view.integrity, 'ok', 'SQLite integrity check after SIGKILL');
    for (let i = 0; i < N; i++) {
      if (!opened[i]) continue;
      assert.equal(view.enrolled.get(enrollees[i]!.hex), toHex(attempts[i]!.ikB.publicKey), `enrollee ${i} got its acceptance, so it is enrolled with its IK_B`);
    }
    assert.equal(view.consumed, view.enrolled.size, 'one consumed OPK per enrolled enrollee');
    assert.equal(view.acceptedEk, view.enrolled.size, 'one accepted EK_B per enrolled enrollee');
    assert.ok(view.enrolleesPerBundle <= 1, 'no bundle serves two enrollees');
    for (const [id, ik] of view.enrolled) {
      const i = enrollees.findIndex((e) => e.hex === id);
      assert.equal(ik, toHex(attempts[i]!.ikB.publicKey), `enrolled ${id} holds the IK_B its message carried`);
    }
    const committedBeforeRestart = new Set(view.enrolled.keys());
    const lostAnswers = [...committedBeforeRestart].filter((id) => !opened[enrollees.findIndex((e) => e.hex === id)]).length;

    // The restarted service: the store opens (ServiceHome.open runs the quick check), replays are refused.
    const svc = await ServiceHome.open(home);
    await svc.close();
    service = await startLiveService(home, port, FLAGS);
    try {
      let replays = 0;
      let lateAccepts = 0;
      let lateReplays = 0;
      for (let batch = 0; batch < N; batch += 50) {
        await Promise.all(
          attempts.slice(batch, batch + 50).map(async (a, j) => {
            const i = batch + j;
            const frame = await enrollRaw(port, a.message);
            if (opened[i]) {
              assert.equal(frame[0], ENROLL_STATUS.REPLAY, `an accepted message replayed after the restart is REPLAY (enrollee ${i})`);
              replays++;
            } else if (committedBeforeRestart.has(enrollees[i]!.hex)) {
              // Committed, but the acceptance never left: the same message is a replay now.
              assert.equal(frame[0], ENROLL_STATUS.REPLAY, `enrollee ${i} was committed before the kill`);
              lateReplays++;
            } else {
              assert.ok(openAcceptance(a, frame), `enrollee ${i} had no answer and no commit: its message is accepted now (status ${frame[0]})`);
              lateAccepts++;
            }
          }),
        );
      }
      assert.equal(replays, acceptedSoFar);
      assert.equal(lateReplays, lostAnswers);
      // A fresh message (new EK_B) for an enrolled enrollee is refused too: its OPK is gone.
      const again = await enrollRaw(port, messageFor(enrollees[opened.indexOf(true)]!).message);
      assert.equal(again[0], ENROLL_STATUS.USED);
      await service.stop();
      process.stderr.write(`# service kill: ${acceptedSoFar} acceptances before the kill, ${lostAnswers} committed without an answer, ${lateAccepts} accepted after the restart\n`);
    } finally {
      if (service.running()) await sigkill(service);
    }

    const final = inspectStore();
    assert.equal(final.integrity, 'ok');
    assert.equal(final.enrolled.size, N, 'every enrollee is enrolled in the end');
    assert.equal(final.consumed, N);
    assert.equal(final.acceptedEk, N);
    assert.ok(final.enrolleesPerBundle <= 1);
  });
});
