import { AsyncLocalStorage } from 'node:async_hooks';
import { BrokenCircuitError, circuitBreaker, ConsecutiveBreaker, handleWhen, type CircuitBreakerPolicy } from 'cockatiel';
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import * as oidc from 'openid-client';
import { AppError } from '../errors.ts';
import { upstreamUrl } from './upstream-urls.ts';
import type { ClaimMapping, IdentityProvider, IdentityProviders, OAuth2Settings, OidcSettings } from './identity-providers.ts';

/**
 * Signing in through an upstream OpenID Connect provider, or a plain OAuth 2.0 one with a user
 * endpoint (GitHub-style), with openid-client: code flow with PKCE S256, state and (OIDC) nonce,
 * ID token validation by openid-client, userinfo when the ID token lacks the email.
 *
 * Every sign-in's calls to the upstream share one 10-second deadline, and each provider has a
 * circuit breaker: after 5 failures in a row it is not called for 30 s, so a dead upstream costs
 * its users an immediate error page instead of a wait each (IDENT_FEDERATION_UNAVAILABLE).
 */

export interface UpstreamIdentity {
  subject: string;
  email: string | null;
  /** The upstream says so (or the provider is trusted for emails). */
  emailVerified: boolean;
  name: string | null;
  givenName: string | null;
  familyName: string | null;
  groups: string[];
  /** The upstream's authentication methods (OIDC `amr`), for providers trusted for MFA. */
  amr: string[];
}

/** What the authorization request committed to and the callback must match. */
export interface UpstreamChecks {
  state: string;
  nonce: string | null;
  codeVerifier: string;
}

/** The upstream refused or answered something we cannot accept (not an outage). */
export class UpstreamRejected extends Error {
  override readonly name = 'UpstreamRejected';
}

export const UPSTREAM_DEADLINE_MS = 10_000;
const BREAKER_THRESHOLD = 5;
const BREAKER_HALF_OPEN_AFTER_MS = 30_000;
const deadline = new AsyncLocalStorage<AbortSignal>();

/** Calls bounded by the current sign-in's deadline (the AsyncLocalStorage one), else by a fresh one. */
const boundedFetch: oidc.CustomFetch = (url, options) =>
  fetch(url, {
    ...options,
    signal: AbortSignal.any([...(options.signal ? [options.signal] : []), deadline.getStore() ?? AbortSignal.timeout(UPSTREAM_DEADLINE_MS)]),
    headers: { ...Object.fromEntries(new Headers(options.headers as HeadersInit)), 'user-agent': 'idp-federation' },
  } as RequestInit);

/** Whether `err` says the upstream is down or slow, rather than that it refused this sign-in. */
function isOutage(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (!(e instanceof Error)) {
      if (e instanceof Response) return e.status >= 500;
      continue;
    }
    if (e.name === 'TimeoutError' || e.name === 'AbortError') return true;
    if ((e as { code?: unknown }).code === 'ERR_JWKS_TIMEOUT') return true;
    if (e instanceof TypeError && /fetch failed/i.test(e.message)) return true;
    const status = (e as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 500) return true;
  }
  return false;
}

const claimOf = (claims: Record<string, unknown>, name: string | null): unknown => (name ? claims[name] : undefined);
const stringClaim = (claims: Record<string, unknown>, name: string | null): string | null => {
  const value = claimOf(claims, name);
  return typeof value === 'string' && value ? value : typeof value === 'number' ? String(value) : null;
};

/** The local fields from an upstream's claims, as the provider's mapping says. */
export function identityFromClaims(claims: Record<string, unknown>, mapping: ClaimMapping, trustEmail: boolean): UpstreamIdentity {
  const subject = stringClaim(claims, mapping.subject);
  if (!subject) throw new UpstreamRejected(`the upstream gave no subject (claim "${mapping.subject}")`);
  const verified = claimOf(claims, mapping.emailVerified);
  const groups = claimOf(claims, mapping.groups);
  const amr = claims.amr;
  return {
    subject,
    email: stringClaim(claims, mapping.email)?.toLowerCase() ?? null,
    emailVerified: trustEmail || verified === true || verified === 'true',
    name: stringClaim(claims, mapping.name),
    givenName: stringClaim(claims, mapping.givenName),
    familyName: stringClaim(claims, mapping.familyName),
    groups: Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : typeof groups === 'string' ? [groups] : [],
    amr: Array.isArray(amr) ? amr.filter((m): m is string => typeof m === 'string') : [],
  };
}

