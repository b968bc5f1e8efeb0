/**
 * The store contract (contract.ts) on the PostgreSQL store: a fresh database per test on the
 * test cluster (test/helpers/pg.ts), the schema made by the store's own migration.
 */
import { PgDatabase } from '../../src/store/pg/database.js';
import { PgStore } from '../../src/store/pg/store.js';
import { PgTokenStore } from '../../src/store/pg/tokens.js';
import { parseStoreLocation } from '../../src/store/location.js';
import { freshDatabase, pgQuery } from '../helpers/pg.js';
import { storeContract } from './contract.js';

async function openPg(url: string): Promise<PgStore> {
  const loc = parseStoreLocation(url, 'test');
  if (loc.kind !== 'postgres') throw new Error('not a postgres URL');
  return new PgStore(await PgDatabase.open(loc, { poolSize: 4 }), { ownsDb: true });
}

storeContract('PgStore', {
  async open() {
    const url = await freshDatabase();
    const store = await openPg(url);
    return {
      store,
      async rawBundle(id) {
        return (await pgQuery(url, 'SELECT * FROM bundles WHERE id = $1', [Buffer.from(id)]))[0];
      },
      second: () => openPg(url),
      // On the store's own pool, as ServiceHome.tokens does.
      tokens: async () => new PgTokenStore(store.db),
    };
  },
});
