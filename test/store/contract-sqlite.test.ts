/** The store contract (contract.ts) on the SQLite store, a fresh file per test. */
import { after, before } from 'node:test';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SqliteStore } from '../../src/store/sqlite.js';
import { SqliteTokenStore } from '../../src/store/tokens.js';
import { storeContract } from './contract.js';

let root: string;
before(() => {
  root = mkdtempSync(join(tmpdir(), 'ockam-contract-'));
});
after(() => {
  rmSync(root, { recursive: true, force: true });
});
let counter = 0;

storeContract('SqliteStore', {
  async open() {
    const path = join(root, `store-${counter++}.db`);
    return {
      store: SqliteStore.open(path),
      async rawBundle(id) {
        const db = new Database(path, { readonly: true, fileMustExist: true });
        try {
          return db.prepare('SELECT * FROM bundles WHERE id = ?').get(Buffer.from(id)) as Record<string, unknown> | undefined;
        } finally {
          db.close();
        }
      },
      async second() {
        return SqliteStore.open(path);
      },
      async tokens() {
        return SqliteTokenStore.open(path);
      },
    };
  },
});
