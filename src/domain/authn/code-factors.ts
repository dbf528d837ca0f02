import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { lazyModule } from '../../infra/lazy-module.ts';
import { translate, type Locale } from '../../i18n/index.ts';
import { SmsNotSent, type SmsSender } from '../../infra/sms.ts';
import type { FactorRow, MfaFactorsRepo } from '../../repos/mfa-factors.ts';
import type { UserRow } from '../../repos/users.ts';
import { AppError } from '../errors.ts';
import { emailOtpMail, mailLocaleOf } from '../mail/account-mails.ts';
import type { MailOutbox } from '../mail/mail.ts';
import type { ChangeContext } from './accounts.ts';
import type { FactorChanges } from './factor-changes.ts';
import type { FactorGuard, SecondFactorResult } from './factor-guard.ts';
import { maskEmail, maskPhone } from './masking.ts';
import { factorSummary, type FactorSummary } from './mfa.ts';
import type { OneTimeCodes, OtpNamespace } from './one-time-codes.ts';

/**
 * Second factors proven by a code sent to the user: SMS to a verified phone number and codes to the
 * account's verified email address. Both are sent and checked through the one-time-code scheme
 * (one-time-codes.ts: cooldown between sends, daily quota, lock after wrong codes):
 *   add-phone  {E.164}   enrolling a phone: the code proves the number before it counts
 *   phone-auth {E.164}   the second step of a sign-in by SMS
 *   email-otp  {email}   enrolling the email factor, and its sign-in step
 * Keyed by the number or address, so the quotas bound what one number or mailbox receives, however
 * many accounts ask. At sign-in the factor guard (factor-guard.ts) also bounds wrong codes per user
 * and factor type, and counts them toward the account lockout.
 *
 * SMS goes out at once through the SmsSender, not through the outbox as mail does: a code lives
 * five minutes, the outbox retries for up to fifteen, and the user must hear at once that nothing
 * was sent (IDENT_SMS_UNAVAILABLE; the cooldown is lifted so they may ask again) rather than wait
 * for a code that comes late or never. An instance dying mid-send costs one request, retried by
 * the user. Email codes go through the outbox like every mail (they live ten minutes).
 */

export type CodeFactorType = 'sms' | 'email';

export interface CodeEnrollment {
  factorId: string;
  /** Where the code went, masked. */
  sentTo: string;
  expiresAt: Date;
}

export interface SentCode {
  sentTo: string;
  expiresAt: Date;
}

const NAMES: Record<CodeFactorType, string> = { sms: 'Phone', email: 'Email codes' };
const NOT_PENDING: Record<CodeFactorType, string> = {
  sms: 'no pending phone enrollment of yours with this id (an enrollment lasts 10 minutes)',
  email: 'no pending email-code enrollment of yours with this id (an enrollment lasts 10 minutes)',
};

/** The full numbering metadata of every country, loaded when a phone number is first enrolled. */
const loadPhoneNumbers = lazyModule(() => import('libphonenumber-js/max'));

/** A phone number as typed (international format, +country code) to E.164; IDENT_VALIDATION otherwise. */
export async function normalisePhone(input: string): Promise<string> {
  const { parsePhoneNumberFromString } = await loadPhoneNumbers();
  const parsed = typeof input === 'string' && input.length <= 64 ? parsePhoneNumberFromString(input) : undefined;
  if (!parsed || !parsed.isValid()) {
    throw new AppError('IDENT_VALIDATION', 'phone: must be a valid phone number in international format, such as +84 90 123 45 67');
  }
  return parsed.number;
}

