/** The readable form of the benchmark's JSON, on stderr. */

type Any = Record<string, any>;

function row(cells: (string | number | null | undefined)[], widths: number[]): string {
  return cells.map((c, i) => String(c ?? '–').padStart(widths[i]!)).join('  ');
}

export function printTable(out: Any): void {
  const w = (s: string) => process.stderr.write(`${s}\n`);
  const b = out.bound as Any;
  w('');
  w(`ockam-enroll bench — ${out.revision} — ${out.node} — ${out.cpus} × ${out.cpu_model}`);
  w('');
  w(`Crypto bound (accept() with pre-imported service keys, one thread): ${b.accept_us} µs → ${b.bound_per_core_per_s} enrollments/s/core`);
  w(`  primitives (µs): ${Object.entries(b.primitives_us).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  w(`  4 X25519 + POP verify + GCM + SHA-256 + 2 imports = ${b.primitive_sum_us} µs (${b.primitive_sum_per_s}/s)`);
  if (out.bound_measurements_us) w(`  measured twice (µs): ${out.bound_measurements_us.join(', ')}; the faster is used`);
  const ex = (out.extra_crypto_us ?? {}) as Record<string, number>;
  if (ex.credential_sign_us !== undefined) w(`  outside the bound: the credential signed into every acceptance costs ${ex.credential_sign_us} µs more per enrollment`);
  w('');
  const widths = [11, 7, 9, 8, 8, 8, 7, 7, 9, 7, 8, 8];
  w(row(['run', 'count', 'enroll/s', 'p50 ms', 'p99 ms', 'cpu s', 'cores', 'µs/req', 'RSS pk MB', 'ratio', 'verified', 'gen cores'], widths));
  const line = (name: string, p: Any) =>
    w(row([name, p.count, p.per_s, p.latency_ms.p50, p.latency_ms.p99, p.service_cpu_s, p.cores_used, p.service_cpu_us_per_request, p.service_rss_peak_mb, p.ratio, p.verified, p.loadgen_cores], widths));
  for (const p of Object.values(out.throughput as Any)) line(`C=${p.concurrency}${p.mode === 'per-message' ? '/conn' : ''}`, p);
  const rj = out.rejections as Any;
  line('reject', rj);
  const rpm = out.rejections_per_message as Any;
  if (rpm) line('reject/conn', rpm);
  w(`  rows: C=N, N streams (KIND_ENROLL_STREAM); /conn, one connection per message (KIND_ENROLL)`);
  w(`  rejections: ${rj.per_s}/s = ${rj.x_enrollment_rate}× the C=256 enrollment rate (${rj.x_enrollment_rate_per_core}× per service CPU-second); statuses ${JSON.stringify(rj.statuses)}`);
  if (rpm) w(`  one connection per message: ${rpm.per_s}/s = ${rpm.x_enrollment_rate}× the C=256/conn enrollment rate (${rpm.x_enrollment_rate_per_core}× per service CPU-second)`);
  if (out.scale) {
    const s = out.scale as Any;
    const label = (n: number) => (n >= 1e6 ? `${n / 1e6}M` : n >= 1e3 ? `${n / 1e3}k` : String(n));
    for (const k of ['small', 'large']) {
      const p = s[k];
      line(`${label(p.records_pending)}+${label(p.records_enrolled)}`, p);
    }
    const big = `${label(s.large.records_pending)}+${label(s.large.records_enrolled)}`;
    w(`  scale_ratio ${s.scale_ratio} (C=256 at ${big} records / at ${label(s.small.records_pending)}+${label(s.small.records_enrolled)}); store ${s.large.store_mb} MB at ${big} (${s.large.store_mb_after} MB after the run); service RSS idle ${s.large.service_rss_idle_mb} MB, peak ${s.large.service_rss_peak_mb} MB; start-up ${s.large.service_start_s}s; bulk load ${s.large.bulk_load_s}s`);
  }
  const d = out.durability as Any;
  w(`  durability: ${d.accepted_responses} acceptances sent, ${d.enrolled_in_store_after_stop} enrolled in the store after the service stopped`);
  w('');
  const bu = out.bundles as Any;
  w(`Bundles: ${bu.generated_per_s_one_thread}/s generated in one thread (signBundle + seal); \`enroller bundle fetch --count ${bu.fetch_count}\` ${bu.fetch_wall_s}s (${bu.fetch_per_s}/s, service CPU ${bu.fetch_service_cpu_s}s)`);
  const v2 = out.eka_v2 as Any;
  if (v2) {
    w('');
    w(`EKA v2 (X3DH + ML-KEM-768) beside v1:`);
    w(`  bound per enrollment: v1 ${v2.bound_us.v1} µs, v2 ${v2.bound_us.v2} µs (+${v2.bound_us.v2_minus_v1} µs: ML-KEM-768 decapsulation ${(out.bound_v2 as Any)?.primitives_us?.mlkem768_decapsulate} µs alone)`);
    line('C=256 v2', v2.c256.v2);
    w(`  C=256 (streams): v1 ${v2.c256_per_s.v1}/s, v2 ${v2.c256_per_s.v2}/s: v2/v1 = ${v2.c256_per_s.v2_over_v1}; ratio v1 ${v2.ratio_c256.v1}, v2 ${v2.ratio_c256.v2}; service µs/req v1 ${v2.service_cpu_us_per_request.v1}, v2 ${v2.service_cpu_us_per_request.v2}`);
    w(`  message ${v2.message_bytes.v1} → ${v2.message_bytes.v2} bytes; bundle ${v2.bundle_bytes.v1} → ${v2.bundle_bytes.v2} bytes, text ${v2.bundle_text_chars.v1} → ${v2.bundle_text_chars.v2} characters (Addr ${v2.addr})`);
    w(`  \`enroller bundle fetch --count ${v2.fetch.count}\`: --eka v1 ${v2.fetch.v1_wall_s}s, --eka v2 ${v2.fetch.v2_wall_s}s (service CPU ${v2.fetch.v1_service_cpu_s}s, ${v2.fetch.v2_service_cpu_s}s)`);
  }
  const tk = out.token as Any;
  if (tk) {
    w('');
    w(`Token enrollment (JWT → CSR → certificate over HTTPS, keep-alive):`);
    for (const p of Object.values(tk.phases as Any) as Any[]) w(`  C=${p.concurrency}: ${p.per_s} certificates/s, ${p.service_cpu_us_per_cert} µs service CPU per certificate, p50 ${p.latency_ms.p50} ms, p99 ${p.latency_ms.p99} ms, generator ${p.loadgen_cores} cores`);
    w(`  token_cpu_us ${tk.token_cpu_us}; openssl verified ${tk.openssl_verified} samples; step-ca as recorded in issue 23: C=16 ${tk.stepca_recorded.c16_per_s}/s, ${tk.stepca_recorded.cpu_s_per_1000} CPU-s per 1,000`);
  }
  const pol = out.policy as Any;
  if (pol) {
    w('');
    w(`Policy (CEL, compiled once; subject from a store record per evaluation): ${pol.eval_us_median} µs per evaluation (median of batches, slowest batch ${pol.eval_us_max_batch} µs), compile ${pol.compile_us} µs`);
    w(`  ${pol.expression}`);
  }
  const at = out.attributes as Any;
  if (at) {
    w('');
    w(`Enrollment with attributes (${Object.keys(at.attributes).length} in each credential) vs none, ${at.runs.length / 2} interleaved runs of ${at.n_per_run} at C=${at.concurrency}:`);
    w(`  none ${at.plain.per_s_median}/s, ${at.plain.cpu_us_median} µs CPU each; with ${at.with_attributes.per_s_median}/s, ${at.with_attributes.cpu_us_median} µs; ratio ${at.attributes_throughput_ratio} (CPU ${at.attributes_cpu_ratio})`);
  }
  const st = out.startup as Any;
  w(`CLI start-up (median of ${st.runs}): node -e 0 ${st.node_e0_ms} ms; --version ${st.version_ms} ms (${st.version_x}×); enrollee card ${st.card_ms} ms (${st.card_x}×)`);
  w('');
  w('Targets:');
  for (const [k, t] of Object.entries(out.targets as Any)) {
    w(`  ${k.padEnd(20)} ${String(t.value).padStart(10)}  ${t.target.padEnd(28)} ${t.met === null ? 'not run' : t.met ? 'met' : 'NOT met'}`);
  }
  w(`(bench wall ${out.bench_wall_s}s)`);
}
