/**
 * Settings kept with conf: the user's default home, and each role's settings in
 * `<home>/<role>/settings.json`. conf is loaded only by commands that need it, to keep
 * start-up fast.
 */
import Conf from 'conf';

export interface UserSettings {
  home?: string;
}

let user: Conf<UserSettings> | undefined;

export function userSettings(): Conf<UserSettings> {
  user ??= new Conf<UserSettings>({ projectName: 'ockam-enroll', projectSuffix: '' });
  return user;
}

/** A role's settings, stored beside its keys. Never holds secrets. */
export function roleSettings<T extends Record<string, unknown>>(roleDir: string, defaults: T): Conf<T> {
  return new Conf<T>({ cwd: roleDir, configName: 'settings', defaults, fileExtension: 'json' });
}
