import type { Knex } from 'knex';

// Bearer tokens (access, refresh, client-credentials tokens, codes, ...) are now stored under a
// keyed digest of their value (oidc/adapter.ts DIGESTED_MODELS). Rows written before were keyed by
// the raw value; digesting them needs KEY_ENCRYPTION_KEY, which a migration (a Knex handle only)
// does not get, and leaving them would keep working tokens in the database until they expire.
// So they go: access tokens and codes are short-lived, and a refresh-token holder signs in again once.
const BEARER_MODELS = [
  'AccessToken',
  'AuthorizationCode',
  'RefreshToken',
  'ClientCredentials',
  'BackchannelAuthenticationRequest',
  'PushedAuthorizationRequest',
  'RegistrationAccessToken',
  'InitialAccessToken',
];

export async function up(knex: Knex): Promise<void> {
  await knex('oidc_payloads').whereIn('model', BEARER_MODELS).delete();
}

export async function down(): Promise<void> {
  // Nothing to restore: the deleted tokens were raw values that must not come back.
}
