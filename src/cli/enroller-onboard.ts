import type { Command } from 'commander';
import { toHex } from '../crypto/bytes.js';
import { EnrollError, isEnrollError } from '../errors.js';
import { cardFromText } from '../protocol/codec/index.js';
import { enrolleeId } from '../protocol/enrollment/index.js';
import { ENROLL_STATUS, enrollStatusError } from '../protocol/messages/service.js';
import { EnrollerHome } from '../roles/enroller/home.js';
import { completeOnboarding, meetEnrollee, onboard, type Meeting, type OnboardOptions, type OnboardResult } from '../roles/enroller/onboard.js';
import { parseListenAddress } from '../transport/address.js';
import type { FramedConnection } from '../transport/connection.js';
import { listenTcp } from '../transport/tcp.js';
import { action, isoTime, leaf, readTextArg } from './command.js';
import { answerSource, askYesNo, noTerminalError } from './confirm.js';
import { EXIT } from './exit-codes.js';
import { makeOutput } from './output.js';
import { nowSeconds, parseDuration, parseEka, parseKeyHex, parsePetName, passphraseSource } from './options.js';

/** `--listen` with no value, or a bare port: loopback (docs/threat-model.md §3.1). */
export const DEFAULT_ONBOARD_HOST = '127.0.0.1';
export const DEFAULT_ONBOARD_PORT = 4200;

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function listenAddress(value: string | true): { host: string; port: number } {
  if (value === true) return { host: DEFAULT_ONBOARD_HOST, port: DEFAULT_ONBOARD_PORT };
  if (/^\d{1,5}$/.test(value.trim())) return parseListenAddress(`${DEFAULT_ONBOARD_HOST}:${value.trim()}`);
  return parseListenAddress(value);
}

/**
 * Failures of one connection that approved nothing: a listener refuses that connection and
 * goes on waiting. Anything else (no fresh bundle, a keystore problem, no answer from the
 * operator, a device that refuses the bundle for its service key or EKA version, which
 * another connection would repeat) ends the run.
 */
const CONNECTION_FAILURES = new Set([
  'ERR_TIMEOUT', 'ERR_CONNECTION_CLOSED', 'ERR_UNREACHABLE', 'ERR_FRAME_TOO_LARGE', 'ERR_FRAME_MALFORMED', 'ERR_PROTOCOL',
  'ERR_NOISE_TURN', 'ERR_NOISE_TOO_LONG', 'ERR_NOISE_SHORT', 'ERR_NOISE_DECRYPT', 'ERR_NOISE_POISONED', 'ERR_NOISE_STATE',
  'ERR_DH_ZERO', 'ERR_KEY_INVALID', 'ERR_CARD_MALFORMED', 'ERR_SAS_NOT_CONFIRMED', 'ERR_ENROLLEE_UNEXPECTED', 'ERR_DECODE',
]);

