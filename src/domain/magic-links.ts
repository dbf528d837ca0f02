import type { Knex } from 'knex';
import { AppError } from './errors.ts';
import { DEFAULT_TENANT, type ChangeContext } from './accounts.ts';
import type { AccountLinks } from './account-links.ts';
import { emailIdentifier } from './email-verification.ts';
import { magicLinkMail } from './account-mails.ts';
import { userPayload, type EventRecorder } from './events.ts';
import type { MailLocale, MailOutbox } from './mail.ts';
import type { OneTimeCodes } from './one-time-codes.ts';
import type { UserRow, UsersRepo } from '../repos/users.ts';
import { runDetached } from './detached.ts';

const NS = 'magic-link';

/**
 * Sign-in by emailed link. A link is bound to the pending authorization (the interaction uid) it
 * was asked from, works once, and expires with the code lifetime of the magic-link namespace.
 */
export function createMagicLinks(deps: {
  users: UsersRepo;
  codes: OneTimeCodes;
  mail: MailOutbox;
  events: EventRecorder;
  links: AccountLinks;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  onBackgroundError: (err: unknown) => void;
}) {
  const { users, codes, mail, events, links } = deps;

  async function send(user: UserRow, interactionUid: string, locale: MailLocale): Promise<void> {
    let issued;
    try {
      issued = await codes.issue(NS, emailIdentifier(user.tenant_id, user.email), { bind: interactionUid });
    } catch (err) {
      // Cooldown, quota and lock stay silent: telling them would say the account exists.
      if (err instanceof AppError) return;
      throw err;
    }
    await mail.enqueue(magicLinkMail(user, links.magicLink(interactionUid, issued.code), codes.settings(NS).codeTtlSeconds, locale));
  }

  return {
    /** Same answer and timing for every address: the account's work runs after the answer. */
    request(email: string, interactionUid: string, locale: MailLocale, tenantId = DEFAULT_TENANT): void {
      const work = async () => {
        const user = await users.findByEmail(tenantId, email.trim());
        if (user?.status === 'active') await send(user, interactionUid, locale);
      };
      runDetached(work, deps.onBackgroundError);
    },

    /**
     * The user a link signs in, once; the link must come back to the interaction it was sent for.
     * Opening the link proves the address, so it is marked verified. The caller records the
     * sign-in when it completes it.
     */
    async complete(interactionUid: string, token: string, context: ChangeContext = {}): Promise<UserRow> {
      const { identifier, session } = await codes.verifyLink(NS, token, interactionUid);
      await codes.takeSession(NS, session);
      const separator = identifier.indexOf(':');
      const user = await users.findByEmail(identifier.slice(0, separator), identifier.slice(separator + 1));
      if (!user || user.status !== 'active') throw new AppError('IDENT_OTP_INVALID');
      return deps.transaction(async (trx) => {
        const verified = user.email_verified ? user : ((await users.markEmailVerified(user.id, user.email, trx)) ?? user);
        if (!user.email_verified) {
          await events.record({ type: 'user.email_verified', subjectId: user.id, tenantId: user.tenant_id, ...context, payload: { user: userPayload(verified) } }, trx);
        }
        return verified;
      });
    },
  };
}

export type MagicLinks = ReturnType<typeof createMagicLinks>;
