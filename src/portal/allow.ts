/**
 * The one place an outlet's `--allow` is compiled and checked (issue #19 item 5). Everything
 * else in the portals calls `compileAllow` and the predicate it returns, so the expression
 * language of the attributes-and-policies work (issue #20, CEL through src/policy/) replaces
 * this file's body and nothing around it.
 *
 * Until then `--allow` is the interim form the issue names: a comma-separated list of
 * enrollee ids (64 hex digits) and pet names. An outlet without `--allow` admits every
 * enrolled identity: being enrolled is being on the service's authorized list. Enrolled and
 * not revoked are checked before this predicate, by the caller, on every stream open.
 */
import { EnrollError } from '../errors.js';
import { petNameProblem } from '../protocol/codec/card.js';

/** Who asks to open a stream: the enrolled identity behind the session. */
export interface AllowSubject {
  /** Enrollee id, 64 lowercase hex digits. */
  id: string;
  /** Pet name from the enrollee's card, if it gave one. */
  name?: string;
  /** Key (hex) of the enroller that approved it. */
  enroller?: string;
  /** How it enrolled: 'eka' (bundle) or 'token'. */
  method?: string;
  attributes?: Record<string, string>;
}

export interface AllowOutlet {
  name: string;
  /** 'service' for a service outlet, else the device's enrollee id. */
  owner: string;
}

export type AllowPredicate = (subject: AllowSubject, outlet: AllowOutlet) => boolean;

/** The longest `--allow` accepted, checked before it is parsed. */
export const MAX_ALLOW_LEN = 4096;
const ID_RE = /^[0-9a-f]{64}$/;

/**
 * Compiles `--allow`. Undefined or empty admits every enrolled identity. Throws ERR_USAGE,
 * naming the bad entry, for an entry that is neither an enrollee id nor a valid pet name.
 */
export function compileAllow(expr: string | undefined): AllowPredicate {
  if (expr === undefined) return () => true;
  if (typeof expr !== 'string') throw new EnrollError('ERR_INVALID_ARG', '"expr" must be a string');
  if (expr.trim() === '') return () => true;
  if (expr.length > MAX_ALLOW_LEN) {
    throw new EnrollError('ERR_USAGE', `--allow is longer than ${MAX_ALLOW_LEN} characters`, { hint: 'list fewer enrollees, or use their ids' });
  }
  const ids = new Set<string>();
  const names = new Set<string>();
  for (const raw of expr.split(',')) {
    const entry = raw.trim();
    if (entry === '') throw new EnrollError('ERR_USAGE', '--allow has an empty entry', { hint: 'separate enrollee ids and pet names with single commas' });
    if (ID_RE.test(entry.toLowerCase())) {
      ids.add(entry.toLowerCase());
      continue;
    }
    const problem = petNameProblem(entry, Buffer.from(entry, 'utf8'));
    if (problem !== undefined) {
      throw new EnrollError('ERR_USAGE', `--allow entry ${JSON.stringify(entry)} is neither an enrollee id nor a pet name: ${problem}`, {
        hint: 'give enrollee ids (64 hex digits, see `service enrollee list`) or pet names, separated by commas',
      });
    }
    names.add(entry);
  }
  return (subject) => ids.has(subject.id) || (subject.name !== undefined && names.has(subject.name));
}

/** How `outlet list` describes an outlet's admission rule. */
export function describeAllow(expr: string | undefined): string {
  return expr === undefined || expr.trim() === '' ? 'every enrolled identity' : expr;
}
