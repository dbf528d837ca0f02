import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { Role } from '../../domain/access/roles.ts';
import type { ServiceAccount, ServiceAccounts } from '../../domain/access/service-accounts.ts';
import { DEFAULT_OVERLAP_SECONDS } from '../../domain/access/rotation-overlap.ts';
import type { AdminHandlers } from './admin-operations.ts';
import { tenantScope } from './auth.ts';
import { roleView } from './role-routes.ts';
import type { ServiceAccountCommand } from './service-account-schemas.ts';

function summaryView(a: ServiceAccount) {
  return { id: a.id, name: a.name, description: a.description, clientId: a.clientId, createdAt: a.createdAt.toISOString() };
}

const serviceAccountView = (a: ServiceAccount, roles: Role[]) => ({ ...summaryView(a), roles: roles.map(roleView) });

/** /api/v1/service-accounts, every call inside the acting tenant (tenantScope). */
export function serviceAccountHandlers(
  serviceAccounts: ServiceAccounts,
  changeContext: (ctx: Context) => ChangeContext,
): AdminHandlers<ServiceAccountCommand> {
  return {
    'service-accounts list': async (ctx, { query }) => {
      const { rows, total } = await serviceAccounts.list(tenantScope(ctx), query.page, query.pageSize);
      return { data: rows.map(summaryView), page: query.page, pageSize: query.pageSize, total };
    },
    'service-accounts create': async (ctx, { body }) => {
      const { account, clientSecret, roles } = await serviceAccounts.create(tenantScope(ctx), body, changeContext(ctx));
      return { ...serviceAccountView(account, roles), clientSecret };
    },
    'service-accounts get': async (ctx, { params }) => {
      const { account, roles } = await serviceAccounts.get(tenantScope(ctx), params.id!);
      return serviceAccountView(account, roles);
    },
    'service-accounts rotate': async (ctx, { params, body }) => {
      const overlap = body.overlapSeconds ?? DEFAULT_OVERLAP_SECONDS;
      const { account, clientSecret, previousSecretExpiresAt } = await serviceAccounts.rotateSecret(tenantScope(ctx), params.id!, overlap, changeContext(ctx));
      return { id: account.id, clientId: account.clientId, clientSecret, previousSecretExpiresAt: previousSecretExpiresAt?.toISOString() ?? null };
    },
    'service-accounts delete': async (ctx, { params }) => {
      await serviceAccounts.remove(tenantScope(ctx), params.id!, changeContext(ctx));
      return undefined;
    },
  };
}
