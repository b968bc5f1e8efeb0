/**
 * The service's decision log: one line per decision (accepted, rejected with its precise
 * reason, approved, bundles served, enroller refused), on stderr, as text or JSON lines.
 * It names enrollees by id and pet name and enrollers by key; it never holds key material
 * other than public keys and never a secret.
 */
export type Decision =
  | 'accepted'
  | 'rejected'
  | 'approved'
  | 'approve-refused'
  | 'bundles'
  | 'enroller-refused'
  | 'error'
  | 'listening'
  | 'stopped'
  // a peer went over a limit (src/roles/service/limits.ts)
  | 'limited'
  // token enrollment (docs/token-enrollment.md)
  | 'token-created'
  | 'token-refused'
  | 'cert-issued'
  | 'cert-refused'
  | 'cert-renewed'
  | 'renew-refused'
  | 'whoami-refused'
  | 'https-listening'
  // --https-address-check warn: the address tokens carry now reaches this service (https-announce.ts)
  | 'https-address-served'
  // --metrics-listen: /healthz, /readyz, /metrics (src/ops/listener.ts)
  | 'metrics-listening'
  // the lifecycle: revoke, rotate, move (src/roles/service/lifecycle.ts)
  | 'channel-closed'
  | 'rotated'
  | 'rotate-refused'
  | 'credential-issued'
  | 'address-changed'
  // a PostgreSQL store became unreachable, or reachable again (store/pg/database.ts): one line each
  | 'store-unreachable'
  | 'store-reachable'
  // portals (docs/portals.md): a session switched to a portal link and its end; each stream's
  // open, refusal (with the reason the inlet is told) and close (byte counts, never payloads)
  | 'portal-opened'
  | 'portal-closed'
  | 'stream-opened'
  | 'stream-refused'
  | 'stream-closed'
  // a device's DEVICE_OUTLETS session registered its outlets with this replica's relay (src/portal/device-relay.ts)
  | 'device-outlets'
  // replicas (src/replicas/replica.ts): the replica link listener, links to other replicas, a peer refused (not IK_A)
  | 'replica-listening'
  | 'replica-link-opened'
  | 'replica-link-closed'
  | 'replica-refused';

export interface DecisionFields {
  enrollee?: string;
  name?: string | null;
  enroller?: string;
  enroller_name?: string | null;
  reason?: string;
  peer?: string;
  [k: string]: unknown;
}

export type DecisionLog = (decision: Decision, fields: DecisionFields) => void;

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/** A decision's level: a fault of ours is an error, a peer refused or limited a warning, the rest info. */
export function levelOf(decision: Decision): LogLevel {
  if (decision === 'error' || decision === 'store-unreachable') return 'error';
  if (decision === 'rejected' || decision === 'limited' || decision.endsWith('-refused')) return 'warn';
  return 'info';
}

/**
 * The one place every log line passes through before it is written (issue #21 item 3): a
 * field whose name says it holds a secret is replaced whatever its value, and a URL's
 * password (postgres://USER:PASSWORD@…) is masked wherever it appears in a string. The
 * callers never log a secret on purpose; this keeps a slip from reaching the log.
 */
const SECRET_FIELD = /pass(word|phrase)?|secret|private|seed|jwt|^token$|authorization|cookie|^key$/i;
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*):[^@/?#\s]*@/gi;

export function redact(fields: DecisionFields): DecisionFields {
  const out: DecisionFields = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_FIELD.test(k)) out[k] = '[redacted]';
    else if (typeof v === 'string') out[k] = v.replace(URL_PASSWORD, '$1:***@');
    else out[k] = v;
  }
  return out;
}

/**
 * Text (the default) or JSON lines, on stderr. Every JSON line has `time`, `level` and
 * `decision`; `level` filters what is written (error < warn < info < debug, default info).
 */
export function makeDecisionLog(opts: { json: boolean; level?: LogLevel; write?: (line: string) => void }): DecisionLog {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const max = LOG_LEVELS.indexOf(opts.level ?? 'info');
  return (decision, raw) => {
    const level = levelOf(decision);
    if (LOG_LEVELS.indexOf(level) > max) return;
    const fields = redact(raw);
    const time = new Date().toISOString();
    if (opts.json) {
      write(`${JSON.stringify({ time, level, decision, ...fields })}\n`);
      return;
    }
    const parts = Object.entries(fields)
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`);
    write(`${time} ${decision} ${parts.join(' ')}\n`);
  };
}
