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
  | 'store-reachable';

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

export function makeDecisionLog(opts: { json: boolean; write?: (line: string) => void }): DecisionLog {
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  return (decision, fields) => {
    const time = new Date().toISOString();
    if (opts.json) {
      write(`${JSON.stringify({ time, decision, ...fields })}\n`);
      return;
    }
    const parts = Object.entries(fields)
      .filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => `${k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : String(v)}`);
    write(`${time} ${decision} ${parts.join(' ')}\n`);
  };
}
