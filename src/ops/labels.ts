/**
 * The bounded label values of the service's metrics (./metrics.ts), apart from prom-client:
 * the enrollment path computes them on every answer, and a service without --metrics-listen
 * must not load prom-client to do so.
 */
import { isErrorCode } from '../errors.js';
import { ENROLL_STATUS } from '../protocol/messages/service.js';

/** `result` label of an enrollment: `accepted`, or the refusal's status in lower case. */
const STATUS_NAMES: ReadonlyMap<number, string> = new Map(Object.entries(ENROLL_STATUS).map(([k, v]) => [v, k.toLowerCase()]));

export function enrollResult(status: number): string {
  return STATUS_NAMES.get(status) ?? 'other';
}

/** A bounded `code` label: an error code of src/errors.ts, else `other`. */
export function codeLabel(reason: unknown): string {
  const code = typeof reason === 'string' ? reason.split(':', 1)[0]!.trim() : '';
  return isErrorCode(code) ? code : 'other';
}