export function createUpstreamOAuth(deps: { identityProviders: IdentityProviders; redirectUri: (provider: IdentityProvider) => string }) {
  // Per provider version: a change of the provider (new secret, new issuer) builds a new configuration.
  const configs = new Map<string, Promise<oidc.Configuration>>();
  const keySets = new Map<string, JWTVerifyGetKey>();
  const breakers = new Map<string, CircuitBreakerPolicy>();

  const breakerOf = (provider: IdentityProvider) => {
    let breaker = breakers.get(provider.id);
    if (!breaker) {
      breaker = circuitBreaker(handleWhen(isOutage), { halfOpenAfter: BREAKER_HALF_OPEN_AFTER_MS, breaker: new ConsecutiveBreaker(BREAKER_THRESHOLD) });
      breakers.set(provider.id, breaker);
    }
    return breaker;
  };

  async function clientAuth(provider: IdentityProvider, method: OidcSettings['tokenEndpointAuthMethod']): Promise<oidc.ClientAuth> {
    if (method === 'none') return oidc.None();
    const secret = await deps.identityProviders.clientSecret(provider);
    if (!secret) throw new UpstreamRejected('the provider has no client secret');
    return method === 'client_secret_post' ? oidc.ClientSecretPost(secret) : oidc.ClientSecretBasic(secret);
  }

  async function buildConfig(provider: IdentityProvider): Promise<oidc.Configuration> {
    const settings = provider.type === 'oidc' ? provider.oidc : provider.type === 'oauth2' ? provider.oauth2 : undefined;
    if (!settings) throw new Error('not an OAuth provider');
    const auth = await clientAuth(provider, settings.tokenEndpointAuthMethod);
    const insecure = (url: string) => new URL(url).protocol === 'http:'; // loopback only: checked at registration
    if (provider.type === 'oidc') {
      const { issuer } = provider.oidc;
      return oidc.discovery(new URL(issuer), settings.clientId, { redirect_uris: [deps.redirectUri(provider)] }, auth, {
        [oidc.customFetch]: boundedFetch,
        ...(insecure(issuer) ? { execute: [oidc.allowInsecureRequests] } : {}),
      });
    }
    const o = (provider as { oauth2: OAuth2Settings }).oauth2;
    const config = new oidc.Configuration(
      // OAuth 2.0 servers without metadata have no issuer; the authorization endpoint's origin stands in.
      { issuer: new URL(o.authorizationEndpoint).origin, authorization_endpoint: o.authorizationEndpoint, token_endpoint: o.tokenEndpoint, userinfo_endpoint: o.userinfoEndpoint },
      settings.clientId,
      { redirect_uris: [deps.redirectUri(provider)] },
      auth,
    );
    config[oidc.customFetch] = boundedFetch;
    if ([o.authorizationEndpoint, o.tokenEndpoint, o.userinfoEndpoint].some(insecure)) oidc.allowInsecureRequests(config);
    return config;
  }

  const versionOf = (provider: IdentityProvider) => `${provider.id}:${provider.updatedAt.getTime()}`;

  function configOf(provider: IdentityProvider): Promise<oidc.Configuration> {
    const key = versionOf(provider);
    let config = configs.get(key);
    if (!config) {
      config = buildConfig(provider);
      // A failed discovery is tried again next time, not remembered.
      config.catch(() => configs.delete(key));
      for (const k of configs.keys()) if (k.startsWith(`${provider.id}:`)) configs.delete(k);
      configs.set(key, config);
    }
    return config;
  }

  /**
   * The upstream's signing keys, from the jwks_uri its discovery names (https, or http on loopback
   * as for every upstream URL). jose keeps them for 10 minutes and fetches them again at most every
   * 30 s when a token names a key it does not know (the upstream rotated).
   */
  async function keysOf(provider: IdentityProvider): Promise<JWTVerifyGetKey> {
    const key = versionOf(provider);
    let keys = keySets.get(key);
    if (!keys) {
      const jwksUri = (await configOf(provider)).serverMetadata().jwks_uri;
      if (!jwksUri) throw new UpstreamRejected('the upstream publishes no jwks_uri');
      try {
        upstreamUrl(jwksUri, 'jwks_uri');
      } catch {
        throw new UpstreamRejected('the upstream jwks_uri is neither https nor on loopback');
      }
      keys = createRemoteJWKSet(new URL(jwksUri), { timeoutDuration: UPSTREAM_DEADLINE_MS, headers: { 'user-agent': 'idp-federation' } });
      for (const k of keySets.keys()) if (k.startsWith(`${provider.id}:`)) keySets.delete(k);
      keySets.set(key, keys);
    }
    return keys;
  }

  /** Runs `work` against the upstream within the deadline and behind the provider's breaker. */
  async function upstream<T>(provider: IdentityProvider, work: () => Promise<T>): Promise<T> {
    const signal = AbortSignal.timeout(UPSTREAM_DEADLINE_MS);
    try {
      return await deadline.run(signal, () => breakerOf(provider).execute(work));
    } catch (err) {
      if (err instanceof BrokenCircuitError) throw new AppError('IDENT_FEDERATION_UNAVAILABLE', `${provider.alias}: circuit open after repeated failures`);
      if (isOutage(err)) throw new AppError('IDENT_FEDERATION_UNAVAILABLE', `${provider.alias}: the upstream did not answer in time or failed`);
      if (err instanceof UpstreamRejected || err instanceof AppError) throw err;
      throw new UpstreamRejected(err instanceof Error ? err.message : 'the upstream response was refused');
    }
  }

  return {
    /** Fresh checks for one authorization request. */
    newChecks(provider: IdentityProvider): UpstreamChecks {
      return { state: oidc.randomState(), nonce: provider.type === 'oidc' ? oidc.randomNonce() : null, codeVerifier: oidc.randomPKCECodeVerifier() };
    },

    /** Where to send the person: the upstream's authorization endpoint with our request. */
    async authorizationUrl(provider: IdentityProvider, checks: UpstreamChecks): Promise<URL> {
      return upstream(provider, async () => {
        const config = await configOf(provider);
        const settings = (provider.type === 'oidc' ? provider.oidc : (provider as { oauth2: OAuth2Settings }).oauth2);
        return oidc.buildAuthorizationUrl(config, {
          redirect_uri: deps.redirectUri(provider),
          scope: settings.scopes.join(' '),
          state: checks.state,
          code_challenge: await oidc.calculatePKCECodeChallenge(checks.codeVerifier),
          code_challenge_method: 'S256',
          ...(checks.nonce ? { nonce: checks.nonce } : {}),
        });
      });
    },

    /**
     * The identity the upstream vouches for, from the callback URL it sent the browser to: the code
     * exchanged (state, PKCE and, for OIDC, nonce and the ID token checked), claims mapped.
     */
    async identityFrom(provider: IdentityProvider, callbackUrl: URL, checks: UpstreamChecks): Promise<UpstreamIdentity> {
      return upstream(provider, async () => {
        const config = await configOf(provider);
        if (provider.type === 'oidc') {
          const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, {
            pkceCodeVerifier: checks.codeVerifier, expectedState: checks.state, expectedNonce: checks.nonce!, idTokenExpected: true,
          });
          let claims: Record<string, unknown> = { ...tokens.claims() };
          if (!claims[provider.oidc.claimMapping.email] && config.serverMetadata().userinfo_endpoint) {
            const info = await oidc.fetchUserInfo(config, tokens.access_token, String(claims.sub));
            // The ID token's own claims (sub, amr) win over userinfo's.
            claims = { ...info, ...claims };
          }
          return identityFromClaims(claims, provider.oidc.claimMapping, provider.trustEmail);
        }
        const o = (provider as { oauth2: OAuth2Settings }).oauth2;
        const tokens = await oidc.authorizationCodeGrant(config, callbackUrl, { pkceCodeVerifier: checks.codeVerifier, expectedState: checks.state });
        const response = await oidc.fetchProtectedResource(config, tokens.access_token, new URL(o.userinfoEndpoint), 'GET');
        if (!response.ok) throw response.status >= 500 ? response : new UpstreamRejected(`the user endpoint answered ${response.status}`);
        const claims = (await response.json()) as Record<string, unknown>;
        return identityFromClaims(claims, o.claimMapping, provider.trustEmail);
      });
    },

    /**
     * The payload of a JWT the upstream signed, checked against its published keys and `options`
     * (issuer, audience, times). A bad token is UpstreamRejected; an upstream (or its JWKS) that
     * does not answer is IDENT_FEDERATION_UNAVAILABLE, and counts toward its breaker.
     */
    async verifyJwt(provider: IdentityProvider, jwt: string, options: JWTVerifyOptions): Promise<JWTPayload> {
      return upstream(provider, async () => {
        const keys = await keysOf(provider);
        try {
          return (await jwtVerify(jwt, keys, options)).payload;
        } catch (err) {
          if (isOutage(err)) throw err;
          throw new UpstreamRejected(err instanceof Error ? err.message : 'the token was refused');
        }
      });
    },
  };
}

export type UpstreamOAuth = ReturnType<typeof createUpstreamOAuth>;
