/**
 * Settings kept with conf: the user's default home, and each role's settings in
 * `<home>/<role>/settings.json`. conf is loaded only by commands that need it, to keep
 * start-up fast.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Conf from 'conf';
import envPaths from 'env-paths';
import { EnrollError } from '../errors.js';

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

/** A role's settings, stored beside its keys. Never holds secrets. */
export function roleSettings<T extends Record<string, unknown>>(roleDir: string, defaults: T): Conf<T> {
  return new Conf<T>({ cwd: roleDir, configName: 'settings', defaults, fileExtension: 'json' });
}
