import type { AccountLinks } from '../accounts/account-links.ts';
import type { MailLocale, MailMessage } from './mail.ts';
import type { IssuedCode } from '../authn/one-time-codes.ts';
import type { FactorType } from '../../repos/mfa-factors.ts';
import type { UserRow } from '../../repos/users.ts';

// The account lifecycle's mails, built in one place so every flow greets, links and localises the
// same way.

type Recipient = Pick<UserRow, 'email' | 'email_verified' | 'given_name' | 'locale'>;

/** The mail language: the user's own when they chose one we have, else the page's. */
export function mailLocaleOf(user: Pick<UserRow, 'locale'>, fallback: MailLocale): MailLocale {
  return user.locale === 'en' || user.locale === 'vi' ? user.locale : fallback;
}

// Until the address is proven the name is whatever the registrant typed, and the registrant may not
// be the address's owner: no text of theirs goes into the owner's mail.
const greeting = (user: Recipient) => (user.email_verified && user.given_name ? { name: user.given_name } : {});
const minutes = (seconds: number) => Math.round(seconds / 60);

export function verifyEmailMail(user: Recipient, issued: IssuedCode, ttlSeconds: number, links: AccountLinks, locale: MailLocale): MailMessage<'verify-email'> {
  return {
    to: user.email,
    template: 'verify-email',
    locale: mailLocaleOf(user, locale),
    data: { ...greeting(user), code: issued.code, link: links.verifyEmail(issued.link!), expiresInMinutes: minutes(ttlSeconds) },
  };
}

/** A reset code and link; `setPassword` when the account was made without a password. */
export function resetPasswordMail(
  user: Recipient,
  issued: IssuedCode,
  ttlSeconds: number,
  links: AccountLinks,
  locale: MailLocale,
  setPassword = false,
): MailMessage<'forgot-password'> {
  return {
    to: user.email,
    template: 'forgot-password',
    locale: mailLocaleOf(user, locale),
    data: {
      ...greeting(user),
      code: issued.code,
      link: links.resetPassword(issued.link!),
      expiresInMinutes: minutes(ttlSeconds),
      ...(setPassword ? { setPassword: true } : {}),
    },
  };
}

export function passwordChangedMail(user: Recipient, links: AccountLinks): MailMessage<'password-changed'> {
  return { to: user.email, template: 'password-changed', locale: mailLocaleOf(user, 'en'), data: { ...greeting(user), resetUrl: links.forgotPassword() } };
}

export function magicLinkMail(user: Recipient, link: string, ttlSeconds: number, locale: MailLocale): MailMessage<'magic-link'> {
  return { to: user.email, template: 'magic-link', locale: mailLocaleOf(user, locale), data: { ...greeting(user), link, expiresInMinutes: minutes(ttlSeconds) } };
}

export function welcomeMail(user: Recipient, links: AccountLinks, locale: MailLocale, verifyFirst: boolean): MailMessage<'welcome'> {
  return { to: user.email, template: 'welcome', locale: mailLocaleOf(user, locale), data: { ...greeting(user), signInUrl: links.account(), verifyFirst } };
}

export function accountExistsMail(owner: Recipient, links: AccountLinks, locale: MailLocale): MailMessage<'account-exists'> {
  return {
    to: owner.email,
    template: 'account-exists',
    locale: mailLocaleOf(owner, locale),
    data: { ...greeting(owner), signInUrl: links.account(), resetUrl: links.forgotPassword() },
  };
}

/** A second factor was added to the account (or a new set of recovery codes made). */
export function mfaEnrolledMail(user: Recipient, factor: FactorType, replaced: boolean, links: AccountLinks): MailMessage<'mfa-enrolled'> {
  return {
    to: user.email,
    template: 'mfa-enrolled',
    locale: mailLocaleOf(user, 'en'),
    data: { ...greeting(user), factor, ...(replaced ? { replaced: true } : {}), accountUrl: links.account(), resetUrl: links.forgotPassword() },
  };
}

export function mfaRemovedMail(user: Recipient, factor: FactorType, links: AccountLinks): MailMessage<'mfa-removed'> {
  return {
    to: user.email,
    template: 'mfa-removed',
    locale: mailLocaleOf(user, 'en'),
    data: { ...greeting(user), factor, accountUrl: links.account(), resetUrl: links.forgotPassword() },
  };
}

/** An operator reset the account's second factors (help desk): every one is gone, every session ended. */
export function mfaResetMail(user: Recipient, links: AccountLinks): MailMessage<'mfa-reset'> {
  return {
    to: user.email,
    template: 'mfa-reset',
    locale: mailLocaleOf(user, 'en'),
    data: { ...greeting(user), accountUrl: links.account(), resetUrl: links.forgotPassword() },
  };
}

/** A code of the email factor, to the account's verified address. */
export function emailOtpMail(user: Recipient, issued: IssuedCode, purpose: 'enroll' | 'sign-in', ttlSeconds: number, locale: MailLocale): MailMessage<'email-otp'> {
  return {
    to: user.email,
    template: 'email-otp',
    locale: mailLocaleOf(user, locale),
    data: { ...greeting(user), code: issued.code, purpose, expiresInMinutes: minutes(ttlSeconds) },
  };
}
