/**
 * The operator's say in each enrollment: `service start --on-enroll COMMAND` (README
 * "Lifecycle: audit, hooks, credentials").
 *
 * After an enrollment message passes checks 1–5 (docs/protocol.md §5.4) and before the
 * commit of §5.5, the service runs COMMAND through the shell with the request as one JSON
 * object on its stdin:
 *
 *   {"event":"enroll","enrollee":"<id hex>","name":"Robot Axiom"|null,"enroller":"<key hex>"|null,
 *    "enroller_name":…|null,"identity_key":"<IK_B hex>","method":"x3dh","bundle":"<bundle id hex>",
 *    "attributes":{"role":"sensor"},"peer":"127.0.0.1:51256"|null,"time":"2026-11-21T15:31:37.000Z"}
 *
 * `attributes` are the enrollee's as the store holds them at this moment (those its
 * approval asked for, and any `set-attr` since; `{}` for none): what its credential will
 * carry, so a hook can decide on them (docs/policies.md).
 *
 * Exit status 0 allows the enrollment. Anything else refuses it: the enrollee gets the opaque
 * REJECTED (§7.5), and the log and the audit get `ERR_HOOK_REJECTED: <the hook's first stderr
 * line>`. A hook that has not exited after the timeout (default 5 s) is killed with its whole
 * process group and the enrollment refused (ERR_HOOK_TIMEOUT); one that cannot be started is
 * ERR_HOOK_FAILED. A refusal here records nothing and consumes nothing: no EK_B, no OPK, no
 * failed attempt (the lockout counts crypto failures only, §5.4), so the enrollee stays
 * pending and a later attempt, once the hook allows it, can enroll.
 *
 * The JSON holds public keys, ids and names only — what the decision log holds — never a
 * secret, and the hook's environment is the service's without the passphrase variables
 * (hookEnvironment). At most MAX_CONCURRENT_HOOKS run at once; the others wait, within their
 * timeout.
 *
 * Also here: the per-service options of the enrollment handler that `service start` sets
 * (setEnrollLifecycle: the hook, the credential lifetime and signing thread), read by
 * enroll.ts through beforeCommit() and by credentials.ts.
 */
import type { EnrollPool } from '../../pool/pool.js';
import { EnrollError } from '../../errors.js';
import { toHex } from '../../crypto/bytes.js';
import type { BundleRecord, EnrolleeRecord } from '../../store/types.js';
import type { Attributes } from '../../protocol/codec/attributes.js';
import type { CredentialSigner } from './credentials.js';
import type { ServiceHome } from './home.js';

export interface EnrollHookRequest {
  event: 'enroll';
  enrollee: string;
  name: string | null;
  enroller: string | null;
  enroller_name: string | null;
  identity_key: string;
  method: 'x3dh';
  bundle: string;
  /** The enrollee's attributes ({} for none). */
  attributes: Attributes;
  peer: string | null;
  time: string;
}

/** A refusal: the reason for the log (`ERR_HOOK_…: …`) and extra log fields. */
export interface HookDenial {
  reason: string;
  fields: Record<string, unknown>;
}

/** Returns undefined to allow the enrollment, or why it is refused. */
export type EnrollHook = (req: EnrollHookRequest) => Promise<HookDenial | undefined>;

export interface EnrollLifecycle {
  /** Runs after checks 1–5, before the commit. */
  onEnroll?: EnrollHook;
  /** Seconds a credential is valid (overrides the credentialTtl setting). */
  credentialTtl?: number;
  /** Signs credentials on a thread of its own (else they are signed in the calling thread). */
  signer?: CredentialSigner;
  /** Runs the per-message work of enrollments on worker threads (src/pool); else it runs in the calling thread. */
  pool?: EnrollPool;
}

const lifecycles = new WeakMap<object, EnrollLifecycle>();

/** `service start` sets the handler's options for this service home. */
export function setEnrollLifecycle(svc: ServiceHome, lifecycle: EnrollLifecycle): void {
  lifecycles.set(svc, lifecycle);
}

export function enrollLifecycleFor(svc: ServiceHome): EnrollLifecycle | undefined {
  return lifecycles.get(svc);
}

