/**
 * End-to-end onboarding through the CLI: the service, the enroller and the enrollee run as
 * separate processes of the built binary, over loopback TCP and pipes, against the real
 * SQLite store. One service serves every test of an EKA version; each enrollee has its own
 * home. Every test runs for EKA v1 and for v2 (docs/protocol.md §5A.3).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  freePort,
  ok,
  okJson,
  parseJsonOut,
  removeTempHomes,
  run,
  runCrossPiped,
  sasIn,
  setupWorld,
  shellCommand,
  show,
  spawnCli,
  type Background,
  takeBundle as takeBundleOf,
  type World,
} from '../helpers/cli.js';
import { patience } from '../helpers/pace.js';

for (const eka of ['v1', 'v2'] as const) {
describe(`EKA ${eka}`, () => {
  let w: World;
  before(async () => {
    w = await setupWorld({ bundles: 12, enrolleeName: 'device-7', eka });
  });
  after(async () => {
    try {
      await w?.dispose();
    } finally {
      removeTempHomes();
    }
  });

  const takeBundle = (): string => takeBundleOf(w);

  async function killIfRunning(bg: Background | undefined): Promise<void> {
    if (bg?.running()) {
      bg.kill('SIGKILL');
      await bg.done().catch(() => undefined);
    }
  }

  function mode(path: string): number {
    return statSync(path).mode & 0o777;
  }

  interface EnrolleeRow {
    id: string;
    state: string;
    name: string | null;
    identity_key: string | null;
    enroller: string | null;
    bundle: string | null;
    method: string;
  }

  async function serviceEnrollee(id: string): Promise<EnrolleeRow> {
    const list = await okJson<{ enrollees: EnrolleeRow[] }>(['service', 'enrollee', 'list'], { home: w.serviceHome });
    const row = list.enrollees.find((r) => r.id === id);
    assert.ok(row, `service enrollee list has no ${id}: ${JSON.stringify(list)}`);
    return row;
  }

  /** Asserts the service logged an ` approved ` and an ` accepted ` line for this enrollee. */
  function assertDecisions(id: string, name: string): void {
    const quoted = /\s/.test(name) ? JSON.stringify(name) : name;
    for (const d of ['approved', 'accepted']) {
      const hit = w.service.decisions(d).filter((l) => l.includes(`enrollee=${id}`));
      assert.equal(hit.length, 1, `one ${d} line for ${id}:\n${w.service.lines.join('\n')}`);
      assert.ok(hit[0]!.includes(`name=${quoted}`), `the ${d} line names ${name}: ${hit[0]}`);
      if (d === 'accepted') assert.ok(hit[0]!.includes(` eka=${eka.slice(1)} `), `the accepted line names EKA ${eka}: ${hit[0]}`);
    }
  }

  describe('enroller onboard --listen / enrollee join --enroller', () => {
    test('onboards a device across three processes; both sides show the same SAS', async () => {
      const e = w.enrollee;
      const p2 = await freePort();
      let onboard: Background | undefined;
      try {
        // The enroller's pet name overrides the card's ("device-7").
        onboard = spawnCli(['enroller', 'onboard', '--eka', eka, '--listen', `127.0.0.1:${p2}`, '--expect-enrollee', e.id, '--name', 'Robot Axiom', '--json'], { home: w.enrollerHome });
        await onboard.waitForLine('waiting for the enrollee');
        const joined = await run(['enrollee', 'join', '--eka', eka, '--enroller', `tcp://127.0.0.1:${p2}`, '--yes', '--json'], { home: e.home });
        const ob = await onboard.done();
        assert.equal(joined.code, 0, show(joined));
        assert.equal(ob.code, 0, show(ob));

        const sasJoin = sasIn(joined.stderr);
        const sasOnboard = sasIn(ob.stderr);
        assert.match(sasJoin, /^\d{4}-\d{4}$/);
        assert.equal(sasJoin, sasOnboard, 'both sides print the same short authentication string');

        const j = parseJsonOut<Record<string, unknown>>(joined);
        assert.equal(j.enrolled, true);
        assert.equal(j.eka, eka);
        assert.equal(j.enrollee_id, e.id);
        assert.match(String(j.identity_key), /^[0-9a-f]{64}$/);
        assert.equal(j.service_key, w.serviceKey);
        assert.equal(j.address, w.address);
        assert.equal(j.name, 'Robot Axiom');
        assert.equal(j.sas, sasJoin);

        const o = parseJsonOut<Record<string, unknown>>(ob);
        assert.equal(o.enrolled, true);
        assert.equal(o.enrollee, e.id);
        assert.equal(o.name, 'Robot Axiom');
        assert.equal(o.sas, sasJoin);
        assert.equal(o.enroll_status, 0);
        assert.equal(o.eka, eka);

        // The service knows the device by its long-term key, under the enroller's pet name.
        const row = await serviceEnrollee(e.id);
        assert.equal(row.state, 'enrolled');
        assert.equal(row.name, 'Robot Axiom');
        assert.equal(row.identity_key, j.identity_key);
        assert.equal(row.enroller, w.enrollerKey);
        assert.equal(row.bundle, o.bundle);
        assert.equal(row.method, 'x3dh');

        // `show` takes an id prefix, as text and as JSON.
        const shown = await okJson<EnrolleeRow>(['service', 'enrollee', 'show', e.id.slice(0, 10)], { home: w.serviceHome });
        assert.deepEqual(shown, row);
        const text = await ok(['service', 'enrollee', 'show', e.id.slice(0, 8)], { home: w.serviceHome });
        assert.match(text.stdout, new RegExp(`^id\\s+${e.id}$`, 'm'));
        assert.match(text.stdout, /^state\s+enrolled$/m);
        assert.match(text.stdout, /^name\s+Robot Axiom$/m);

        // The enrollee's mutually authenticated channel to the service works.
        const status = await okJson<Record<string, unknown>>(['enrollee', 'status'], { home: e.home });
        assert.equal(status.state, 'enrolled');
        assert.equal(status.enrollee_id, e.id);
        assert.equal(status.name, 'Robot Axiom');
        assert.equal(status.address, w.address);

        assertDecisions(e.id, 'Robot Axiom');

        // The enroller's cache records what became of the bundle.
        const cache = await okJson<{ bundles: { id: string; state: string; enrollee: string | null; name: string | null }[] }>(['enroller', 'bundle', 'list'], { home: w.enrollerHome });
        const used = cache.bundles.find((b) => b.id === o.bundle);
        assert.deepEqual({ state: used?.state, enrollee: used?.enrollee, name: used?.name }, { state: 'approved', enrollee: e.id, name: 'Robot Axiom' });

        // Key files: 0600 in a 0700 directory.
        const dir = join(e.home, 'enrollee');
        assert.equal(mode(dir), 0o700, 'the enrollee directory is 0700');
        for (const f of ['ik_b.key', 'eik_b.key', 'session.json']) assert.equal(mode(join(dir, f)), 0o600, `${f} is 0600`);
        assert.ok(!readdirSync(dir).includes('ik_b.pending.key'), 'the pending IK_B is gone once enrolled');
      } finally {
        await killIfRunning(onboard);
      }
    });

    test('human output: join and onboard print one result line each on stdout', async () => {
      const e = await w.newEnrollee('Robot Beta');
      const p2 = await freePort();
      let onboard: Background | undefined;
      try {
        onboard = spawnCli(['enroller', 'onboard', '--eka', eka, '--listen', `127.0.0.1:${p2}`, '--expect-enrollee', e.id], { home: w.enrollerHome });
        await onboard.waitForLine('waiting for the enrollee');
        const joined = await ok(['enrollee', 'join', '--eka', eka, '--enroller', `tcp://127.0.0.1:${p2}`, '--yes'], { home: e.home });
        const ob = await onboard.done();
        assert.equal(ob.code, 0, show(ob));
        assert.equal(joined.stdout, `enrolled as ${e.id} (Robot Beta) with the service at ${w.address}\n`);
        assert.equal(ob.stdout, `onboarded Robot Beta (enrollee ${e.id})\n`);
        assert.ok(joined.stderr.includes(`received a bundle for ${w.address}`), show(joined));
        assert.equal(sasIn(joined.stderr), sasIn(ob.stderr));
        assert.equal((await serviceEnrollee(e.id)).name, 'Robot Beta', 'the card\'s pet name is used when the enroller gives none');
        assertDecisions(e.id, 'Robot Beta');
      } finally {
        await killIfRunning(onboard);
      }
    });
  });

  describe('enroller onboard --exec / enrollee join --stdio', () => {
    test('onboards a device through a child process\'s stdin/stdout', async () => {
      const e = await w.newEnrollee('Pipe Bot');
      const t0 = Date.now();
      const r = await run(['enroller', 'onboard', '--eka', eka, '--expect-enrollee', e.id, '--exec', shellCommand(['enrollee', 'join', '--eka', eka, '--stdio', '--yes', '--home', e.home]), '--json'], { home: w.enrollerHome });
      const elapsed = Date.now() - t0;
      assert.equal(r.code, 0, show(r));
      const o = parseJsonOut<Record<string, unknown>>(r);
      assert.equal(o.enrolled, true);
      assert.equal(o.enrollee, e.id);
      assert.equal(o.name, 'Pipe Bot');
      // The child's stderr passes through: both SAS lines are there, and they agree.
      const sas = [...r.stderr.matchAll(/short authentication string: (\d{4}-\d{4}) \(check the (enroller|enrollee) shows the same\)/g)];
      assert.equal(sas.length, 2, show(r));
      assert.equal(sas[0]![1], sas[1]![1]);
      assert.equal(sas[0]![1], o.sas);
      // The enroller does not linger once the child has exited: it used to sit out a 10 s
      // timer after every successful run (src/cli/enroller-onboard.ts). The whole run takes
      // about 2 s idle: the bound is 10 s, or 6 s scaled by the machine's slowdown when that is
      // more (a busy machine then tells a linger from a slow run less sharply, never falsely).
      const bound = Math.max(10_000, await patience(6_000));
      assert.ok(elapsed < bound, `onboard --exec took ${elapsed} ms (bound ${bound} ms)`);

      assert.equal((await serviceEnrollee(e.id)).state, 'enrolled');
      const status = await okJson<Record<string, unknown>>(['enrollee', 'status'], { home: e.home });
      assert.equal(status.enrollee_id, e.id);
      assertDecisions(e.id, 'Pipe Bot');
    });

    test('enroller onboard --stdio and enrollee join --stdio, joined by a pair of pipes', async () => {
      const e = await w.newEnrollee('Serial Bot');
      const [ob, jn] = await runCrossPiped(
        { args: ['enroller', 'onboard', '--eka', eka, '--stdio', '--expect-enrollee', e.id, '--json'], home: w.enrollerHome },
        { args: ['enrollee', 'join', '--eka', eka, '--stdio', '--yes', '--json'], home: e.home },
      );
      assert.equal(ob.code, 0, `onboard: ${show(ob)}`);
      assert.equal(jn.code, 0, `join: ${show(jn)}`);
      assert.equal(sasIn(ob.stderr), sasIn(jn.stderr));
      assert.equal((await serviceEnrollee(e.id)).state, 'enrolled');
      assertDecisions(e.id, 'Serial Bot');
    });

    test(
      '--stdio peers report their own result on stderr (stdout is the channel)',
      async () => {
        const e = await w.newEnrollee('Quiet Bot');
        const r = await run(['enroller', 'onboard', '--eka', eka, '--expect-enrollee', e.id, '--exec', shellCommand(['enrollee', 'join', '--eka', eka, '--stdio', '--yes', '--home', e.home])], { home: w.enrollerHome });
        assert.equal(r.code, 0, show(r));
        // The child's stderr is passed through to the enroller's stderr.
        assert.ok(r.stderr.includes(`enrolled as ${e.id}`), `the enrollee's result line is missing: ${show(r)}`);
        // Likewise `enroller onboard --stdio` must put its result on stderr, not into the channel.
        const e2 = await w.newEnrollee('Quiet Bot 2');
        const [ob] = await runCrossPiped(
          { args: ['enroller', 'onboard', '--eka', eka, '--stdio', '--expect-enrollee', e2.id], home: w.enrollerHome },
          { args: ['enrollee', 'join', '--eka', eka, '--stdio', '--yes'], home: e2.home },
        );
        assert.equal(ob.code, 0, show(ob));
        assert.ok(ob.stderr.includes(`onboarded Quiet Bot 2 (enrollee ${e2.id})`), `the enroller's result line is missing from stderr: ${show(ob)}`);
      },
    );
  });

  describe('bundles and cards as text and QR codes', () => {
    test('bundle show prints the text form, or a QR code with --qr', async () => {
      const id = takeBundle();
      const text = await ok(['enroller', 'bundle', 'show', id], { home: w.enrollerHome });
      const prefix = eka === 'v2' ? 'OEB2:' : 'OEB1:';
      assert.ok(text.stdout.startsWith(prefix) && /^OEB[12]:[A-Z2-7]+\n$/.test(text.stdout), text.stdout);
      assert.equal(text.stderr, '');
      // An unambiguous prefix finds the same bundle.
      assert.equal((await ok(['enroller', 'bundle', 'show', id.slice(0, 8)], { home: w.enrollerHome })).stdout, text.stdout);
      const json = await okJson<Record<string, unknown>>(['enroller', 'bundle', 'show', id], { home: w.enrollerHome });
      assert.equal(json.text, text.stdout.trim());
      assert.equal(json.state, 'fresh');
      assert.equal(json.eka, eka);
      assert.equal(json.service, w.address);

      const qr = await ok(['enroller', 'bundle', 'show', id, '--qr'], { home: w.enrollerHome });
      assert.ok(!qr.stdout.includes(prefix), 'a QR code, not the text');
      const rows = qr.stdout.split('\n').filter((l) => l.length > 0);
      assert.ok(rows.length >= 15, `a QR code has many rows: ${qr.stdout}`);
      assert.ok(rows.every((l) => /^[ ▀▄█]+$/.test(l)), `a QR code is block characters only:\n${qr.stdout}`);
      assert.ok(new Set(rows.map((l) => l.length)).size === 1, 'a QR code is square-ish: every row has one width');

      const card = await ok(['enrollee', 'card'], { home: w.enrollee.home });
      assert.match(card.stdout, /^OEC1:[A-Z2-7]+\n$/);
      const cardQr = await ok(['enrollee', 'card', '--qr'], { home: w.enrollee.home });
      assert.ok(!cardQr.stdout.includes('OEC1:') && cardQr.stdout.includes('█'), cardQr.stdout);
    });

    test('approve a card, then join with the bundle text on the command line', async () => {
      const e = await w.newEnrollee('Text Bot');
      const id = takeBundle();
      const bundleText = (await ok(['enroller', 'bundle', 'show', id], { home: w.enrollerHome })).stdout.trim();
      const card = (await ok(['enrollee', 'card'], { home: e.home })).stdout.trim();
      assert.equal(card, e.card, 'the card is stable until the enrollee holds a bundle');

      const approved = await ok(['enroller', 'approve', '--eka', eka, card, '--bundle', id], { home: w.enrollerHome });
      assert.equal(approved.stdout, `${bundleText}\n`, 'approve prints the bundle to hand over');
      assert.ok(approved.stderr.includes(`approved enrollee ${e.id} (Text Bot) until `), show(approved));

      const joined = await ok(['enrollee', 'join', '--eka', eka, '--bundle', bundleText], { home: e.home });
      assert.equal(joined.stdout, `enrolled as ${e.id} (Text Bot) with the service at ${w.address}\n`);
      assert.ok(joined.stderr.includes(`enrolling with the service at ${w.address}`), show(joined));
      assert.equal((await serviceEnrollee(e.id)).state, 'enrolled');
      assertDecisions(e.id, 'Text Bot');

      // Once enrolled, the card names the bundle it holds.
      assert.notEqual((await ok(['enrollee', 'card'], { home: e.home })).stdout.trim(), card);
    });

    test('join --bundle @FILE reads the bundle from a file', async () => {
      const e = await w.newEnrollee('File Bot');
      const id = takeBundle();
      const approved = await okJson<Record<string, unknown>>(['enroller', 'approve', '--eka', eka, e.card, '--bundle', id, '--ttl', '10m'], { home: w.enrollerHome });
      assert.equal(approved.enrollee, e.id);
      assert.equal(approved.bundle, id);
      assert.equal(approved.name, 'File Bot');
      const expires = Date.parse(String(approved.expires_at));
      assert.ok(Math.abs(expires - (Date.now() + 600_000)) < 30_000, `--ttl 10m: ${String(approved.expires_at)}`);
      const file = join(e.home, 'bundle-handed-over.txt');
      writeFileSync(file, `${String(approved.bundle_text)}\n`);
      const j = await okJson<Record<string, unknown>>(['enrollee', 'join', '--eka', eka, '--bundle', `@${file}`], { home: e.home });
      assert.equal(j.enrolled, true);
      assert.equal(j.enrollee_id, e.id);
      assert.equal((await serviceEnrollee(e.id)).state, 'enrolled');
    });

    test('join --bundle - reads the bundle from standard input', async () => {
      const e = await w.newEnrollee('Stdin Bot');
      const id = takeBundle();
      const approved = await ok(['enroller', 'approve', '--eka', eka, e.card, '--bundle', id], { home: w.enrollerHome });
      const j = await okJson<Record<string, unknown>>(['enrollee', 'join', '--eka', eka, '--bundle', '-'], { home: e.home, input: approved.stdout });
      assert.equal(j.enrolled, true);
      assert.equal(j.enrollee_id, e.id);
      assert.equal(j.name, 'Stdin Bot');
      assert.equal((await serviceEnrollee(e.id)).state, 'enrolled');
    });

    test('join --bundle --wait keeps trying until the enroller approves the card it prints', async () => {
      const e = await w.newEnrollee('Patient Bot');
      const id = takeBundle();
      const bundleText = (await ok(['enroller', 'bundle', 'show', id], { home: w.enrollerHome })).stdout.trim();
      let joiner: Background | undefined;
      try {
        joiner = spawnCli(['enrollee', 'join', '--eka', eka, '--bundle', bundleText, '--wait', '20s'], { home: e.home });
        await joiner.waitForLine('has no approval for this enrollee yet');
        // The card it prints names the bundle it holds; the enroller approves exactly that.
        const cardLine = await joiner.waitForLine(/OEC1:/);
        const card = /OEC1:[A-Z2-7]+/.exec(cardLine)![0];
        assert.notEqual(card, e.card, 'the printed card names the held bundle');
        assert.ok(joiner.running(), 'join is still waiting');
        await ok(['enroller', 'approve', '--eka', eka, card], { home: w.enrollerHome });
        const r = await joiner.done();
        assert.equal(r.code, 0, show(r));
        assert.equal(r.stdout, `enrolled as ${e.id} (Patient Bot) with the service at ${w.address}\n`);
        assert.equal((await serviceEnrollee(e.id)).bundle, id, 'approved with the bundle the card named');
        // Each attempt before the approval was refused as unknown, and logged.
        assert.ok(w.service.decisions('rejected').some((l) => l.includes(`enrollee=${e.id}`) && l.includes('ERR_ENROLLEE_UNKNOWN')));
        assertDecisions(e.id, 'Patient Bot');
      } finally {
        await killIfRunning(joiner);
      }
    });
  });
});
}
