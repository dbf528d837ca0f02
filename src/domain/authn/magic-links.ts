import { AppError } from '../errors.ts';
import { DEFAULT_TENANT, type ChangeContext } from './accounts.ts';
import { emailIdentifier, findUserByIdentifier, type FlowServices } from '../accounts/account-flow.ts';
import type { AddressProof, ProofOutcome } from '../accounts/address-proof.ts';
import { magicLinkMail } from '../mail/account-mails.ts';
import type { MailLocale } from '../mail/mail.ts';
import type { UserRow } from '../../repos/users.ts';
import { runDetached } from '../detached.ts';

const NS = 'magic-link';

/**
 * Sign-in by emailed link. A link is bound to the pending authorization (the interaction uid) it
 * was asked from, works once, and expires with the code lifetime of the magic-link namespace.
 */
export function createMagicLinks(deps: FlowServices & { addressProof: AddressProof }) {
  const { users, codes, mail, links, addressProof } = deps;

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
     * Opening the link proves the address (address-proof.ts: from outside the registrant's flow it
     * ends the password chosen at registration). The caller records the sign-in when it completes it.
     */
    async complete(interactionUid: string, token: string, markers: readonly string[], context: ChangeContext = {}): Promise<ProofOutcome> {
      const { identifier, session } = await codes.verifyLink(NS, token, interactionUid);
      await codes.takeSession(NS, session);
      const user = await findUserByIdentifier(users, identifier);
      if (!user || user.status !== 'active') throw new AppError('IDENT_OTP_INVALID');
      return addressProof.prove(user, user.email, markers, context);
    },
  };
}

export type MagicLinks = ReturnType<typeof createMagicLinks>;
