import type { Knex } from 'knex';
import { hasNul, paged } from '../infra/db.ts';

export interface TenantRow {
  id: string;
  name: string;
  slug: string;
  created_at: Date;
  updated_at: Date;
}

/** A role every tenant starts with (migration 0016 seeds them for the tenants that existed then). */
export interface SeededRole {
  name: string;
  type_id: string;
  description: string;
}

/** What still lives in a tenant, by kind: a tenant is deleted only once these are gone. */
export interface TenantContents {
  users: number;
  clients: number;
  resourceServers: number;
  identityProviders: number;
  webhooks: number;
}

/** tenants: the default tenant (id and slug `default`) and those operators create. */
export function createTenantsRepo(db: Knex) {
  const table = (trx?: Knex.Transaction) => (trx ?? db)<TenantRow>('tenants');
  const count = async (name: string, tenantId: string, trx?: Knex.Transaction) =>
    Number(((await (trx ?? db)(name).where({ tenant_id: tenantId }).count({ n: '*' })) as Array<{ n: number | string }>)[0]?.n ?? 0);
  return {
    /** A tenant named by its id or its slug (slugs never look like another tenant's id). */
    async findByIdOrSlug(ref: string, trx?: Knex.Transaction): Promise<TenantRow | undefined> {
      if (!ref || ref.length > 200 || hasNul(ref)) return undefined;
      return table(trx).where({ id: ref }).orWhere({ slug: ref.toLowerCase() }).first();
    },
    async findBySlug(slug: string, trx?: Knex.Transaction): Promise<TenantRow | undefined> {
      if (hasNul(slug)) return undefined;
      return table(trx).where({ slug }).first();
    },
    async list(offset: number, limit: number) {
      return paged<TenantRow>(() => db('tenants'), 'id', offset, limit);
    },
    /** A tenant and its seeded roles, in the caller's transaction. */
    async insert(row: Pick<TenantRow, 'id' | 'name' | 'slug'>, roles: readonly SeededRole[], trx: Knex.Transaction): Promise<TenantRow> {
      const [out] = await table(trx).insert(row).returning('*');
      if (roles.length) await trx('roles').insert(roles.map((r) => ({ id: crypto.randomUUID(), tenant_id: row.id, ...r })));
      return out as TenantRow;
    },
    async update(id: string, changes: Partial<Pick<TenantRow, 'name' | 'slug'>>, trx?: Knex.Transaction): Promise<TenantRow | undefined> {
      const [row] = await table(trx).where({ id }).update({ ...changes, updated_at: db.fn.now() } as never).returning('*');
      return row as TenantRow | undefined;
    },
    async contents(id: string, trx?: Knex.Transaction): Promise<TenantContents> {
      // Deactivated users are gone as far as anyone can tell (they cannot sign in or be changed).
      const liveUsers = Number(((await (trx ?? db)('users').where({ tenant_id: id }).whereNot({ status: 'deactivated' }).count({ n: '*' })) as Array<{ n: number | string }>)[0]?.n ?? 0);
      const [clients, resourceServers, identityProviders, webhooks] = await Promise.all(
        ['clients', 'resource_servers', 'identity_providers', 'webhooks'].map((t) => count(t, id, trx)),
      );
      const users = liveUsers;
      return { users: users!, clients: clients!, resourceServers: resourceServers!, identityProviders: identityProviders!, webhooks: webhooks! };
    },
    /**
     * Deletes the tenant, its roles (their assignments cascade) and its deactivated users (their
     * factors and links cascade); events stay, as the audit trail.
     */
    async delete(id: string, trx: Knex.Transaction): Promise<TenantRow | undefined> {
      await trx('roles').where({ tenant_id: id }).delete();
      await trx('users').where({ tenant_id: id, status: 'deactivated' }).delete();
      const [row] = await table(trx).where({ id }).delete().returning('*');
      return row as TenantRow | undefined;
    },
  };
}

export type TenantsRepo = ReturnType<typeof createTenantsRepo>;
