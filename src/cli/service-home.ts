/**
 * Opens the service's home for one operator command and closes it afterwards, whatever
 * happens: the store's connection must not outlive the command.
 */
import { ServiceHome } from '../roles/service/home.js';
import type { Ctx } from './command.js';
import { passphraseSource, storeOption } from './options.js';

export async function withService<T>({ home, opts }: Pick<Ctx, 'home' | 'opts'>, fn: (svc: ServiceHome) => Promise<T>): Promise<T> {
  const svc = await ServiceHome.open(home, { passphrase: passphraseSource(opts), ...storeOption(opts) });
  try {
    return await fn(svc);
  } finally {
    await svc.close();
  }
}
