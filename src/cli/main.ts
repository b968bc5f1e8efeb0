/**
 * The `ockam-enroll` command tree. Every leaf command lives in its own file and registers
 * itself here; this file only builds the tree and maps commander's usage errors to exit 2.
 */
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { EXIT } from './exit-codes.js';
import { PROG } from './output.js';
import * as serviceInit from './service-init.js';
import * as serviceStart from './service-start.js';
import * as serviceEnroller from './service-enroller.js';
import * as serviceEnrollee from './service-enrollee.js';
import * as enrollerInit from './enroller-init.js';
import * as enrollerBundle from './enroller-bundle.js';
import * as enrollerApprove from './enroller-approve.js';
import * as enrollerOnboard from './enroller-onboard.js';
import * as enrollerToken from './enroller-token.js';
import * as enrolleeInit from './enrollee-init.js';
import * as enrolleeCard from './enrollee-card.js';
import * as enrolleeJoin from './enrollee-join.js';
import * as enrolleeStatus from './enrollee-status.js';
import * as enrolleeRenew from './enrollee-renew.js';
import * as demo from './demo.js';

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

export function buildProgram(): Command {
  const program = new Command(PROG)
    .description('secure device onboarding: an enrollment service, enrollers, and enrollees')
    .version(version(), '-V, --version')
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({ outputError: (str, write) => write(`${PROG}: ${str}`) })
    .addHelpText(
      'after',
      `
Exit codes: 0 ok, 1 failure, 2 usage, 3 rejected by the service, 4 cannot reach, 5 peer authentication failed.

Example (three terminals):
  service$  ockam-enroll service init --address tcp://127.0.0.1:4100 && ockam-enroll service start
  enroller$ ockam-enroll enroller init        # then on the service: service enroller allow <key>
  enroller$ ockam-enroll enroller bundle fetch --service tcp://127.0.0.1:4100 --count 5
  enroller$ ockam-enroll enroller onboard --listen 127.0.0.1:4200 --name "Robot Axiom"
  device$   ockam-enroll enrollee init && ockam-enroll enrollee join --enroller tcp://127.0.0.1:4200`,
    );

  const service = program
    .command('service')
    .description('the enrollment service: bundles, approvals, enrollments')
    .addHelpText('after', '\nExample:\n  ockam-enroll service init --address tcp://127.0.0.1:4100 && ockam-enroll service start\n');
  serviceInit.register(service);
  serviceStart.register(service);
  serviceEnroller.register(service);
  serviceEnrollee.register(service);

  const enroller = program
    .command('enroller')
    .description('the terminal or phone next to the device')
    .addHelpText('after', '\nExample:\n  ockam-enroll enroller init && ockam-enroll enroller bundle fetch --service tcp://127.0.0.1:4100 --count 5\n');
  enrollerInit.register(enroller);
  enrollerBundle.register(enroller);
  enrollerApprove.register(enroller);
  enrollerOnboard.register(enroller);
  enrollerToken.register(enroller);

  const enrollee = program
    .command('enrollee')
    .description('the device being onboarded')
    .addHelpText('after', '\nExample:\n  ockam-enroll enrollee init --name "Robot Axiom" && ockam-enroll enrollee join --enroller tcp://10.0.0.5:4200\n');
  enrolleeInit.register(enrollee);
  enrolleeCard.register(enrollee);
  enrolleeJoin.register(enrollee);
  enrolleeStatus.register(enrollee);
  enrolleeRenew.register(enrollee);

  demo.register(program);

  // Usage errors exit 2 wherever they occur in the tree.
  const exitOverride = (cmd: Command) => {
    cmd.exitOverride();
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version "fail" with exit code 0.
      process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return;
    }
    throw err;
  }
}
