import type Provider from 'oidc-provider';
import * as oidc from 'openid-client';
import { ACCOUNT_CONSOLE_CLIENT_ID } from './client.ts';

/**
 * The account console as a relying party of this provider (openid-client). Its front channel uses
 * the public ISSUER like any browser would; its back channel (token endpoint, JWKS) goes to this
 * instance's own loopback origin, because behind a proxy the public ISSUER may not be reachable
 * from inside.
 */
export function createConsoleRelyingParty(provider: Provider, issuer: string, internalOrigin: () => string) {
  const redirectUri = `${issuer}/account/callback`;
  const postLogoutRedirectUri = `${issuer}/account/signed-out`;

  // Every endpoint is the issuer plus the provider's route path; a proxy in front maps the
  // issuer's path onto the app's root, so the internal URL is the loopback origin plus that path.
  const backChannel: oidc.CustomFetch = (url, options) => {
    if (url !== issuer && !url.startsWith(`${issuer}/`) && !url.startsWith(`${issuer}?`)) {
      // Nothing of ours lives elsewhere: refuse rather than let the server fetch arbitrary URLs.
      return Promise.reject(new Error('account console back channel: URL outside the issuer'));
    }
    // openid-client's body type is a superset of the DOM typings' BodyInit (Uint8Array<ArrayBufferLike>).
    return fetch(`${internalOrigin()}${url.slice(issuer.length)}`, options as RequestInit);
  };

  let configuration: Promise<oidc.Configuration> | undefined;

  /**
   * The provider's metadata as the public sees it, taken from the provider object rather than
   * discovered: discovery over the loopback would describe the loopback host (oidc-provider builds
   * endpoint URLs from the request), and the browser must be sent to the public one.
   */
  async function build(): Promise<oidc.Configuration> {
    const endpoint = (name: string) => `${issuer}${provider.pathFor(name)}`;
    const client = await provider.Client.find(ACCOUNT_CONSOLE_CLIENT_ID);
    if (!client) throw new Error('the account-console client is not registered');
    const config = new oidc.Configuration(
      {
        issuer,
        authorization_endpoint: endpoint('authorization'),
        token_endpoint: endpoint('token'),
        jwks_uri: endpoint('jwks'),
        end_session_endpoint: endpoint('end_session'),
        code_challenge_methods_supported: ['S256'],
        // oidc-provider always sends `iss` with the authorization response (RFC 9207): require it.
        authorization_response_iss_parameter_supported: true,
      },
      ACCOUNT_CONSOLE_CLIENT_ID,
      {
        redirect_uris: [redirectUri],
        // The alg the provider signs this client's ID tokens with (its registered or default one).
        ...(client.idTokenSignedResponseAlg ? { id_token_signed_response_alg: client.idTokenSignedResponseAlg } : {}),
      },
      oidc.None(),
    );
    config[oidc.customFetch] = backChannel;
    config.timeout = 10;
    // openid-client checks the advertised (issuer) URLs before customFetch runs, so plain http is
    // allowed only when the issuer itself is http (development, tests). The loopback hop behind an
    // https issuer is http by nature and never seen by that check.
    if (new URL(issuer).protocol === 'http:') oidc.allowInsecureRequests(config);
    return config;
  }

  return {
    redirectUri,
    postLogoutRedirectUri,
    /** Built once per process; a failed attempt is retried next time. */
    configuration(): Promise<oidc.Configuration> {
      configuration ??= build().catch((err: unknown) => {
        configuration = undefined;
        throw err;
      });
      return configuration;
    },
  };
}

export type ConsoleRelyingParty = ReturnType<typeof createConsoleRelyingParty>;
