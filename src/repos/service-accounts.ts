import type { Knex } from 'knex';
import { hasNul, paged } from '../infra/db.ts';
import { isUuid } from './roles.ts';

export interface ServiceAccountRow {
  id: string;
  tenant_id: string;
  client_id: string;
  name: string;
  description: string | null;
  created_at: Date;
  updated_at: Date;
}

/** service_accounts: a confidential client_credentials client of a tenant, with roles. */
export function createServiceAccountsRepo(db: Knex) {
  const accounts = (trx?: Knex.Transaction) => (trx ?? db)<ServiceAccountRow>('service_accounts');
  return {
    async list(tenantId: string, offset: number, limit: number) {
      return paged<ServiceAccountRow>(() => db('service_accounts').where({ tenant_id: tenantId }), 'id', offset, limit);
    },
    async findById(id: string): Promise<ServiceAccountRow | undefined> {
      if (!isUuid(id)) return undefined;
      return accounts().where({ id }).first();
    },
    async findByClientId(clientId: string): Promise<ServiceAccountRow | undefined> {
      if (hasNul(clientId)) return undefined;
      return accounts().where({ client_id: clientId }).first();
    },
    async insert(row: Pick<ServiceAccountRow, 'id' | 'tenant_id' | 'client_id' | 'name' | 'description'>, trx: Knex.Transaction): Promise<ServiceAccountRow> {
      const [out] = await accounts(trx).insert(row).returning('*');
      return out as ServiceAccountRow;
    },
  };
}

export type ServiceAccountsRepo = ReturnType<typeof createServiceAccountsRepo>;
