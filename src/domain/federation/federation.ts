import type { FederatedAccounts } from './federated-accounts.ts';
import type { IdentityProviders } from './identity-providers.ts';
import type { SamlServiceProvider } from './saml-sp.ts';
import type { FederationRecords } from './sign-in-records.ts';
import type { UpstreamOAuth } from './upstream-oauth.ts';
import type { UpstreamTokens } from './upstream-tokens.ts';

/** What the sign-in pages, the callback routes and the token exchange use of federation. */
export interface Federation {
  identityProviders: IdentityProviders;
  upstream: UpstreamOAuth;
  saml: SamlServiceProvider;
  accounts: FederatedAccounts;
  records: FederationRecords;
  tokens: UpstreamTokens;
}
