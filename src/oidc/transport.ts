import type Provider from 'oidc-provider';

/** True when the issuer's public scheme is https. */
export const isHttpsIssuer = (issuer: string) => new URL(issuer).protocol === 'https:';

/**
 * The provider's cookie names. With an https issuer they take the prefixes browsers enforce:
 * `__Host-` for the session cookie (Path=/, no Domain: no sibling subdomain can set or shadow it)
 * and `__Secure-` for the interaction cookies, whose Path is the interaction's own so `__Host-`
 * is not allowed. Over plain http (development, tests) the names stay oidc-provider's own.
 */
export function providerCookieNames(issuer: string) {
  return isHttpsIssuer(issuer)
    ? { session: '__Host-session', interaction: '__Secure-interaction', resume: '__Secure-interaction_resume' }
    : { session: '_session', interaction: '_interaction', resume: '_interaction_resume' };
}

/**
 * With an https issuer every request is treated as https: TLS ends in front of this process (a
 * proxy or load balancer), and the issuer, not a forwarded header that may be missing, says what
 * the browser used. So cookies are always Secure (the cookies library refuses Secure cookies on
 * requests it thinks are plain http) and URLs the provider builds from the request say https.
 */
export function treatRequestsAsHttps(provider: Provider, issuer: string): void {
  if (!isHttpsIssuer(issuer)) return;
  Object.defineProperty(provider.request, 'protocol', { get: () => 'https', configurable: true });
}
