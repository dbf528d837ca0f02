import type { Knex } from 'knex';
import type { AddressProof, ProofOutcome } from './address-proof.ts';
import { AppError } from '../errors.ts';
import { byUser, type ChangeContext } from '../authn/accounts.ts';
import { verifyEmailMail } from '../mail/account-mails.ts';
import type { MailLocale } from '../mail/mail.ts';
import type { UserRow } from '../../repos/users.ts';
import { emailIdentifier, findUserByIdentifier, parseEmailIdentifier, type FlowServices } from './account-flow.ts';
import { runDetached } from '../detached.ts';

/**
 * Proving an email address: one mail carries a 6-digit code and a link; either verifies, once
 * (the verify-email namespace of the one-time codes). What a proof does to the account's
 * password and sessions is address-proof.ts's rule; `markers` are the proving request's (see there).
 */
export function createEmailVerification(deps: FlowServices & { addressProof: AddressProof }) {
  const { users, codes, mail, links, addressProof } = deps;
  const NS = 'verify-email';

  async function markVerified(identifier: string, markers: readonly string[], context: ChangeContext): Promise<ProofOutcome> {
    const user = await findUserByIdentifier(users, identifier);
    if (!user) throw new AppError('IDENT_OTP_INVALID');
    return addressProof.prove(user, parseEmailIdentifier(identifier).email, markers, context);
  }

  return {
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
     * answer), and refusals (cooldown, quota) stay silent for the same reason. A sent mail records
     * user.verification_resent with it (never its code or link).
     */
    resend(tenantId: string, email: string, locale: MailLocale, context: ChangeContext = {}): void {
      const work = async () => {
        const user = await users.findByEmail(tenantId, email.trim());
        if (!user || user.status !== 'active' || user.email_verified) return;
        try {
          await deps.transaction(async (trx) => {
            await this.send(user, locale, trx);
            await deps.events.record({
              type: 'user.verification_resent', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id),
              payload: { user: { id: user.id, email: user.email } },
            }, trx);
          });
        } catch (err) {
          if (!(err instanceof AppError)) throw err;
        }
      };
      runDetached(work, deps.onBackgroundError);
    },

    /**
     * Verifies by the typed code; the user is the one with this address. With `onlyRegistrant`
     * (the code form inside a sign-in) only an account the markers tie to the registrant's side is
     * verified; any other gets IDENT_OTP_INVALID and its code stays unused.
     */
    async verifyCode(
      tenantId: string,
      email: string,
      code: string,
      markers: readonly string[],
      context: ChangeContext = {},
      opts: { onlyRegistrant?: boolean } = {},
    ): Promise<ProofOutcome> {
      const identifier = emailIdentifier(tenantId, email);
      if (opts.onlyRegistrant) {
        const user = await findUserByIdentifier(users, identifier);
        if (!user || !(await addressProof.registrantStep(user, markers))) throw new AppError('IDENT_OTP_INVALID');
      }
      const session = await codes.verify(NS, identifier, code);
      await codes.takeSession(NS, session);
      return markVerified(identifier, markers, context);
    },

    /**
     * What a verification link can still do, without using it (its page asks before it verifies):
     * `valid`; `verified` when its address is verified already (the link was used, or the code
     * was typed), so a second click says so instead of "invalid"; else `invalid`. Only the link's
     * holder learns this, about the address the link was sent to.
     */
    async linkState(token: string): Promise<'valid' | 'verified' | 'invalid'> {
      const live = await codes.peekLink(NS, token);
      const owner = live ?? (await codes.usedLinkOwner(NS, token));
      if (owner === undefined) return 'invalid';
      if ((await findUserByIdentifier(users, owner))?.email_verified) return 'verified';
      return live !== undefined ? 'valid' : 'invalid';
    },

    /** Verifies by the link's token (the link names no address). */
    async verifyLink(token: string, markers: readonly string[], context: ChangeContext = {}): Promise<ProofOutcome> {
      const { identifier, session } = await codes.verifyLink(NS, token);
      await codes.takeSession(NS, session);
      return markVerified(identifier, markers, context);
    },
  };
}

export type EmailVerification = ReturnType<typeof createEmailVerification>;
