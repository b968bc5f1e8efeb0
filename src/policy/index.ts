/**
 * Attributes and policies (issue #20, docs/policies.md): the API the CLI, the service and the
 * portals call. `compilePolicy` once per expression, `.eval()` per use.
 */
export { compilePolicy, PolicyError, POLICY_MAX_COST, POLICY_MAX_LEN, POLICY_MAX_RANGE } from './cel.js';
export type { CompiledPolicy, PolicyInput, PolicyKind, PolicySubject } from './cel.js';
export {
  ATTR_MAX_COUNT,
  ATTR_MAX_KEY_LEN,
  ATTR_MAX_VALUE_LEN,
  checkAttributes,
  decodeAttributes,
  encodeAttributes,
  formatAttributes,
  parseAttributeArgs,
  sameAttributes,
} from '../protocol/codec/attributes.js';
export type { Attributes } from '../protocol/codec/attributes.js';
export { subjectOf } from './subject.js';
export { checkScope, parseScopeArgs, formatScopes } from './scopes.js';
export type { EnrollerScopes } from './scopes.js';
