import type { Knex } from 'knex';
import { Webhook as StandardWebhook } from 'standardwebhooks';
import type { Logger } from '../../infra/logger.ts';
import { StoreUnavailable } from '../../infra/store-outage.ts';
import { createPollLoop } from '../../infra/poll-loop.ts';
import type { AttemptOutcome, DeliveryRow, WebhookRow, WebhooksRepo } from '../../repos/webhooks.ts';
import { SYSTEM_ACTOR, type EventRecorder } from '../events/events.ts';
import { readLogoutNotice, type LogoutNotice } from './backchannel-logout.ts';
import { postWebhook } from './transport.ts';
import type { Webhooks } from './webhooks.ts';

export interface WebhookWorkerSettings {
  pollIntervalMs: number;
  /** First retry delay; doubles per failed attempt up to `retryMaxMs`, until the delivery's retry window ends. */
  retryBaseMs: number;
  retryMaxMs: number;
  allowPrivateNetworks: boolean;
  /** One attempt's deadline: connection, request and response. */
  timeoutMs: number;
  batchSize?: number;
  /** How long a claimed row is reserved for this instance; longer than a batch can take. */
  leaseMs?: number;
}

/** What a failed attempt leaves in the log: the error's class and code and its message. Never the body. */
export function describeDeliveryError(err: unknown): string {
  const e = err as { name?: string; code?: string; message?: string };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'TimeoutError: no answer within the deadline';
  const parts = [e?.name ?? 'Error', e?.code].filter((p) => p !== undefined && p !== '');
  return `${parts.join(' ')}: ${String(e?.message ?? err)}`.slice(0, 500);
}

/**
 * Sends the webhook queue: every `pollIntervalMs` it claims due deliveries (skip locked and a
 * lease, so any number of instances can run it and none sends a row another has claimed), signs
 * each after Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature over
 * id.timestamp.body) and posts it. A 2xx answer is success; anything else is retried with
 * exponential backoff until the retry window ends, and then the delivery fails and its webhook is
 * turned off (webhook.disabled) unless the receiver took something since. Deliveries to one
 * webhook go in order, one at a time; different webhooks are served side by side, so a slow
 * receiver holds up only its own queue. Delivery is at least once: a crash between the answer and
 * the bookkeeping sends again (same webhook-id). Back-channel logout notifications share the
 * queue and its retries (one receiver per client); their logout token is made at each attempt.
 */
