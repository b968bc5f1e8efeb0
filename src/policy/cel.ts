/**
 * Policies in CEL, the Common Expression Language (https://cel.dev, cel-spec langdef.md):
 * `--where`, `--require`, and the portals' `--allow` are CEL expressions over the enrollee
 * (`subject`) and, for portals, the outlet. docs/policies.md is the user's reference.
 *
 * The evaluator is @marcbachmann/cel-js (pinned), not @bufbuild/cel: bufbuild's 0.6.1 does not
 * export its type checker, and that checker handles constants and identifiers only
 * ("Unsupported expression kind: callExpr"), so it cannot reject `subject.id == 1` or
 * `subject.atributes` before anything is stored, which issue #20 requires. cel-js
 * type-checks against declared variables, reports errors with their source range, and has
 * parse-time structural limits.
 *
 * Compiled once (parse, type-check, cost bound), evaluated per use. Evaluation never
 * throws: a runtime error (`subject.attributes.role` on a subject without a role: "no such
 * key", cel-spec langdef §"Field selection") is a denial, so a policy fails closed.
 *
 * The cost bound (cel-spec has none of its own; cel-go's is an estimate of the same kind):
 * a static estimate where every AST node costs 1 and a comprehension macro (all, exists,
 * exists_one, map, filter) costs its body times the most elements its range can hold —
 * ATTR_MAX_COUNT for `subject.attributes`, the literal's length for a list or map literal,
 * POLICY_MAX_RANGE for anything else. `matches` is refused: cel-js runs it with JavaScript's
 * backtracking RegExp (not RE2, as the spec intends), whose time cannot be bounded.
 */
import { Environment, type ASTNode } from '@marcbachmann/cel-js';
import { EnrollError } from '../errors.js';
import { ATTR_MAX_COUNT, type Attributes } from '../protocol/codec/attributes.js';

/** Characters of an expression, at most. */
export const POLICY_MAX_LEN = 1024;
/** The static cost bound (see the file comment). */
export const POLICY_MAX_COST = 10_000;
/** Elements assumed for a comprehension range whose size is not known statically. */
export const POLICY_MAX_RANGE = 64;

export type PolicyKind = 'subject' | 'outlet';

/** The enrollee a policy is evaluated against (docs/policies.md "Variables"). */
export interface PolicySubject {
  /** The enrollee id, 64 lower-case hex digits. */
  id: string;
  /** The pet name ('' for none). */
  name: string;
  /** The approving enroller's public key in hex ('' for a token enrollee without one). */
  enroller: string;
  /** 'x3dh' or 'token'. */
  method: string;
  attributes: Attributes;
}

export interface PolicyInput {
  subject: PolicySubject;
  outlet?: { name: string };
}

export interface CompiledPolicy {
  readonly expression: string;
  readonly kind: PolicyKind;
  /** The static cost estimate (≤ POLICY_MAX_COST). */
  readonly cost: number;
  /** True when the expression holds; false when it does not or its evaluation fails. */
  eval(input: PolicyInput): boolean;
}

/** ERR_POLICY, with the 1-based column the problem is at (0 when it is about the whole expression). */
export class PolicyError extends EnrollError {
  readonly column: number;
  constructor(message: string, column: number, hint?: string) {
    super('ERR_POLICY', message, hint === undefined ? {} : { hint });
    this.column = column;
  }
}

const LIMITS = { maxAstNodes: 512, maxDepth: 32, maxListElements: POLICY_MAX_RANGE, maxMapEntries: POLICY_MAX_RANGE, maxCallArguments: 8 };
const SUBJECT_SCHEMA = { id: 'string', name: 'string', enroller: 'string', method: 'string', attributes: 'map<string, string>' };

let envs: Record<PolicyKind, Environment> | undefined;
function environment(kind: PolicyKind): Environment {
  // Built on first use: an Environment is costly to make, and most commands never need one.
  envs ??= {
    subject: new Environment({ limits: LIMITS }).registerVariable({ name: 'subject', schema: SUBJECT_SCHEMA }),
    outlet: new Environment({ limits: LIMITS })
      .registerVariable({ name: 'subject', schema: SUBJECT_SCHEMA })
      .registerVariable({ name: 'outlet', schema: { name: 'string' } }),
  };
  return envs[kind];
}

const MACROS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

function isNode(v: unknown): v is ASTNode {
  return v !== null && typeof v === 'object' && typeof (v as { op?: unknown }).op === 'string' && 'start' in (v as object);
}