/**
 * enroll.ts's call between checks 1–5 and the commit: undefined (allow) at once when no hook
 * is set, else the hook's verdict.
 */
export async function beforeCommit(
  svc: ServiceHome,
  e: { enrollee: EnrolleeRecord; bundle: BundleRecord; ikB: Uint8Array; peer: string | undefined; now: number },
): Promise<HookDenial | undefined> {
  const hook = lifecycles.get(svc)?.onEnroll;
  if (hook === undefined) return undefined;
  const enroller = e.enrollee.enroller;
  const enrollerRec = enroller ? await svc.store.getEnroller(enroller) : undefined;
  return hook({
    event: 'enroll',
    enrollee: toHex(e.enrollee.id),
    name: e.enrollee.petName,
    enroller: enroller ? toHex(enroller) : null,
    enroller_name: enrollerRec?.name ?? null,
    identity_key: toHex(e.ikB),
    method: 'x3dh',
    bundle: toHex(e.bundle.id),
    attributes: e.enrollee.attributes ?? {},
    peer: e.peer ?? null,
    time: new Date(e.now * 1000).toISOString(),
  });
}

export const DEFAULT_HOOK_TIMEOUT_MS = 5_000;
/**
 * The longest --on-enroll-timeout: the enrollee waits 15 s for ENROLL_RESPONSE (§7.7), and a
 * verdict it no longer waits for would be wasted.
 */
export const MAX_HOOK_TIMEOUT_S = 12;
export const MAX_CONCURRENT_HOOKS = 16;
/** Longest reason kept from the hook's stderr. */
const MAX_REASON = 200;
/** How long to wait for the rest of stderr once the hook has exited. */
const STDERR_GRACE_MS = 200;
/** Most stderr bytes read (the rest is drained and dropped). */
const MAX_STDERR = 4096;

/**
 * The first line of the hook's stderr, made safe for a one-line log: no control or bidi
 * characters (a hook may echo an enrollee's pet name), at most MAX_REASON characters.
 */
export function firstLine(stderr: string): string {
  const line = stderr.split('\n', 1)[0] ?? '';
  const clean = line.replace(/[\p{Cc}\u2028\u2029\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/gu, '').trim();
  return clean.length > MAX_REASON ? `${clean.slice(0, MAX_REASON)}…` : clean;
}

/** A counting semaphore whose waiters give up at a deadline. */
class Slots {
  #free: number;
  readonly #waiters: (() => void)[] = [];
  constructor(n: number) {
    this.#free = n;
  }
  acquire(deadline: number): Promise<boolean> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const grant = () => {
        clearTimeout(timer);
        resolve(true);
      };
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(grant);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(false);
      }, Math.max(0, deadline - Date.now()));
      this.#waiters.push(grant);
    });
  }
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#free++;
  }
}

/**
 * The names a child process the operator asked for (an --on-enroll hook, an `enroller onboard
 * --exec` command) gets from this process's environment: an allow-list (issue #18 finding 4),
 * as sudo's env_reset does, because the service's environment holds secrets a child has no use
 * for and may leak to its logs or core dumps (OCKAM_ENROLL_STORE with its password,
 * PGPASSWORD, cloud credentials, the key passphrase). LC_* are kept too.
 */
export const CHILD_ENV_ALLOW = ['PATH', 'HOME', 'LANG', 'TZ'] as const;

/** A name for --hook-env / --exec-env: what a shell accepts as a variable name. */
export function parseEnvNames(values: readonly string[], flag: string): string[] {
  const out: string[] = [];
  for (const v of values.flatMap((x) => x.split(','))) {
    const name = v.trim();
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,127}$/.test(name)) throw new EnrollError('ERR_USAGE', `${flag} "${name.slice(0, 64)}" is not an environment variable name`);
    out.push(name);
  }
  return out;
}

/**
 * The environment a hook (or an --exec child) runs with: CHILD_ENV_ALLOW, LC_*, and the names
 * the operator added (`extra`), never the variables that may hold the key passphrase
 * (OCKAM_ENROLL_PASSPHRASE, and the one named by --passphrase-env), even when added.
 */
