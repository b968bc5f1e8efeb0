/**
 * PostgreSQL for the tests: scripts/test.mjs starts a throwaway cluster (scripts/pg-cluster.mjs)
 * and passes its superuser URL as OCKAM_ENROLL_TEST_PG. Each test file makes databases of its
 * own on it (freshDatabase), so files running at once never share rows. A test that needs
 * to stop and start PostgreSQL starts a private cluster (privateCluster), never the shared one.
 *
 * Without a cluster these helpers throw, with the reason: the PostgreSQL tests fail, they are
 * never skipped.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestCluster {
  url: string;
  port: number;
  dir: string;
  stop(): void;
  restart(pauseMs?: number): void;
  pgCtl(action: string, extra?: string[]): string;
}

/** The shared cluster's superuser URL. */
export function pgAdminUrl(): string {
  const url = process.env.OCKAM_ENROLL_TEST_PG;
  if (url) return url;
  const why = process.env.OCKAM_ENROLL_TEST_PG_ERROR;
  throw new Error(
    why
      ? `the PostgreSQL tests cannot run: ${why}`
      : 'the PostgreSQL tests need a cluster: run them with `npm test` or `node scripts/test.mjs <filter>`, which start one (PostgreSQL\'s server binaries must be installed: `apt-get install -y postgresql`), or set OCKAM_ENROLL_TEST_PG to a superuser URL',
  );
}

/** Creates an empty database on `adminUrl` (default: the shared cluster); returns its URL. */
export async function freshDatabase(adminUrl = pgAdminUrl()): Promise<string> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const c = new pg.Client({ connectionString: adminUrl });
  await c.connect();
  try {
    await c.query(`CREATE DATABASE ${name}`);
  } finally {
    await c.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

/** Runs one query on `url` with a connection of its own. */
export async function pgQuery(url: string, sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(sql, params)).rows as Record<string, unknown>[];
  } finally {
    await c.end();
  }
}

/**
 * A cluster of this test's own (to restart under load); stop() it in an after hook. It is
 * also stopped if the test process is interrupted (the runner sends SIGTERM or SIGINT on
 * Ctrl-C, and after hooks do not run then), so no server outlives the test.
 */
export async function privateCluster(opts: { conf?: string[]; files?: Record<string, string>; hba?: string[] } = {}): Promise<TestCluster> {
  pgAdminUrl(); // the same clear failure when PostgreSQL is not available
  const mod = (await import(new URL('../../../scripts/pg-cluster.mjs', import.meta.url).href)) as { startCluster(o: typeof opts): Promise<TestCluster> };
  const cluster = await mod.startCluster(opts);
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, onSignal);
    process.off('exit', stop);
    cluster.stop();
  };
  const onSignal = () => {
    stop();
    process.exit(130);
  };
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
  process.on('exit', stop);
  return { ...cluster, stop };
}
