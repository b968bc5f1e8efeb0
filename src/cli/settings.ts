/**
 * Settings: the user's default home, and each role's settings in
 * `<home>/<role>/settings.json`. Commands that only read settings (every `service` command
 * but init, the replica join and `address set`) read the file here; conf, which writes it,
 * is loaded only by the commands that change it: with its schema validator (ajv) it is
 * about a fifth of a CLI spawn's start-up (issue 24), and its constructor writes the
 * defaults into the file, which a reading command must not do.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type Conf from 'conf';
import envPaths from 'env-paths';
import { EnrollError } from '../errors.js';

/** The file a role's settings are kept in. */
export const SETTINGS_FILE = 'settings.json';

/** The user config file conf would use (~/.config/ockam-enroll/config.json on Linux). */
export function userConfigPath(): string {
  return join(envPaths('ockam-enroll', { suffix: '' }).config, 'config.json');
}

/**
 * The `home` setting of the user config file, read without conf: constructing a Conf
 * creates its directory, and a command that only reads (the demo, every first run) must
 * leave nothing behind in the user's home.
 */
export function configuredHome(): string | undefined {
  const path = userConfigPath();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new EnrollError('ERR_KEYSTORE_IO', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: `fix its permissions, or give the home with --home or OCKAM_ENROLL_HOME`,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${path} is not valid JSON`, { hint: `it holds one setting, {"home": "/path"}: fix or remove it` });
  }
  const home = value !== null && typeof value === 'object' ? (value as { home?: unknown }).home : undefined;
  if (home === undefined) return undefined;
  if (typeof home !== 'string' || home === '' || home.length > 4096) {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${path}: "home" must be a non-empty path`, { hint: `it holds one setting, {"home": "/path"}: fix or remove it` });
  }
  return home;
}

/**
 * A role's settings as they are in its settings.json, read without changing anything ({}
 * when there is none yet). The file is the one conf writes (roleSettings), so it is read
 * the same way: a JSON object.
 */
export function readRoleSettings(roleDir: string): Record<string, unknown> {
  const path = join(roleDir, SETTINGS_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new EnrollError('ERR_KEYSTORE_IO', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      hint: 'fix its permissions (the role\'s files belong to the user that runs it), or pass the right --home',
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${path} is not valid JSON`, { hint: 'restore it from a backup, or remove it and set the settings again (it holds no secret)' });
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new EnrollError('ERR_KEYSTORE_CORRUPT', `${path} does not hold a JSON object`, { hint: 'restore it from a backup, or remove it and set the settings again (it holds no secret)' });
  }
  return value as Record<string, unknown>;
}

/** A role's settings, stored beside its keys, for a command that changes them. Never holds secrets. */
export async function roleSettings<T extends Record<string, unknown>>(roleDir: string, defaults: T): Promise<Conf<T>> {
  const { default: Conf } = await import('conf');
  return new Conf<T>({ cwd: roleDir, configName: 'settings', defaults, fileExtension: 'json' });
}