/** The most elements `n` can hold when iterated. */
function rangeBound(n: ASTNode): number {
  if (n.op === 'list') return (n.args as ASTNode[]).length;
  if (n.op === 'map') return (n.args as unknown[]).length;
  if (n.op === '.' && (n.args as [ASTNode, string])[1] === 'attributes') {
    const base = (n.args as [ASTNode, string])[0];
    if (base.op === 'id' && base.args === 'subject') return ATTR_MAX_COUNT;
  }
  // map() and filter() yield at most as many elements as they iterate.
  if (n.op === 'rcall' && (n.args[0] === 'map' || n.args[0] === 'filter')) return rangeBound(n.args[1] as ASTNode);
  return POLICY_MAX_RANGE;
}

function children(n: ASTNode): ASTNode[] {
  const out: ASTNode[] = [];
  const walk = (v: unknown): void => {
    if (isNode(v)) out.push(v);
    else if (Array.isArray(v)) v.forEach(walk);
  };
  walk(n.args);
  return out;
}

/** The static cost of `n` (file comment); throws PolicyError for `matches`. */
function cost(n: ASTNode): number {
  if ((n.op === 'call' || n.op === 'rcall') && n.args[0] === 'matches') {
    throw new PolicyError(`policy: "matches" is not allowed (its regular expression's run time cannot be bounded), at column ${n.start + 1}`, n.start + 1, 'use startsWith, endsWith, contains or ==');
  }
  if (n.op === 'rcall' && MACROS.has(n.args[0] as string)) {
    const target = n.args[1] as ASTNode;
    const body = (n.args[2] as unknown[]).filter(isNode).reduce((s, c) => s + cost(c), 0);
    return 1 + cost(target) + rangeBound(target) * (body + 1);
  }
  return children(n).reduce((s, c) => s + cost(c), 1);
}

function column(err: unknown): number {
  const range = (err as { range?: { start?: unknown } } | null)?.range;
  return range && typeof range.start === 'number' ? range.start + 1 : 0;
}

function summary(err: unknown): string {
  const s = (err as { summary?: unknown } | null)?.summary;
  return typeof s === 'string' ? s : err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

/**
 * Parses, type-checks and bounds `expression`, for `kind` 'subject' (variables: subject) or
 * 'outlet' (subject and outlet). Throws PolicyError (ERR_POLICY) naming the column.
 */
export function compilePolicy(expression: string, kind: PolicyKind): CompiledPolicy {
  if (kind !== 'subject' && kind !== 'outlet') throw new EnrollError('ERR_INVALID_ARG', `policy kind must be "subject" or "outlet", got ${String(kind)}`);
  if (typeof expression !== 'string') throw new EnrollError('ERR_INVALID_ARG', 'policy: the expression must be a string');
  if (expression.trim().length === 0) throw new PolicyError('policy: the expression is empty', 0);
  if (expression.length > POLICY_MAX_LEN) throw new PolicyError(`policy: the expression is ${expression.length} characters, at most ${POLICY_MAX_LEN}`, 0);
  const env = environment(kind);
  let program: ReturnType<Environment['parse']>;
  try {
    program = env.parse(expression);
  } catch (err) {
    const col = column(err);
    throw new PolicyError(`policy: ${summary(err)}${col ? ` at column ${col}` : ''}`, col, caret(expression, col));
  }
  const checked = program.check();
  if (!checked.valid) {
    const col = column(checked.error);
    throw new PolicyError(`policy: ${summary(checked.error)}${col ? ` at column ${col}` : ''}`, col, caret(expression, col));
  }
  if (checked.type !== 'bool') {
    throw new PolicyError(`policy: the expression is of type ${checked.type}, a policy must be a bool`, 1, 'compare it: subject.attributes.role == "sensor"');
  }
  const c = cost(program.ast);
  if (c > POLICY_MAX_COST) {
    throw new PolicyError(`policy: the expression's cost bound is ${c}, at most ${POLICY_MAX_COST}`, 1, 'nest fewer comprehensions (all, exists, map, filter)');
  }
  return Object.freeze({
    expression,
    kind,
    cost: c,
    eval(input: PolicyInput): boolean {
      try {
        return program(policyContext(input, kind)) === true;
      } catch {
        return false;
      }
    },
  });
}

function caret(expression: string, col: number): string | undefined {
  if (col < 1) return undefined;
  const rest = expression.slice(col - 1, col + 23).replace(/\s+/g, ' ');
  return rest.length === 0 ? 'the expression ends too early' : `column ${col} is where this starts: ${rest}${expression.length > col + 23 ? '…' : ''}`;
}

/** The CEL activation: attributes as a Map (CEL's map<string, string>), the rest as given. */
function policyContext(input: PolicyInput, kind: PolicyKind): Record<string, unknown> {
  const s = input.subject;
  const subject = { id: s.id, name: s.name, enroller: s.enroller, method: s.method, attributes: new Map(Object.entries(s.attributes)) };
  return kind === 'outlet' ? { subject, outlet: { name: input.outlet?.name ?? '' } } : { subject };
}
