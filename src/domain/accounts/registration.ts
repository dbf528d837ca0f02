import { randomBytes, randomUUID } from 'node:crypto';
import { AppError, isUniqueViolation } from '../errors.ts';
import { byUser, DEFAULT_TENANT, viaClient, type ChangeContext } from '../authn/accounts.ts';
import { emailIdentifier, type FlowServices } from './account-flow.ts';
import type { EmailVerification } from './email-verification.ts';
import type { AddressProof } from './address-proof.ts';
import { accountExistsMail, resetPasswordMail, welcomeMail } from '../mail/account-mails.ts';
import { userPayload } from '../events/events.ts';
import { assertDisplayNames } from './display-names.ts';
import type { MailLocale } from '../mail/mail.ts';
import { passwordPolicyError, type PasswordPolicy } from '../authn/password-policy.ts';
import type { PasswordHasher } from '../authn/passwords.ts';
import type { RegistrationPolicy } from './registration-policy.ts';
import type { UserRow } from '../../repos/users.ts';
import { runDetached } from '../detached.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';

export interface RegistrationInput {
  email: string;
  password?: string | undefined;
  givenName?: string | undefined;
  familyName?: string | undefined;
  locale: MailLocale;
  tenantId?: string;
}

/**
 * Self-registration: policy and password rules, then the answer; after it (detached.ts) the new
 * user with its user.created event and its mails (verification, welcome, set-password) in one
 * transaction, or for a taken address a mail to its owner. The answer is the same for both, in
 * content and in time, so it never says whether an address has an account.
 */
export function createRegistration(deps: FlowServices & {
  hasher: PasswordHasher;
  passwordPolicy: PasswordPolicy;
  verification: EmailVerification;
  addressProof: AddressProof;
  ephemeral: EphemeralStore;
}) {
  const { users, hasher, passwordPolicy, verification, codes, mail, events, links, ephemeral, addressProof } = deps;

  /** The existing owner learns someone tried to register with their address. */
  async function tellOwner(owner: UserRow, locale: MailLocale): Promise<void> {
    // Once a day at most per address: a mail bomb through the register form stays one mail.
    if (!(await ephemeral.setIfAbsent(`account-exists:notice:${emailIdentifier(owner.tenant_id, owner.email)}`, '1', 24 * 3600))) return;
    await mail.enqueue(accountExistsMail(owner, links, locale));
  }

  return {
    /** The shortest password accepted, for the form to say before anyone submits it. */
    passwordMinLength: passwordPolicy.minLength,

    /**
     * `registrant`: markers of the registering request (address-proof.ts); a proof of the address
     * made with one of them keeps the chosen password, any other proof discards it.
     */
    async register(input: RegistrationInput, policy: RegistrationPolicy, context: ChangeContext = {}, registrant: readonly string[] = []): Promise<void> {
      if (!policy.enabled) throw new AppError('IDENT_REGISTRATION_DISABLED');
      const tenantId = input.tenantId ?? DEFAULT_TENANT;
      const email = input.email.trim();
      assertDisplayNames(input.givenName, input.familyName);
      if (!input.password && policy.password === 'required') throw new AppError('IDENT_VALIDATION', 'a password is required');
      if (input.password) {
        // Only what the registrant typed: the policy's answer must not depend on an existing account.
        const verdict = await passwordPolicy.check(input.password, [email, input.givenName ?? '', input.familyName ?? '']);
        if (!verdict.ok) throw passwordPolicyError(verdict);
      }

      // Hashed before the answer whether or not the address is taken; the rest runs after it.
      const passwordHash = await hasher.hash(input.password ?? randomBytes(32).toString('base64url'));
      const work = async () => {
        const existing = await users.findByEmail(tenantId, email);
        if (existing) return tellOwner(existing, input.locale);
        const id = randomUUID();
        // Bound before the mail with the code can leave: a proof with these markers is the registrant's own.
        await addressProof.bindRegistrant({ id }, registrant, 'registered');
        try {
          await deps.transaction(async (trx) => {
            const created = await users.insert(
              {
                id,
                tenant_id: tenantId,
                email,
                email_verified: false,
                password_hash: passwordHash,
                // Chosen before anyone proved the address: the address owner's proof may discard it.
                password_unverified_owner: Boolean(input.password),
                given_name: input.givenName?.trim() || null,
                family_name: input.familyName?.trim() || null,
                locale: input.locale,
              },
              trx,
            );
            await events.record(
              { type: 'user.created', subjectId: created.id, tenantId, ...byUser(context, created.id), payload: { user: userPayload(created), source: 'self-registration', ...viaClient(context) } },
              trx,
            );
            await verification.send(created, input.locale, trx);
            if (!input.password) {
              // No password chosen: the forgot-password flow lets them set one (and proves the address).
              const issued = await codes.issue('forgot-password', emailIdentifier(tenantId, email));
              const ttl = codes.settings('forgot-password').codeTtlSeconds;
              await mail.enqueue(resetPasswordMail(created, issued, ttl, links, input.locale, true), trx);
            }
            if (policy.welcomeMail) {
              await mail.enqueue(welcomeMail(created, links, input.locale, policy.requireEmailVerification), trx);
            }
          });
        } catch (err) {
          // A concurrent registration of the same address won the unique index: as for a duplicate.
          if (!isUniqueViolation(err)) throw err;
        }
      };
      runDetached(work, deps.onBackgroundError);
    },
  };
}

export type Registration = ReturnType<typeof createRegistration>;
