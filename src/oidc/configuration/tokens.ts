import { errors, type Client, type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import { ADMIN_SCOPES, ADMIN_TOKEN_TTL_SECONDS, adminScopesBeyond } from '../../domain/clients/admin-scopes.ts';
import { grantedScopes } from '../../domain/clients/resource-grants.ts';
import type { ResourceServerInfo, ResourceServers } from '../../domain/clients/resource-servers.ts';
import type { TokenAccess } from '../../domain/access/access.ts';
import type { ExchangeState } from '../grants/token-exchange.ts';

export interface TokenSettings {
  accessTokenTtl: number;
  idTokenTtl: number;
  refreshTokenTtl: number;
  sessionTtl: number;
  adminAudience: string;
}

/** The iam.* scopes a request names (every one is beyond a caller that holds nothing). */
const requestedAdminScopes = (ctx: KoaContextWithOIDC) => adminScopesBeyond(ctx.oidc.params?.scope as string | undefined, new Set());

/** A client's own token at the token endpoint: the only flow whose `sub` is the client itself. */
const isClientCredentials = (ctx: KoaContextWithOIDC) =>
  ctx.oidc.route === 'token' && ctx.oidc.params?.grant_type === 'client_credentials';

/**
 * Admin power (iam.* scopes, the admin API audience) goes only to client_credentials grants: never
 * into a user's token (authorization code, refresh) nor an exchanged one. Both hooks below run for
 * every authorization request, with or without `resource`, so a request for either is refused
 * before any interaction: the admin audience with invalid_target (RFC 8707: not a resource this
 * request may name), iam.* scopes with invalid_scope (RFC 6749 4.1.2.1).
 */
function refuseAdminAccessOutsideClientCredentials(ctx: KoaContextWithOIDC, adminAudience: string, resource?: string) {
  if (isClientCredentials(ctx)) return;
  if (resource === adminAudience) {
    throw new errors.InvalidTarget('the admin API audience is issued only to client_credentials grants');
  }
  const adminScopes = requestedAdminScopes(ctx);
  if (adminScopes.length) {
    throw new errors.InvalidScope('admin (iam.*) scopes are issued only to client_credentials grants', adminScopes.join(' '));
  }
}

/**
 * The scopes a client_credentials token may carry at a resource server: `permitted`, what the
 * machine was granted there that the server still defines, so a deleted or renamed scope is gone
 * at once. None: invalid_target (RFC 8707: not a resource this machine may name). Asking for more:
 * invalid_scope (RFC 6749 5.2), as the admin API and token exchange answer, rather than a silently
 * narrower token. `holder` names the machine in the error.
 */
function withinMachineGrant(ctx: KoaContextWithOIDC, permitted: readonly string[], holder: string): string[] {
  if (!permitted.length) throw new errors.InvalidTarget(`${holder} is granted no scope at this resource server`);
  const allowed = new Set(permitted);
  const beyond = [...ctx.oidc.requestParamScopes].filter((s) => s && !allowed.has(s));
  if (beyond.length) throw new errors.InvalidScope(`requested scope is not granted to ${holder} at this resource server`, beyond.join(' '));
  return [...permitted];
}

/** A plain machine client: its resource_scopes grant there, in the grant's order. */
function machineScopes(ctx: KoaContextWithOIDC, rs: ResourceServerInfo, client: Client): string[] {
  const defined = new Set(rs.scopes);
  const granted = grantedScopes(client as unknown as Record<string, unknown>, rs.identifier).filter((s) => defined.has(s));
  return withinMachineGrant(ctx, [...new Set(granted)], 'this client');
}

/** A service account: the scopes its roles grant there, and nothing else (no resource_scopes grant counts). */
function serviceAccountScopes(ctx: KoaContextWithOIDC, rs: ResourceServerInfo, held: readonly string[]): string[] {
  const granted = new Set(held);
  return withinMachineGrant(ctx, rs.scopes.filter((s) => granted.has(s)), 'this service account (by its roles)');
}

/** A user's token (code, refresh) from the token endpoint: the flows RBAC trims at a resource server. */
const isUserTokenRequest = (ctx: KoaContextWithOIDC) => ctx.oidc.route === 'token' && !isClientCredentials(ctx);

/** The scopes the token request's source (its code or refresh token) holds: the `roles` claim needs `roles` among them. */
function sourceScopes(ctx: KoaContextWithOIDC): Set<string> | undefined {
  // A refresh naming a narrower scope gets only that.
  if (ctx.oidc.params?.grant_type === 'refresh_token' && ctx.oidc.params.scope) return ctx.oidc.requestParamScopes;
  const entities = ctx.oidc.entities as { AuthorizationCode?: { scopes: Set<string> }; RefreshToken?: { scopes: Set<string> } };
  return entities.AuthorizationCode?.scopes ?? entities.RefreshToken?.scopes;
}

/** Lifetimes, PKCE, refresh rotation and resource servers (RFC 8707 / RFC 9068). */
export function tokenConfiguration(settings: TokenSettings, resourceServers: ResourceServers, access?: TokenAccess): Configuration {
  return {
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.accessTokenTtl,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? settings.accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: settings.idTokenTtl,
      // A rotated refresh token keeps the remaining life of the one it replaces, so rotation
      // never extends a grant beyond its first refresh token's lifetime.
      RefreshToken: (ctx, token) => {
        const rotated = ctx?.oidc?.entities?.RotatedRefreshToken;
        if (rotated && rotated !== token) return rotated.remainingTTL;
        return settings.refreshTokenTtl;
      },
      Session: settings.sessionTtl,
      Grant: settings.refreshTokenTtl,
      Interaction: 3600,
    },
    pkce: {
      // S256 is the only method v9 offers. Public clients always need PKCE; confidential ones too
      // unless registered with require_pkce=false (legacy relying parties).
      required: (_ctx, client) => client.clientAuthMethod === 'none' || client.require_pkce !== false,
    },
    // Every access token names its tenant: the user's for a user's token (the account the grant
    // loaded), the client's own for client_credentials. Token exchange adds the actor of an
    // actor_token as the `act` claim.
    // A user's token granted the `roles` scope (in its code or refresh token, or itself when it is
    // for userinfo) carries the names of the user's roles, read when it is issued.
    extraTokenClaims: async (ctx, token) => {
      const { act, tenantId: exchanged } = (ctx.state as ExchangeState | undefined) ?? {};
      const account = ctx.oidc.account as { tenantId?: string } | undefined;
      // A token exchange names its subject's tenant (grants/token-exchange.ts).
      const tenantId = exchanged ?? account?.tenantId ?? (ctx.oidc.client as { tenant_id?: string } | undefined)?.tenant_id;
      const accountId = 'accountId' in token ? token.accountId : undefined;
      const scopes = sourceScopes(ctx) ?? token.scopes;
      const granted = ctx.oidc.entities.Grant?.getOIDCScopeFiltered(new Set(['roles']));
      const roles = access && accountId && scopes.has('roles') && granted === 'roles' ? await access.roles.roleNames(accountId) : undefined;
      return {
        ...(tenantId ? { tenant_id: tenantId } : {}),
        ...(roles ? { roles } : {}),
        ...('gty' in token && token.gty === 'token_exchange' && act ? { act } : {}),
      };
    },
    // Every use rotates; a consumed token presented again revokes the whole grant.
    rotateRefreshToken: true,
    issueRefreshToken: async (_ctx, client, code) =>
      client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    features: {
      resourceIndicators: {
        enabled: true,
        // Without a resource the token is opaque and meant for userinfo, except that a client asking
        // for admin scopes by client_credentials gets a token for the admin API, the only place they work.
        defaultResource: async (ctx, _client, oneOf) => {
          refuseAdminAccessOutsideClientCredentials(ctx, settings.adminAudience);
          if (oneOf === undefined && isClientCredentials(ctx) && requestedAdminScopes(ctx).length) return settings.adminAudience;
          return oneOf;
        },
        useGrantedResource: async () => true,
        getResourceServerInfo: async (ctx: KoaContextWithOIDC, resourceIndicator: string, client) => {
          refuseAdminAccessOutsideClientCredentials(ctx, settings.adminAudience, resourceIndicator);
          // The admin API grants only the iam.* scopes listed in the client's registered `scope`, so no
          // client gets admin rights it was not given explicitly.
          if (resourceIndicator === settings.adminAudience) {
            const allowed = new Set(client.scope?.split(' ') ?? []);
            return {
              audience: resourceIndicator,
              scope: ADMIN_SCOPES.filter((s) => allowed.has(s)).join(' '),
              accessTokenFormat: 'jwt',
              accessTokenTTL: ADMIN_TOKEN_TTL_SECONDS,
              jwt: { sign: { alg: 'ES256' as const } },
            };
          }
          const rs = await resourceServers.find(resourceIndicator);
          if (!rs) throw new errors.InvalidTarget('resource indicator is not registered');
          // A machine reaches a resource server only through its grant (a service account: its roles);
          // a user's consent governs the rest, and at a resource server with RBAC the user's roles
          // too: the token gets only the scopes they grant (none: a token without scope).
          let scopes = rs.scopes;
          if (isClientCredentials(ctx)) {
            const account = access ? await access.serviceAccounts.byClientId(client.clientId) : undefined;
            scopes = account ? serviceAccountScopes(ctx, rs, await access!.roles.scopesAt('service_account', account.id, rs.identifier)) : machineScopes(ctx, rs, client);
          } else if (rs.rbac && isUserTokenRequest(ctx) && access) {
            const accountId = (ctx.oidc.account as { accountId?: string } | undefined)?.accountId;
            const held = new Set(accountId ? await access.roles.scopesAt('user', accountId, rs.identifier) : []);
            scopes = rs.scopes.filter((s) => held.has(s));
          }
          return {
            audience: rs.identifier,
            scope: scopes.join(' '),
            accessTokenFormat: rs.accessTokenFormat,
            ...(rs.accessTokenTtl ? { accessTokenTTL: rs.accessTokenTtl } : {}),
            ...(rs.accessTokenFormat === 'jwt' ? { jwt: { sign: { alg: 'ES256' as const } } } : {}),
          };
        },
      },
    },
  };
}