export function register(enroller: Command): void {
  leaf(
    enroller,
    'onboard',
    'meet one enrollee over Noise XX, confirm its short authentication string, hand it a bundle, approve its card and tell it to enroll',
    'ockam-enroll enroller onboard --listen --name "Robot Axiom"   # 127.0.0.1:4200; asks "does the enrollee show …? [y/N]"\nockam-enroll enroller onboard --listen 10.0.0.5:4200 --expect-enrollee 093efc42…   # only that device (its id from `enrollee init`)\n# or through ssh: ockam-enroll enroller onboard --exec "ssh -T robot ockam-enroll enrollee join --stdio --yes"',
  )
    .option('--listen [HOST:PORT]', `wait for the enrollee to connect here (\`enrollee join --enroller\`); a bare PORT or no value listens on loopback (${DEFAULT_ONBOARD_HOST}:${DEFAULT_ONBOARD_PORT})`)
    .option('--stdio', 'talk over this process\'s stdin/stdout (results then go to stderr; the question is asked on /dev/tty)')
    .option('--exec <command>', 'run COMMAND (e.g. ssh -T device ockam-enroll enrollee join --stdio --yes) and talk over its stdin/stdout')
    .option('--expect-enrollee <id>', 'onboard only the enrollee with this id (64 hex, as `enrollee init` prints it): any other key is refused before anything is sent, and no question is asked')
    .option('--card <text|@file|FILE>', 'onboard only the enrollee of this card (OEC1:…, @FILE, FILE or -), like --expect-enrollee')
    .option('--no-confirm', 'do not ask to compare the short authentication string: whoever connects first is approved (automation; prefer --expect-enrollee)')
    .option('--name <pet>', 'pet name for the enrollee (overrides its card\'s)')
    .option('--ttl <duration>', 'how long the approval stays pending', '1h')
    .option('--timeout <duration>', 'how long to wait at each step: for a connection, for the answer to the question, for the enrollee\'s card and result', '2m')
    .option('--eka <v1|v2>', 'offer a bundle of this Enrollment Key Agreement: v2 (X3DH + ML-KEM-768) or v1 (X3DH)', 'v2')
    .action(
      action(async ({ out, home, opts }) => {
        const modes = [opts.listen, opts.stdio, opts.exec].filter((x) => x !== undefined && x !== false);
        if (modes.length !== 1) {
          throw new EnrollError('ERR_USAGE', 'choose exactly one of --listen, --stdio or --exec');
        }
        const ttl = parseDuration(opts.ttl as string, '--ttl', 1, 30 * 86400);
        const stepTimeoutMs = 1000 * parseDuration(opts.timeout as string, '--timeout', 1, 3600);
        const petName = parsePetName(opts.name as string | undefined);
        const eka = parseEka(opts.eka as string);
        if (opts.expectEnrollee !== undefined && opts.card !== undefined) throw new EnrollError('ERR_USAGE', 'choose one of --expect-enrollee and --card');
        let expectEnrolleeId: Uint8Array | undefined;
        if (opts.expectEnrollee !== undefined) expectEnrolleeId = parseKeyHex(opts.expectEnrollee as string, '--expect-enrollee');
        if (opts.card !== undefined) {
          const v = opts.card as string;
          // `--card FILE` as well as the usual TEXT, @FILE and -.
          const text = await readTextArg(/^OEC\d+:/i.test(v.trim()) || v === '-' || v.startsWith('@') ? v : `@${v}`, 'card');
          expectEnrolleeId = enrolleeId(cardFromText(text.trim()).eikB);
        }
        const noConfirm = opts.confirm === false;
        // Who answers the question, decided before anything listens or runs: a run that
        // cannot ask refuses to start rather than approve blindly or hang.
        const source = noConfirm || expectEnrolleeId !== undefined ? undefined : answerSource(opts.stdio === true);
        if (!noConfirm && expectEnrolleeId === undefined && source === undefined) {
          throw noTerminalError('there is no terminal to ask on (stdin is neither a terminal nor a pipe, and there is no /dev/tty)', 'run it in a terminal, pin the device with --expect-enrollee ID or --card CARD, or pass --no-confirm (whoever connects first is approved)');
        }
        if (noConfirm && expectEnrolleeId === undefined) {
          out.warn('--no-confirm: the short authentication string is not compared, so whoever connects first is approved; pin the device with --expect-enrollee ID or --card CARD instead');
        }
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        // No fresh bundle: say so now, not after a device has connected.
        enr.nextFreshBundle(nowSeconds(), eka);
        // In --stdio mode stdout is the channel: results go to stderr.
        const results = opts.stdio ? makeOutput({ json: out.json, quiet: true, resultsToStderr: true }) : out;
        let unanswered = false;
        const runOpts: OnboardOptions = {
          ttl,
          eka,
          stepTimeoutMs,
          now: nowSeconds,
          ...(petName ? { petName } : {}),
          ...(expectEnrolleeId ? { expectEnrolleeId } : {}),
          onSas: (sas) => out.info(`short authentication string: ${sas} (check the enrollee shows the same)`),
          ...(source
            ? {
                confirm: async (sas: string, id: Uint8Array) => {
                  try {
                    return await askYesNo(`does the enrollee show ${sas}? (enrollee ${toHex(id)})`, { source, timeoutMs: stepTimeoutMs });
                  } catch (err) {
                    unanswered = true; // nobody is answering: the run ends, it does not wait on
                    throw err;
                  }
                },
              }
            : {}),
        };
        if (expectEnrolleeId !== undefined) out.info(`onboarding only enrollee ${toHex(expectEnrolleeId)}; any other key is refused`);

        let result: OnboardResult;
        if (opts.listen) {
          const addr = listenAddress(opts.listen as string | true);
          if (!isLoopbackHost(addr.host) && expectEnrolleeId === undefined && noConfirm) {
            out.warn(`listening on ${addr.host} with --no-confirm: anyone who can reach this port first is approved`);
          }
          result = await listenForOne(addr, runOpts, stepTimeoutMs, enr, out, () => unanswered);
        } else if (opts.stdio) {
          result = await onboard(enr, (await import('../transport/stdio.js')).stdioConnection(), { ...runOpts, handshakeTimeoutMs: stepTimeoutMs });
        } else {
          const spawned = (await import('../transport/stdio.js')).spawnConnection(opts.exec as string);
          try {
            result = await onboard(enr, spawned.conn, { ...runOpts, handshakeTimeoutMs: stepTimeoutMs });
          } finally {
            spawned.conn.destroy();
            const exit = await Promise.race([spawned.exited, new Promise<undefined>((r) => setTimeout(r, 10_000, undefined).unref())]);
            if (exit === undefined) spawned.child.kill();
          }
        }

        const accepted = result.enrollStatus === ENROLL_STATUS.ACCEPTED;
        const data = {
          sas: result.sas,
          eka: `v${result.eka}`,
          enrollee: result.enrolleeId,
          name: result.petName ?? null,
          bundle: result.bundleId,
          approval_expires_at: isoTime(result.approvalExpiresAt),
          enrolled: accepted,
          enroll_status: result.enrollStatus ?? null,
        };
        if (result.enrollStatus !== undefined && !accepted) {
          const e = enrollStatusError(result.enrollStatus);
          results.result(data, `approved ${result.enrolleeId}, but its enrollment was refused: ${e.message}`);
          return EXIT.REJECTED;
        }
        results.result(
          data,
          accepted
            ? `onboarded ${result.petName ?? result.enrolleeId} (enrollee ${result.enrolleeId})`
            : `approved ${result.enrolleeId}; the enrollee did not report its enrollment`,
        );
        return EXIT.OK;
      }),
    );
}

