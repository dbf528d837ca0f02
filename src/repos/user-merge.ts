import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';
import type { UserRow } from './users.ts';

/** What moved from the source user to the winner, and what was left behind (see domain/accounts/user-merge.ts). */
export interface MergeCounts {
  identities: number;
  factors: number;
  roles: number;
  droppedIdentities: number;
  droppedFactors: number;
}

/**
 * The statements of a user merge, all in the caller's transaction: the rows of the source user's
 * upstream links, second factors and roles that move to the winner, and those that cannot.
 */
export function createUserMergeRepo() {
  return {
    /** Both users, locked for the merge (in id order, so two merges of the same pair cannot deadlock). */
    async lockPair(trx: Knex.Transaction, ids: [string, string]): Promise<UserRow[]> {
      return trx<UserRow>('users').whereIn('id', ids).orderBy('id').forUpdate().select('*');
    },

    async moveAll(trx: Knex.Transaction, sourceId: string, winnerId: string): Promise<MergeCounts> {
      // Upstream links: one per provider and user, so a provider the winner is linked to already keeps the winner's link.
      const droppedIdentities = affectedRows(await trx('federated_identities')
        .where({ user_id: sourceId })
        .whereIn('provider_id', trx('federated_identities').select('provider_id').where({ user_id: winnerId }))
        .delete());
      const identities = affectedRows(await trx('federated_identities').where({ user_id: sourceId }).update({ user_id: winnerId }));

      // Second factors. Pending enrollments go; recovery codes (their digests are bound to the user
      // they were issued to) and email codes (bound to the source's address) cannot move; a TOTP or
      // SMS factor of a type the winner has confirmed already gives way to the winner's.
      await trx('mfa_factors').where({ user_id: sourceId }).whereNull('confirmed_at').delete();
      const unmovable = affectedRows(await trx('mfa_factors').where({ user_id: sourceId }).whereIn('type', ['recovery', 'email']).delete());
      const shadowed = affectedRows(await trx('mfa_factors')
        .where({ user_id: sourceId })
        .whereNot('type', 'webauthn')
        .whereIn('type', trx('mfa_factors').select('type').where({ user_id: winnerId }).whereNotNull('confirmed_at'))
        .delete());
      const factors = affectedRows(await trx('mfa_factors').where({ user_id: sourceId }).update({ user_id: winnerId }));
      // A moved security key or passkey keeps working as a second factor; the authenticator still
      // holds the source's user handle, so it is no longer offered for passwordless sign-in.
      await trx('webauthn_credentials').where({ user_id: sourceId }).update({ user_id: winnerId, discoverable: false });

      // Roles: the winner holds the union.
      const held = trx('user_roles').select('role_id').where({ user_id: winnerId });
      const roles = affectedRows(await trx('user_roles').where({ user_id: sourceId }).whereNotIn('role_id', held).update({ user_id: winnerId }));
      await trx('user_roles').where({ user_id: sourceId }).delete();

      return {
        identities,
        factors,
        roles,
        droppedIdentities,
        droppedFactors: unmovable + shadowed,
      };
    },
  };
}

export type UserMergeRepo = ReturnType<typeof createUserMergeRepo>;