export function hookEnvironment(env: NodeJS.ProcessEnv, passphraseEnv?: string, extra: readonly string[] = []): Record<string, string> {
  const allowed = new Set<string>([...CHILD_ENV_ALLOW, ...extra]);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || k === 'OCKAM_ENROLL_PASSPHRASE' || k === passphraseEnv) continue;
    if (allowed.has(k) || k.startsWith('LC_')) out[k] = v;
  }
  return out;
}

/** The --on-enroll hook: COMMAND run through the shell (execa), the request on stdin. */
export function commandHook(
  command: string,
  opts: { timeoutMs?: number; maxConcurrent?: number; env?: Record<string, string> } = {},
): EnrollHook {
  const env = opts.env ?? hookEnvironment(process.env);
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HOOK_TIMEOUT_MS;
  const slots = new Slots(opts.maxConcurrent ?? MAX_CONCURRENT_HOOKS);
  return async (req) => {
    const deadline = Date.now() + timeoutMs;
    if (!(await slots.acquire(deadline))) {
      return { reason: `ERR_HOOK_TIMEOUT: no free hook slot within ${timeoutMs} ms (${opts.maxConcurrent ?? MAX_CONCURRENT_HOOKS} hooks running)`, fields: {} };
    }
    try {
      return await runHook(command, `${JSON.stringify(req)}\n`, deadline - Date.now(), env);
    } finally {
      slots.release();
    }
  };
}

async function runHook(command: string, input: string, timeoutMs: number, env: Record<string, string>): Promise<HookDenial | undefined> {
  const { execa } = await import('execa');
  let child: ReturnType<typeof execa>;
  try {
    // detached: the hook leads a process group of its own, so a timeout kills whatever it
    // started too (`sh -c 'sleep 10'` and its sleep). Its stdout is not read.
    child = execa(command, {
      shell: true,
      detached: true,
      env,
      extendEnv: false,
      stdin: 'pipe',
      stdout: 'ignore',
      stderr: 'pipe',
      buffer: false,
      reject: false,
    });
  } catch (err) {
    return { reason: `ERR_HOOK_FAILED: cannot run the hook: ${(err as Error).message}`, fields: {} };
  }
  // execa's own promise settles when the streams close; the verdict comes from 'exit'.
  child.catch(() => undefined);
  let stderr = '';
  let stderrEnded = false;
  const stderrDone: (() => void)[] = [];
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    if (stderr.length < MAX_STDERR) stderr += chunk.slice(0, MAX_STDERR - stderr.length);
  });
  child.stderr?.on('close', () => {
    stderrEnded = true;
    stderrDone.splice(0).forEach((f) => f());
  });
  child.stdin?.on('error', () => undefined); // a hook that does not read its stdin
  child.stdin?.end(input);

  const outcome = await new Promise<{ code: number | null; signal: string | null } | { error: Error } | 'timeout'>((resolve) => {
    const timer = setTimeout(() => resolve('timeout'), Math.max(1, timeoutMs));
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
    child.once('error', (error) => {
      clearTimeout(timer);
      resolve({ error });
    });
  });
  if (outcome === 'timeout') {
    killGroup(child.pid);
    return { reason: `ERR_HOOK_TIMEOUT: the hook did not finish within ${timeoutMs} ms and was killed`, fields: {} };
  }
  if ('error' in outcome) {
    killGroup(child.pid);
    return { reason: `ERR_HOOK_FAILED: cannot run the hook: ${outcome.error.message}`, fields: {} };
  }
  if (outcome.code === 0) return undefined;
  if (!stderrEnded) {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, STDERR_GRACE_MS);
      stderrDone.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
  const line = firstLine(stderr);
  const status = outcome.code !== null ? `exit status ${outcome.code}` : `signal ${outcome.signal}`;
  return {
    reason: `ERR_HOOK_REJECTED: ${line || `the hook refused (${status})`}`,
    fields: { hook_exit: outcome.code ?? outcome.signal },
  };
}

/** SIGKILL to the hook's process group (it is its leader: detached). */
function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // already gone
  }
}