/**
 * `--listen`: one enrollee per run, met one connection at a time. A connection that
 * approves nothing (it never completes the handshake, carries another key than the expected
 * one, or its SAS is answered "no") is refused and the listener goes on waiting; the first
 * one that is approved spends the run. --timeout bounds the wait for a connection (issue
 * #22: a provisioning script must never hang); only a person's "no" starts it afresh, so
 * refusals a peer can cause alone never keep the run alive.
 */
async function listenForOne(
  addr: { host: string; port: number },
  runOpts: OnboardOptions,
  stepTimeoutMs: number,
  enr: EnrollerHome,
  out: ReturnType<typeof makeOutput>,
  unanswered: () => boolean,
): Promise<OnboardResult> {
  let settle!: { resolve: (r: OnboardResult) => void; reject: (e: unknown) => void };
  const settled = new Promise<OnboardResult>((resolve, reject) => (settle = { resolve, reject }));
  let done = false;
  let busy = false;
  let expired = false;
  let timer: NodeJS.Timeout | undefined;
  const fail = (err: unknown): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    settle.reject(err);
  };
  const waited = Math.round(stepTimeoutMs / 1000);
  const timedOut = (): EnrollError =>
    new EnrollError('ERR_TIMEOUT', `no enrollee was onboarded: nobody connected within ${waited} s (--timeout)`, {
      hint: `on the device, run \`ockam-enroll enrollee join --enroller tcp://${addr.host}:${addr.port}\`; --timeout sets how long to wait`,
    });
  const arm = (): void => {
    clearTimeout(timer);
    expired = false;
    timer = setTimeout(() => {
      if (busy) expired = true;
      else fail(timedOut());
    }, stepTimeoutMs);
  };
  const server = await listenTcp({
    host: addr.host,
    port: addr.port,
    maxConnections: 1,
    async onConnection(conn: FramedConnection) {
      if (done || busy) return;
      busy = true;
      let m: Meeting;
      try {
        // A connection gets at most 10 s (or --timeout, if shorter) to complete the handshake.
        m = await meetEnrollee(enr, conn, { ...runOpts, handshakeTimeoutMs: Math.min(10_000, stepTimeoutMs) });
      } catch (err) {
        busy = false;
        if (unanswered() || !(err instanceof EnrollError) || !CONNECTION_FAILURES.has(err.code)) {
          fail(err);
          return;
        }
        out.warn(`refused the connection from ${conn.remoteAddress ?? 'a peer'}: ${err.message}; nothing was approved, still waiting for the enrollee`);
        if (isEnrollError(err, 'ERR_SAS_NOT_CONFIRMED')) arm();
        else if (expired) fail(timedOut());
        return;
      }
      done = true;
      clearTimeout(timer);
      try {
        settle.resolve(await completeOnboarding(enr, m, runOpts));
      } catch (err) {
        settle.reject(err);
      }
    },
  }).catch((err: unknown) => {
    throw new EnrollError('ERR_UNREACHABLE', `cannot listen on ${addr.host}:${addr.port}: ${(err as Error).message}`, {
      hint: 'choose another --listen address',
    });
  });
  const a = server.address();
  out.info(`waiting for the enrollee on ${a.host}:${a.port} (ockam-enroll enrollee join --enroller tcp://${a.host}:${a.port})`);
  arm();
  try {
    return await settled;
  } finally {
    clearTimeout(timer);
    await server.close();
  }
}