export function createCodeFactors(deps: {
  repo: MfaFactorsRepo;
  codes: OneTimeCodes;
  sms: SmsSender;
  mail: MailOutbox;
  guard: FactorGuard;
  changes: FactorChanges;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  /** The host name named in SMS texts (the ISSUER's). */
  issuerName: string;
  /** A pending enrollment not confirmed within this is gone (the sweeper's schedule too). */
  enrollmentTtlSeconds: number;
}) {
  const { repo, codes, sms, mail, guard, changes } = deps;

  const emailOf = (user: UserRow) => user.email.toLowerCase();
  const minutes = (namespace: OtpNamespace) => String(Math.round(codes.settings(namespace).codeTtlSeconds / 60));

  function requireSms(): void {
    if (sms.kind === 'off') throw new AppError('IDENT_SMS_DISABLED');
  }

  function requireVerifiedEmail(user: UserRow): void {
    if (!user.email_verified) throw new AppError('IDENT_EMAIL_UNVERIFIED');
  }

  /** Issues a code for `phone` and texts it; a send that fails gives the cooldown back and says so. */
  async function textCode(namespace: 'add-phone' | 'phone-auth', user: UserRow, phone: string, locale: Locale) {
    const issued = await codes.issue(namespace, phone);
    const text = translate(mailLocaleOf(user, locale), namespace === 'add-phone' ? 'sms.add_phone' : 'sms.sign_in', {
      code: issued.code, issuer: deps.issuerName, minutes: minutes(namespace),
    });
    try {
      await sms.send({ to: phone, text });
    } catch (err) {
      if (!(err instanceof SmsNotSent)) throw err;
      await codes.releaseCooldown(namespace, phone);
      throw new AppError('IDENT_SMS_UNAVAILABLE');
    }
    return issued;
  }

  /** A new pending factor of `type`, replacing a pending one (a confirmed one stays until the new one is confirmed). */
  async function pending(user: UserRow, type: CodeFactorType, extra: { phone?: string }, trx: Knex.Transaction): Promise<FactorRow> {
    await repo.deleteUnconfirmed(user.id, type, trx);
    return repo.insert({ id: randomUUID(), tenant_id: user.tenant_id, user_id: user.id, type, name: NAMES[type], secret_sealed: null, ...extra }, trx);
  }

  /** The pending, unexpired enrollment `factorId` of `type`. */
  async function pendingOf(userId: string, factorId: string, type: CodeFactorType): Promise<FactorRow> {
    const row = await repo.find(userId, factorId);
    const expired = row && row.created_at.getTime() + deps.enrollmentTtlSeconds * 1000 <= Date.now();
    if (!row || row.type !== type || row.confirmed_at || expired) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND', NOT_PENDING[type]);
    return row;
  }

  /**
   * Confirms a pending enrollment whose code was just proven: it replaces the user's earlier factor
   * of its type; a factor change like any other (events, mail, the other sessions end).
   */
  async function activate(user: UserRow, row: FactorRow, currentSessionUid: string | undefined, context: ChangeContext): Promise<FactorRow> {
    const confirmed = await deps.transaction(async (trx) => {
      const replaced = await repo.deleteConfirmedOfType(user.id, row.type, row.id, trx);
      const done = await repo.confirm(user.id, row.id, deps.enrollmentTtlSeconds, trx);
      if (!done) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND', NOT_PENDING[row.type as CodeFactorType]);
      await changes.enrolled(user, done, replaced, context, trx);
      return done;
    });
    await changes.endOtherSessions(user.id, currentSessionUid);
    return confirmed;
  }

  /**
   * A code proven once; its verified-step token is taken at once (nothing follows it). The cooldown
   * is there against sending codes nobody answers: once one is used (only its recipient could),
   * the next may go at once (a sign-in right after enrolling, another device).
   */
  async function proveCode(namespace: OtpNamespace, identifier: string, code: string): Promise<void> {
    await codes.takeSession(namespace, await codes.verify(namespace, identifier, code));
    await codes.releaseCooldown(namespace, identifier);
  }

  const summary = factorSummary;

  return {
    /** Whether SMS codes can be sent here (SMS_PROVIDER is not off): only then is the SMS factor offered. */
    smsEnabled: sms.kind !== 'off',

    /**
     * Starts adding a phone: the number (international format) is normalised to E.164 and texted a
     * code (namespace add-phone); the factor counts only once that code confirms it. Refused within
     * the cooldown, over the number's daily quota, and when the SMS cannot be sent.
     */
    async enrollSms(userId: string, phoneInput: string, locale: Locale): Promise<CodeEnrollment> {
      requireSms();
      const user = await changes.owner(userId);
      const phone = await normalisePhone(phoneInput);
      const issued = await textCode('add-phone', user, phone, locale);
      const row = await deps.transaction((trx) => pending(user, 'sms', { phone }, trx));
      return { factorId: row.id, sentTo: maskPhone(phone), expiresAt: issued.expiresAt };
    },

    /** Confirms a phone with the texted code (wrong: IDENT_OTP_INVALID; the 5th locks the number's codes for 15 minutes). */
    async confirmSms(userId: string, factorId: string, code: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<FactorSummary> {
      const user = await changes.owner(userId);
      const row = await pendingOf(userId, factorId, 'sms');
      await proveCode('add-phone', row.phone!, code);
      return summary(await activate(user, row, currentSessionUid, context));
    },

    /**
     * Starts adding email codes: a code to the account's verified address (namespace email-otp),
     * mailed through the outbox with the pending factor. The factor has no copy of the address: it
     * follows the account's.
     */
    async enrollEmail(userId: string, locale: Locale): Promise<CodeEnrollment> {
      const user = await changes.owner(userId);
      requireVerifiedEmail(user);
      const issued = await codes.issue('email-otp', emailOf(user));
      const row = await deps.transaction(async (trx) => {
        const row = await pending(user, 'email', {}, trx);
        await mail.enqueue(emailOtpMail(user, issued, 'enroll', codes.settings('email-otp').codeTtlSeconds, locale), trx);
        return row;
      });
      return { factorId: row.id, sentTo: maskEmail(user.email), expiresAt: issued.expiresAt };
    },

    async confirmEmail(userId: string, factorId: string, code: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<FactorSummary> {
      const user = await changes.owner(userId);
      requireVerifiedEmail(user);
      const row = await pendingOf(userId, factorId, 'email');
      await proveCode('email-otp', emailOf(user), code);
      return summary(await activate(user, row, currentSessionUid, context));
    },

    // What the sign-in step calls.

    /** Where a sign-in code of the user's `type` factor goes, masked; undefined without one (or SMS turned off). */
    async destination(user: UserRow, type: CodeFactorType): Promise<string | undefined> {
      if (type === 'sms' && sms.kind === 'off') return undefined;
      const factor = await repo.confirmedOfType(user.id, type);
      if (!factor) return undefined;
      return type === 'sms' ? maskPhone(factor.phone!) : maskEmail(user.email);
    },

    /**
     * Sends a sign-in code to the user's confirmed `type` factor (phone-auth by SMS, email-otp by
     * mail). Not while that factor is locked (more codes would only cost and annoy); the cooldown
     * and daily quota of the number or address apply.
     */
    async sendSignInCode(user: UserRow, type: CodeFactorType, locale: Locale): Promise<SentCode> {
      if (type === 'sms') requireSms();
      const factor = await repo.confirmedOfType(user.id, type);
      if (!factor) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
      if ((await guard.lockedFactors(user.id)).includes(type)) throw new AppError('IDENT_OTP_LOCKED');
      if (type === 'sms') {
        const issued = await textCode('phone-auth', user, factor.phone!, locale);
        return { sentTo: maskPhone(factor.phone!), expiresAt: issued.expiresAt };
      }
      requireVerifiedEmail(user);
      const issued = await codes.issue('email-otp', emailOf(user));
      await mail.enqueue(emailOtpMail(user, issued, 'sign-in', codes.settings('email-otp').codeTtlSeconds, locale));
      return { sentTo: maskEmail(user.email), expiresAt: issued.expiresAt };
    },

    /**
     * Checks a sign-in code of the user's `type` factor, once (a used code is gone). Bounded by the
     * factor guard: 'locked' after 5 wrong codes for 15 minutes or while the account is locked, and
     * every wrong code counts toward the account lockout.
     */
    async verifySignInCode(user: UserRow, type: CodeFactorType, code: string, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guard.attempt(type, user.id, context, async () => {
        const factor = await repo.confirmedOfType(user.id, type);
        if (!factor || (type === 'email' && !user.email_verified)) return undefined;
        try {
          await proveCode(type === 'sms' ? 'phone-auth' : 'email-otp', type === 'sms' ? factor.phone! : emailOf(user), code);
          return factor.id;
        } catch (err) {
          // Wrong, expired, used or locked codes are all one wrong answer to the guard.
          if (err instanceof AppError && (err.code === 'IDENT_OTP_INVALID' || err.code === 'IDENT_OTP_LOCKED')) return undefined;
          throw err;
        }
      });
    },
  };
}

export type CodeFactors = ReturnType<typeof createCodeFactors>;
