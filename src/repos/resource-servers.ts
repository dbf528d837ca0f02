import type { Knex } from 'knex';
import { hasNul, paged } from '../infra/db.ts';

export interface ResourceServerRow {
  id: string;
  tenant_id: string;
  identifier: string;
  name: string | null;
  scopes: string[];
  access_token_format: 'jwt' | 'opaque';
  access_token_ttl: number | null;
  /** Role-based access: tokens carry only the scopes the roles of their user or service account grant. */
  rbac: boolean;
  created_at: Date;
  updated_at: Date;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function createResourceServersRepo(db: Knex) {
  /** Writes take `trx` so a change and its event commit together. */
  const table = (trx?: Knex.Transaction) => (trx ?? db)<ResourceServerRow>('resource_servers');
  return {
    async findByIdentifier(identifier: string): Promise<ResourceServerRow | undefined> {
      if (hasNul(identifier)) return undefined;
      return table().where({ identifier }).first();
    },
    async findById(id: string): Promise<ResourceServerRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return table().where({ id }).first();
    },
    async list(tenantId: string, offset: number, limit: number) {
      return paged<ResourceServerRow>(() => db('resource_servers').where({ tenant_id: tenantId }), 'id', offset, limit);
    },
    async update(
      id: string,
      changes: Partial<Pick<ResourceServerRow, 'name' | 'scopes' | 'access_token_format' | 'access_token_ttl' | 'rbac'>>,
      trx?: Knex.Transaction,
    ): Promise<ResourceServerRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const { scopes, ...rest } = changes;
      const [row] = await table(trx)
        .where({ id })
        .update({ ...rest, ...(scopes ? { scopes: JSON.stringify(scopes) } : {}), updated_at: db.fn.now() } as never)
        .returning('*');
      return row as ResourceServerRow | undefined;
    },
    async delete(id: string, trx?: Knex.Transaction): Promise<ResourceServerRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await table(trx).where({ id }).delete().returning('*');
      return row as ResourceServerRow | undefined;
    },
    async insert(
      row: Pick<ResourceServerRow, 'id' | 'identifier' | 'scopes'> & Partial<ResourceServerRow>,
      trx?: Knex.Transaction,
    ): Promise<ResourceServerRow> {
      const [out] = await table(trx)
        .insert({ ...row, scopes: JSON.stringify(row.scopes) as never })
        .returning('*');
      return out as ResourceServerRow;
    },
  };
}

export type ResourceServersRepo = ReturnType<typeof createResourceServersRepo>;
