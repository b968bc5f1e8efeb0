// A throwaway PostgreSQL cluster for the tests (scripts/test.mjs) and the benchmark: initdb
// in a temporary directory, listening on 127.0.0.1 only, on a free port, with fsync and
// synchronous_commit on (the tests check durability). initdb refuses to run as root, so as
// root (CI) the cluster belongs to the `postgres` user and every command runs through
// `runuser -u postgres --`.
import { execFileSync, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const INSTALL_HINT = 'install PostgreSQL (Debian/Ubuntu: `apt-get update && apt-get install -y postgresql`), or set PG_BINDIR to the directory holding initdb and pg_ctl';

/** The directory of initdb and pg_ctl: $PG_BINDIR, `pg_config --bindir`, or the newest /usr/lib/postgresql/N/bin. */
export function pgBindir() {
  const candidates = [];
  if (process.env.PG_BINDIR) candidates.push(process.env.PG_BINDIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
  } catch {
    // no pg_config on PATH
  }
  if (existsSync('/usr/lib/postgresql')) {
    const versions = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  }
  const found = candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (!found) throw new Error(`cannot find PostgreSQL's initdb and pg_ctl (looked in ${candidates.join(', ') || 'no candidate directory'}); ${INSTALL_HINT}`);
  return found;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function runAs(user, bin, args) {
  const argv = user ? ['runuser', ['-u', user, '--', bin, ...args]] : [bin, args];
  const r = spawnSync(argv[0], argv[1], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) {
    throw new Error(`${[bin, ...args].join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr || r.stdout || '').trim().slice(-2000)}`);
  }
  return r.stdout;
}

/**
 * Starts a cluster; returns { url, port, dir, stop(), restart(), pgCtl(action) }. `url` is a
 * superuser URL (trust authentication on 127.0.0.1) for the `postgres` database.
 */
export async function startCluster(opts = {}) {
  const bindir = pgBindir();
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? 'postgres' : undefined;
  const dir = mkdtempSync(join(opts.parent ?? tmpdir(), 'ockam-enroll-pg-'));
  if (asRoot) {
    let uid;
    let gid;
    try {
      uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
      gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    } catch {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`running as root, and there is no "postgres" user to own the test cluster (initdb refuses root); ${INSTALL_HINT}`);
    }
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const port = opts.port ?? (await freePort());
  const pgCtl = (action, extra = []) => runAs(user, join(bindir, 'pg_ctl'), ['-D', data, '-l', log, '-w', '-t', '60', ...extra, action]);
  const stop = () => {
    try {
      if (existsSync(join(data, 'postmaster.pid'))) pgCtl('stop', ['-m', 'fast']);
    } catch {
      try {
        pgCtl('stop', ['-m', 'immediate']);
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // --no-sync: initdb's own files only; the server below runs with fsync on.
    runAs(user, join(bindir, 'initdb'), ['-D', data, '-U', 'ockam', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    const conf = [
      `listen_addresses='127.0.0.1'`,
      `port=${port}`,
      `unix_socket_directories='${dir}'`,
      'max_connections=300',
      'fsync=on',
      'synchronous_commit=on',
      'shared_buffers=128MB',
      // The benchmark's SQLite row syncs with fdatasync; so does PostgreSQL's WAL (its Linux default).
      'wal_sync_method=fdatasync',
    ];
    // In postgresql.conf (not -o), so that restart() starts the same server.
    appendFileSync(join(data, 'postgresql.conf'), `\n# ockam-enroll test cluster\n${[...conf, ...(opts.conf ?? [])].join('\n')}\n`);
    // opts.files: extra files in the data directory (a test server certificate and key), owned
    // by the server's user, 0600; opts.hba: pg_hba.conf lines that replace the default ones.
    for (const [name, content] of Object.entries(opts.files ?? {})) {
      writeFileSync(join(data, name), content, { mode: 0o600 });
      if (asRoot) chownSync(join(data, name), Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()), Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()));
    }
    if (opts.hba) writeFileSync(join(data, 'pg_hba.conf'), `${opts.hba.join('\n')}\n`);
    pgCtl('start');
  } catch (err) {
    let tail = '';
    try {
      tail = readFileSync(log, 'utf8').slice(-2000);
    } catch {
      // no log yet
    }
    stop();
    throw new Error(`cannot start a PostgreSQL cluster for the tests: ${err.message}${tail ? `\nserver log:\n${tail}` : ''}`);
  }
  return {
    url: `postgres://ockam@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    /** Stops the server (fast: connections are cut) and starts it again on the same port. */
    restart(pauseMs = 0) {
      pgCtl('stop', ['-m', 'fast']);
      if (pauseMs > 0) spawnSync('sleep', [String(pauseMs / 1000)]);
      pgCtl('start');
    },
    pgCtl,
  };
}
