import type { Client } from 'oidc-provider';
import { errors } from 'oidc-provider';
import type { Accounts } from '../../domain/authn/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import type { FederatedAccounts } from '../../domain/federation/federated-accounts.ts';
import { UpstreamRejected } from '../../domain/federation/upstream-oauth.ts';
import { unverifiedClaims, type UpstreamTokens } from '../../domain/federation/upstream-tokens.ts';
import { TOKEN_EXCHANGE_PROVIDERS } from '../configuration/clients.ts';
import { clientTenantOf } from '../configuration/organization.ts';
import { isMultiTenant } from '../../domain/tenants/sign-in-tenant.ts';
import { DEFAULT_TENANT_ID } from '../../domain/tenants/tenant-scope.ts';

/**
 * The broker side of token exchange (Keycloak's "external to internal"): a JWT an upstream OpenID
 * Connect provider issued to us (its ID token, usually) is exchanged for our token for the local
 * account linked to the upstream subject. The grant handler (token-exchange.ts) asks here first
 * whether a JWT subject token is an upstream's; everything after (target, scopes, lifetime) is
 * shared with the exchange of our own tokens.
 *
 * Errors: unauthorized_client for a client whose token_exchange_providers does not list the
 * provider (RFC 6749 5.2: the client is not authorized for this grant with this provider's tokens;
 * Keycloak refuses the same case as "client not allowed to exchange"); invalid_request for a token
 * that does not verify (RFC 8693 2.2.2); invalid_grant for a genuine token whose upstream subject
 * has no active local account; temporarily_unavailable (503) when the upstream's keys cannot be had.
 */

const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
export const FEDERATED_AMR = ['fed'];

type LocalUser = NonNullable<Awaited<ReturnType<FederatedAccounts['linkedUser']>>>;

/** An upstream's token, verified, and the local account its subject is linked to. */
export interface BrokeredSubject {
  kind: 'federated';
  accountId: string;
  user: LocalUser;
  providerAlias: string;
  /** The upstream token's end: the exchanged token ends no later. */
  exp: number;
}

const invalidToken = () => new errors.InvalidRequest('subject_token is invalid or expired');

function unavailable(): Error {
  const err = new errors.TemporarilyUnavailable('the identity provider did not answer in time; retry later');
  return Object.assign(err, { status: 503, statusCode: 503 });
}

export function createBrokerExchange(deps: {
  tokens: UpstreamTokens;
  federatedAccounts: Pick<FederatedAccounts, 'linkedUser'>;
  accounts: Pick<Accounts, 'recordSignIn'>;
}) {
  /** The aliases the client was registered to exchange tokens of. */
  const allowedAliases = (client: Client): Set<string> => {
    const value = (client as unknown as Record<string, unknown>)[TOKEN_EXCHANGE_PROVIDERS];
    return new Set(Array.isArray(value) ? value.filter((a): a is string => typeof a === 'string') : []);
  };

  return {
    /**
     * The brokered subject of `jwt` when its issuer is a registered, enabled OpenID Connect
     * provider; undefined otherwise (one of ours, or no issuer we trust: the caller checks it as ours).
     */
    async subjectOf(jwt: string, type: unknown, client: Client): Promise<BrokeredSubject | undefined> {
      const claims = unverifiedClaims(jwt);
      if (!claims?.iss) return undefined;
      const providers = await deps.tokens.providersOf(claims.iss);
      if (!providers.length) return undefined;
      // An upstream's token is a JWT, never an access token of ours.
      if (type !== JWT_TOKEN_TYPE) throw new errors.InvalidRequest('an identity provider\'s token is exchanged as subject_token_type jwt');

      const allowed = allowedAliases(client);
      // A client exchanges tokens of its own tenant's providers only (a multi_tenant client: any tenant's).
      const clientTenant = clientTenantOf(client);
      const permitted = providers.filter((p) => allowed.has(p.alias) && (isMultiTenant(clientTenant) || p.tenantId === (clientTenant.tenantId ?? DEFAULT_TENANT_ID)));
      if (!permitted.length) throw new errors.UnauthorizedClient('the client may not exchange tokens of this identity provider');
      // Two registrations at one upstream differ by the client the token was issued to.
      const provider = permitted.find((p) => claims.aud.includes(p.oidc.clientId));
      if (!provider) throw invalidToken();

      let subject;
      try {
        subject = await deps.tokens.verify(provider, jwt);
      } catch (err) {
        if (err instanceof UpstreamRejected) throw invalidToken();
        if (err instanceof AppError && err.code === 'IDENT_FEDERATION_UNAVAILABLE') throw unavailable();
        throw err;
      }
      // Only a linked, active account: an exchange never creates or links one (see linkedUser).
      const user = await deps.federatedAccounts.linkedUser(provider, subject.subject);
      if (!user) throw new errors.InvalidGrant('the upstream account is not linked to an active account here');
      return { kind: 'federated', accountId: user.id, user, providerAlias: provider.alias, exp: subject.exp };
    },

    /** The exchange stands for a sign-in through the provider: user.signed_in says so. */
    async recordSignIn(subject: BrokeredSubject, context: { clientId: string; requestId?: string | null | undefined }): Promise<void> {
      await deps.accounts.recordSignIn(subject.user, FEDERATED_AMR, context, subject.providerAlias, 'token_exchange');
    },
  };
}

export type BrokerExchange = ReturnType<typeof createBrokerExchange>;
