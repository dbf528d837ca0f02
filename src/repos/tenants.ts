import type { Knex } from 'knex';
import { hasNul } from '../infra/db.ts';

export interface TenantRow {
  id: string;
  name: string;
  slug: string;
  created_at: Date;
  updated_at: Date;
}

/** tenants: the default tenant (id and slug `default`) and those operators create. */
export function createTenantsRepo(db: Knex) {
  const table = (trx?: Knex.Transaction) => (trx ?? db)<TenantRow>('tenants');
  return {
    /** A tenant named by its id or its slug (slugs never look like another tenant's id). */
    async findByIdOrSlug(ref: string, trx?: Knex.Transaction): Promise<TenantRow | undefined> {
      if (!ref || ref.length > 200 || hasNul(ref)) return undefined;
      return table(trx).where({ id: ref }).orWhere({ slug: ref.toLowerCase() }).first();
    },
  };
}

export type TenantsRepo = ReturnType<typeof createTenantsRepo>;
