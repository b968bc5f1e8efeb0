/**
 * The HTTPS address put in tokens (`iss`, docs/token-enrollment.md §2) must lead a device to
 * this service's HTTPS listener: a token naming another port sends the device to whatever
 * answers there. Once the listener is bound, `service start` settles the address:
 *
 * - not chosen at init (the default https://127.0.0.1:4443): it follows the listener's
 *   port (`--https-listen`, port 0 included), on the host the certificate names, or on
 *   the listener's own host when the certificate names that one too (::1, localhost);
 * - chosen with `service init --https-address` and on a loopback host: only processes of
 *   this host can use it, so a TLS connection from here sees what a device would. It must
 *   reach this listener, or a process presenting this service's certificate (another
 *   `service start` on the same home, a local TLS proxy); otherwise the start is refused;
 * - chosen, on another host: a load balancer or port forward may stand in front, which
 *   cannot be checked from here, so a differing listener is a warning, not a refusal.
 *
 * The announced address is not written back to settings.json: it is what this run serves.
 */
import { connect } from 'node:tls';
import { isIP } from 'node:net';
import { EnrollError } from '../../errors.js';
import { hostPort } from '../../transport/address.js';
import { httpsReach, parseHttpsAddress, type BoundAddress } from '../../transport/https-address.js';
// constants.ts, not ca.ts: home.ts imports this file, and must not load the X.509 library.
import { SERVER_CERT_LOOPBACK_HOSTS } from '../../x509/constants.js';
import type { ServiceHome } from './home.js';
import type { ServicePki } from './pki.js';

/**
 * What `service init --force` destroys, said beside every hint that names it: the command
 * makes a new IK_A, CA and HTTPS key (and an empty store), so every bundle, token, enrolled
 * device and credential of the old identity stops working.
 */
export const INIT_FORCE_DESTROYS = 'this destroys the service identity: it makes a new IK_A, CA and store, so every device enrolled with this service must enroll again';

/**
 * `--https-address-check` (docs/walkthrough.md "Running several replicas"): what `service start` does when
 * the address chosen at init is a loopback one that does not reach this service yet.
 * - refuse: the start fails (exit 2), the default on a SQLite store, where one process serves;
 * - warn: a warning, and the address is checked again in the background until it serves
 *   (`https-address-served` in the log), the default on a PostgreSQL store, whose replicas
 *   and balancer start in any order;
 * - off: not checked (a balancer that only forwards once health checks pass).
 */
export type HttpsAddressCheck = 'refuse' | 'warn' | 'off';
export const HTTPS_ADDRESS_CHECKS: readonly HttpsAddressCheck[] = ['refuse', 'warn', 'off'];
/** How often `warn` checks the address again until it serves. */
export const HTTPS_RECHECK_MS = 2000;

/** How long the loopback check waits for a TLS handshake. */
export const HTTPS_PROBE_TIMEOUT_MS = 5000;

export interface SettledHttpsAddress {
  /** The address tokens now carry (svc.settings.httpsAddress). */
  url: string;
  /** True when it followed the listener's port. */
  followed: boolean;
  /** For the operator's stderr: the address may not reach the listener. */
  warning?: string;
  /** --https-address-check warn found the address not serving yet: check it again until it does. */
  recheck?: boolean;
}

export type ProbeResult = 'ours' | 'other' | 'refused' | 'silent';

/**
 * Opens a TLS connection to host:port and compares the certificate presented with ours.
 * Nothing is sent but the ClientHello; the certificate is not verified, only compared.
 */
export function probeHttps(host: string, port: number, ourCertDer: Uint8Array, timeoutMs = HTTPS_PROBE_TIMEOUT_MS): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) });
    let settled = false;
    const done = (r: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => done('silent'), timeoutMs);
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate()?.raw;
      done(raw !== undefined && Buffer.from(ourCertDer).equals(raw) ? 'ours' : 'other');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'other'));
  });
}

const PROBE_WORDS: Record<Exclude<ProbeResult, 'ours'>, string> = {
  refused: 'nothing listens there',
  other: 'another server answers there (not with this service\'s certificate)',
  silent: `nothing completed a TLS handshake there within ${HTTPS_PROBE_TIMEOUT_MS / 1000} s`,
};

