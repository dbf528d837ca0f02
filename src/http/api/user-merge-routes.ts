import type { Context } from 'koa';
import type { ChangeContext } from '../../domain/authn/accounts.ts';
import type { UserAdmin } from '../../domain/accounts/user-admin.ts';
import type { UserMerge } from '../../domain/accounts/user-merge.ts';
import type { AdminHandlers } from './admin-operations.ts';
import { tenantScope } from './auth.ts';
import type { UserMergeCommand } from './user-merge-schemas.ts';
import { userDetailView } from './views.ts';

/** POST /users/:id/merge: the merge in the acting tenant, answered with the winner as GET /users/:id shows it. */
export function userMergeHandlers(deps: { merge: UserMerge; users: Pick<UserAdmin, 'detail'>; changeContext: (ctx: Context) => ChangeContext }): AdminHandlers<UserMergeCommand> {
  return {
    'users merge': async (ctx, { params, body }) => {
      const winnerId = await deps.merge.merge(tenantScope(ctx), params.id!, (body as { sourceUserId: string }).sourceUserId, deps.changeContext(ctx));
      return userDetailView(await deps.users.detail(tenantScope(ctx), winnerId));
    },
  };
}
