/**
 * `ockam-enroll demo`: a full onboarding with the three roles as separate local processes
 * (this same binary), each with its own home in a temporary directory, narrated step by
 * step. The narration is the command's output (stdout); the roles' own diagnostics are
 * indented beneath the command that caused them.
 *
 * The service runs in the background, so its decision log arrives on its own schedule: each
 * step waits for the log lines it causes (its "barrier") before the next step starts, so a
 * line always lands under its own step. The service's `stopped` line belongs to no step
 * and is not shown.
 */
import type { Command } from 'commander';
import type { ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EnrollError } from '../errors.js';
import { action } from './command.js';
import { parseEka } from './options.js';

const BIN = fileURLToPath(new URL('../../../bin/ockam-enroll.js', import.meta.url));

/**
 * How long the demo waits for a background process's line (the service's log, the
 * enroller's "waiting"). Generous: these are local processes, and only a badly loaded
 * machine comes near it.
 */
const WAIT_MS = 60_000;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Splits a stream's chunks into whole lines (a chunk may end mid-line). */
function lineSplitter(onLine: (line: string) => void): { push(chunk: Buffer | string): void; flush(): void } {
  let buf = '';
  return {
    push(chunk) {
      buf += String(chunk);
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    },
    flush() {
      if (buf !== '') onLine(buf);
      buf = '';
    },
  };
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run all three roles as separate local processes and narrate one onboarding')
    .option('--home <dir>', 'put the three demo homes under DIR (kept afterwards) instead of a temporary directory')
    .option('--keep', 'keep the temporary homes afterwards')
    .option('--eka <v1|v2>', 'the Enrollment Key Agreement to demonstrate: v2 (X3DH + ML-KEM-768) or v1 (X3DH)', 'v2')
    .option('--json', 'print a JSON summary instead of the narration')
    .addHelpText('after', '\nExample:\n  ockam-enroll demo\n')
    .action(
      action(async ({ out, opts }) => {
        const { execa } = await import('execa');
        const say = (s: string) => {
          if (!out.json) process.stdout.write(`${s}\n`);
        };
        const indent = (line: string) => say(`      │ ${line}`);
        const eka = parseEka(opts.eka as string);
        const ekaArg = `v${eka}`;
        // The demo never touches the user's own homes: --home names a fresh directory for it.
        const root = opts.home ? resolve(opts.home) : mkdtempSync(join(tmpdir(), 'ockam-enroll-demo-'));
        const keep = opts.keep === true || opts.home !== undefined;
        if (opts.home && existsSync(root) && readdirSync(root).length > 0) {
          throw new EnrollError('ERR_USAGE', `--home ${root} is not empty`, { hint: 'the demo needs an empty or new directory' });
        }
        const homes = { service: join(root, 'service'), enroller: join(root, 'enroller'), enrollee: join(root, 'device') };
        const children: ResultPromise[] = [];
        const spawn = (who: keyof typeof homes, args: string[]) =>
          execa(process.execPath, [BIN, ...args, '--home', homes[who]], { reject: false, env: { NO_COLOR: '1' } });

        /** Shows a command, runs it to completion with its stderr streamed beneath it, and returns its stdout. */
        const run = async (who: keyof typeof homes, args: string[], shown: (stdout: string) => string | undefined = (s) => s) => {
          say(`  $ ockam-enroll ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
          const child = spawn(who, args);
          const err = lineSplitter(indent);
          child.stderr?.on('data', err.push);
          const r = await child;
          err.flush();
          if (r.exitCode !== 0) throw new EnrollError('ERR_INTERNAL', `demo step failed: ockam-enroll ${args.join(' ')} (exit ${r.exitCode})`);
          const stdout = r.stdout.trim();
          const text = shown(stdout);
          if (text) say(text.replace(/^/gm, '   '));
          return stdout;
        };

        // The service's decision log: shown as it comes, and counted, so that a step can wait
        // for the lines it causes. Muted before the service is stopped.
        let serviceMuted = false;
        const logged: string[] = [];
        let onLogged = () => {};
        const serviceLine = (line: string) => {
          if (serviceMuted) return;
          indent(line);
          const decision = /^\S+ (\S+)/.exec(line)?.[1];
          if (decision) logged.push(decision);
          onLogged();
        };
        let serviceExited: Promise<never> = new Promise(() => {});
        /** Waits until the service has logged each of `decisions` since `from` (an index into `logged`). */
        const barrier = async (from: number, decisions: string[]): Promise<void> => {
          const done = () => decisions.every((d) => logged.indexOf(d, from) >= 0);
          if (done()) return;
          let timer: NodeJS.Timeout | undefined;
          try {
            await Promise.race([
              serviceExited,
              new Promise<void>((resolve, reject) => {
                timer = setTimeout(() => reject(new EnrollError('ERR_TIMEOUT', `the demo service did not log ${decisions.join(', ')} within ${WAIT_MS / 1000} s`)), WAIT_MS);
                onLogged = () => {
                  if (done()) resolve();
                };
              }),
            ]);
          } finally {
            clearTimeout(timer);
            onLogged = () => {};
          }
        };
        const step = async (heading: string[], body: () => Promise<void>, serviceLogs: string[] = []) => {
          say('');
          for (const line of heading) say(line);
          const from = logged.length;
          await body();
          await barrier(from, serviceLogs);
        };

        let summary: Record<string, unknown>;
        try {
          const port = await freePort();
          const onboardPort = await freePort();
          const httpsPort = await freePort();
          const address = `tcp://127.0.0.1:${port}`;
          let serviceKey = '';
          let enrollerKey = '';

          await step(['1. The service makes its identity key IK_A, a signed prekey and its store.'], async () => {
            serviceKey = await run('service', ['service', 'init', '--address', address, '--https-address', `https://127.0.0.1:${httpsPort}`], (s) => `service key (IK_A): ${s}`);
          });

          await step(
            ['2. The service starts listening (its decision log is shown as it happens).'],
            async () => {
              const args = ['service', 'start', '--listen', `127.0.0.1:${port}`, '--https-listen', `127.0.0.1:${httpsPort}`];
              say(`  $ ockam-enroll ${args.join(' ')}`);
              const service = spawn('service', args);
              children.push(service);
              service.stderr?.on('data', lineSplitter(serviceLine).push);
              serviceExited = service.then((r) => {
                throw new EnrollError('ERR_INTERNAL', `the demo service exited (${r.exitCode ?? r.signal})`);
              });
              serviceExited.catch(() => {});
            },
            ['listening', 'https-listening'],
          );

          await step(['3. The enroller (a terminal next to the device) makes its key; the service allows it.'], async () => {
            enrollerKey = await run('enroller', ['enroller', 'init'], () => undefined);
            await run('service', ['service', 'enroller', 'allow', enrollerKey, '--name', 'demo terminal']);
          });

          await step(
            [
              '4. The enroller fetches bundles over Noise XX, pinning the service key.',
              ...(eka === 2 ? ["   EKA v2: each bundle carries the SHA-256 of the service's ML-KEM-768 prekey, signed with the rest."] : []),
            ],
            async () => {
              await run('enroller', ['enroller', 'bundle', 'fetch', '--service', address, '--count', '3', '--service-key', serviceKey, '--eka', ekaArg]);
            },
            ['bundles'],
          );

          let deviceCard = '';
          await step(['5. The device makes its enrollment key EIK_B; its card carries it.'], async () => {
            deviceCard = await run('enrollee', ['enrollee', 'init', '--name', 'Robot Axiom'], (card) => `card: ${card.slice(0, 40)}…`);
          });

          await step(
            [
              '6. Enroller and device meet over Noise XX; both show the same short authentication string.',
              '   (Here the enroller knows the device\'s card, so it takes only that key: --card, instead of',
              '   asking "does the enrollee show …? [y/N]"; the device, alone in this demo, answers --yes.)',
              '   The enroller hands over a bundle, approves the card with the service, and steps aside;',
              ...(eka === 2
                ? [
                    '   the device fetches the 1,184-byte ML-KEM prekey from the service, checks it against the signed hash,',
                    '   and sends its 1,265-byte hybrid enrollment message (X3DH + ML-KEM-768) straight to the service.',
                  ]
                : ['   the device sends its 176-byte enrollment message straight to the service.']),
            ],
            async () => {
              const args = ['enroller', 'onboard', '--listen', `127.0.0.1:${onboardPort}`, '--card', deviceCard, '--name', 'Robot Axiom', '--eka', ekaArg];
              say(`  $ ockam-enroll ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
              const onboard = spawn('enroller', args);
              children.push(onboard);
              let waiting = () => {};
              const err = lineSplitter((line) => {
                indent(line);
                if (line.includes('waiting for the enrollee')) waiting();
              });
              onboard.stderr?.on('data', err.push);
              let timer: NodeJS.Timeout | undefined;
              await Promise.race([
                new Promise<void>((resolve, reject) => {
                  waiting = resolve;
                  timer = setTimeout(() => reject(new EnrollError('ERR_TIMEOUT', `the demo enroller did not start listening within ${WAIT_MS / 1000} s`)), WAIT_MS);
                }),
                onboard.then((r) => {
                  throw new EnrollError('ERR_INTERNAL', `the enroller's onboard exited early (exit ${r.exitCode})`);
                }),
              ]).finally(() => clearTimeout(timer));
              await run('enrollee', ['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${onboardPort}`, '--yes', '--eka', ekaArg]);
              const ob = await onboard;
              err.flush();
              if (ob.exitCode !== 0) throw new EnrollError('ERR_INTERNAL', `the enroller's onboard failed (exit ${ob.exitCode})`);
              say(`   enroller: ${ob.stdout.trim()}`);
            },
            ['approved', 'accepted'],
          );

          await step(['7. The device and the service now share a mutually authenticated channel (IK_B ↔ IK_A).'], async () => {
            await run('enrollee', ['enrollee', 'status']);
          });

          let enrollees: unknown[] = [];
          await step(['8. The service knows the device by its long-term key.'], async () => {
            // The narration shows the table a person would see; --json (no narration) reads the same list as JSON.
            const list = await run('service', ['service', 'enrollee', 'list', ...(out.json ? ['--json'] : [])]);
            if (out.json) enrollees = (JSON.parse(list) as { enrollees: unknown[] }).enrollees;
          });
          summary = { ok: true, eka: ekaArg, service_key: serviceKey, enrollees, homes: keep ? homes : undefined };
        } finally {
          // The service's `stopped` line belongs to no step.
          serviceMuted = true;
          for (const c of children) c.kill('SIGTERM');
          await Promise.allSettled(children);
          if (!keep) rmSync(root, { recursive: true, force: true });
          else say(`\nhomes kept in ${root}`);
        }
        out.result(summary, '\nDone: one device onboarded across three processes.');
      }),
    );
}
