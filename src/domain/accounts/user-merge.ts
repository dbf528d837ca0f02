import type { Knex } from 'knex';
import { AppError } from '../errors.ts';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { EventRecorder } from '../events/events.ts';
import type { TenantScope } from '../tenants/tenant-scope.ts';
import { userInTenant, writeStatus } from './user-admin.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserMergeRepo } from '../../repos/user-merge.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';

/**
 * Merging two accounts of one person (POST /api/v1/users/:id/merge): the winner keeps its id, sub,
 * email (with its verification state), password and profile; the source's upstream links, second
 * factors and roles move to it where they can (repos/user-merge.ts says which cannot), and the
 * source is deactivated as DELETE /users/:id does it (status deactivated, user.deleted, every
 * session, grant and token revoked). All of it commits in one transaction with user.merged.
 */
export function createUserMerge(deps: {
  users: Pick<UsersRepo, 'findById' | 'setStatus'>;
  repo: UserMergeRepo;
  payloads: Pick<OidcPayloadsRepo, 'revokeByAccountId'>;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  function active(user: UserRow | undefined, what: string): UserRow {
    if (!user) throw new AppError('IDENT_USER_NOT_FOUND', `no ${what} with this id`);
    if (user.status === 'deactivated') throw new AppError('IDENT_USER_DEACTIVATED', `the ${what} is deactivated: a deactivated user cannot be merged`);
    return user;
  }

  return {
    /** Merges `sourceId` into `winnerId`, both of the acting tenant; answers the winner's id. */
    async merge(scope: TenantScope, winnerId: string, sourceId: string, context: ChangeContext = {}): Promise<string> {
      if (winnerId === sourceId) throw new AppError('IDENT_VALIDATION', 'body.sourceUserId: must be another user than the one in the path');
      // Tenant first (403, nothing told about the other tenant's user beyond that), then state (422).
      const winner = active(await userInTenant(deps.users, scope, winnerId), 'user');
      active(await userInTenant(deps.users, scope, sourceId, 'source user'), 'source user');
      await deps.transaction(async (trx) => {
        // Locked and read again: a concurrent merge or deactivation of either is seen here.
        const locked = await deps.repo.lockPair(trx, [winnerId, sourceId]);
        const w = active(locked.find((u) => u.id === winnerId), 'user');
        const s = active(locked.find((u) => u.id === sourceId), 'source user');
        const moved = await deps.repo.moveAll(trx, s.id, w.id);
        await writeStatus(deps, trx, s, 'deactivated', context);
        await deps.events.record({
          tenantId: winner.tenant_id, ...byOperator(context), type: 'user.merged', subjectId: w.id,
          payload: {
            winner: { id: w.id },
            source: { id: s.id },
            moved: { identities: moved.identities, factors: moved.factors, roles: moved.roles },
            dropped: { identities: moved.droppedIdentities, factors: moved.droppedFactors },
          },
        }, trx);
      });
      // After the commit, as for a deactivation: the source's sessions, grants and tokens end (and
      // the relying parties with back-channel logout are told).
      await deps.payloads.revokeByAccountId(sourceId);
      return winnerId;
    },
  };
}

export type UserMerge = ReturnType<typeof createUserMerge>;
