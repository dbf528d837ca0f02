import type { SecretBox } from '../../infra/crypto.ts';
import type { Logger } from '../../infra/logger.ts';
import { StoreUnavailable } from '../../infra/store-outage.ts';
import { createPollLoop } from '../../infra/poll-loop.ts';
import type { Mailer } from '../../infra/mailer.ts';
import type { OutboxRepo, OutboxRow } from '../../repos/outbox.ts';
import { MAIL_TEMPLATES, outboxAad, type MailLocale, type MailRenderer, type MailTemplate } from './mail.ts';

export interface MailWorkerSettings {
  pollIntervalMs: number;
  /** First retry delay; doubles per failed attempt up to `retryMaxMs`. */
  retryBaseMs: number;
  retryMaxMs: number;
  batchSize?: number;
  /** How long a claimed row is reserved for this instance; longer than a batch can take to send. */
  leaseMs?: number;
}

/**
 * What a failure leaves in last_error: the error's class, code and SMTP status, and its message
 * with any URL credentials masked. Never the mail's data.
 */
export function describeMailError(err: unknown): string {
  const e = err as { name?: string; code?: string; responseCode?: number; message?: string };
  const parts = [e?.name ?? 'Error', e?.code, e?.responseCode].filter((p) => p !== undefined && p !== '');
  const message = String(e?.message ?? err).replace(/\/\/[^/@\s]*@/g, '//***@');
  return `${parts.join(' ')}: ${message}`.slice(0, 500);
}

/** The code to type and the link to open of a mail's data (templates name them `code` and `link`/`signInUrl`). */
function actionsOf(data: Record<string, unknown>): { code?: string; link?: string } {
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  const code = text(data.code);
  const link = text(data.link) ?? text(data.signInUrl);
  return { ...(code ? { code } : {}), ...(link ? { link } : {}) };
}

/**
 * Sends the outbox: every `pollIntervalMs` it claims due rows (skip locked, so any number of
 * instances can run it), renders and sends each, and marks it sent; a failure schedules a retry with
 * exponential backoff. A crash mid-batch leaves rows pending until their lease runs out. Delivery is
 * at least once: a crash between sending and marking sent resends the mail (same Message-ID).
 */
export function createMailWorker(deps: {
  repo: OutboxRepo;
  box: SecretBox;
  render: MailRenderer;
  mailer: Mailer;
  logger: Logger;
  settings: MailWorkerSettings;
}) {
  const { repo, box, render, mailer, logger, settings } = deps;
  const batchSize = settings.batchSize ?? 10;
  const leaseMs = settings.leaseMs ?? 15 * 60_000;

  async function deliver(row: OutboxRow): Promise<void> {
    try {
      if (!(MAIL_TEMPLATES as readonly string[]).includes(row.template)) throw new Error(`unknown template ${row.template}`);
      if (row.payload_sealed === null) throw new Error('pending row without payload');
      const data = JSON.parse(box.decrypt(row.payload_sealed, outboxAad(row.id))) as Record<string, unknown>;
      const mail = render(row.template as MailTemplate, row.locale as MailLocale, data);
      await mailer.send({ id: row.id, to: row.recipient, ...mail, actions: actionsOf(data) });
    } catch (err) {
      const error = describeMailError(err);
      logger.warn({ mailId: row.id, template: row.template, attempts: row.attempts + 1, error }, 'mail not sent; will retry');
      await repo.markFailed(row.id, error, settings.retryBaseMs, settings.retryMaxMs);
      return;
    }
    await repo.markSent(row.id);
    // The development outbox has logged the mail as not sent; "sent" after that would be a lie.
    if (mailer.sends) logger.info({ mailId: row.id, template: row.template }, 'mail sent');
  }

  /** One batch; returns how many rows were claimed. */
  async function runOnce(): Promise<number> {
    const rows = await repo.claimDue(batchSize, leaseMs);
    for (const row of rows) {
      // A row whose bookkeeping fails stays leased and comes back when the lease runs out.
      await deliver(row).catch((err: unknown) => logger.warn({ err, mailId: row.id }, 'mail outbox update failed'));
    }
    return rows.length;
  }

  const loop = createPollLoop({
    runOnce,
    batchSize,
    intervalMs: settings.pollIntervalMs,
    onError: (err) => logger[err instanceof StoreUnavailable ? 'debug' : 'warn']({ err }, 'mail outbox poll failed'),
  });

  return {
    runOnce,
    start: loop.start,
    /** Stops polling and waits for the batch in flight to finish. */
    stop: loop.stop,
  };
}

export type MailWorker = ReturnType<typeof createMailWorker>;
