/**
 * Enroller scopes (issue #20 item 2, docs/policies.md "Scopes"): which attributes an
 * enroller may assign. `service enroller allow KEY --may-assign role=sensor|camera
 * --may-assign site=*`. The service checks an approval's attributes against the approving
 * enroller's scope before it writes anything (roles/service/enrollers.ts); the enroller's
 * own copy of its request is never trusted, since it is the party being limited.
 *
 * An enroller allowed without --may-assign assigns no attribute at all.
 */
import { EnrollError } from '../errors.js';
import { ATTR_MAX_COUNT, attributeKeyProblem, attributeValueProblem, type Attributes } from '../protocol/codec/attributes.js';

/** Per key: the values allowed, or '*' for any value. Keys sorted. */
export type EnrollerScopes = Readonly<Record<string, '*' | readonly string[]>>;

/** At most this many values per key in one scope. */
export const SCOPE_MAX_VALUES = 32;

/** Checks a scope set (from a flag, a store row or JSON) and returns it frozen, keys and values sorted. */
export function checkScopes(scopes: unknown, code: 'ERR_USAGE' | 'ERR_INVALID_ARG' | 'ERR_STORE' = 'ERR_INVALID_ARG'): EnrollerScopes {
  if (scopes === null || typeof scopes !== 'object' || Array.isArray(scopes)) throw new EnrollError(code, 'scopes: expected an object of key → values');
  const keys = Object.keys(scopes).sort();
  if (keys.length > ATTR_MAX_COUNT) throw new EnrollError(code, `scopes: ${keys.length} keys, at most ${ATTR_MAX_COUNT}`);
  const out: Record<string, '*' | readonly string[]> = {};
  for (const k of keys) {
    const kp = attributeKeyProblem(k);
    if (kp !== undefined) throw new EnrollError(code, `--may-assign: the key "${k.slice(0, 40)}" ${kp}`);
    const v = (scopes as Record<string, unknown>)[k];
    if (v === '*') {
      out[k] = '*';
      continue;
    }
    if (!Array.isArray(v) || v.length === 0) throw new EnrollError(code, `--may-assign ${k}: expected values V1|V2|… or *`);
    if (v.length > SCOPE_MAX_VALUES) throw new EnrollError(code, `--may-assign ${k}: ${v.length} values, at most ${SCOPE_MAX_VALUES}`);
    const values = [...new Set(v as unknown[])];
    if (values.length !== v.length) throw new EnrollError(code, `--may-assign ${k}: a value is given twice`);
    for (const x of values) {
      const vp = typeof x === 'string' ? attributeValueProblem(x) : 'must be a string';
      if (vp !== undefined) throw new EnrollError(code, `--may-assign ${k}: the value "${String(x).slice(0, 40)}" ${vp}`);
    }
    out[k] = Object.freeze((values as string[]).sort());
  }
  return Object.freeze(out);
}

/** Parses repeatable `--may-assign KEY=V1|V2` / `KEY=*`; a key given twice is refused. */
export function parseScopeArgs(args: readonly string[]): EnrollerScopes {
  const out: Record<string, '*' | string[]> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0 || eq === a.length - 1) {
      throw new EnrollError('ERR_USAGE', `--may-assign expects KEY=V1|V2|… or KEY=*, got "${a.slice(0, 80)}"`, { hint: 'for example: --may-assign role=sensor|camera --may-assign site=*' });
    }
    const k = a.slice(0, eq);
    if (Object.hasOwn(out, k)) throw new EnrollError('ERR_USAGE', `--may-assign: the key "${k.slice(0, 40)}" is given twice`, { hint: `list its values once: --may-assign ${k}=V1|V2` });
    const rest = a.slice(eq + 1);
    out[k] = rest === '*' ? '*' : rest.split('|');
  }
  return checkScopes(out, 'ERR_USAGE');
}

/**
 * Refuses (ERR_ATTRIBUTE_SCOPE, naming the first attribute outside it) attributes an enroller
 * with `scopes` may not assign.
 */
export function checkScope(scopes: EnrollerScopes | undefined, attributes: Attributes, enrollerName: string): void {
  for (const [k, v] of Object.entries(attributes)) {
    const allowed = scopes?.[k];
    if (allowed === '*') continue;
    if (allowed !== undefined && allowed.includes(v)) continue;
    throw new EnrollError('ERR_ATTRIBUTE_SCOPE', `enroller ${enrollerName} may not assign ${k}=${v}${allowed === undefined ? ` (no scope for "${k}")` : ` (it may assign ${k}=${allowed.join('|')})`}`, {
      hint: `widen its scope with \`ockam-enroll service enroller allow <key> --may-assign ${k}=…\`, or leave the attribute out`,
    });
  }
}

/** `role=sensor|camera site=*` for human output ('-' for none). */
export function formatScopes(s: EnrollerScopes | undefined): string {
  const e = Object.entries(s ?? {});
  return e.length === 0 ? '-' : e.map(([k, v]) => `${k}=${v === '*' ? '*' : v.join('|')}`).join(' ');
}
