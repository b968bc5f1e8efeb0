/**
 * `ockam-enroll demo`: a full onboarding with the three roles as separate local processes
 * (this same binary), each with its own home in a temporary directory, narrated step by
 * step. The narration is the command's output (stdout); the roles' own diagnostics are
 * indented beneath it.
 */
import type { Command } from 'commander';
import type { ResultPromise } from 'execa';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EnrollError } from '../errors.js';
import { parseEka } from './options.js';
import { action } from './command.js';

const BIN = fileURLToPath(new URL('../../../bin/ockam-enroll.js', import.meta.url));

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

export function register(program: Command): void {
  program
    .command('demo')
    .description('run all three roles as separate local processes and narrate one onboarding')
    .option('--home <dir>', 'put the three demo homes under DIR (kept afterwards) instead of a temporary directory')
    .option('--keep', 'keep the temporary homes afterwards')
    .option('--json', 'print a JSON summary instead of the narration')
    .option('--eka <v1|v2>', 'the Enrollment Key Agreement to demonstrate: v2 (X3DH + ML-KEM-768) or v1 (X3DH)', 'v2')
    .addHelpText('after', '\nExample:\n  ockam-enroll demo\n')
    .action(
      action(async ({ out, opts }) => {
        const { execa } = await import('execa');
        const say = (s: string) => {
          if (!out.json) process.stdout.write(`${s}\n`);
        };
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
        const indent = (chunk: unknown) => {
          if (!out.json) process.stdout.write(String(chunk).replace(/^(?=.)/gm, '      │ '));
        };
        const run = async (who: keyof typeof homes, args: string[]) => {
          say(`  $ ockam-enroll ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(' ')}`);
          const r = await execa(process.execPath, [BIN, ...args, '--home', homes[who]], { reject: false, env: { NO_COLOR: '1' } });
          if (r.stderr) indent(`${r.stderr}\n`);
          if (r.exitCode !== 0) throw new EnrollError('ERR_INTERNAL', `demo step failed: ockam-enroll ${args.join(' ')} (exit ${r.exitCode})`);
          return r.stdout.trim();
        };
        try {
          const port = await freePort();
          const onboardPort = await freePort();
          const address = `tcp://127.0.0.1:${port}`;

          say('\n1. The service makes its identity key IK_A, a signed prekey and its store.');
          const httpsPort = await freePort();
          const serviceKey = await run('service', ['service', 'init', '--address', address, '--https-address', `https://127.0.0.1:${httpsPort}`]);
          say(`   service key (IK_A): ${serviceKey}`);

          say('\n2. The service starts listening (its decision log is shown as it happens).');
          say(`  $ ockam-enroll service start --listen 127.0.0.1:${port} --https-listen 127.0.0.1:${httpsPort}`);
          const service = execa(process.execPath, [BIN, 'service', 'start', '--listen', `127.0.0.1:${port}`, '--https-listen', `127.0.0.1:${httpsPort}`, '--home', homes.service], { env: { NO_COLOR: '1' }, reject: false });
          children.push(service);
          await new Promise<void>((resolve, reject) => {
            const t = setTimeout(() => reject(new EnrollError('ERR_TIMEOUT', 'the demo service did not start')), 15_000);
            service.stderr?.on('data', (d: Buffer) => {
              indent(d);
              if (d.toString().includes(' listening ')) {
                clearTimeout(t);
                resolve();
              }
            });
          });

          say('\n3. The enroller (a terminal next to the device) makes its key; the service allows it.');
          const enrollerKey = await run('enroller', ['enroller', 'init']);
          await run('service', ['service', 'enroller', 'allow', enrollerKey, '--name', 'demo terminal']);

          say('\n4. The enroller fetches bundles over Noise XX, pinning the service key.');
          if (eka === 2) say('   EKA v2: each bundle carries the SHA-256 of the service\'s ML-KEM-768 prekey, signed with the rest.');
          await run('enroller', ['enroller', 'bundle', 'fetch', '--service', address, '--count', '3', '--service-key', serviceKey, '--eka', ekaArg]);

          say('\n5. The device makes its enrollment key EIK_B; its card carries it.');
          const card = await run('enrollee', ['enrollee', 'init', '--name', 'Robot Axiom']);
          say(`   card: ${card.slice(0, 40)}…`);

          say('\n6. Enroller and device meet over Noise XX; both show the same short authentication string.');
          say('   The enroller hands over a bundle, approves the card with the service, and steps aside;');
          if (eka === 2) {
            say('   the device fetches the 1,184-byte ML-KEM prekey from the service, checks it against the signed hash,');
            say('   and sends its 1,265-byte hybrid enrollment message (X3DH + ML-KEM-768) straight to the service.');
          } else say('   the device sends its 176-byte enrollment message straight to the service.');
          say(`  $ ockam-enroll enroller onboard --listen 127.0.0.1:${onboardPort} --name "Robot Axiom" --eka ${ekaArg}`);
          const onboard = execa(process.execPath, [BIN, 'enroller', 'onboard', '--listen', `127.0.0.1:${onboardPort}`, '--name', 'Robot Axiom', '--eka', ekaArg, '--home', homes.enroller], { env: { NO_COLOR: '1' }, reject: false });
          children.push(onboard);
          await new Promise<void>((resolve) => {
            onboard.stderr?.on('data', (d: Buffer) => {
              indent(d);
              if (d.toString().includes('waiting for the enrollee')) resolve();
            });
          });
          const joined = await run('enrollee', ['enrollee', 'join', '--enroller', `tcp://127.0.0.1:${onboardPort}`, '--eka', ekaArg]);
          say(`   ${joined}`);
          const ob = await onboard;
          if (ob.exitCode !== 0) throw new EnrollError('ERR_INTERNAL', `the enroller's onboard failed (exit ${ob.exitCode})`);
          say(`   enroller: ${ob.stdout.trim()}`);

          say('\n7. The device and the service now share a mutually authenticated channel (IK_B ↔ IK_A).');
          const status = await run('enrollee', ['enrollee', 'status']);
          say(`   ${status}`);

          say('\n8. The service knows the device by its long-term key.');
          const list = await run('service', ['service', 'enrollee', 'list']);
          say(list.replace(/^/gm, '   '));
          const json = JSON.parse(await run('service', ['service', 'enrollee', 'list', '--json'])) as { enrollees: unknown[] };
          out.result({ ok: true, eka: ekaArg, service_key: serviceKey, enrollees: json.enrollees, homes: keep ? homes : undefined }, '\nDone: one device onboarded across three processes.');
        } finally {
          for (const c of children) c.kill('SIGTERM');
          await Promise.allSettled(children);
          if (!keep) rmSync(root, { recursive: true, force: true });
          else say(`homes kept in ${root}`);
        }
      }),
    );
}
