import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { Role, Roles } from '../../domain/access/roles.ts';
import type { AdminHandlers } from './admin-operations.ts';
import { tenantScope } from './auth.ts';
import type { RoleCommand } from './role-schemas.ts';

export function roleView(r: Role) {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    permissions: r.permissions,
    typeId: r.typeId,
    createdAt: r.createdAt.toISOString(),
    updatedAt: r.updatedAt.toISOString(),
  };
}

const held = (roles: Role[]) => ({ data: roles.map(roleView) });

/** /api/v1/roles and role assignment, every call inside the acting tenant (tenantScope). */
export function roleHandlers(roles: Roles, changeContext: (ctx: Context) => ChangeContext): AdminHandlers<RoleCommand> {
  return {
    'roles list': async (ctx, { query }) => {
      const { rows, total } = await roles.list(tenantScope(ctx), query.page, query.pageSize);
      return { data: rows.map(roleView), page: query.page, pageSize: query.pageSize, total };
    },
    'roles create': async (ctx, { body }) => roleView(await roles.create(tenantScope(ctx), body, changeContext(ctx))),
    'roles get': async (ctx, { params }) => roleView(await roles.get(tenantScope(ctx), params.id!)),
    'roles update': async (ctx, { params, body }) => roleView(await roles.update(tenantScope(ctx), params.id!, body, changeContext(ctx))),
    'roles delete': async (ctx, { params }) => {
      await roles.remove(tenantScope(ctx), params.id!, changeContext(ctx));
      return undefined;
    },
    'users roles': async (ctx, { params }) => held(await roles.heldBy(tenantScope(ctx), 'user', params.id!)),
    'users assign-roles': async (ctx, { params, body }) =>
      held(await roles.assign(tenantScope(ctx), 'user', params.id!, body.roleIds, changeContext(ctx))),
    'users unassign-roles': async (ctx, { params, body }) =>
      held(await roles.unassign(tenantScope(ctx), 'user', params.id!, body.roleIds, changeContext(ctx))),
    'service-accounts roles': async (ctx, { params }) => held(await roles.heldBy(tenantScope(ctx), 'service_account', params.id!)),
    'service-accounts assign-roles': async (ctx, { params, body }) =>
      held(await roles.assign(tenantScope(ctx), 'service_account', params.id!, body.roleIds, changeContext(ctx))),
    'service-accounts unassign-roles': async (ctx, { params, body }) =>
      held(await roles.unassign(tenantScope(ctx), 'service_account', params.id!, body.roleIds, changeContext(ctx))),
  };
}
