import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';

export interface ServerKeyRow {
  kid: string;
  use: 'sig' | 'cookie';
  alg: string;
  public_jwk: Record<string, unknown> | null;
  private_sealed: string;
  created_at: Date;
  activates_at: Date;
  retires_at: Date | null;
}

// Any constant of our own; the sweeper uses another. Taken per transaction, so a crash frees it.
const KEY_GENERATION_LOCK = 0x1d9_6e7;

export function createServerKeysRepo(db: Knex) {
  const table = (trx?: Knex.Transaction) => (trx ?? db)<ServerKeyRow>('server_keys');
  return {
    /**
     * Runs `work` in a transaction holding the key-generation lock: instances booting together on
     * one empty database take turns, so the second finds the keys the first made. PGlite has one
     * connection, where the lock is granted at once.
     */
    async underGenerationLock<T>(work: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
      return db.transaction(async (trx) => {
        await trx.raw('select pg_advisory_xact_lock(?)', [KEY_GENERATION_LOCK]);
        return work(trx);
      });
    },
    /** Keys not yet retired, newest first. */
    async listLive(trx?: Knex.Transaction): Promise<ServerKeyRow[]> {
      return table(trx)
        .where((q) => q.whereNull('retires_at').orWhere('retires_at', '>', db.fn.now()))
        .orderBy('created_at', 'desc')
        .orderBy('kid', 'desc');
    },
    async insert(rows: Array<Omit<ServerKeyRow, 'created_at' | 'retires_at'> & Partial<ServerKeyRow>>, trx?: Knex.Transaction) {
      if (rows.length === 0) return;
      await (trx ?? db)('server_keys').insert(
        rows.map((r) => ({ ...r, public_jwk: r.public_jwk ? JSON.stringify(r.public_jwk) : null })),
      );
    },
    /** Schedules the retirement of every live key of `use` older than `before`. */
    async retireOlder(use: ServerKeyRow['use'], before: Date, retiresAt: Date, trx?: Knex.Transaction) {
      await (trx ?? db)('server_keys')
        .where({ use })
        .where('created_at', '<', before)
        .whereNull('retires_at')
        .update({ retires_at: retiresAt });
    },
    async deleteRetired(): Promise<number> {
      return affectedRows(await table().where('retires_at', '<', db.fn.now()).delete());
    },
  };
}

export type ServerKeysRepo = ReturnType<typeof createServerKeysRepo>;
