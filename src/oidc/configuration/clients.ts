import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { REGISTRATION_METADATA } from '../../domain/accounts/registration-policy.ts';
import { isMfaPolicy, MFA_POLICIES, MFA_POLICY_METADATA } from '../../domain/authn/mfa-policy.ts';
import { IDP_ALIAS } from '../../domain/federation/identity-providers.ts';
import { RESOURCE_SCOPES, resourceScopesShapeError } from '../../domain/clients/resource-grants.ts';

/** The identity providers whose tokens a client may exchange (grants/broker-exchange.ts). */
export const TOKEN_EXCHANGE_PROVIDERS = 'token_exchange_providers';

/** The client's tenant (clients.tenant_id): where its users sign in; the tenant of its own tokens. */
export const TENANT_ID_METADATA = 'tenant_id';

const BOOLEAN_METADATA = [
  'first_party',
  'require_pkce',
  'introspection_allowed',
  'registration_enabled',
  'registration_welcome_mail',
  'registration_require_email_verification',
  'multi_tenant',
] as const;

/**
 * Our own client metadata: first_party (no consent screen), require_pkce (opt-out for legacy
 * confidential clients), introspection_allowed (may introspect other clients' tokens), and the
 * multi_tenant (a default-tenant client that takes its users' tenant from the `organization`
 * authorization parameter), tenant_id (from the clients table, not settable), the
 * self-registration overrides (registration_*, see domain/accounts/registration-policy.ts) and
 * mfa_policy (a client's MFA policy, see domain/authn/mfa-policy.ts), and token_exchange_providers
 * (aliases of the identity providers whose tokens it may exchange; an alias is not required to
 * exist yet, as a provider may be registered after its clients).
 */
export function clientConfiguration(): Configuration {
  return {
    extraClientMetadata: {
      properties: [...new Set([TENANT_ID_METADATA, ...BOOLEAN_METADATA, ...Object.keys(REGISTRATION_METADATA), MFA_POLICY_METADATA, TOKEN_EXCHANGE_PROVIDERS, RESOURCE_SCOPES])],
      validator: (_ctx, key, value) => {
        // Set from the clients table's column by the adapter, never from registered metadata.
        if (key === TENANT_ID_METADATA) {
          if (value !== undefined && typeof value !== 'string') throw new TypeError('tenant_id must be a string');
          return;
        }
        if (key === 'registration_password') {
          if (value !== undefined && value !== 'required' && value !== 'optional') {
            throw new TypeError('registration_password must be "required" or "optional"');
          }
          return;
        }
        if (key === MFA_POLICY_METADATA) {
          if (value !== undefined && !isMfaPolicy(value)) throw new TypeError(`mfa_policy must be one of ${MFA_POLICIES.join(', ')}`);
          return;
        }
        if (key === TOKEN_EXCHANGE_PROVIDERS) {
          const ok = value === undefined
            || (Array.isArray(value) && value.length <= 50 && value.every((a) => typeof a === 'string' && IDP_ALIAS.test(a)));
          if (!ok) throw new TypeError('token_exchange_providers must be an array of identity provider aliases');
          return;
        }
        // resource_scopes: a machine client's grants (domain/clients/resource-grants.ts).
        if (key === RESOURCE_SCOPES) {
          const why = resourceScopesShapeError(value);
          if (why) throw new TypeError(why);
          return;
        }
        if (value !== undefined && typeof value !== 'boolean') {
          throw new TypeError(`${key} must be a boolean`);
        }
      },
    },
    // Browsers may call the provider's endpoints cross-origin only from the origin of one of the
    // client's redirect URIs, and only for a client that lives in the browser (a public client) or
    // for userinfo. The provider's default policy, stated here so it is ours (and no notice at boot).
    clientBasedCORS: (ctx, origin, client) => {
      if (origin === 'null') return false;
      if (ctx.oidc.route !== 'userinfo' && client.clientAuthMethod !== 'none') return false;
      return (client.redirectUris ?? []).some((uri) => URL.parse(uri)?.origin === origin);
    },
    // First-party clients are trusted by the operator: what they ask for is granted without a
    // consent screen; third-party clients get the consent prompt.
    loadExistingGrant: async (ctx: KoaContextWithOIDC) => {
      const { oidc } = ctx;
      const client = oidc.client!;
      const grantId = oidc.result?.consent?.grantId || oidc.session!.grantIdFor(client.clientId);
      const existing = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
      if (client.first_party !== true) return existing;

      const grant = existing ?? new oidc.provider.Grant({ accountId: oidc.session!.accountId!, clientId: client.clientId });
      grant.addOIDCScope([...oidc.requestParamScopes].join(' '));
      const claims = oidc.claims as { id_token?: object; userinfo?: object } | undefined;
      if (claims?.id_token || claims?.userinfo) {
        grant.addOIDCClaims([...Object.keys(claims.id_token ?? {}), ...Object.keys(claims.userinfo ?? {})]);
      }
      for (const [resource, server] of Object.entries(oidc.resourceServers ?? {})) {
        const allowed = new Set((server.scope ?? '').split(' '));
        const requested = [...oidc.requestParamScopes].filter((s) => allowed.has(s));
        if (requested.length) grant.addResourceScope(resource, requested.join(' '));
      }
      await grant.save();
      return grant;
    },
  };
}
