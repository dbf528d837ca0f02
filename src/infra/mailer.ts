import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Logger } from './logger.ts';

export interface OutgoingMail {
  /** The outbox row id; also the Message-ID's local part, so a resent mail can be recognised. */
  id: string;
  to: string;
  subject: string;
  text: string;
  html: string;
}

export interface Mailer {
  /** Where mail goes, for the boot log (never the credentials). */
  readonly description: string;
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
}

export interface MailerSettings {
  smtpUrl?: string | undefined;
  from: string;
  dataDir: string;
  /** Development: the text body is logged so that links and codes can be followed. */
  logBodies: boolean;
}

function messageId(mail: OutgoingMail, from: string): string {
  const domain = /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? 'localhost';
  return `<${mail.id}@${domain}>`;
}

/**
 * SMTP through nodemailer when SMTP_URL is set (smtps:// is TLS from the start, smtp:// upgrades
 * with STARTTLS when the server offers it). Without it, each mail is written as an .eml file under
 * DATA_DIR/outbox and logged, so development needs no mail server.
 */
export function createMailer(settings: MailerSettings, logger: Logger): Mailer {
  if (settings.smtpUrl) {
    const url = new URL(settings.smtpUrl);
    const transport = nodemailer.createTransport(
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
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' }, { from: settings.from });
  return {
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
      const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, '-')}-${mail.id}.eml`);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      const fields = { mailId: mail.id, to: mail.to, subject: mail.subject, file };
      if (settings.logBodies) logger.info({ ...fields, body: mail.text }, 'mail (not sent: no SMTP_URL)');
      else logger.info(fields, 'mail (not sent: no SMTP_URL)');
    },
    close() {
      transport.close();
    },
  };
}
