import type { Knex } from 'knex';
import { affectedRows, hasNul, paged } from '../infra/db.ts';

export interface ClientRow {
  client_id: string;
  tenant_id: string;
  metadata: Record<string, unknown>;
  secret_digest: string | null;
  secret_sealed: string | null;
  /** The digest of the secret before the last rotation, valid until previous_secret_expires_at (service accounts' overlap). */
  previous_secret_digest?: string | null;
  previous_secret_expires_at?: Date | null;
  first_party: boolean;
  created_at: Date;
  updated_at: Date;
}

export function createClientsRepo(db: Knex) {
  /** Writes take `trx` so a change and its event commit together. */
  const clients = (trx?: Knex.Transaction) => (trx ?? db)<ClientRow>('clients');
  return {
    async find(clientId: string): Promise<ClientRow | undefined> {
      if (hasNul(clientId)) return undefined;
      return clients().where({ client_id: clientId }).first();
    },
    async insert(row: Pick<ClientRow, 'client_id' | 'metadata' | 'first_party'> & Partial<ClientRow>, trx?: Knex.Transaction): Promise<ClientRow> {
      const [out] = await clients(trx)
        .insert({ ...row, metadata: JSON.stringify(row.metadata) as never })
        .returning('*');
      return out as ClientRow;
    },
    /**
     * One page of a tenant's clients. With `adminScopesWithin`, only clients whose every iam.* scope is in that
     * list (the rule of domain/clients/admin-scopes.ts adminScopesBeyond, in SQL so pages and total agree).
     */
    async list(tenantId: string, offset: number, limit: number, opts: { adminScopesWithin?: readonly string[] } = {}) {
      const within = opts.adminScopesWithin;
      const query = () => {
        const q = db('clients').where({ tenant_id: tenantId });
        if (within) {
          q.whereNotExists((sub) => {
            sub
              .select(db.raw('1'))
              .fromRaw(db.raw(`regexp_split_to_table(coalesce(clients.metadata->>'scope', ''), ' ') as s(scope)`))
              .whereRaw(`left(s.scope, 4) = 'iam.'`)
              .whereNotIn('s.scope', [...within]);
          });
        }
        return q;
      };
      return paged<ClientRow>(query, 'client_id', offset, limit);
    },
    async update(
      clientId: string,
      changes: Partial<Pick<ClientRow, 'metadata' | 'secret_digest' | 'secret_sealed' | 'first_party' | 'previous_secret_digest' | 'previous_secret_expires_at'>>,
      trx?: Knex.Transaction,
    ): Promise<ClientRow | undefined> {
      if (hasNul(clientId)) return undefined;
      const { metadata, ...rest } = changes;
      const [row] = await clients(trx)
        .where({ client_id: clientId })
        .update({ ...rest, ...(metadata ? { metadata: JSON.stringify(metadata) } : {}), updated_at: db.fn.now() } as never)
        .returning('*');
      return row as ClientRow | undefined;
    },
    /** The clients whose resource_scopes metadata names a grant at `resource`. */
    async withResourceGrant(resource: string): Promise<ClientRow[]> {
      if (hasNul(resource)) return [];
      return clients().whereRaw(`jsonb_exists(metadata->'resource_scopes', ?)`, [resource]);
    },
    async delete(clientId: string, trx?: Knex.Transaction): Promise<boolean> {
      if (hasNul(clientId)) return false;
      return affectedRows(await clients(trx).where({ client_id: clientId }).delete()) > 0;
    },
    async upsert(row: Pick<ClientRow, 'client_id' | 'metadata' | 'first_party'> & Partial<ClientRow>, trx?: Knex.Transaction): Promise<void> {
      await clients(trx)
        .insert({ ...row, metadata: JSON.stringify(row.metadata) as never })
        .onConflict('client_id')
        .merge(['metadata', 'secret_digest', 'secret_sealed', 'first_party', 'updated_at']);
    },
  };
}

export type ClientsRepo = ReturnType<typeof createClientsRepo>;
