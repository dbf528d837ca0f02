import { decodeJwt } from 'jose';
import type { IdentityProvider, IdentityProviders } from './identity-providers.ts';
import { UpstreamRejected, type UpstreamOAuth } from './upstream-oauth.ts';

/**
 * JWTs an upstream OpenID Connect provider issued to us as its client (its ID tokens, usually),
 * presented by one of our clients to be exchanged for our tokens (Keycloak's "external to internal
 * token exchange"). A token counts only if the provider is registered and enabled, its keys signed
 * it, it names the provider's issuer exactly, it was issued to our client at the provider (`aud`),
 * and it is current and recent.
 */

type OidcProvider = Extract<IdentityProvider, { type: 'oidc' }>;

/** Clocks differ between us and the upstream by up to this much. */
export const UPSTREAM_CLOCK_SKEW_SECONDS = 30;
/**
 * A token issued longer ago than this is refused even if it has not expired: an ID token says who
 * signed in at the time, and a long-lived one must not stand for a sign-in indefinitely.
 */
export const UPSTREAM_TOKEN_MAX_AGE_SECONDS = 3600;

export interface UpstreamSubject {
  provider: OidcProvider;
  /** The upstream's `sub`. */
  subject: string;
  /** When the upstream token ends (seconds): nothing made from it outlives it. */
  exp: number;
}

/** The token's `iss` and `aud`, unverified: only to choose the provider whose keys must verify it. */
export function unverifiedClaims(jwt: string): { iss?: string; aud: string[] } | undefined {
  try {
    const { iss, aud } = decodeJwt(jwt);
    return { ...(typeof iss === 'string' ? { iss } : {}), aud: typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : [] };
  } catch {
    return undefined;
  }
}

export function createUpstreamTokens(deps: { identityProviders: Pick<IdentityProviders, 'enabledByIssuer'>; upstream: Pick<UpstreamOAuth, 'verifyJwt'> }) {
  return {
    /** The enabled OpenID Connect providers that issue tokens under `issuer` (none for ours or an unknown one). */
    providersOf(issuer: string): Promise<OidcProvider[]> {
      return deps.identityProviders.enabledByIssuer(issuer);
    },

    /**
     * The upstream subject `jwt` vouches for, once verified as `provider`'s. Throws UpstreamRejected
     * for a token that does not pass, IDENT_FEDERATION_UNAVAILABLE when the upstream's keys cannot
     * be had.
     */
    async verify(provider: OidcProvider, jwt: string): Promise<UpstreamSubject> {
      const payload = await deps.upstream.verifyJwt(provider, jwt, {
        issuer: provider.oidc.issuer,
        audience: provider.oidc.clientId,
        clockTolerance: UPSTREAM_CLOCK_SKEW_SECONDS,
        maxTokenAge: UPSTREAM_TOKEN_MAX_AGE_SECONDS,
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      const { sub, exp } = payload;
      if (typeof sub !== 'string' || !sub || typeof exp !== 'number') throw new UpstreamRejected('the token lacks sub or exp');
      return { provider, subject: sub, exp };
    },
  };
}

export type UpstreamTokens = ReturnType<typeof createUpstreamTokens>;
