import { AppError } from '../errors.ts';

/**
 * The tenant that exists from the first migration on: everything made before tenants existed is
 * in it, and the platform's own clients (the bootstrap admin client, multi_tenant clients) live in it.
 */
export const DEFAULT_TENANT_ID = 'default';

/** Scopes that act on tenants themselves: held only by callers of the default tenant. */
export const isPlatformScope = (scope: string) => scope.startsWith('iam.tenants:');

/** Who an admin API call acts for: its caller's own tenant, or the one a platform caller names. */
export interface TenantScope {
  /** The tenant every object the call reads, changes or creates belongs to. */
  tenantId: string;
}

/**
 * An object named by id that lives in another tenant is refused with 403 IDENT_CROSS_TENANT
 * (reference 002, section 12) before anything changes; `what` names it in the message.
 */
export function assertInTenant(scope: TenantScope, objectTenantId: string, what: string): void {
  if (objectTenantId !== scope.tenantId) {
    throw new AppError('IDENT_CROSS_TENANT', `${what} belongs to another tenant`);
  }
}

/** The default tenant as a scope: the provider's own work (built-in clients, boot, local CLI commands). */
export const DEFAULT_SCOPE: TenantScope = Object.freeze({ tenantId: DEFAULT_TENANT_ID });
