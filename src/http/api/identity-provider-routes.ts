import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import { federationEndpoints, type IdentityProvider, type IdentityProviderInput, type IdentityProviders } from '../../domain/federation/identity-providers.ts';
import * as s from './identity-provider-schemas.ts';
import type { AdminHandlers, IdentityProviderCommand } from './admin-operations.ts';
import { parse } from './validate.ts';
import { tenantScope } from './auth.ts';

export function identityProviderView(issuer: string, p: IdentityProvider) {
  const common = {
    id: p.id,
    alias: p.alias,
    type: p.type,
    displayName: p.displayName,
    enabled: p.enabled,
    allowedDomains: p.allowedDomains,
    jitProvisioning: p.jitProvisioning ? 'on' as const : 'off' as const,
    accountLinking: p.accountLinking,
    trustEmail: p.trustEmail,
    trustUpstreamMfa: p.trustUpstreamMfa,
    hasClientSecret: p.hasClientSecret,
  };
  const times = { endpoints: federationEndpoints(issuer, p), createdAt: p.createdAt.toISOString(), updatedAt: p.updatedAt.toISOString() };
  if (p.type === 'oidc') return { ...common, oidc: p.oidc, ...times };
  if (p.type === 'oauth2') return { ...common, oauth2: p.oauth2, ...times };
  // The metadata document itself stays out of the answer (it can be large); its source and entity ID are shown.
  const { metadataXml: _xml, ...saml } = p.saml;
  return { ...common, saml, ...times };
}

/** The API's on|off to the domain's flag. */
function inputOf(body: Record<string, unknown>): IdentityProviderInput {
  const { jitProvisioning, ...rest } = body;
  return { ...rest, ...(jitProvisioning !== undefined ? { jitProvisioning: jitProvisioning === 'on' } : {}) } as IdentityProviderInput;
}

/** /api/v1/identity-providers: the upstream OpenID Connect, OAuth 2.0 and SAML providers people sign in through. */
export function identityProviderHandlers(deps: {
  issuer: string;
  identityProviders: IdentityProviders;
  /** Who makes a change (the admin client), for its event. */
  changeContext: (ctx: Context) => ChangeContext;
}): AdminHandlers<IdentityProviderCommand> {
  const { issuer, identityProviders: idps, changeContext } = deps;
  const view = (p: IdentityProvider) => identityProviderView(issuer, p);
  return {
    'identity-providers list': async (ctx, { query }) => {
      const { rows, total } = await idps.list(tenantScope(ctx), query.page, query.pageSize);
      return { data: rows.map(view), page: query.page, pageSize: query.pageSize, total };
    },
    'identity-providers create': async (ctx, { body }) => {
      return view(await idps.create(tenantScope(ctx), { ...inputOf(body), alias: body.alias, type: body.type, displayName: body.displayName }, changeContext(ctx)));
    },
    'identity-providers get': async (ctx, { params }) => {
      return view(await idps.get(tenantScope(ctx), params.id!));
    },
    'identity-providers update': async (ctx, { params }) => {
      const current = await idps.get(tenantScope(ctx), params.id!);
      // Only the fields of this provider's type: an issuer sent to a saml provider is a mistake, not a no-op.
      const body = parse(s.identityProviderUpdates[current.type], ctx.request.body, 'body');
      return view(await idps.update(tenantScope(ctx), current.id, inputOf(body), changeContext(ctx)));
    },
    'identity-providers delete': async (ctx, { params }) => {
      await idps.remove(tenantScope(ctx), params.id!, changeContext(ctx));
      return undefined;
    },
  };
}
