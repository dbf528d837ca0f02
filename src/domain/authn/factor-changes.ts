import type { Knex } from 'knex';
import type { FactorRow } from '../../repos/mfa-factors.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';
import type { AccountLinks } from '../accounts/account-links.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { mfaEnrolledMail, mfaRemovedMail } from '../mail/account-mails.ts';
import type { MailOutbox } from '../mail/mail.ts';
import { byUser, type ChangeContext } from './accounts.ts';

/**
 * What every change to a user's own factors does besides the change, whatever the factor: the
 * events (user.mfa_enrolled, user.mfa_removed) and the mail in the change's transaction, then the
 * end of the user's other sessions (like a password change: a session proven without the new
 * factor, or with the removed one, must not outlive the change).
 */
export function createFactorChanges(deps: {
  users: UsersRepo;
  events: EventRecorder;
  mail: MailOutbox;
  links: AccountLinks;
  payloads: OidcPayloadsRepo;
}) {
  const { events, mail, links } = deps;
  const factorPayload = (row: FactorRow) => ({ id: row.id, type: row.type, name: row.name });

  return {
    factorPayload,

    /** The user whose own factors change: an account API caller, who must still be active. */
    async owner(userId: string): Promise<UserRow> {
      const user = await deps.users.findById(userId);
      // A token outliving its user's suspension must not reach the account.
      if (!user || user.status !== 'active') throw new AppError('IDENT_UNAUTHENTICATED', 'the account is not active');
      return user;
    },

    /** `row` was confirmed, replacing `replaced` (a new authenticator app, a new set of codes). */
    async enrolled(user: UserRow, row: FactorRow, replaced: readonly FactorRow[], context: ChangeContext, trx: Knex.Transaction): Promise<void> {
      const base = { subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id) };
      for (const old of replaced) {
        await events.record({ ...base, type: 'user.mfa_removed', payload: { user: { id: user.id }, factor: factorPayload(old), by: 'self', replacedBy: row.id } }, trx);
      }
      await events.record({ ...base, type: 'user.mfa_enrolled', payload: { user: { id: user.id }, factor: factorPayload(row), by: 'self', replaced: replaced.map((r) => r.id) } }, trx);
      await mail.enqueue(mfaEnrolledMail(user, row.type, replaced.length > 0, links), trx);
    },

    /** The user removed `row`. */
    async removed(user: UserRow, row: FactorRow, context: ChangeContext, trx: Knex.Transaction): Promise<void> {
      await events.record({ type: 'user.mfa_removed', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id), payload: { user: { id: user.id }, factor: factorPayload(row), by: 'self' } }, trx);
      await mail.enqueue(mfaRemovedMail(user, row.type, links), trx);
    },

    /** Every other session of the user ends with its grants and tokens; `currentSessionUid`'s stays. */
    async endOtherSessions(userId: string, currentSessionUid: string | undefined): Promise<void> {
      const sessions = await deps.payloads.listSessions(userId);
      await deps.payloads.revokeAccountExcept(userId, sessions.find((s) => s.uid === currentSessionUid)?.id);
    },
  };
}

export type FactorChanges = ReturnType<typeof createFactorChanges>;
