import { errors, interactionPolicy, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { signInTenant, type SignInTenantRefusal } from '../../domain/tenants/sign-in-tenant.ts';
import { DEFAULT_TENANT_ID } from '../../domain/tenants/tenant-scope.ts';
import type { Tenants } from '../../domain/tenants/tenants.ts';

/**
 * The authorization parameter naming the tenant a multi_tenant client signs its user in to (an
 * id or a slug). Once checked it holds the tenant's id for every authorization request, whatever
 * the client: the interaction's params carry it, and every sign-in step reads it from there
 * (http/interaction/tenant.ts).
 */
export const ORGANIZATION_PARAM = 'organization';

/** The reason the login prompt names when the session's account is another tenant's. */
export const TENANT_CHECK = 'tenant_mismatch';

const REFUSALS: Record<SignInTenantRefusal, string> = {
  organization_required: 'organization is required (this client signs in users of several tenants: name one by id or slug)',
  unknown_organization: 'organization names no tenant',
  organization_mismatch: "organization names another tenant than the client's",
};

/** The client's tenant as the adapter set it (oidc/adapter.ts), and its multi_tenant flag. */
export const clientTenantOf = (client: unknown) => {
  const c = client as { tenant_id?: unknown; multi_tenant?: unknown } | undefined;
  return { tenantId: typeof c?.tenant_id === 'string' ? c.tenant_id : undefined, multiTenant: c?.multi_tenant === true };
};

/** The tenant an authorization request was resolved to (after the extraParams check below). */
export function requestTenantOf(ctx: KoaContextWithOIDC): string {
  const value = (ctx.oidc.params as Record<string, unknown> | undefined)?.[ORGANIZATION_PARAM];
  return typeof value === 'string' && value ? value : clientTenantOf(ctx.oidc.client).tenantId ?? DEFAULT_TENANT_ID;
}

/**
 * `organization` as an extra authorization parameter: checked (and turned into the tenant's id)
 * at the authorization and pushed authorization endpoints before any interaction starts; a
 * refusal is invalid_request to the client.
 */
export function organizationConfiguration(tenants: Pick<Tenants, 'resolve'>): Configuration {
  return {
    extraParams: {
      async [ORGANIZATION_PARAM](ctx, value, client) {
        const named = typeof value === 'string' ? value : undefined;
        if (named !== undefined && named.length > 200) throw new errors.InvalidRequest(REFUSALS.unknown_organization);
        const outcome = await signInTenant(tenants, clientTenantOf(client), named);
        if (!outcome.ok) throw new errors.InvalidRequest(REFUSALS[outcome.why]);
        (ctx.oidc.params as Record<string, unknown>)[ORGANIZATION_PARAM] = outcome.tenantId;
      },
    },
  };
}

/**
 * Single sign-on never crosses tenants: a session whose account belongs to another tenant than
 * the request's gets the login prompt (prompt=none: login_required), and the account that signs
 * in then replaces the session's (oidc-provider ends the old session first when another account
 * signs in). Added right after the prompt's own login_prompt check, so its error is the one
 * prompt=none reports.
 */
export function addTenantCheck(policy: ReturnType<typeof interactionPolicy.base>): void {
  policy.get('login')!.checks.add(new interactionPolicy.Check(
    TENANT_CHECK,
    "the session's account belongs to another tenant than this request's",
    'login_required',
    (ctx) => {
      if (!ctx.oidc.session?.accountId) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
      const account = ctx.oidc.account as { tenantId?: string } | undefined;
      return account?.tenantId === requestTenantOf(ctx) ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT;
    },
  ), 1);
}
