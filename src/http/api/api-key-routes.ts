import type { Context } from 'koa';
import type { ApiKey, ApiKeys } from '../../domain/access/api-keys.ts';
import { DEFAULT_OVERLAP_SECONDS } from '../../domain/access/rotation-overlap.ts';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import { DEFAULT_TENANT_ID, isPlatformScope } from '../../domain/tenants/tenant-scope.ts';
import type { AdminHandlers, ApiKeyCommand } from './admin-operations.ts';
import { isPlatformCaller, requireScopesWithinCaller, tenantScope, type Caller } from './auth.ts';

const iso = (t: Date | null) => t?.toISOString() ?? null;

/** An API key as the API shows it: never the key or its digest. */
export function apiKeyView(k: ApiKey) {
  return {
    id: k.id,
    name: k.name,
    scopes: k.scopes,
    status: k.status,
    expiresAt: iso(k.expiresAt),
    lastUsedAt: iso(k.lastUsedAt),
    revokedAt: iso(k.revokedAt),
    previousKeyExpiresAt: iso(k.previousKeyExpiresAt),
    createdBy: k.createdBy,
    createdAt: k.createdAt.toISOString(),
    updatedAt: k.updatedAt.toISOString(),
  };
}

/**
 * A key never carries more than the caller holds: every scope must be in the caller's own token
 * (or key), so iam.apikeys:create alone mints nothing stronger than itself. Platform scopes
 * (iam.tenants:*) only on a key of the default tenant made by a platform caller: a tenant's key
 * acting on tenants would reach beyond its tenant.
 */
function assertGrantable(ctx: Context, scopes: readonly string[], what: string) {
  requireScopesWithinCaller(ctx, scopes.join(' '), what);
  const caller = ctx.state.caller as Caller;
  const platform = scopes.filter(isPlatformScope);
  if (platform.length && !(isPlatformCaller(caller) && caller.tenantId === DEFAULT_TENANT_ID)) {
    throw new AppError('IDENT_FORBIDDEN', `platform scopes (${platform.join(' ')}) go only on keys of the default tenant, made by a platform caller acting there`);
  }
}

/**
 * A key made with a key outlives it no more than it scopes beyond it: without an expiresAt it
 * expires with its maker, and a later one is refused.
 */
function expiryWithin(caller: Caller, asked: Date | undefined): Date | undefined {
  if (!caller.apiKeyId || caller.expiresAt === undefined) return asked;
  if (!asked) return new Date(caller.expiresAt);
  if (asked.getTime() > caller.expiresAt) {
    throw new AppError('IDENT_FORBIDDEN', 'a key made with an API key expires no later than that key: expiresAt is after its expiry');
  }
  return asked;
}

/** /api/v1/api-keys: create, list, read, rotate with an overlap, revoke; all in the acting tenant. */
export function apiKeyHandlers(deps: { apiKeys: ApiKeys; changeContext: (ctx: Context) => ChangeContext }): AdminHandlers<ApiKeyCommand> {
  const { apiKeys, changeContext } = deps;
  // Rotating hands out a working key, revoking cuts one off: both only for keys within the caller's reach.
  const reachable = (ctx: Context) => (key: ApiKey) => requireScopesWithinCaller(ctx, key.scopes.join(' '), 'the API key carries');
  return {
    'api-keys list': async (ctx, { query }) => {
      const { rows, total } = await apiKeys.list(tenantScope(ctx), query.page, query.pageSize);
      return { data: rows.map(apiKeyView), page: query.page, pageSize: query.pageSize, total };
    },
    'api-keys create': async (ctx, { body }) => {
      assertGrantable(ctx, body.scopes, 'an API key can carry only admin scopes the caller holds; the request names');
      const { apiKey, key } = await apiKeys.create(tenantScope(ctx), {
        name: body.name,
        scopes: body.scopes,
        expiresAt: expiryWithin(ctx.state.caller as Caller, body.expiresAt ? new Date(body.expiresAt) : undefined),
      }, changeContext(ctx));
      return { ...apiKeyView(apiKey), key };
    },
    'api-keys get': async (ctx, { params }) => apiKeyView(await apiKeys.get(tenantScope(ctx), params.id!)),
    'api-keys rotate': async (ctx, { params, body }) => {
      const overlap = (body as { overlapSeconds?: number }).overlapSeconds ?? DEFAULT_OVERLAP_SECONDS;
      const { apiKey, key, previousKeyExpiresAt } = await apiKeys.rotate(tenantScope(ctx), params.id!, overlap, changeContext(ctx), reachable(ctx));
      return { id: apiKey.id, key, previousKeyExpiresAt: iso(previousKeyExpiresAt) };
    },
    'api-keys revoke': async (ctx, { params }) => {
      await apiKeys.revoke(tenantScope(ctx), params.id!, changeContext(ctx), reachable(ctx));
      return undefined;
    },
  };
}
