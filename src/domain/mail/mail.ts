import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { Eta } from 'eta';
import type { Knex } from 'knex';
import { translate, type Locale, type MessageKey } from '../../i18n/index.ts';
import type { SecretBox } from '../../infra/crypto.ts';
import { projectRoot } from '../../infra/paths.ts';
import type { FactorType } from '../../repos/mfa-factors.ts';
import type { OutboxRepo } from '../../repos/outbox.ts';

export type MailLocale = Locale;

/** The data each template needs. Links are absolute http(s) URLs; codes are what the user types. */
export interface MailTemplateData {
  /** `verifyFirst`: the account cannot sign in until the address is verified (the code came in its own mail). */
  welcome: { name?: string; signInUrl: string; verifyFirst?: boolean };
  'verify-email': { name?: string; code: string; link: string; expiresInMinutes: number };
  /** `setPassword`: the account was made without a password and this mail lets them choose one. */
  'forgot-password': { name?: string; code: string; link: string; expiresInMinutes: number; setPassword?: boolean };
  'password-changed': { name?: string; resetUrl: string };
  'magic-link': { name?: string; link: string; expiresInMinutes: number };
  /** Someone tried to register with an address that has an account. */
  'account-exists': { name?: string; signInUrl: string; resetUrl: string };
  /** A second factor was added (`replaced`: it took the place of the earlier one of its kind). */
  'mfa-enrolled': { name?: string; factor: FactorType; replaced?: boolean; accountUrl: string; resetUrl: string };
  'mfa-removed': { name?: string; factor: FactorType; accountUrl: string; resetUrl: string };
  /** A code of the email factor: to enrol it (`enroll`) or for the second step of a sign-in. */
  'email-otp': { name?: string; code: string; purpose: 'enroll' | 'sign-in'; expiresInMinutes: number };
  /** An operator removed every second factor (admin API) and ended every session. */
  'mfa-reset': { name?: string; accountUrl: string; resetUrl: string };
}

export type MailTemplate = keyof MailTemplateData;

export const MAIL_TEMPLATES = ['welcome', 'verify-email', 'forgot-password', 'password-changed', 'magic-link', 'account-exists', 'mfa-enrolled', 'mfa-removed', 'mfa-reset', 'email-otp'] as const satisfies readonly MailTemplate[];

export interface MailMessage<T extends MailTemplate = MailTemplate> {
  to: string;
  template: T;
  locale: MailLocale;
  data: MailTemplateData[T];
}

const LINK_FIELDS = ['signInUrl', 'link', 'resetUrl', 'accountUrl'] as const;

/** The associated data of a row's sealed payload: a payload cannot be moved to another row. */
export function outboxAad(id: string): string {
  return `outbox/v1:${id}`;
}

function check(message: MailMessage): void {
  if (!(MAIL_TEMPLATES as readonly string[]).includes(message.template)) throw new Error(`unknown mail template ${message.template}`);
  if (message.locale !== 'en' && message.locale !== 'vi') throw new Error(`unsupported mail locale ${String(message.locale)}`);
  if (message.to.length > 320 || /[\r\n]/.test(message.to) || !/^[^@\s]+@[^@\s]+$/.test(message.to)) {
    throw new Error('invalid mail recipient');
  }
  const data = message.data as Record<string, unknown>;
  for (const field of LINK_FIELDS) {
    const value = data[field];
    if (value === undefined) continue;
    if (typeof value !== 'string' || !URL.canParse(value) || !/^https?:$/.test(new URL(value).protocol)) {
      throw new Error(`mail data ${field} must be an absolute http(s) URL`);
    }
  }
}

/**
 * The transactional outbox: `enqueue` writes the mail (its data sealed, since it carries codes and
 * links) and the mail worker sends it. Pass the transaction of the change that causes the mail, so
 * both commit or neither does.
 */
export function createMailOutbox(deps: { repo: OutboxRepo; box: SecretBox }) {
  return {
    async enqueue<T extends MailTemplate>(message: MailMessage<T>, trx?: Knex.Transaction): Promise<string> {
      check(message);
      const id = randomUUID();
      await deps.repo.insert(
        {
          id,
          recipient: message.to,
          template: message.template,
          locale: message.locale,
          payload_sealed: deps.box.encrypt(JSON.stringify(message.data), outboxAad(id)),
        },
        trx,
      );
      return id;
    },
  };
}

export type MailOutbox = ReturnType<typeof createMailOutbox>;

export interface RenderedMail {
  subject: string;
  text: string;
  html: string;
}

export type MailRenderer = (template: MailTemplate, locale: MailLocale, data: Record<string, unknown>) => RenderedMail;

/**
 * Mail bodies from views/mail/<template>.<locale>.{html,txt}.eta; the HTML part auto-escapes, the
 * text part does not (a link must stay a link). Subjects come from the i18n catalogues.
 */
export function createMailRenderer(viewsDir = path.join(projectRoot(), 'views', 'mail')): MailRenderer {
  const html = new Eta({ views: viewsDir, autoEscape: true, cache: true });
  const text = new Eta({ views: viewsDir, autoEscape: false, autoTrim: false, cache: true });
  return (template, locale, data) => {
    // A first password chosen through the reset flow gets a subject of its own.
    const key = template === 'forgot-password' && data.setPassword === true ? 'mail.set-password.subject' : `mail.${template}.subject`;
    const subject = translate(locale, key as MessageKey);
    const it = { ...data, subject, locale };
    return {
      subject,
      text: text.render(`${template}.${locale}.txt.eta`, it),
      html: html.render(`${template}.${locale}.html.eta`, it),
    };
  };
}
