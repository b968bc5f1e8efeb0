import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { ServiceHome, STORE_FILE } from '../roles/service/home.js';
import { liveChannels } from '../roles/service/lifecycle.js';
import { join } from 'node:path';
import { DEFAULT_FAIL_RATE_PER_IP, DEFAULT_MAX_FRAME_LEN, DEFAULT_RATE_PER_ENROLLER, DEFAULT_RATE_PER_IP, MIN_MAX_FRAME_LEN, parseRate } from '../roles/service/limits.js';
import type { RunningHttpsServer } from '../roles/service/https.js';
import { HTTPS_ADDRESS_CHECKS, INIT_FORCE_DESTROYS, type HttpsAddressCheck } from '../roles/service/https-announce.js';
import { LOG_LEVELS, makeDecisionLog, type DecisionLog, type LogLevel } from '../roles/service/log.js';
import type { ServiceMetrics } from '../ops/metrics.js';
import { startMetricsListener, type MetricsListener } from '../ops/listener.js';
import { markRunning } from '../ops/running.js';
import { hostname } from 'node:os';
import type { PgDatabase } from '../store/pg/database.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_MS, startServiceServer } from '../roles/service/server.js';
import { hostPort, parseListenAddress } from '../transport/address.js';
import type { Replica } from '../replicas/replica.js';
import { action, leaf } from './command.js';
import { defaultWorkers, EnrollPool, MAX_WORKERS } from '../pool/pool.js';
import { parseCount, parseDuration, passphraseSource, storeOption } from './options.js';
import { auditedLog, auditStorePath, registerAuditSink, AuditSink } from '../audit/index.js';
import { CREDENTIAL_MAX_TTL } from '../protocol/credential.js';
import { CredentialSigner, credentialTtl } from '../roles/service/credentials.js';
import { commandHook, DEFAULT_HOOK_TIMEOUT_MS, hookEnvironment, MAX_HOOK_TIMEOUT_S, parseEnvNames, setEnrollLifecycle, type EnrollLifecycle } from '../roles/service/hooks.js';

/** Where `--workers` defaults from when set (tests and benchmarks run whole suites at one size). */
export const WORKERS_ENV = 'OCKAM_ENROLL_WORKERS';

/** --workers, else OCKAM_ENROLL_WORKERS, else one per available core. */
function workersOption(flag: string | undefined): number {
  if (flag !== undefined) return parseCount(flag, '--workers', 0, MAX_WORKERS);
  const env = process.env[WORKERS_ENV];
  if (env !== undefined && env !== '') return parseCount(env, WORKERS_ENV, 0, MAX_WORKERS);
  return defaultWorkers();
}
/** How long a stop waits for requests in flight (--drain-timeout). */
const DEFAULT_DRAIN_S = 10;
/** A repeat of the first stop signal sooner than this is its echo (see onSignal). */
const SIGNAL_ECHO_MS = 500;

/** --on-enroll, --on-enroll-timeout and --credential-ttl, checked before anything starts. */
function lifecycleOptions(opts: Record<string, unknown>): EnrollLifecycle {
  const command = opts.onEnroll as string | undefined;
  if (command !== undefined && command.trim() === '') throw new EnrollError('ERR_USAGE', '--on-enroll needs a command');
  if (command === undefined && opts.onEnrollTimeout !== undefined) throw new EnrollError('ERR_USAGE', '--on-enroll-timeout applies only with --on-enroll');
  if (command === undefined && opts.hookEnv !== undefined) throw new EnrollError('ERR_USAGE', '--hook-env applies only with --on-enroll');
  const timeoutMs =
    opts.onEnrollTimeout === undefined ? DEFAULT_HOOK_TIMEOUT_MS : 1000 * parseDuration(opts.onEnrollTimeout as string, '--on-enroll-timeout', 1, MAX_HOOK_TIMEOUT_S);
  return {
    ...(command !== undefined ? { onEnroll: commandHook(command, { timeoutMs, env: hookEnvironment(process.env, opts.passphraseEnv as string | undefined, parseEnvNames((opts.hookEnv as string[] | undefined) ?? [], '--hook-env')) }) } : {}),
    ...(opts.credentialTtl !== undefined ? { credentialTtl: parseDuration(opts.credentialTtl as string, '--credential-ttl', 1, CREDENTIAL_MAX_TTL) } : {}),
  };
}

