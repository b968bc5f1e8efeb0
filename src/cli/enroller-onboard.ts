import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { ENROLL_STATUS, enrollStatusError } from '../protocol/messages/service.js';
import { EnrollerHome } from '../roles/enroller/home.js';
import { onboard, type OnboardResult } from '../roles/enroller/onboard.js';
import { parseListenAddress } from '../transport/address.js';
import type { FramedConnection } from '../transport/connection.js';
import { listenTcp } from '../transport/tcp.js';
import { action, isoTime, leaf } from './command.js';
import { EXIT } from './exit-codes.js';
import { makeOutput } from './output.js';
import { nowSeconds, parseDuration, parseEka, parsePetName, passphraseSource } from './options.js';

export function register(enroller: Command): void {
  leaf(
    enroller,
    'onboard',
    'meet one enrollee over Noise XX, hand it a bundle, approve its card and tell it to enroll',
    'ockam-enroll enroller onboard --listen 0.0.0.0:4200 --name "Robot Axiom"\n# or through ssh: ockam-enroll enroller onboard --exec "ssh robot ockam-enroll enrollee join --stdio"',
  )
    .option('--listen <HOST:PORT>', 'wait for the enrollee to connect here (`enrollee join --enroller`)')
    .option('--stdio', 'talk over this process\'s stdin/stdout (results then go to stderr)')
    .option('--exec <command>', 'run COMMAND (e.g. ssh device ockam-enroll enrollee join --stdio) and talk over its stdin/stdout')
    .option('--name <pet>', 'pet name for the enrollee (overrides its card\'s)')
    .option('--ttl <duration>', 'how long the approval stays pending', '1h')
    .option('--timeout <duration>', 'how long to wait for the enrollee at each step', '2m')
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
        const enr = EnrollerHome.open(home, { passphrase: passphraseSource(opts) });
        // In --stdio mode stdout is the channel: results go to stderr.
        const results = opts.stdio ? makeOutput({ json: out.json, quiet: true, resultsToStderr: true }) : out;
        const run = (conn: FramedConnection) =>
          onboard(enr, conn, {
            ttl,
            eka,
            stepTimeoutMs,
            now: nowSeconds,
            ...(petName ? { petName } : {}),
            onSas: (sas) => out.info(`short authentication string: ${sas} (check the enrollee shows the same)`),
          });

        let result: OnboardResult;
        if (opts.listen) {
          const addr = parseListenAddress(opts.listen as string);
          let settle!: { resolve: (r: OnboardResult) => void; reject: (e: unknown) => void };
          const settled = new Promise<OnboardResult>((resolve, reject) => (settle = { resolve, reject }));
          let taken = false;
          const server = await listenTcp({
            host: addr.host,
            port: addr.port,
            maxConnections: 1,
            async onConnection(conn) {
              if (taken) return; // one onboarding per run
              taken = true;
              try {
                settle.resolve(await run(conn));
              } catch (err) {
                settle.reject(err);
              }
            },
          }).catch((err: unknown) => {
            // The transport's ERR_LISTEN already says "cannot listen on …": not said twice.
            const why = err instanceof EnrollError && err.code === 'ERR_LISTEN' ? err.message : `cannot listen on ${addr.host}:${addr.port}: ${(err as Error).message}`;
            throw new EnrollError('ERR_UNREACHABLE', why, {
              hint: 'choose another --listen address',
            });
          });
          const a = server.address();
          out.info(`waiting for the enrollee on ${a.host}:${a.port} (ockam-enroll enrollee join --enroller tcp://${a.host}:${a.port})`);
          try {
            result = await settled;
          } finally {
            await server.close();
          }
        } else if (opts.stdio) {
          result = await run((await import('../transport/stdio.js')).stdioConnection());
        } else {
          const spawned = (await import('../transport/stdio.js')).spawnConnection(opts.exec as string);
          try {
            result = await run(spawned.conn);
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
