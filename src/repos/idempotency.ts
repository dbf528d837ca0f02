import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';

export interface IdempotencyRow {
  scope: string;
  key: string;
  request_hash: string;
  status: number | null;
  body: unknown;
}

export function createIdempotencyRepo(db: Knex) {
  const table = () => db<IdempotencyRow>('idempotency_keys');
  return {
    /** Claims the key; false when a live claim exists already (then read it with find). */
    async claim(scope: string, key: string, requestHash: string, ttlSeconds: number): Promise<boolean> {
      // An expired claim is replaced; a live one is kept.
      await table().where({ scope, key }).where('expires_at', '<=', db.fn.now()).delete();
      const inserted = await db('idempotency_keys')
        .insert({ scope, key, request_hash: requestHash, expires_at: db.raw('now() + make_interval(secs => ?)', [ttlSeconds]) })
        .onConflict(['scope', 'key'])
        .ignore()
        .returning('key');
      return inserted.length === 1;
    },
    async find(scope: string, key: string): Promise<IdempotencyRow | undefined> {
      return table().where({ scope, key }).where('expires_at', '>', db.fn.now()).first();
    },
    async complete(scope: string, key: string, status: number, body: unknown): Promise<void> {
      await table().where({ scope, key }).update({ status, body: JSON.stringify(body) as never });
    },
    async release(scope: string, key: string): Promise<void> {
      await table().where({ scope, key }).delete();
    },
    async sweepExpired(): Promise<number> {
      return affectedRows(await table().where('expires_at', '<', db.fn.now()).delete());
    },
  };
}

export type IdempotencyRepo = ReturnType<typeof createIdempotencyRepo>;
