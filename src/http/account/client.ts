import type { ClientRegistry } from '../../domain/clients/clients.ts';

/** The account console's client_id: a built-in first-party public client, like Keycloak's `account-console`. */
export const ACCOUNT_CONSOLE_CLIENT_ID = 'account-console';

/**
 * The account console signs users in through the provider like any relying party (code + PKCE,
 * public client). It is made to match this issuer at every boot.
 */
export async function ensureAccountConsoleClient(clients: ClientRegistry, issuer: string): Promise<void> {
  await clients.ensureBuiltIn(
    {
      metadata: {
        client_id: ACCOUNT_CONSOLE_CLIENT_ID,
        client_name: 'Account console',
        application_type: 'web',
        grant_types: ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [`${issuer}/account/callback`],
        post_logout_redirect_uris: [`${issuer}/account/signed-out`],
        token_endpoint_auth_method: 'none',
        scope: 'openid profile email',
      },
      firstParty: true,
    },
    "the account console's client, made to match ISSUER at every boot",
  );
}
