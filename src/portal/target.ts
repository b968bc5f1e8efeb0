/**
 * Portal targets and outlet names (docs/portals.md "Targets"): what an inlet's `--to` and a
 * stream's OPEN (docs/protocol.md §11.6) name.
 *
 *   service/NAME   the service outlet NAME (`service outlet add NAME`)
 *   DEVICE/NAME    the device outlet NAME of DEVICE: an enrollee id, a unique id prefix or a
 *                  pet name (resolved at the service, not here)
 *
 * NAME never holds a "/", so the target splits at its last one (a pet name may hold "/").
 * A device whose pet name is "service" is reached by its id.
 */
import { EnrollError } from '../errors.js';

/** An outlet's name: 1..64 letters, digits, ".", "_" or "-", starting with a letter or digit. */
export const OUTLET_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const OUTLET_NAME_HINT = 'use 1..64 letters, digits, ".", "_" or "-", starting with a letter or digit';
/** The owner part for a service outlet. */
export const SERVICE_OWNER = 'service';
/** The longest DEVICE part: a 64-hex-digit id or a pet name (at most 64 bytes). */
const MAX_DEVICE_LEN = 64;

export interface PortalTarget {
  /** 'service', or the DEVICE selector as given. */
  owner: string;
  name: string;
}

/** Parses TARGET; undefined when it is not `OWNER/NAME` within bounds. */
export function parseTarget(target: string): PortalTarget | undefined {
  if (typeof target !== 'string' || target.length > 200) return undefined;
  const slash = target.lastIndexOf('/');
  if (slash <= 0) return undefined;
  const owner = target.slice(0, slash);
  const name = target.slice(slash + 1);
  if (!OUTLET_NAME_RE.test(name)) return undefined;
  if (Buffer.byteLength(owner, 'utf8') > MAX_DEVICE_LEN || owner.trim() !== owner || /[\u0000-\u001f\u007f]/.test(owner)) return undefined;
  return { owner, name };
}

/** `--to TARGET` of `enrollee inlet`: ERR_USAGE with the grammar as hint. */
export function parseTargetArg(target: string, flag = '--to'): PortalTarget {
  const t = parseTarget(target);
  if (t === undefined) {
    throw new EnrollError('ERR_USAGE', `${flag} ${JSON.stringify(String(target).slice(0, 80))} is not a portal target`, {
      hint: `give service/NAME for a service outlet or DEVICE/NAME for a device outlet (DEVICE: enrollee id, unique id prefix or pet name; NAME: ${OUTLET_NAME_HINT.replace(/^use /, '')})`,
    });
  }
  return t;
}

/** HOST:PORT or [IPv6]:PORT; host 1..253 characters, port 1..65535 (0 too when `allowZero`). */
export function parseHostPort(v: string, flag: string, opts: { allowZero?: boolean } = {}): { host: string; port: number } {
  const m = typeof v === 'string' && v.length <= 260 ? /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]{1,253})):(\d{1,5})$/.exec(v) : null;
  const port = m ? Number(m[3]) : -1;
  if (!m || port < (opts.allowZero ? 0 : 1) || port > 65535) {
    throw new EnrollError('ERR_USAGE', `${flag} ${JSON.stringify(String(v).slice(0, 80))} is not HOST:PORT`, { hint: `e.g. ${flag} 127.0.0.1:8080 (port ${opts.allowZero ? 0 : 1}..65535)` });
  }
  return { host: (m[1] ?? m[2])!, port };
}

/** HOST:PORT as written, with brackets around an IPv6 host. */
export function formatHostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}
