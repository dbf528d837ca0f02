import { DEFAULT_TENANT_ID } from './tenant-scope.ts';
import type { Tenants } from './tenants.ts';

/** What decides a client's sign-in tenant: its own tenant, and whether it serves every tenant. */
export interface SignInClient {
  /** clients.tenant_id; absent: the default tenant. */
  tenantId?: string | undefined;
  /** The multi_tenant metadata flag; it counts only for a client of the default tenant. */
  multiTenant?: boolean | undefined;
}

/** A platform client: of the default tenant and registered multi_tenant, it signs in any tenant's users. */
export const isMultiTenant = (client: SignInClient): boolean =>
  client.multiTenant === true && (client.tenantId ?? DEFAULT_TENANT_ID) === DEFAULT_TENANT_ID;

export type SignInTenantRefusal = 'organization_required' | 'unknown_organization' | 'organization_mismatch';

export type SignInTenant = { ok: true; tenantId: string } | { ok: false; why: SignInTenantRefusal };

/**
 * The tenant an authorization request signs in and registers users in (reference 002 section 3):
 * the client's own tenant; for a multi_tenant platform client, the tenant the `organization`
 * parameter names by id or slug (as Auth0's organization parameter). A multi_tenant client without
 * one is refused (there is no organization prompt); an unknown organization is refused; a
 * single-tenant client may send `organization` only naming its own tenant.
 */
export async function signInTenant(
  tenants: Pick<Tenants, 'resolve'>,
  client: SignInClient,
  organization: string | undefined,
): Promise<SignInTenant> {
  const own = client.tenantId ?? DEFAULT_TENANT_ID;
  const named = organization?.trim() || undefined;
  if (isMultiTenant(client)) {
    if (!named) return { ok: false, why: 'organization_required' };
    const tenant = await tenants.resolve(named);
    return tenant ? { ok: true, tenantId: tenant.id } : { ok: false, why: 'unknown_organization' };
  }
  if (!named || named === own) return { ok: true, tenantId: own };
  const tenant = await tenants.resolve(named);
  if (!tenant) return { ok: false, why: 'unknown_organization' };
  return tenant.id === own ? { ok: true, tenantId: own } : { ok: false, why: 'organization_mismatch' };
}
