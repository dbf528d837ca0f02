import type { Logger } from './logger.ts';

export interface OutgoingSms {
  /** E.164. */
  to: string;
  text: string;
}

/**
 * Sends one text message now, or throws SmsNotSent. There is no queue: an SMS code lives a few
 * minutes, so a message that cannot go out at once is better refused (the user asks again) than
 * delivered late.
 */
export interface SmsSender {
  /** SMS_PROVIDER: `off` sends nothing and offers no SMS factor. */
  readonly kind: 'off' | 'log' | 'webhook';
  /** Where messages go, for the boot log (never the token). */
  readonly description: string;
  send(sms: OutgoingSms): Promise<void>;
}

/** The provider did not take the message: unreachable, too slow, or it answered with an error. */
export class SmsNotSent extends Error {}

export interface SmsSettings {
  provider: 'off' | 'log' | 'webhook';
  webhookUrl?: string | undefined;
  webhookToken?: string | undefined;
  timeoutMs: number;
}

/**
 * The SMS providers: `webhook` POSTs JSON {to, text} to SMS_WEBHOOK_URL (a gateway of the
 * operator's choosing; optional bearer token), `log` writes the message to the log instead of
 * sending it (development only: the settings refuse it in production, so codes never reach
 * production logs), `off` has none.
 */
export function createSmsSender(settings: SmsSettings, logger: Logger): SmsSender {
  if (settings.provider === 'webhook') {
    const url = new URL(settings.webhookUrl!);
    return {
      kind: 'webhook',
      description: `webhook ${url.origin}${url.pathname}`,
      async send(sms) {
        let res: Response;
        try {
          res = await fetch(url, {
            method: 'POST',
            headers: {
              'content-type': 'application/json',
              ...(settings.webhookToken ? { authorization: `Bearer ${settings.webhookToken}` } : {}),
            },
            body: JSON.stringify({ to: sms.to, text: sms.text }),
            redirect: 'error',
            signal: AbortSignal.timeout(settings.timeoutMs),
          });
        } catch (err) {
          // The reason, never the message: its text carries the code.
          const reason = err instanceof Error && err.name === 'TimeoutError' ? `no answer within ${settings.timeoutMs} ms` : 'unreachable';
          logger.warn({ reason, cause: (err as Error).cause instanceof Error ? ((err as Error).cause as Error).message : undefined }, 'sms webhook failed');
          throw new SmsNotSent(reason);
        }
        await res.body?.cancel();
        if (!res.ok) {
          logger.warn({ status: res.status }, 'sms webhook refused the message');
          throw new SmsNotSent(`answered ${res.status}`);
        }
      },
    };
  }
  if (settings.provider === 'log') {
    return {
      kind: 'log',
      description: 'log (development: messages are logged, not sent)',
      async send(sms) {
        logger.info({ sms: { to: sms.to, text: sms.text } }, 'sms not sent (SMS_PROVIDER=log)');
      },
    };
  }
  return {
    kind: 'off',
    description: 'off',
    async send() {
      throw new SmsNotSent('SMS_PROVIDER is off');
    },
  };
}
