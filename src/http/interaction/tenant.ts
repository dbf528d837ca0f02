import type Provider from 'oidc-provider';
import { DEFAULT_TENANT_ID } from '../../domain/tenants/tenant-scope.ts';
import { isMultiTenant } from '../../domain/tenants/sign-in-tenant.ts';
import { clientTenantOf, ORGANIZATION_PARAM } from '../../oidc/configuration/organization.ts';

// The tenant a sign-in, registration or recovery runs in (README "Tenants: where users sign in").
// Inside an authorization it is the one the request was resolved to (the client's, or for a
// multi_tenant client the `organization` parameter's; oidc/configuration/organization.ts keeps
// its id in the interaction's params). Outside one, a request may name a pending interaction or a
// client; otherwise it is the default tenant.

/** The tenant of an interaction's authorization request. */
export function tenantOfParams(params: Record<string, unknown> | undefined): string {
  const value = params?.[ORGANIZATION_PARAM];
  return typeof value === 'string' && value ? value : DEFAULT_TENANT_ID;
}

/** The interaction the `interaction` middleware loaded, or any with params. */
export const tenantOf = (details: { params: Record<string, unknown> }): string => tenantOfParams(details.params);

/**
 * The tenant for a flow outside the interaction's own routes (the password-reset pages, the
 * account API): the named interaction's, else the named client's (a multi_tenant client names no
 * tenant by itself: the default one), else the default tenant. An unknown interaction or client
 * falls back to the default tenant, as if none was named.
 */
export async function flowTenant(provider: Provider, named: { interaction?: string | undefined; clientId?: string | undefined }): Promise<string> {
  if (named.interaction) {
    const interaction = await provider.Interaction.find(named.interaction).catch(() => undefined);
    if (interaction) return tenantOfParams(interaction.params as Record<string, unknown>);
  }
  if (named.clientId) return (await tenantOfClient(provider, named.clientId)) ?? DEFAULT_TENANT_ID;
  return DEFAULT_TENANT_ID;
}

/**
 * The tenant a client's users sign in and register in when no authorization names one: its own
 * (a multi_tenant client's is the default tenant). Undefined for an unknown client.
 */
export async function tenantOfClient(provider: Provider, clientId: string): Promise<string | undefined> {
  const client = await provider.Client.find(clientId).catch(() => undefined);
  if (!client) return undefined;
  const tenant = clientTenantOf(client);
  return isMultiTenant(tenant) ? DEFAULT_TENANT_ID : tenant.tenantId ?? DEFAULT_TENANT_ID;
}
