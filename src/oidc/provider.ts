import type { JSONWebKeySet } from 'jose';
import Provider, { type Configuration, type KoaContextWithOIDC } from 'oidc-provider';
import type { Accounts } from '../domain/authn/accounts.ts';
import type { AcrLevel, MfaPolicy } from '../domain/authn/sign-in-flow.ts';
import type { KeySet } from '../domain/keys/keys.ts';
import type { ResourceServers } from '../domain/clients/resource-servers.ts';
import type { Federation } from '../domain/federation/federation.ts';
import type { SecretBox } from '../infra/crypto.ts';
import type { Logger } from '../infra/logger.ts';
import type { ClientRegistry } from '../domain/clients/clients.ts';
import type { OidcPayloadsRepo } from '../repos/oidc-payloads.ts';
import type { TokenAccess } from '../domain/access/access.ts';
import { createAdapterFactory } from './adapter.ts';
import { useDigestedClientSecrets } from './client-secrets.ts';
import { useQueuedBackchannelLogout } from './backchannel-logout.ts';
import type { BackchannelLogouts } from '../domain/webhooks/backchannel-logout.ts';
import { keepClientInstancesPerRecord } from './client-instances.ts';
import { acrConfiguration, interactionPolicyFor } from './configuration/acr.ts';
import { accountConfiguration } from './configuration/accounts.ts';
import { clientConfiguration } from './configuration/clients.ts';
import { tokenConfiguration, type TokenSettings } from './configuration/tokens.ts';
import { uiConfiguration, type RenderPage } from './configuration/ui.ts';
import { addTenantCheck, organizationConfiguration } from './configuration/organization.ts';
import type { Tenants } from '../domain/tenants/tenants.ts';
import { createBrokerExchange } from './grants/broker-exchange.ts';
import { jwtGrantReference, registerTokenExchange } from './grants/token-exchange.ts';
import { providerCookieNames, treatRequestsAsHttps } from './transport.ts';
import { createCookieSigner } from './cookie-signer.ts';

export type { Provider, KoaContextWithOIDC };

export interface ProviderDeps {
  issuer: string;
  trustProxy: boolean;
  proxyHops: number;
  keys: KeySet;
  tokens: TokenSettings;
  accounts: Accounts;
  resourceServers: ResourceServers;
  /** Upstream identity providers: their tokens can be exchanged for ours. */
  federation: Pick<Federation, 'tokens' | 'accounts'>;
  payloads: OidcPayloadsRepo;
  clients: ClientRegistry;
  box: SecretBox;
  renderPage: RenderPage;
  logger: Logger;
  /** ACR_VALUES, weakest first. */
  acrValues: readonly AcrLevel[];
  /** MFA_POLICY: a session below it (or below a client's stricter mfa_policy) is signed in again. */
  mfaPolicy: MfaPolicy;
  /** Where end_session's back-channel logout notifications are queued. */
  backchannelLogouts: BackchannelLogouts;
  /** Roles (RBAC at resource servers, the roles claim) and service accounts. */
  access?: TokenAccess;
  /** The tenant an authorization request signs in to (the `organization` parameter). */
  tenants: Pick<Tenants, 'resolve'>;
}

/** Merges configuration parts; `features` is merged one level deeper so parts can each add some. */
function merge(...parts: Configuration[]): Configuration {
  const out: Configuration = {};
  for (const part of parts) {
    const { features, ...rest } = part;
    Object.assign(out, rest);
    if (features) out.features = { ...out.features, ...features } as Configuration['features'];
  }
  return out;
}

export function createProvider(deps: ProviderDeps): Provider {
  const policy = interactionPolicyFor(deps.acrValues, deps.mfaPolicy);
  addTenantCheck(policy);
  const configuration = merge(
    {
      adapter: createAdapterFactory({
        payloads: deps.payloads,
        clients: deps.clients,
        digest: (value) => deps.box.digest(value, 'oidc-token-id'),
      }),
      jwks: deps.keys.jwks as Configuration['jwks'],
      cookies: {
        keys: createCookieSigner(deps.keys.cookieKeys),
        names: providerCookieNames(deps.issuer),
        long: { httpOnly: true, sameSite: 'lax' },
        short: { httpOnly: true, sameSite: 'lax' },
      },
      interactions: {
        policy,
        url: async (_ctx, interaction) => `/interaction/${interaction.uid}`,
      },
      features: {
        devInteractions: { enabled: false },
        userinfo: { enabled: true },
        clientCredentials: { enabled: true },
        revocation: { enabled: true },
        // Clients may register backchannel_logout_uri; notifications go through our queue.
        backchannelLogout: { enabled: true },
        introspection: {
          enabled: true,
          // A client learns about its own tokens only, unless registered as an introspector
          // (a resource server or gateway that validates tokens issued to others).
          allowedPolicy: async (_ctx, client, token) =>
            token.clientId === client.clientId || client.introspection_allowed === true,
        },
      },
      clientAuthMethods: ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'none'],
      responseTypes: ['code'],
      conformIdTokenClaims: true,
      // Our token-exchange grant and others are registered by name; keep errors generic in prod.
      allowOmittingSingleRegisteredRedirectUri: false,
    },
    accountConfiguration(deps.accounts, deps.access),
    acrConfiguration(deps.acrValues),
    clientConfiguration(),
    tokenConfiguration(deps.tokens, deps.resourceServers, deps.access),
    uiConfiguration(deps.renderPage),
    organizationConfiguration(deps.tenants),
    jwtGrantReference(),
  );

  const provider = new Provider(deps.issuer, configuration);
  provider.proxy = deps.trustProxy;
  treatRequestsAsHttps(provider, deps.issuer);
  // Only the last `proxyHops` X-Forwarded-For entries were written by our proxies; earlier ones
  // come from the client and could be forged to dodge per-address limits.
  provider.maxIpsCount = deps.proxyHops;
  useDigestedClientSecrets(provider, deps.box, deps.clients);
  useQueuedBackchannelLogout(provider, deps.backchannelLogouts.enqueue);
  keepClientInstancesPerRecord(provider, deps.clients);
  registerTokenExchange(provider, {
    resourceServers: deps.resourceServers,
    publicJwks: deps.keys.publicJwks as JSONWebKeySet,
    accounts: deps.accounts,
    broker: createBrokerExchange({ tokens: deps.federation.tokens, federatedAccounts: deps.federation.accounts, accounts: deps.accounts }),
    access: deps.access,
  });

  provider.on('server_error', (ctx: KoaContextWithOIDC, err: Error) => {
    deps.logger.error({ err, requestId: ctx.state?.requestId, route: ctx.oidc?.route }, 'provider server_error');
  });
  return provider;
}