/**
 * Decides the address tokens carry for a listener bound at `bound` (file comment); sets
 * svc.settings.httpsAddress when it follows the listener, throws ERR_ADDRESS when a device
 * following a token could certainly not reach this service.
 */
export async function settleHttpsAddress(
  svc: ServiceHome,
  pki: ServicePki,
  bound: BoundAddress,
  opts: { probeTimeoutMs?: number; check?: HttpsAddressCheck } = {},
): Promise<SettledHttpsAddress> {
  const announced = svc.settings.httpsAddress;
  const a = parseHttpsAddress(announced);
  const listening = hostPort(bound.host, bound.port);
  const reach = httpsReach(announced, svc.settings.httpsRequired, bound, SERVER_CERT_LOOPBACK_HOSTS);
  switch (reach.kind) {
    case 'serves':
      return { url: announced, followed: false };
    case 'follow':
      svc.settings.httpsAddress = reach.url;
      // Replicas on one PostgreSQL store would each follow their own listener, and a token
      // names (iss) the one replica that made it: the others would refuse it.
      return svc.pg
        ? {
            url: reach.url,
            followed: true,
            warning: `tokens name this replica's own HTTPS address ${reach.url}, and the other replicas of this store refuse them: give the fleet one address with \`service init --https-address https://BALANCER:PORT\``,
          }
        : { url: reach.url, followed: true };
    case 'cannot-follow':
      throw new EnrollError('ERR_ADDRESS', `token enrollment cannot name the HTTPS listener on ${listening}: the service's HTTPS certificate is for ${a.host} (and the loopback names)`, {
        hint: `listen on ${a.host} or on all interfaces (--https-listen ${hostPort(a.host, bound.port)}); \`service init --force --https-address https://HOST:PORT\` would also do, but ${INIT_FORCE_DESTROYS}`,
      });
    case 'probe': {
      const check = opts.check ?? (svc.pg ? 'warn' : 'refuse');
      if (check === 'off') return { url: announced, followed: false };
      const seen = await probeHttps(a.host, a.port, pki.httpsDer, opts.probeTimeoutMs);
      if (seen === 'ours') return { url: announced, followed: false };
      if (check === 'warn') {
        // Replicas and their balancer start in any order: the address may be served in a moment.
        return {
          url: announced,
          followed: false,
          recheck: true,
          warning: `tokens send devices to ${announced} (the --https-address set at init), but this service listens for HTTPS on ${listening} and ${PROBE_WORDS[seen]} yet: token enrollment through it works once it forwards here (the balancer, or another replica); checking again every ${HTTPS_RECHECK_MS / 1000} s`,
        };
      }
      throw new EnrollError('ERR_ADDRESS', `tokens would send devices to ${announced} (the --https-address set at init), but this service listens for HTTPS on ${listening} and ${PROBE_WORDS[seen]}`, {
        hint: `listen where tokens point (--https-listen ${hostPort(a.host, a.port)}), or, if a balancer or another replica will serve it, start with --https-address-check warn; \`service init --force --https-address\` would change the address, but ${INIT_FORCE_DESTROYS}`,
      });
    }
    case 'elsewhere':
      return {
        url: announced,
        followed: false,
        warning: `tokens send devices to ${announced} (the --https-address set at init), but this service listens for HTTPS on ${listening}: devices reach it only if that address forwards here (a load balancer or port forward)`,
      };
  }
}

/**
 * --https-address-check warn: probes the announced address every HTTPS_RECHECK_MS until this
 * service's certificate answers there, then calls `served` once. Returns the stop function.
 */
export function recheckHttpsAddress(svc: ServiceHome, pki: ServicePki, served: () => void): () => void {
  const a = parseHttpsAddress(svc.settings.httpsAddress);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const tick = async () => {
    if (stopped) return;
    if ((await probeHttps(a.host, a.port, pki.httpsDer)) === 'ours') {
      if (!stopped) served();
      return;
    }
    if (!stopped) timer = setTimeout(() => void tick(), HTTPS_RECHECK_MS).unref();
  };
  timer = setTimeout(() => void tick(), HTTPS_RECHECK_MS).unref();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
