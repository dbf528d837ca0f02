import type { TenantRow, TenantsRepo } from '../../repos/tenants.ts';

export interface Tenant {
  id: string;
  name: string;
  slug: string;
  createdAt: Date;
  updatedAt: Date;
}

export const tenantOf = (row: TenantRow): Tenant => ({ id: row.id, name: row.name, slug: row.slug, createdAt: row.created_at, updatedAt: row.updated_at });

/** Tenants as the rest of the domain sees them. */
export function createTenants(deps: { repo: TenantsRepo }) {
  return {
    /** The tenant an id or a slug names (X-Tenant-Id, the `organization` authorization parameter). */
    async resolve(ref: string): Promise<Tenant | undefined> {
      const row = await deps.repo.findByIdOrSlug(ref);
      return row ? tenantOf(row) : undefined;
    },
  };
}

export type Tenants = ReturnType<typeof createTenants>;
