import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Context, Middleware } from 'koa';
import { AppError } from '../../domain/errors.ts';
import { adminScopesBeyond, assertScopesWithinCaller, type AdminScope } from '../../domain/clients/admin-scopes.ts';

export interface Caller {
  clientId: string;
  scopes: Set<string>;
}

/**
 * Admin API callers present a bearer JWT access token issued by this provider for the admin API
 * audience (RFC 9068: typ at+jwt). The signature, issuer, audience and expiry are checked locally
 * against our own published keys.
 */
export function bearerAuth(opts: { issuer: string; audience: string; publicJwks: JSONWebKeySet }): Middleware {
  const jwks = createLocalJWKSet(opts.publicJwks);
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    // The scheme name is case-insensitive (RFC 7235 section 2.1): "bearer" is a bearer token too.
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header);
    if (!match) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin"');
      throw new AppError('IDENT_UNAUTHENTICATED', 'a bearer access token is required');
    }
    try {
      const { payload } = await jwtVerify(match[1]!, jwks, { issuer: opts.issuer, audience: opts.audience, typ: 'at+jwt' });
      ctx.state.caller = {
        clientId: String(payload.client_id ?? ''),
        scopes: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ') : []),
      } satisfies Caller;
    } catch (err) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin", error="invalid_token"');
      throw new AppError('IDENT_UNAUTHENTICATED', await whyRefused(err, match[1]!, jwks, opts));
    }
    await next();
  };
}

/**
 * What the caller should do about a refused token. The usual mistake is a token asked for without
 * `resource` (opaque, for userinfo) or for another resource server: say which resource to ask for.
 * Only a token this provider signed is described; anything else stays "invalid".
 */
async function whyRefused(
  err: unknown,
  token: string,
  jwks: ReturnType<typeof createLocalJWKSet>,
  opts: { issuer: string; audience: string },
): Promise<string> {
  const ask = `ask POST /token for grant_type=client_credentials with resource=${opts.audience} and the iam.* scopes`;
  if (err instanceof errors.JWTExpired) return 'the access token expired; ask for a new one';
  if (err instanceof errors.JWTClaimValidationFailed && err.claim === 'aud') {
    return `the access token is not for the admin API (its audience is not ${opts.audience}); ${ask}`;
  }
  // Our opaque tokens are short random strings, not JWTs: issued without a resource, for userinfo.
  if (!token.includes('.')) return `the access token is not a JWT (a token issued without resource is opaque, for userinfo); ${ask}`;
  // A JWT of ours with another audience and the wrong typ (no check above ran so far) gets the same help.
  try {
    await jwtVerify(token, jwks, { issuer: opts.issuer });
    return `the access token is not an admin API token; ${ask}`;
  } catch {
    return 'the access token is invalid or expired';
  }
}

/**
 * The caller's token must hold every admin scope in `scopes` (those of the client it addresses or
 * hands out): 403 with an insufficient_scope challenge naming the missing ones (RFC 6750 3.1).
 */
export function requireScopesWithinCaller(ctx: Context, scopes: string | undefined, what: string): void {
  const held = (ctx.state.caller as Caller).scopes;
  const beyond = adminScopesBeyond(scopes, held);
  if (beyond.length) ctx.set('WWW-Authenticate', `Bearer realm="admin", error="insufficient_scope", scope="${beyond.join(' ')}"`);
  assertScopesWithinCaller(scopes, held, what);
}

export function requireScope(ctx: Context, scope: AdminScope): void {
  const caller = ctx.state.caller as Caller | undefined;
  if (!caller?.scopes.has(scope)) {
    ctx.set('WWW-Authenticate', `Bearer realm="admin", error="insufficient_scope", scope="${scope}"`);
    throw new AppError('IDENT_FORBIDDEN', `this call needs the scope ${scope}`);
  }
}