export function createWebhookWorker(deps: {
  repo: WebhooksRepo;
  webhooks: Webhooks;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  /** A signed logout token and where to post it; undefined when the client no longer wants one. */
  logoutToken: (notice: LogoutNotice) => Promise<{ uri: string; token: string } | undefined>;
  logger: Logger;
  settings: WebhookWorkerSettings;
}) {
  const { repo, webhooks, events, logger, settings } = deps;
  const batchSize = settings.batchSize ?? 20;
  const leaseMs = settings.leaseMs ?? 15 * 60_000;

  /** The receiver kept failing for the whole window: turn the webhook off, once, and say so. */
  async function exhausted(row: DeliveryRow, hook: WebhookRow): Promise<void> {
    const reason = `deliveries failed for the whole retry window (last: ${row.id})`;
    const disabled = await deps.transaction(async (trx) => {
      if (!(await repo.disableExhausted(hook.id, row.created_at, reason, trx))) return false;
      await events.record({
        type: 'webhook.disabled',
        target: { type: 'webhook', id: hook.id },
        tenantId: hook.tenant_id,
        actor: SYSTEM_ACTOR,
        payload: { webhook: { id: hook.id, url: hook.url }, reason, deliveryId: row.id },
      }, trx);
      return true;
    });
    if (!disabled) return;
    await webhooks.changed();
    logger.warn({ webhookId: hook.id, deliveryId: row.id }, 'webhook disabled: its deliveries failed for the whole retry window');
  }

  /** Posts one attempt and keeps its outcome; true when the receiver took it. */
  async function attempt(row: DeliveryRow, request: { url: string; headers: Record<string, string>; body: string }, hook?: WebhookRow): Promise<boolean> {
    const started = performance.now();
    let outcome: AttemptOutcome;
    try {
      const answer = await postWebhook({
        ...request, timeoutMs: settings.timeoutMs, allowPrivateNetworks: settings.allowPrivateNetworks, signal: stopping.signal,
      });
      outcome = {
        responseStatus: answer.status,
        latencyMs: answer.latencyMs,
        ...(answer.status >= 200 && answer.status < 300 ? {} : { error: `the receiver answered ${answer.status}` }),
      };
    } catch (err) {
      outcome = { responseStatus: null, latencyMs: Math.round(performance.now() - started), error: describeDeliveryError(err) };
    }
    if (outcome.error === undefined) {
      await repo.markSucceeded(row.id, outcome);
      return true;
    }
    const status = await repo.markFailed(row.id, outcome, settings.retryBaseMs, settings.retryMaxMs);
    logger.info({ kind: row.kind, webhookId: hook?.id, deliveryId: row.id, attempt: row.attempts + 1, error: outcome.error, final: status === 'failed' }, 'webhook delivery failed');
    if (status === 'failed' && hook) await exhausted(row, hook);
    return false;
  }

  /** A webhook delivery, signed after Standard Webhooks at each attempt. */
  async function deliver(row: DeliveryRow, hook: WebhookRow): Promise<boolean> {
    const signer = new StandardWebhook(webhooks.signingSecret(hook));
    const now = new Date();
    const headers = {
      'webhook-id': row.id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signer.sign(row.id, now, row.body),
    };
    return attempt(row, { url: hook.url, headers, body: row.body }, hook);
  }

  /** A back-channel logout notification: a logout token, made now, posted as a form (§2.5). */
  async function notifyLogout(row: DeliveryRow): Promise<boolean> {
    const made = await deps.logoutToken(readLogoutNotice(row.body));
    if (!made) {
      await repo.markAbandoned(row.id, 'the client no longer exists or has no backchannel_logout_uri');
      return true;
    }
    return attempt(row, {
      url: made.uri,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ logout_token: made.token }).toString(),
    });
  }

  /** One receiver's claimed rows, in order; after a failure the rest wait for the next round. */
  async function deliverInOrder(rows: DeliveryRow[], hook: WebhookRow | undefined): Promise<void> {
    for (const [i, row] of rows.entries()) {
      // A row whose bookkeeping fails stays leased and comes back when the lease runs out.
      const ok = await (hook ? deliver(row, hook) : notifyLogout(row)).catch((err: unknown) => {
        logger.warn({ err, deliveryId: row.id }, 'webhook delivery bookkeeping failed');
        return false;
      });
      if (!ok) {
        await repo.release(rows.slice(i + 1).map((r) => r.id), settings.retryBaseMs);
        return;
      }
    }
  }

  /** One batch; returns how many rows were claimed. */
  async function runOnce(): Promise<number> {
    const rows = await repo.claimDue(batchSize, leaseMs);
    if (!rows.length) return 0;
    const hookIds = [...new Set(rows.flatMap((r) => (r.webhook_id ? [r.webhook_id] : [])))];
    const hooks = new Map((await repo.findByIds(hookIds)).map((h) => [h.id, h]));
    // A receiver is a webhook, or a relying party's logout endpoint (by client).
    const receiverOf = (r: DeliveryRow) => r.webhook_id ?? `client:${readLogoutNotice(r.body).clientId}`;
    const byReceiver = new Map<string, DeliveryRow[]>();
    for (const row of rows) byReceiver.set(receiverOf(row), [...(byReceiver.get(receiverOf(row)) ?? []), row]);
    await Promise.all(
      [...byReceiver].map(async ([, queued]) => {
        const first = queued[0]!;
        if (first.kind === 'backchannel_logout') return deliverInOrder(queued, undefined);
        const hook = hooks.get(first.webhook_id!);
        // Deleted since the claim: its rows went with it.
        if (hook) await deliverInOrder(queued, hook);
      }),
    );
    return rows.length;
  }

  let stopping = new AbortController();
  let started = false;
  const loop = createPollLoop({
    runOnce,
    batchSize,
    intervalMs: settings.pollIntervalMs,
    onError: (err) => logger[err instanceof StoreUnavailable ? 'debug' : 'warn']({ err }, 'webhook queue poll failed'),
  });

  return {
    runOnce,
    start(): void {
      if (started) return;
      started = true;
      stopping = new AbortController();
      loop.start();
    },
    /** Stops polling, cuts attempts in flight short (they count as failed and are retried) and waits for the bookkeeping. */
    async stop(): Promise<void> {
      started = false;
      stopping.abort();
      await loop.stop();
    },
  };
}

export type WebhookWorker = ReturnType<typeof createWebhookWorker>;
