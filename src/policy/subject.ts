/** The policy `subject` of a stored enrollee (docs/policies.md "Variables"). */
import { toHex } from '../crypto/bytes.js';
import type { EnrolleeRecord } from '../store/types.js';
import type { PolicySubject } from './cel.js';

export function subjectOf(r: EnrolleeRecord): PolicySubject {
  return {
    id: toHex(r.id),
    name: r.petName ?? '',
    enroller: r.enroller ? toHex(r.enroller) : '',
    method: r.method,
    attributes: r.attributes ?? {},
  };
}
