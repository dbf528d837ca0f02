import { createHash } from 'node:crypto';
import type { Context } from 'koa';
import { constantTimeEqual, randomToken } from '../infra/crypto.ts';
import { ownCookieName } from './cookies.ts';

const TTL_MS = 10 * 60 * 1000;
const digestOf = (value: string) => createHash('sha256').update(value).digest('base64url');

/**
 * Binds an upstream sign-in to the browser that started it. Without this, whoever starts a sign-in
 * could hand the upstream's authorization URL to someone else, let them sign in there, and finish
 * the sign-in in their own browser as that person (the result lands on the starter's interaction).
 * The start sets a random value in a cookie and keeps its digest with the request; the upstream's
 * answer counts only when it arrives in a browser holding that value. SameSite=Lax: the callback
 * is a top-level GET from the upstream's site, which Lax cookies accompany.
 */
export function createFederationBinding(issuer: string) {
  const name = ownCookieName(issuer, 'idp_federation');
  const options = (ctx: Context, maxAge?: number) =>
    ({ httpOnly: true, sameSite: 'lax' as const, secure: ctx.secure, path: '/', signed: false, ...(maxAge ? { maxAge } : {}) });
  return {
    /** Sets this browser's value; answers its digest for the request record. */
    bind(ctx: Context): string {
      const value = randomToken(24);
      ctx.cookies.set(name, value, options(ctx, TTL_MS));
      return digestOf(value);
    },
    /** Whether this browser holds the value whose digest the request kept; the value is spent either way. */
    holds(ctx: Context, digest: string): boolean {
      const value = ctx.cookies.get(name);
      ctx.cookies.set(name, null, options(ctx));
      return typeof value === 'string' && constantTimeEqual(digestOf(value), digest);
    },
  };
}

export type FederationBinding = ReturnType<typeof createFederationBinding>;
