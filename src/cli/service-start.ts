import type { Command } from 'commander';
import { EnrollError } from '../errors.js';
import { ServiceHome } from '../roles/service/home.js';
import { makeDecisionLog } from '../roles/service/log.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT_MS, startServiceServer } from '../roles/service/server.js';
import { parseListenAddress } from '../transport/address.js';
import { action, leaf } from './command.js';
import { parseCount, parseDuration, passphraseSource } from './options.js';

export function register(service: Command): void {
  leaf(service, 'start', 'run the enrollment service until SIGINT or SIGTERM, logging one line per decision on stderr', 'ockam-enroll service start --listen 0.0.0.0:4100')
    .option('--listen <HOST:PORT>', 'where to listen (default: the listen setting from init)')
    .option('--max-connections <n>', `most simultaneous connections (default ${DEFAULT_MAX_CONNECTIONS})`)
    .option('--read-timeout <duration>', `per-read timeout against slow peers (default ${DEFAULT_READ_TIMEOUT_MS / 1000}s)`)
    .action(
      action(async ({ out, home, opts }) => {
        const svc = await ServiceHome.open(home, { passphrase: passphraseSource(opts) });
        const listen = parseListenAddress((opts.listen as string | undefined) ?? svc.settings.listen);
        const log = makeDecisionLog({ json: out.json });
        let server;
        try {
          server = await startServiceServer(svc, {
            host: listen.host,
            port: listen.port,
            log,
            ...(opts.maxConnections ? { maxConnections: parseCount(opts.maxConnections as string, '--max-connections', 1, 1_000_000) } : {}),
            ...(opts.readTimeout ? { readTimeoutMs: 1000 * parseDuration(opts.readTimeout as string, '--read-timeout', 1, 3600) } : {}),
          });
        } catch (err) {
          await svc.close();
          if (err instanceof EnrollError) throw err;
          throw new EnrollError('ERR_UNREACHABLE', `cannot listen on ${listen.host}:${listen.port}: ${(err as Error).message}`, {
            hint: 'is another service already running there? choose another --listen',
          });
        }
        await new Promise<void>((resolve) => {
          const stop = (signal: string) => {
            process.off('SIGINT', onInt);
            process.off('SIGTERM', onTerm);
            log('stopped', { signal });
            resolve();
          };
          const onInt = () => stop('SIGINT');
          const onTerm = () => stop('SIGTERM');
          process.on('SIGINT', onInt);
          process.on('SIGTERM', onTerm);
        });
        await server.close();
        await svc.close();
      }),
    );
}