/**
 * A PostgreSQL store that becomes unreachable is logged once (`store-unreachable`), and once
 * when it is back (`store-reachable`); meanwhile every request is answered UNAVAILABLE (503
 * over HTTPS), and the per-request `error` lines of that same cause are left out.
 */
function storeHealthLog(inner: DecisionLog, db: PgDatabase): DecisionLog {
  db.onHealth((e) => {
    if (e.state === 'down') inner('store-unreachable', { store: db.location.masked, reason: `ERR_STORE: ${e.reason}; answering UNAVAILABLE until it is back` });
    else inner('store-reachable', { store: db.location.masked });
  });
  return (decision, fields) => {
    if (decision === 'error' && db.down && typeof fields.reason === 'string' && fields.reason.includes('ERR_STORE')) return;
    inner(decision, fields);
  };
}

export function register(service: Command): void {
  leaf(service, 'start', 'run the enrollment service until SIGINT or SIGTERM, logging one line per decision on stderr (with --json: JSON lines on stderr, each with time, level and decision; stdout stays empty)', 'ockam-enroll service start --listen 0.0.0.0:4100')
    .option('--log-level <level>', `write decisions of this level and above: ${LOG_LEVELS.join(', ')} (default: info)`)
    .option('--listen <HOST:PORT>', 'where to listen (default: the listen setting from init)')
    .option('--max-connections <n>', `most simultaneous connections (default: ${DEFAULT_MAX_CONNECTIONS})`)
    .option('--read-timeout <duration>', `per-read timeout against slow peers (default: ${DEFAULT_READ_TIMEOUT_MS / 1000}s)`)
    .option('--max-frame <bytes>', `largest frame read or written, ${MIN_MAX_FRAME_LEN}..65535 (default: ${DEFAULT_MAX_FRAME_LEN})`)
    .option('--rate-per-ip <rate>', `enrollment messages and Noise connections per source IP (IPv6: per /64), as N/s, N/m or N/h, or off (default: ${DEFAULT_RATE_PER_IP})`)
    .option('--rate-per-enroller <rate>', `requests per enroller key, as N/s, N/m or N/h, or off (default: ${DEFAULT_RATE_PER_ENROLLER})`)
    .option('--fail-rate-per-ip <rate>', `enrollment messages that fail to decrypt, per source IP (IPv6: per /64), as N/s, N/m or N/h, or off (default: ${DEFAULT_FAIL_RATE_PER_IP})`)
    .option('--https-listen <HOST:PORT>', 'where to serve token enrollment over HTTPS (default: the httpsListen setting from init); tokens name this port unless init chose --https-address')
    .option('--https-rate-per-ip <rate>', 'HTTPS requests per source IP (IPv6: per /64), as N/s, N/m or N/h, or off; one over it gets 429 (default: 100/s)')
    .option('--https-max-connections-per-ip <n>', 'open HTTPS connections per source IP (IPv6: per /64); the next is closed on arrival (default: 32)')
    .option('--https-handshake-timeout <duration>', 'cut an HTTPS connection whose TLS handshake has not finished after this long, 1s..60s (default: 5s)')
    .option('--revocations-validity <duration>', 'how long the revocation list served at /revocations stays fresh for verifiers, 1s..30d (default: 1h; docs/protocol.md §4.7)')
    .option('--https-address-check <mode>', 'when the --https-address set at init is a loopback address that does not reach this service yet: refuse (exit 2), warn and check again until it does, or off (default: refuse on SQLite, warn on PostgreSQL, whose replicas and balancer start in any order)')
    .option('--metrics-listen <HOST:PORT>', 'serve /healthz, /readyz and /metrics (Prometheus) over plain HTTP on this address of its own (default: off; docs/operations.md)')
    .option('--peer-listen <HOST:PORT>', 'PostgreSQL replicas: listen here for replica links from the other replicas of this service (Noise XX, IK_A on both sides), so that their inlets reach the device outlets whose sessions are on this replica (default: off; docs/portals.md)')
    .option('--peer-address <HOST:PORT>', 'the address the other replicas dial for --peer-listen, when it is not the listen address itself (default: the --peer-listen address)')
    .option('--drain-timeout <duration>', `on SIGTERM or SIGINT, how long requests in flight get to finish before the rest are cut, 0s..300s (default: ${DEFAULT_DRAIN_S}s); a second signal exits at once`)
    .option('--on-enroll <command>', 'run COMMAND (through the shell) before each enrollment is committed, with the request as JSON on stdin: exit 0 allows, anything else refuses')
    .option('--hook-env <NAME,…>', 'pass these environment variables to the --on-enroll hook too (it gets only PATH, HOME, LANG, LC_*, TZ otherwise); repeatable', (v: string, prev: string[] | undefined) => [...(prev ?? []), v])
    .option('--on-enroll-timeout <duration>', `refuse (and kill the hook) after this long, 1s..${MAX_HOOK_TIMEOUT_S}s (default: ${DEFAULT_HOOK_TIMEOUT_MS / 1000}s)`)
    .option('--workers <n>', `threads that decrypt and check enrollment messages, sign credentials and seal answers, and check tokens and CSRs and sign certificates, 0..${MAX_WORKERS} (0: on the main thread; default: one per available core, or ${WORKERS_ENV})`)
    .option('--credential-ttl <duration>', 'how long the credential issued with each acceptance stays valid (default: the credentialTtl setting, 24h: a revoked device\'s credential verifies offline at most this long)')
    .action(
      action(async ({ out, home, opts }) => {
        const httpsListenFlag = opts.httpsListen === undefined ? undefined : parseListenAddress(opts.httpsListen as string);
        const addressCheck = opts.httpsAddressCheck as HttpsAddressCheck | undefined;
        if (addressCheck !== undefined && !HTTPS_ADDRESS_CHECKS.includes(addressCheck)) {
          throw new EnrollError('ERR_USAGE', `--https-address-check must be one of ${HTTPS_ADDRESS_CHECKS.join(', ')}, not ${JSON.stringify(String(addressCheck).slice(0, 40))}`);
        }
        // Flags first: a typo must not cost a passphrase prompt.
        const limits = {
          ...(opts.maxFrame ? { maxFrameLen: parseCount(opts.maxFrame as string, '--max-frame', MIN_MAX_FRAME_LEN, 65535) } : {}),
          ...(opts.ratePerIp ? { ratePerIp: parseRate(opts.ratePerIp as string, '--rate-per-ip') } : {}),
          ...(opts.ratePerEnroller ? { ratePerEnroller: parseRate(opts.ratePerEnroller as string, '--rate-per-enroller') } : {}),
          ...(opts.failRatePerIp ? { failRatePerIp: parseRate(opts.failRatePerIp as string, '--fail-rate-per-ip') } : {}),
          ...(opts.maxConnections ? { maxConnections: parseCount(opts.maxConnections as string, '--max-connections', 1, 1_000_000) } : {}),
          ...(opts.readTimeout ? { readTimeoutMs: 1000 * parseDuration(opts.readTimeout as string, '--read-timeout', 1, 3600) } : {}),
        };
        // The HTTPS listener's own limits (issue #18 findings 5 and 6; roles/service/https.ts).
        const httpsLimits = {
          ...(opts.httpsRatePerIp ? { ratePerIp: parseRate(opts.httpsRatePerIp as string, '--https-rate-per-ip') } : {}),
          ...(opts.httpsMaxConnectionsPerIp ? { maxConnectionsPerIp: parseCount(opts.httpsMaxConnectionsPerIp as string, '--https-max-connections-per-ip', 1, 1_000_000) } : {}),
          ...(opts.revocationsValidity ? { revocationsValidity: parseDuration(opts.revocationsValidity as string, '--revocations-validity', 1, 30 * 86400) } : {}),
          ...(opts.httpsHandshakeTimeout ? { handshakeTimeoutMs: 1000 * parseDuration(opts.httpsHandshakeTimeout as string, '--https-handshake-timeout', 1, 60) } : {}),
        };
        const logLevel = (opts.logLevel as LogLevel | undefined) ?? 'info';
        if (!LOG_LEVELS.includes(logLevel)) throw new EnrollError('ERR_USAGE', `--log-level must be one of ${LOG_LEVELS.join(', ')}, not ${JSON.stringify(String(logLevel).slice(0, 40))}`);
        const drainMs = 1000 * (opts.drainTimeout === undefined ? DEFAULT_DRAIN_S : parseDuration(opts.drainTimeout as string, '--drain-timeout', 0, 300));
        const metricsAt = opts.metricsListen === undefined ? undefined : parseListenAddress(opts.metricsListen as string);
        const peerAt = opts.peerListen === undefined ? undefined : parseListenAddress(opts.peerListen as string);
        const peerAddress = opts.peerAddress === undefined ? undefined : hostPort(parseListenAddress(opts.peerAddress as string).host, parseListenAddress(opts.peerAddress as string).port);
        if (peerAddress !== undefined && peerAt === undefined) throw new EnrollError('ERR_USAGE', '--peer-address needs --peer-listen', { hint: 'give --peer-listen HOST:PORT too' });
        const workers = workersOption(opts.workers as string | undefined);
        // Lifecycle (docs/walkthrough.md "Lifecycle: audit, hooks, credentials"): the hook, the credentials' lifetime.
        const lifecycle = lifecycleOptions(opts);
        // Signals are caught from the start: a SIGTERM while the listeners start up (a
        // supervisor stopping a service it just started) still ends in a clean stop.
        let stopSignal: string | undefined;
        let wake: (() => void) | undefined;
        // A second signal while draining exits at once: nothing acknowledged is lost, since an
        // acceptance is sent only once its commit is durable (what is cut was never answered).
        // The first signal is re-raised once by a dependency (when-exit, under conf, kills the
        // process again with the same signal after its own cleanup): a repeat within
        // SIGNAL_ECHO_MS of the first is that echo, not the operator's second signal.
        let firstAt = 0;
        const onSignal = (sig: 'SIGINT' | 'SIGTERM') => {
          if (stopSignal !== undefined) {
            if (sig === stopSignal && performance.now() - firstAt < SIGNAL_ECHO_MS) return;
            process.stderr.write(`ockam-enroll: ${sig} again: exiting without waiting for requests in flight\n`);
            process.exit(sig === 'SIGINT' ? 130 : 143);
          }
          stopSignal = sig;
          firstAt = performance.now();
          wake?.();
        };
        const onInt = () => onSignal('SIGINT');
        const onTerm = () => onSignal('SIGTERM');
        process.on('SIGINT', onInt);
        process.on('SIGTERM', onTerm);
        try {
          // A PostgreSQL store's connections carry this name: `service status` lists the replicas by it.
          const svc = await ServiceHome.open(home, { passphrase: passphraseSource(opts), ...storeOption(opts), applicationName: `ockam-enroll start ${hostname()} ${process.pid}` });
          // One process per SQLite home: `service restore` refuses while this one runs, from
          // the moment its store is open (src/ops/running.ts; removed at exit whatever happens).
          const unmark = svc.pg ? () => undefined : markRunning(svc.keystore.dir);
          const listen = parseListenAddress((opts.listen as string | undefined) ?? svc.settings.listen);
          setEnrollLifecycle(svc, lifecycle);
          try {
            credentialTtl(svc); // a bad credentialTtl setting fails here, not at the first enrollment
          } catch (err) {
            await svc.close();
            throw err;
          }
          // Every decision is also appended to the audit log, by a thread of its own (src/audit).
          // With --metrics-listen every decision line is also counted (src/ops/metrics.ts); without
          // it nothing could read the counts, so none are kept and prom-client is not loaded.
          const metrics: ServiceMetrics | undefined = metricsAt ? new (await import('../ops/metrics.js')).ServiceMetrics() : undefined;
          const decisionLog = svc.pg ? storeHealthLog(makeDecisionLog({ json: out.json, level: logLevel }), svc.pg) : makeDecisionLog({ json: out.json, level: logLevel });
          const plainLog = metrics ? metrics.tap(decisionLog) : decisionLog;
          const onAuditError = (reason: string) => plainLog('error', { reason: `audit: ${reason}` });
          // PostgreSQL: appends are network round trips, batched on this thread (audit/pg-sink.ts).
          const sink = svc.pg
            ? (await import('../audit/pg-sink.js')).PgAuditSink.start(svc.pg, onAuditError)
            : AuditSink.start(auditStorePath(svc), onAuditError);
          const log = auditedLog(plainLog, sink);
          registerAuditSink(svc, sink);
          // Credentials are signed on a thread of their own, off the one that runs accept().
          const signer = CredentialSigner.start(svc, (reason) => plainLog('error', { reason: `credentials: ${reason}` }));
          // The per-message work of enrollments on a pool of threads, one per core (src/pool).
          const pool = workers === 0 ? undefined : EnrollPool.start(svc, { workers, onError: (reason) => plainLog('error', { reason: `pool: ${reason}` }) });
          await pool?.ready();
          setEnrollLifecycle(svc, { ...lifecycle, signer, ...(pool ? { pool } : {}) });
          const closeAudit = async () => {
            log.stop();
            log.flush();
            await sink.close();
            await signer.close();
            await pool?.close();
          };
          let server;
          try {
            server = await startServiceServer(svc, {
              host: listen.host,
              port: listen.port,
              log,
              ...(metrics ? { metrics } : {}),
              ...limits,
            });
          } catch (err) {
            await closeAudit();
            await svc.close();
            if (err instanceof EnrollError) throw err;
            throw new EnrollError('ERR_UNREACHABLE', `cannot listen on ${listen.host}:${listen.port}: ${(err as Error).message}`, {
              hint: 'is another service already running there? choose another --listen',
            });
          }
          // PostgreSQL: this process is one replica; it records its heartbeat and its device
          // outlets, and with --peer-listen serves replica links (src/replicas/replica.ts).
          let replica: Replica | undefined;
          if (svc.pg) {
            const { Replica } = await import('../replicas/replica.js');
            const { serveForwardedStream, setReplica } = await import('../portal/device-relay.js');
            replica = new Replica(svc, log, {
              ...(peerAt ? { listen: peerAt } : {}),
              ...(peerAddress ? { advertise: peerAddress } : {}),
              onStream: (link, id, from) => serveForwardedStream(svc, link, id, from, log),
            });
            try {
              await replica.start();
            } catch (err) {
              await replica.close();
              await server.close();
              await closeAudit();
              await svc.close();
              if (err instanceof EnrollError) throw err;
              throw new EnrollError('ERR_UNREACHABLE', `cannot listen on ${peerAt!.host}:${peerAt!.port} for replica links: ${(err as Error).message}`, { hint: 'choose another --peer-listen' });
            }
            setReplica(replica);
          } else if (peerAt) {
            await server.close();
            await closeAudit();
            await svc.close();
            throw new EnrollError('ERR_USAGE', '--peer-listen is for replicas, which share a PostgreSQL store; this service\'s store is SQLite', { hint: 'drop --peer-listen: one service on SQLite relays its device outlets itself' });
          }
          // Token enrollment's HTTPS listener, beside the TCP one (docs/token-enrollment.md).
          let https: RunningHttpsServer | undefined;
          const pki = await svc.pki();
          if (pki) {
            const at = httpsListenFlag ?? parseListenAddress(svc.settings.httpsListen);
            try {
              const { startHttpsServer } = await import('../roles/service/https.js');
              https = await startHttpsServer(svc, pki, { host: at.host, port: at.port, log, ...httpsLimits, ...(addressCheck ? { addressCheck } : {}), ...(pool ? { pool } : {}) });
              if (https.announced.warning) out.warn(https.announced.warning);
            } catch (err) {
              // Only the operator's own choice of HTTPS address is worth failing for; the default
              // one may simply be taken by another service on this host.
              if (httpsListenFlag || svc.settings.httpsRequired || !(err instanceof EnrollError) || err.code !== 'ERR_LISTEN') {
                await replica?.close();
                await server.close();
                await closeAudit();
                await svc.close();
                throw err;
              }
              out.warn(`token enrollment is off: ${err.message}; choose a port with --https-listen, or set one with \`service init --https-address\``);
            }
          } else {
            out.warn(`this service has no CA, so token enrollment is off; \`service init --force\` makes one, but ${INIT_FORCE_DESTROYS}`);
          }
          // The operator's listener for the balancer and Prometheus (src/ops/listener.ts).
          let stopping = false;
          let metricsListener: MetricsListener | undefined;
          let closeStock = async (): Promise<void> => undefined;
          if (metricsAt && metrics) {
            const running = server;
            const pg = svc.pg;
            // Bundles are counted on a read-only connection of their own (SQLite), or the pool.
            const { bundleStock, pgSource, sqliteSource } = await import('../ops/status.js');
            const stockSource = pg ? pgSource(pg, { keepOpen: true }) : sqliteSource(join(svc.keystore.dir, STORE_FILE));
            closeStock = () => stockSource.close();
            metrics.setSources({
              enrollees: () => svc.store.counts(),
              bundles: () => bundleStock(stockSource, Math.floor(Date.now() / 1000)),
              channels: () => liveChannels(svc),
              connections: () => running.connections,
              ...(pg ? { pgPool: () => ({ total: pg.pool.totalCount, idle: pg.pool.idleCount, waiting: pg.pool.waitingCount }) } : {}),
            });
            try {
              metricsListener = await startMetricsListener({
                host: metricsAt.host,
                port: metricsAt.port,
                metrics,
                readiness: {
                  // A real read of the store, on the path every enrollment takes (check 4's SPK).
                  query: async () => {
                    if (!(await svc.store.currentSignedPrekey())) throw new EnrollError('ERR_STORE', 'the store holds no signed prekey');
                  },
                  keysLoaded: () => svc.ikA !== undefined,
                  notReady: () => (stopping ? 'the service is stopping' : undefined),
                },
              });
            } catch (err) {
              await closeStock();
              await https?.close();
              await replica?.close();
              await server.close();
              await closeAudit();
              await svc.close();
              throw err;
            }
            const a = metricsListener.address();
            log('metrics-listening', { address: `${a.host}:${a.port}` });
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            if (stopSignal !== undefined) resolve();
          });
          stopping = true;
          log('stopped', { signal: stopSignal });
          await metricsListener?.close();
          await closeStock();
          // The other replicas stop finding this one's device outlets at once (not after STALE_S).
          await replica?.close();
          // Both listeners drain at once, within the one --drain-timeout.
          await Promise.all([https?.drain(drainMs), server.drain(drainMs)]);
          await closeAudit();
          await svc.close();
          unmark();
        } finally {
          process.off('SIGINT', onInt);
          process.off('SIGTERM', onTerm);
        }
      }),
    );
}
