import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { SendMailOptions, SentMessageInfo, Transporter } from 'nodemailer';
import { lazyModule } from './lazy-module.ts';
import type { Logger } from './logger.ts';

export interface OutgoingMail {
  /** The outbox row id; also the Message-ID's local part, so a resent mail can be recognised. */
  id: string;
  to: string;
  subject: string;
  text: string;
  html: string;
  /** What the recipient acts on (a code to type, a link to open): the development outbox logs them. */
  actions?: { code?: string | undefined; link?: string | undefined };
}

export interface Mailer {
  /** Where mail goes, for the boot log (never the credentials). */
  readonly description: string;
  /** False for the development outbox: a mail written to a file was not sent, and the logs must not say it was. */
  readonly sends: boolean;
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

export interface MailerSettings {
  smtpUrl?: string | undefined;
  from: string;
  dataDir: string;
  /**
   * Outside production, without SMTP_URL: the mail's code or link goes into its log line, so a
   * developer can follow it without opening files. Never in production (codes must not reach logs).
   */
  logBodies: boolean;
}

function messageId(mail: OutgoingMail, from: string): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? 'localhost';
  return `<${mail.id}@${domain}>`;
}

/**
 * A nodemailer transport made on the first mail: nodemailer (~5 MB of heap with its SMTP and MIME
 * stack) is loaded only by a process that sends one.
 */
function lazyTransport(options: object, defaults: SendMailOptions) {
  let made: Transporter<SentMessageInfo> | undefined;
  let closed = false;
  const transport = lazyModule(async () => {
    const { default: nodemailer } = await import('nodemailer');
    return (made = nodemailer.createTransport(options, defaults));
  });
  return {
    async sendMail(mail: SendMailOptions): Promise<SentMessageInfo> {
      const t = await transport();
      // Closed while loading: close it too, so no socket outlives close().
      if (closed) t.close();
      return t.sendMail(mail);
    },
    close() {
      closed = true;
      made?.close();
    },
  };
}

/**
 * SMTP through nodemailer when SMTP_URL is set (smtps:// is TLS from the start, smtp:// upgrades
 * with STARTTLS when the server offers it). Without it, each mail is written under DATA_DIR/outbox
 * (the .eml, and its text and HTML decoded next to it for reading) and logged, so development needs
 * no mail server.
 */
export function createMailer(settings: MailerSettings, logger: Logger): Mailer {
  if (settings.smtpUrl) {
    const url = new URL(settings.smtpUrl);
    const transport = lazyTransport(
      {
        url: settings.smtpUrl,
        // Short timeouts: a hung server must not hold the worker's batch past its lease.
        connectionTimeout: 10_000,
        greetingTimeout: 10_000,
        socketTimeout: 30_000,
      },
      { from: settings.from },
    );
    return {
      sends: true,
      description: `smtp ${url.protocol}//${url.hostname}:${url.port || (url.protocol === 'smtps:' ? 465 : 587)}`,
      async send(mail) {
        await transport.sendMail({
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          messageId: messageId(mail, settings.from),
        });
      },
      close() {
        transport.close();
      },
    };
  }

  const dir = path.resolve(settings.dataDir, 'outbox');
  const transport = lazyTransport({ streamTransport: true, buffer: true, newline: 'unix' }, { from: settings.from });
  return {
    sends: false,
    description: `files under ${dir}`,
    async send(mail) {
      const info = await transport.sendMail({
        to: mail.to,
        subject: mail.subject,
        text: mail.text,
        html: mail.html,
        messageId: messageId(mail, settings.from),
      });
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const base = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${mail.id}`);
      writeFileSync(`${base}.eml`, info.message as Buffer, { mode: 0o600 });
      // The .eml is quoted-printable; these are what a person reads.
      writeFileSync(`${base}.txt`, `To: ${mail.to}\nSubject: ${mail.subject}\n\n${mail.text}`, { mode: 0o600 });
      writeFileSync(`${base}.html`, mail.html, { mode: 0o600 });
      const fields = { mailId: mail.id, to: mail.to, subject: mail.subject, file: `${base}.txt` };
      const { code, link } = settings.logBodies ? (mail.actions ?? {}) : {};
      const shown = [code && `code ${code}`, link].filter(Boolean).join(', ');
      // The code goes in the message, not a field: the logger redacts any field named `code`.
      logger.info(fields, `mail not sent (no SMTP_URL): “${mail.subject}” to ${mail.to}${shown ? `: ${shown}` : ''}`);
    },
    close() {
      transport.close();
    },
  };
}
