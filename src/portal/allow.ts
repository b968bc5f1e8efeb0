/**
 * The one place an outlet's `--allow` is compiled and checked (issue #19 item 5). It is a CEL
 * policy of kind 'outlet' (src/policy, docs/policies.md): the variables are `subject` (the
 * requesting enrollee: id, name, enroller, method, attributes) and `outlet` (its name). The
 * interim comma-separated list of ids and pet names it replaces is written in CEL as
 * `subject.name in ["pump-7", "robot-axiom"] || subject.id == "…"`.
 *
 * An outlet without `--allow` admits every enrolled identity: being enrolled is being on the
 * service's authorized list. Enrolled and not revoked are checked before this predicate, by
 * the caller, on every stream open. Policies fail closed: an evaluation error is a denial.
 */
import { EnrollError } from '../errors.js';
import { compilePolicy, POLICY_MAX_LEN, type PolicySubject } from '../policy/index.js';

/** Who asks to open a stream: the enrolled identity behind the session (policy `subject`). */
export type AllowSubject = PolicySubject;

export interface AllowOutlet {
  name: string;
  /** 'service' for a service outlet, else the device's enrollee id. */
  owner: string;
}

export type AllowPredicate = (subject: AllowSubject, outlet: AllowOutlet) => boolean;

/** The longest `--allow` accepted, checked before it is parsed (the policy layer's bound). */
export const MAX_ALLOW_LEN = POLICY_MAX_LEN;

/**
 * Compiles `--allow`. Undefined or blank admits every enrolled identity. Throws ERR_POLICY
 * (exit 2), naming the column, for an expression that does not parse, type-check or bound.
 */
export function compileAllow(expr: string | undefined): AllowPredicate {
  if (expr === undefined) return () => true;
  if (typeof expr !== 'string') throw new EnrollError('ERR_INVALID_ARG', '"expr" must be a string');
  if (expr.trim() === '') return () => true;
  const policy = compilePolicy(expr, 'outlet');
  return (subject, outlet) => policy.eval({ subject, outlet: { name: outlet.name } });
}

/** How `outlet list` describes an outlet's admission rule. */
export function describeAllow(expr: string | undefined | null): string {
  return expr === undefined || expr === null || expr.trim() === '' ? 'every enrolled identity' : expr;
}
