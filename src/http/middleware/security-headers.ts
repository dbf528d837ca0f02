import type { Context } from 'koa';
import type { RequestStep } from './request-steps.ts';

// No form-action: a login form's redirect chain ends at the relying party's origin, which
// form-action would block. script-src stays present so the provider can add the hash of its
// form_post script to it.
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/**
 * Strict headers on every response, set before the provider runs so it can amend the CSP. HSTS
 * goes with every answer when the issuer is https (`httpsIssuer`), even one that reached us over
 * plain http from a proxy that ended TLS; otherwise only over https.
 */
export function securityHeaders(opts: { httpsIssuer: boolean } = { httpsIssuer: false }): RequestStep {
  return (ctx) => {
    // Straight to the response (nothing is sent yet): koa's ctx.set allocates arrays and a
    // closure for each header, on every request.
    const res = ctx.res;
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    if (opts.httpsIssuer || ctx.secure) res.setHeader('Strict-Transport-Security', 'max-age=31536000; includeSubDomains');
  };
}

/**
 * Adds origins to directives of this response's policy, for the one page that needs them (a
 * third-party CAPTCHA widget on the registration form); every other page keeps the strict policy.
 * A directive the policy lacks (frame-src) falls back to default-src 'none', so it is added.
 */
export function allowSources(ctx: Context, sources: Partial<Record<'script' | 'frame' | 'connect' | 'style', string[]>>): void {
  let policy = String(ctx.response.get('Content-Security-Policy') || CSP);
  for (const [kind, origins] of Object.entries(sources)) {
    if (!origins?.length) continue;
    const name = `${kind}-src`;
    const directive = new RegExp(`(^|;\\s*)${name}([^;]*)`);
    policy = directive.test(policy)
      ? policy.replace(directive, (_m, lead: string, values: string) => `${lead}${name}${values} ${origins.join(' ')}`)
      : `${policy}; ${name} ${origins.join(' ')}`;
  }
  ctx.set('Content-Security-Policy', policy);
}
