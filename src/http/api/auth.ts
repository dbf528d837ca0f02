import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet } from 'jose';
import type { Context, Middleware } from 'koa';
import { AppError } from '../../domain/errors.ts';
import { adminScopesBeyond, assertScopesWithinCaller, type AdminScope } from '../../domain/clients/admin-scopes.ts';
import { DEFAULT_TENANT_ID, isPlatformScope, type TenantScope } from '../../domain/tenants/tenant-scope.ts';
import type { Tenants } from '../../domain/tenants/tenants.ts';
import { isApiKeyFormat, type ApiKeys } from '../../domain/access/api-keys.ts';
import { apiKeyActor, clientActor, type Actor } from '../../domain/events/events.ts';

export interface Caller {
  /** The admin client whose token this is; '' for an API key. */
  clientId: string;
  /** Set when the caller presented an API key (Bearer idp_...) instead of a token: the key's id. */
  apiKeyId?: string;
  /** When the credential stops working, epoch ms (a token's exp, a key's expiresAt); undefined: never. */
  expiresAt?: number;
  scopes: Set<string>;
  /** The caller's own tenant: its client's (the token's tenant_id claim). */
  homeTenantId: string;
  /** The tenant this call acts in: the caller's own, or the one a platform caller names in X-Tenant-Id. */
  tenantId: string;
}

/** Who a change made by this caller is recorded as: its admin client, or its API key. */
export const callerActor = (caller: Caller): Actor => (caller.apiKeyId ? apiKeyActor(caller.apiKeyId) : clientActor(caller.clientId));

/** What idempotency keys are kept per: the client, or the API key (never shared between the two). */
export const callerKey = (caller: Caller): string => (caller.apiKeyId ? `api-key:${caller.apiKeyId}` : caller.clientId);

/** The tenant an admin call acts in; every object it touches must belong to it. */
export const tenantScope = (ctx: Context): TenantScope => ({ tenantId: (ctx.state.caller as Caller).tenantId });

/** A caller that may act across tenants: one of the default tenant holding a platform (iam.tenants:*) scope. */
export const isPlatformCaller = (caller: Pick<Caller, 'homeTenantId' | 'scopes'>) =>
  caller.homeTenantId === DEFAULT_TENANT_ID && [...caller.scopes].some(isPlatformScope);

/**
 * X-Tenant-Id (a tenant's id or slug) names the tenant a call acts in. A caller may name its own;
 * only a platform caller may name another, and without the header it acts in its own (for the
 * bootstrap client: `default`). Anyone else naming another tenant, or one that does not exist
 * (not revealed to them), gets 403 IDENT_CROSS_TENANT before anything runs.
 */
async function actingTenant(ctx: Context, caller: Pick<Caller, 'homeTenantId' | 'scopes'>, tenants: Pick<Tenants, 'resolve'>): Promise<string> {
  const named = ctx.get('x-tenant-id').trim();
  if (!named || named === caller.homeTenantId) return caller.homeTenantId;
  const platform = isPlatformCaller(caller);
  const tenant = await tenants.resolve(named);
  if (tenant?.id === caller.homeTenantId) return tenant.id;
  if (!platform) throw new AppError('IDENT_CROSS_TENANT', 'X-Tenant-Id names a tenant other than this token\'s; only platform (iam.tenants:*) callers act across tenants');
  if (!tenant) throw new AppError('IDENT_TENANT_NOT_FOUND', 'X-Tenant-Id names no tenant (give its id or slug)');
  return tenant.id;
}

/**
 * Admin API callers present a bearer JWT access token issued by this provider for the admin API
 * audience (RFC 9068: typ at+jwt). The signature, issuer, audience and expiry are checked locally
 * against our own published keys. Or an API key (`idp_...`, with `apiKeys`): looked up by its id
 * and checked against its digest; a key that is unknown, wrong, expired or revoked gets one answer.
 */
export function bearerAuth(opts: {
  issuer: string;
  audience: string;
  publicJwks: JSONWebKeySet;
  tenants: Pick<Tenants, 'resolve'>;
  apiKeys?: Pick<ApiKeys, 'authenticate'> | undefined;
}): Middleware {
  const jwks = createLocalJWKSet(opts.publicJwks);
  return async (ctx, next) => {
    const header = ctx.get('authorization');
    // The scheme name is case-insensitive (RFC 7235 section 2.1): "bearer" is a bearer token too.
    const match = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/i.exec(header);
    if (!match) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin"');
      throw new AppError('IDENT_UNAUTHENTICATED', 'a bearer access token is required');
    }
    let verified: Omit<Caller, 'tenantId'>;
    if (opts.apiKeys && isApiKeyFormat(match[1]!)) {
      const key = await opts.apiKeys.authenticate(match[1]!);
      if (!key) {
        ctx.set('WWW-Authenticate', 'Bearer realm="admin", error="invalid_token"');
        throw new AppError('IDENT_UNAUTHENTICATED', 'the API key is invalid, expired or revoked');
      }
      verified = {
        clientId: '',
        apiKeyId: key.id,
        scopes: new Set(key.scopes),
        homeTenantId: key.tenantId,
        ...(key.expiresAt ? { expiresAt: key.expiresAt.getTime() } : {}),
      };
      ctx.state.caller = { ...verified, tenantId: await actingTenant(ctx, verified, opts.tenants) } satisfies Caller;
      return next();
    }
    try {
      const { payload } = await jwtVerify(match[1]!, jwks, { issuer: opts.issuer, audience: opts.audience, typ: 'at+jwt' });
      verified = {
        clientId: String(payload.client_id ?? ''),
        scopes: new Set(typeof payload.scope === 'string' ? payload.scope.split(' ') : []),
        homeTenantId: typeof payload.tenant_id === 'string' ? payload.tenant_id : DEFAULT_TENANT_ID,
        ...(typeof payload.exp === 'number' ? { expiresAt: payload.exp * 1000 } : {}),
      };
    } catch (err) {
      ctx.set('WWW-Authenticate', 'Bearer realm="admin", error="invalid_token"');
      throw new AppError('IDENT_UNAUTHENTICATED', await whyRefused(err, match[1]!, jwks, opts));
    }
    ctx.state.caller = { ...verified, tenantId: await actingTenant(ctx, verified, opts.tenants) } satisfies Caller;
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
