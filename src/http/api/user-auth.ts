import type { Context, Middleware } from 'koa';
import type Provider from 'oidc-provider';
import { AppError } from '../../domain/errors.ts';

/** The signed-in user behind a /api/v1/me call. */
export interface UserCaller {
  accountId: string;
  clientId: string;
  /** The provider session the token was issued in (its public uid), when there was one. */
  sessionUid: string | undefined;
  /** The token's scopes that its grant still holds. */
  scopes: Set<string>;
  /** The token was issued to a first-party client (client metadata first_party: true). */
  firstParty: boolean;
}

const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i;

/**
 * Finds the user an opaque access token was issued to: the same tokens userinfo accepts (issued
 * by this provider with `openid`, no resource indicator, not sender-constrained), still stored, so
 * a revoked or logged-out token stops working at once. Like userinfo, its client and grant must
 * still exist (a deleted client or a revoked grant ends the token even while its record lingers),
 * and tokens that end with their session need that session to exist.
 */
export async function resolveUserToken(provider: Provider, token: string): Promise<UserCaller | undefined> {
  if (token.length > 512) return undefined;
  const at = await provider.AccessToken.find(token);
  if (!at || !at.accountId || at.isExpired) return undefined;
  if (at.aud !== undefined || at.jkt || at['x5t#S256']) return undefined;
  const tokenScopes = String(at.scope ?? '').split(' ').filter(Boolean);
  if (!tokenScopes.includes('openid') || !at.clientId || !at.grantId) return undefined;
  const client = await provider.Client.find(at.clientId);
  if (!client) return undefined;
  const grant = await provider.Grant.find(at.grantId, { ignoreExpiration: true });
  if (!grant || grant.isExpired || grant.clientId !== at.clientId || grant.accountId !== at.accountId) return undefined;
  // What the grant no longer holds, the token no longer gives (as userinfo filters claims).
  const scopes = new Set(grant.getOIDCScopeFiltered(tokenScopes).split(' ').filter(Boolean));
  if (!scopes.has('openid')) return undefined;
  if (at.expiresWithSession) {
    const session = at.sessionUid ? await provider.Session.findByUid(at.sessionUid) : undefined;
    if (!session || session.accountId !== at.accountId) return undefined;
  }
  return { accountId: at.accountId, clientId: at.clientId, sessionUid: at.sessionUid, scopes, firstParty: client['first_party'] === true };
}

/** Bearer authentication of the account API; puts the UserCaller in ctx.state.user. */
export function userBearerAuth(provider: Provider): Middleware {
  return async (ctx, next) => {
    const match = BEARER.exec(ctx.get('authorization'));
    if (!match) {
      ctx.set('WWW-Authenticate', 'Bearer realm="account"');
      throw new AppError('IDENT_UNAUTHENTICATED', 'a bearer access token is required');
    }
    const caller = await resolveUserToken(provider, match[1]!);
    if (!caller) {
      ctx.set('WWW-Authenticate', 'Bearer realm="account", error="invalid_token"');
      throw new AppError('IDENT_UNAUTHENTICATED', 'the access token is invalid, expired or revoked');
    }
    ctx.state.user = caller;
    await next();
  };
}

/**
 * Account management (sessions, password, sign-out everywhere, and later MFA and devices) is for
 * the provider's own applications: a relying party the user signed in to must not manage the
 * account. Checked before anything else runs, so a refused call checks no password (and counts
 * nothing toward lockout).
 */
export function requireFirstParty(ctx: Context): void {
  const caller = ctx.state.user as UserCaller;
  if (!caller.firstParty) {
    throw new AppError('IDENT_FORBIDDEN', 'account management needs a token issued to a first-party client (first_party: true), such as the account console');
  }
}

export function requireUserScope(ctx: Context, scope: string): void {
  const caller = ctx.state.user as UserCaller;
  if (!caller.scopes.has(scope)) {
    ctx.set('WWW-Authenticate', `Bearer realm="account", error="insufficient_scope", scope="${scope}"`);
    throw new AppError('IDENT_FORBIDDEN', `this call needs the scope ${scope}`);
  }
}
