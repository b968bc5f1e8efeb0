/**
 * Framed connections over standard streams, so that a device without a reachable TCP port
 * can still be onboarded through any byte pipe, e.g.
 * `ockam-enroll enroller onboard --spawn "ssh device ockam-enroll enrollee join --stdio"`.
 *
 * In `--stdio` mode stdout carries binary frames and nothing else: a single stray byte
 * (a console.log, a warning printed by a library, a progress bar) desynchronises the framing
 * and the peer drops the connection. Such a process must send every diagnostic to stderr.
 */
import { execa, type ResultPromise } from 'execa';
import { EnrollError } from '../errors.js';
import {
  checkConnectionOptions,
  FramedConnection,
  setEndDescriber,
  type FramedConnectionOptions,
} from './connection.js';

/**
 * A framed connection over this process's stdin (frames in) and stdout (frames out).
 * While it is in use the process must write nothing else to stdout; see the module comment.
 * Throws ERR_USAGE when stdout is a terminal: binary frames there are useless to a peer and
 * can garble the user's terminal.
 */
export function stdioConnection(opts: FramedConnectionOptions = {}): FramedConnection {
  if (process.stdout.isTTY === true) {
    throw new EnrollError('ERR_USAGE', 'refusing to write binary frames to a terminal', {
      hint: '--stdio is for pipes, e.g. `ockam-enroll enroller onboard --spawn "ssh DEVICE ockam-enroll enrollee join --stdio"`',
    });
  }
  return FramedConnection.fromStreams(process.stdin, process.stdout, opts);
}

/** After the child's stdout ends, how long to wait for its exit status to report it. */
export const CHILD_EXIT_GRACE_MS = 2_000;

const SPAWN_OPTIONS = {
  shell: true,
  stdin: 'pipe',
  stdout: 'pipe',
  // The child's diagnostics go straight to our stderr, where the user can read them.
  stderr: 'inherit',
  // We read stdout ourselves, frame by frame; execa must not buffer or consume it.
  buffer: false,
  // Exit statuses are reported through `exited` and ERR_CONNECTION_CLOSED, not thrown.
  reject: false,
} as const;

export type SpawnedChild = ResultPromise<typeof SPAWN_OPTIONS>;

export interface SpawnConnectionOptions extends FramedConnectionOptions {
  /** The child's whole environment (default: this process's). */
  env?: Record<string, string>;
}

export interface ChildExit {
  /** undefined when the child was killed by a signal or could not be started. */
  exitCode: number | undefined;
  signal?: string;
}

export interface SpawnedConnection {
  conn: FramedConnection;
  child: SpawnedChild;
  /** Resolves when the child has exited; never rejects. */
  exited: Promise<ChildExit>;
}

function describeExit(exit: ChildExit): string {
  if (exit.signal !== undefined) return `was killed by ${exit.signal}`;
  if (exit.exitCode === undefined) return 'could not be started';
  return `exited with code ${exit.exitCode}`;
}

/**
 * Runs COMMAND through the shell and frames over its stdout (frames in) and stdin (frames
 * out); its stderr is passed through. When the child's output ends before the caller has
 * read what it expects, `readFrame` rejects with ERR_CONNECTION_CLOSED naming the exit code.
 *
 * The child is not killed by `conn.destroy()`: call `child.kill()` to stop it, and await
 * `exited` before exiting.
 */
export function spawnConnection(command: string, opts: SpawnConnectionOptions = {}): SpawnedConnection {
  if (typeof command !== 'string' || command.trim().length === 0) {
    throw new EnrollError('ERR_INVALID_ARG', '"command" expected a non-empty string');
  }
  checkConnectionOptions(opts);
  const { env, ...connOpts } = opts;
  if (env !== undefined) {
    if (env === null || typeof env !== 'object' || Object.values(env).some((v) => typeof v !== 'string')) {
      throw new EnrollError('ERR_INVALID_ARG', '"env" expected an object of strings');
    }
  }

  // With `env`, that is the child's whole environment (extendEnv: false), not an addition.
  const child = execa(command, env === undefined ? SPAWN_OPTIONS : { ...SPAWN_OPTIONS, env, extendEnv: false }) as SpawnedChild;
  const exited: Promise<ChildExit> = Promise.resolve(child).then(
    (r) => (r.signal !== undefined ? { exitCode: r.exitCode, signal: r.signal } : { exitCode: r.exitCode }),
    // reject: false means execa resolves even for failures; this is only belt and braces.
    () => ({ exitCode: undefined }),
  );

  const conn = FramedConnection.fromStreams(child.stdout, child.stdin, connOpts);
  setEndDescriber(conn, async (midFrame) => {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), CHILD_EXIT_GRACE_MS);
    });
    const exit = await Promise.race([exited, grace]);
    clearTimeout(timer);
    const when = midFrame ? 'mid-frame' : 'before the exchange finished';
    if (exit === undefined) {
      return new EnrollError('ERR_CONNECTION_CLOSED', `child process closed its stdout ${when}`);
    }
    const hint =
      exit.exitCode === 127
        ? 'the shell did not find the command; check its spelling and PATH'
        : 'the child\'s own error output above says why';
    return new EnrollError('ERR_CONNECTION_CLOSED', `child process ${describeExit(exit)} ${when}`, { hint });
  });
  return { conn, child, exited };
}
