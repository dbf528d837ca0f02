import { federationEndpoints, type IdentityProvider, type IdentityProviderInput, type IdentityProviders } from '../../domain/federation/identity-providers.ts';
import * as s from './identity-provider-schemas.ts';
import type { Operation } from './operation.ts';
import { pageQuery, page } from './schemas.ts';
import { parse } from './validate.ts';

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
export function identityProviderOperations(deps: { issuer: string; identityProviders: IdentityProviders }): Operation[] {
  const { issuer, identityProviders: idps } = deps;
  const view = (p: IdentityProvider) => identityProviderView(issuer, p);
  return [
    {
      method: 'get', path: '/identity-providers', scope: 'iam.idps:read', summary: 'List identity providers',
      query: pageQuery, response: { status: 200, schema: page(s.identityProvider) },
      async handle(_ctx, { query }) {
        const { rows, total } = await idps.list(query.page, query.pageSize);
        return { data: rows.map(view), page: query.page, pageSize: query.pageSize, total };
      },
    },
    {
      method: 'post', path: '/identity-providers', scope: 'iam.idps:create',
      summary: 'Register an upstream identity provider (type oidc, oauth2 or saml); a taken alias answers 409',
      body: s.identityProviderCreate, response: { status: 201, schema: s.identityProvider }, idempotent: true,
      async handle(_ctx, { body }) {
        return view(await idps.create({ ...inputOf(body), alias: body.alias, type: body.type, displayName: body.displayName }));
      },
    },
    {
      method: 'get', path: '/identity-providers/:id', scope: 'iam.idps:read', summary: 'Get an identity provider (never its client secret)',
      response: { status: 200, schema: s.identityProvider },
      async handle(_ctx, { params }) {
        return view(await idps.get(params.id!));
      },
    },
    {
      method: 'patch', path: '/identity-providers/:id', scope: 'iam.idps:update',
      summary: 'Change an identity provider (not its type or alias); clientSecret rotates the secret, null removes it',
      body: s.identityProviderUpdate, response: { status: 200, schema: s.identityProvider },
      async handle(ctx, { params }) {
        const current = await idps.get(params.id!);
        // Only the fields of this provider's type: an issuer sent to a saml provider is a mistake, not a no-op.
        const body = parse(s.identityProviderUpdates[current.type], ctx.request.body, 'body');
        return view(await idps.update(current.id, inputOf(body)));
      },
    },
    {
      method: 'delete', path: '/identity-providers/:id', scope: 'iam.idps:delete',
      summary: 'Delete an identity provider and its links to users (their accounts and other ways in stay)',
      response: { status: 204 },
      async handle(_ctx, { params }) {
        await idps.remove(params.id!);
        return undefined;
      },
    },
  ];
}
