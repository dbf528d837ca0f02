import type { Knex } from 'knex';
import { paged } from '../infra/db.ts';

export interface ApiKeyRow {
  id: string;
  tenant_id: string;
  name: string;
  scopes: string[];
  /** Keyed digest (SecretBox.digest, purpose api-key) of the whole key; never the key. */
  digest: string;
  /** The digest a rotation replaced, accepted until previous_expires_at. */
  previous_digest: string | null;
  previous_expires_at: Date | null;
  expires_at: Date | null;
  last_used_at: Date | null;
  revoked_at: Date | null;
  created_by_type: 'client' | 'api_key' | 'system';
  created_by_id: string | null;
  created_at: Date;
  updated_at: Date;
}

export type NewApiKey = Omit<ApiKeyRow, 'previous_digest' | 'previous_expires_at' | 'last_used_at' | 'revoked_at' | 'created_at' | 'updated_at'>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** api_keys: one row per key, in its tenant; revoked keys stay (revoked_at) for the audit trail. */
export function createApiKeysRepo(db: Knex) {
  /** Writes take `trx` so a change and its event commit together. */
  const table = (trx?: Knex.Transaction) => (trx ?? db)<ApiKeyRow>('api_keys');
  return {
    async insert(row: NewApiKey, trx?: Knex.Transaction): Promise<ApiKeyRow> {
      // jsonb is written as JSON text: the pg driver would send a JS array as a PostgreSQL array.
      const [out] = await table(trx).insert({ ...row, scopes: JSON.stringify(row.scopes) } as never).returning('*');
      return out as ApiKeyRow;
    },

    /** A key by id, in any tenant (the caller decides what another tenant's key means). */
    async findById(id: string, trx?: Knex.Transaction): Promise<ApiKeyRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return table(trx).where({ id }).first();
    },

    /** A key by id, locked for the rest of the transaction (rotation and revocation). */
    async lockById(id: string, trx: Knex.Transaction): Promise<ApiKeyRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return table(trx).where({ id }).forUpdate().first();
    },

    async list(tenantId: string, offset: number, limit: number) {
      return paged<ApiKeyRow>(() => db('api_keys').where({ tenant_id: tenantId }), 'id', offset, limit);
    },

    async update(id: string, changes: Partial<Pick<ApiKeyRow, 'digest' | 'previous_digest' | 'previous_expires_at' | 'revoked_at'>>, trx?: Knex.Transaction): Promise<ApiKeyRow | undefined> {
      const [row] = await table(trx).where({ id }).update({ ...changes, updated_at: db.fn.now() } as never).returning('*');
      return row as ApiKeyRow | undefined;
    },

    /** Records a use, unless one was recorded within `withinSeconds` (by this or another instance). */
    async touch(id: string, withinSeconds: number): Promise<void> {
      await table()
        .where({ id })
        .andWhere((q) => q.whereNull('last_used_at').orWhere('last_used_at', '<', db.raw(`now() - make_interval(secs => ?)`, [withinSeconds])))
        .update({ last_used_at: db.fn.now() } as never);
    },
  };
}

export type ApiKeysRepo = ReturnType<typeof createApiKeysRepo>;
