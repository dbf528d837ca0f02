import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import { AppError } from '../../domain/errors.ts';
import type { Tenant, Tenants } from '../../domain/tenants/tenants.ts';
import type { AdminHandlers, TenantCommand } from './admin-operations.ts';
import { isPlatformCaller, type Caller } from './auth.ts';

export function tenantView(t: Tenant) {
  return { id: t.id, name: t.name, slug: t.slug, createdAt: t.createdAt.toISOString(), updatedAt: t.updatedAt.toISOString() };
}

/**
 * Tenants are the platform's: only a platform caller (a client of the default tenant holding
 * iam.tenants:* scopes) manages them; a tenant's own admin clients cannot even list them.
 */
function assertPlatform(ctx: Context): void {
  if (!isPlatformCaller(ctx.state.caller as Caller)) {
    throw new AppError('IDENT_FORBIDDEN', 'tenants are managed by platform callers only (clients of the default tenant)');
  }
}

/** /api/v1/tenants: create, list, read, rename and delete tenants. */
export function tenantHandlers(deps: { tenants: Tenants; changeContext: (ctx: Context) => ChangeContext }): AdminHandlers<TenantCommand> {
  const { tenants, changeContext } = deps;
  return {
    'tenants list': async (ctx, { query }) => {
      assertPlatform(ctx);
      const { rows, total } = await tenants.list(query.page, query.pageSize);
      return { data: rows.map(tenantView), page: query.page, pageSize: query.pageSize, total };
    },
    'tenants create': async (ctx, { body }) => {
      assertPlatform(ctx);
      return tenantView(await tenants.create(body, changeContext(ctx)));
    },
    'tenants get': async (ctx, { params }) => {
      assertPlatform(ctx);
      return tenantView(await tenants.get(params.id!));
    },
    'tenants update': async (ctx, { params, body }) => {
      assertPlatform(ctx);
      return tenantView(await tenants.update(params.id!, body, changeContext(ctx)));
    },
    'tenants delete': async (ctx, { params }) => {
      assertPlatform(ctx);
      await tenants.remove(params.id!, changeContext(ctx));
      return undefined;
    },
  };
}
