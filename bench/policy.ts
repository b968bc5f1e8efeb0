/**
 * The policy row (issue #20 "Tests and figures"): what one evaluation of a compiled CEL policy
 * costs at a stream open — the subject made from the peer's current store record
 * (policy/subject.ts subjectOf) and the expression evaluated — for the expression a portal's
 * `--allow` typically holds: three comparisons over the attributes, the method and the
 * outlet. Target: at most 20 µs per evaluation.
 *
 * In this process, on the main thread, after a warm-up: batches of evaluations, timed each;
 * the median batch gives µs per evaluation, the slowest the worst case seen.
 */
import { compilePolicy, subjectOf } from '../src/policy/index.js';
import type { EnrolleeRecord } from '../src/store/types.js';

export const POLICY_EXPRESSION = 'subject.attributes.role == "sensor" && subject.attributes.site in ["berlin", "paris"] && outlet.name.startsWith("ssh")';

export interface PolicyRow {
  expression: string;
  evaluations: number;
  compile_us: number;
  eval_us_median: number;
  eval_us_max_batch: number;
  /** Evaluations that allowed (half the records match, half do not: both paths are timed). */
  allowed: number;
}

export function runPolicyBench(opts: { batches?: number; perBatch?: number } = {}): PolicyRow {
  const batches = opts.batches ?? 50;
  const perBatch = opts.perBatch ?? 2_000;
  const t0 = performance.now();
  const policy = compilePolicy(POLICY_EXPRESSION, 'outlet');
  const compileUs = (performance.now() - t0) * 1000;
  const record = (i: number): EnrolleeRecord => ({
    id: Uint8Array.from({ length: 32 }, (_, k) => (i * 31 + k) & 0xff),
    method: 'x3dh',
    state: 'enrolled',
    eikB: null,
    ikB: null,
    petName: `sensor ${i}`,
    enroller: new Uint8Array(32).fill(7),
    bundleId: null,
    approvedAt: 0,
    expiresAt: 0,
    enrolledAt: 0,
    revokedAt: null,
    failedAttempts: 0,
    attributes: { role: i % 2 === 0 ? 'sensor' : 'camera', site: 'berlin', floor: String(i % 7) },
  });
  const records = Array.from({ length: 64 }, (_, i) => record(i));
  const outlet = { name: 'ssh-line3' };
  let allowed = 0;
  const once = (i: number) => {
    if (policy.eval({ subject: subjectOf(records[i & 63]!), outlet })) allowed++;
  };
  for (let i = 0; i < perBatch * 5; i++) once(i); // warm-up: JIT
  allowed = 0;
  const times: number[] = [];
  for (let b = 0; b < batches; b++) {
    const s = performance.now();
    for (let i = 0; i < perBatch; i++) once(b * perBatch + i);
    times.push(((performance.now() - s) * 1000) / perBatch);
  }
  times.sort((a, b) => a - b);
  const r3 = (x: number) => Math.round(x * 1000) / 1000;
  return {
    expression: POLICY_EXPRESSION,
    evaluations: batches * perBatch,
    compile_us: Math.round(compileUs),
    eval_us_median: r3(times[Math.floor(times.length / 2)]!),
    eval_us_max_batch: r3(times[times.length - 1]!),
    allowed,
  };
}
