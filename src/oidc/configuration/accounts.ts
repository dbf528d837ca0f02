import type { Configuration } from 'oidc-provider';
import { ADMIN_SCOPES } from '../../domain/clients/admin-scopes.ts';
import { claimsOf, type Accounts } from '../../domain/authn/accounts.ts';
import type { TokenAccess } from '../../domain/access/access.ts';

/** Scopes, claims and account lookup for ID tokens and userinfo. */
export function accountConfiguration(accounts: Accounts, access?: Pick<TokenAccess, 'roles'>): Configuration {
  return {
    // The admin scopes are registered too, so clients can list them in their `scope` metadata.
    // `roles`: the names of the user's roles (ID token, userinfo, and access tokens, tokens.ts).
    scopes: ['openid', 'offline_access', 'profile', 'email', 'roles', ...ADMIN_SCOPES],
    claims: {
      // The provider's defaults: claims a client may request with the claims parameter.
      acr: null,
      auth_time: null,
      sid: null,
      iss: null,
      // amr (RFC 8176) and acr (the level reached, see ACR_VALUES) in every ID token: how the user
      // signed in (pwd; otp and mfa after a second factor), not only when a client asks for acr.
      // roles: listed under openid too, so the ID token carries it (conformIdTokenClaims keeps only
      // openid's claims there); findAccount answers it only when the roles scope was granted.
      openid: ['sub', 'amr', 'acr', 'tenant_id', 'roles'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name', 'locale'],
      roles: ['roles'],
    },
    // Suspended or deactivated accounts are not found, so their refresh tokens stop working too.
    findAccount: async (_ctx, id) => {
      const user = await accounts.findActive(id);
      if (!user) return undefined;
      return {
        accountId: user.id,
        // Read by extraTokenClaims (tokens.ts): an access token carries its user's tenant.
        tenantId: user.tenant_id,
        claims: async (_use, scope) => {
          const scopes = new Set(scope.split(' '));
          // One query, and only when the roles scope is asked for.
          const roles = access && scopes.has('roles') ? await access.roles.roleNames(user.id) : undefined;
          return { ...claimsOf(user, scopes), ...(roles ? { roles } : {}) };
        },
      };
    },
  };
}
