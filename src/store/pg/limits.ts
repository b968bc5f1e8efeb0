/**
 * Rate limits shared by replicas: the per-enroller token bucket of roles/service/limits.ts
 * (TokenBuckets), kept in the database so that an enroller's requests count against one
 * bucket whichever replica they reach. Each take() is one transaction on the bucket's row
 * (locked FOR UPDATE), with the database's clock, so replicas' clocks do not matter.
 *
 * Per-IP limits stay per replica (in memory): they guard each process's own sockets, before
 * any store access, and a load balancer in front sees the peers' addresses anyway.
 */
import type { RateSpec } from '../../roles/service/limits.js';
import type { PgDatabase } from './database.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS rate_buckets (
  kind   text NOT NULL,
  key    text NOT NULL,
  tokens double precision NOT NULL,
  at     double precision NOT NULL,
  PRIMARY KEY (kind, key)
);
`;

const TOKEN_EPSILON = 1e-9;

export class PgTokenBuckets {
  readonly spec: RateSpec;
  readonly #db: PgDatabase;
  readonly #kind: string;

  constructor(db: PgDatabase, kind: string, spec: RateSpec) {
    this.#db = db;
    this.#kind = kind;
    this.spec = spec;
  }

  /** As TokenBuckets.take: 0 when a token was taken, else the ms until one will be there. */
  async take(key: string): Promise<number> {
    const { burst, perSecond } = this.spec;
    return this.#db.tx(async (c) => {
      await c.query(
        `INSERT INTO rate_buckets (kind, key, tokens, at) VALUES ($1, $2, $3, extract(epoch FROM clock_timestamp())) ON CONFLICT DO NOTHING`,
        [this.#kind, key, burst],
      );
      const r = (
        await c.query(
          `SELECT least($3::float8, tokens + greatest(0, extract(epoch FROM clock_timestamp()) - at) * $4::float8) AS tokens,
                  extract(epoch FROM clock_timestamp()) AS now
           FROM rate_buckets WHERE kind = $1 AND key = $2 FOR UPDATE`,
          [this.#kind, key, burst, perSecond],
        )
      ).rows[0]!;
      let tokens = Number(r.tokens);
      const ok = tokens >= 1 - TOKEN_EPSILON;
      if (ok) tokens = Math.max(0, tokens - 1);
      await c.query(`UPDATE rate_buckets SET tokens = $3, at = $4 WHERE kind = $1 AND key = $2`, [this.#kind, key, tokens, Number(r.now)]);
      return ok ? 0 : Math.max(1, Math.ceil(((1 - tokens) / perSecond) * 1000));
    }, 'cannot take from the rate bucket');
  }
}
