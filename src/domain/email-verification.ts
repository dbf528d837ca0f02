import type { Knex } from 'knex';
import { AppError } from './errors.ts';
import type { ChangeContext } from './accounts.ts';
import { userPayload } from './events.ts';
import { verifyEmailMail } from './account-mails.ts';
import type { MailLocale } from './mail.ts';
import type { UserRow } from '../repos/users.ts';
import { emailIdentifier, findUserByIdentifier, parseEmailIdentifier, type FlowServices } from './account-flow.ts';
import { runDetached } from './detached.ts';

/**
 * Proving an email address: one mail carries a 6-digit code and a link; either verifies, once
 * (the verify-email namespace of the one-time codes).
 */
export function createEmailVerification(deps: FlowServices) {
  const { users, codes, mail, events, links } = deps;
  const NS = 'verify-email';

  /**
   * Marks `email` proven for `user` (with its user.email_verified event), when it is still the
   * user's address: a code sent before an email change verifies nothing. Answers the user as it is.
   */
  async function proveAddress(user: UserRow, email: string, context: ChangeContext, trx: Knex.Transaction): Promise<UserRow> {
    if (user.email_verified) return user;
    const updated = await users.markEmailVerified(user.id, email, trx);
    if (!updated) return (await users.findById(user.id))!;
    await events.record({ type: 'user.email_verified', subjectId: user.id, tenantId: user.tenant_id, ...context, payload: { user: userPayload(updated) } }, trx);
    return updated;
  }

  async function markVerified(identifier: string, context: ChangeContext): Promise<UserRow> {
    const user = await findUserByIdentifier(users, identifier);
    if (!user) throw new AppError('IDENT_OTP_INVALID');
    return deps.transaction((trx) => proveAddress(user, parseEmailIdentifier(identifier).email, context, trx));
  }

  return {
    proveAddress,

    /**
     * Sends a new code and link to the user's address. Refused (IDENT_OTP_*) within the cooldown,
     * over the daily quota or while locked. Pass `trx` to enqueue the mail with the change that
     * causes it (a registration).
     */
    async send(user: UserRow, locale: MailLocale, trx?: Knex.Transaction): Promise<void> {
      const issued = await codes.issue(NS, emailIdentifier(user.tenant_id, user.email));
      await mail.enqueue(verifyEmailMail(user, issued, codes.settings(NS).codeTtlSeconds, links, locale), trx);
    },

    /**
     * "Send me a new code": same answer and timing for every address (the work runs after the
     * answer), and refusals (cooldown, quota) stay silent for the same reason.
     */
    resend(tenantId: string, email: string, locale: MailLocale): void {
      const work = async () => {
        const user = await users.findByEmail(tenantId, email.trim());
        if (!user || user.status !== 'active' || user.email_verified) return;
        try {
          await this.send(user, locale);
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
        }
      };
      runDetached(work, deps.onBackgroundError);
    },

    /** Verifies by the typed code; the user is the one with this address. */
    async verifyCode(tenantId: string, email: string, code: string, context: ChangeContext = {}): Promise<UserRow> {
      const identifier = emailIdentifier(tenantId, email);
      const session = await codes.verify(NS, identifier, code);
      await codes.takeSession(NS, session);
      return markVerified(identifier, context);
    },

    /** Verifies by the link's token (the link names no address). */
    async verifyLink(token: string, context: ChangeContext = {}): Promise<UserRow> {
      const { identifier, session } = await codes.verifyLink(NS, token);
      await codes.takeSession(NS, session);
      return markVerified(identifier, context);
    },
  };
}

export type EmailVerification = ReturnType<typeof createEmailVerification>;
