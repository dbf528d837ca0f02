import { isHttpsIssuer } from '../oidc/transport.ts';

/**
 * Our own cookies' names. With an https issuer they are `__Host-` prefixed: they are set Secure,
 * with Path=/ and no Domain, and the browser then refuses the name from a plain-http page or a
 * sibling subdomain (no cookie tossing). Over plain http the prefix would be refused, so the
 * name stays bare.
 */
export function ownCookieName(issuer: string, base: string): string {
  return isHttpsIssuer(issuer) ? `__Host-${base}` : base;
}
