import type { Webhook, Webhooks } from '../../domain/webhooks/webhooks.ts';
import type { DeliveryRow } from '../../repos/webhooks.ts';
import type { AdminHandlers, WebhookCommand } from './admin-operations.ts';

export function webhookView(w: Webhook) {
  return {
    id: w.id,
    url: w.url,
    description: w.description,
    events: w.events,
    enabled: w.enabled,
    disabledReason: w.disabledReason,
    createdAt: w.createdAt.toISOString(),
    updatedAt: w.updatedAt.toISOString(),
  };
}

/** One entry of the delivery log; never the body (the receiver has it) or the secret. */
export function deliveryView(d: DeliveryRow) {
  const iso = (t: Date | null) => (t ? new Date(t).toISOString() : null);
  return {
    id: d.id,
    eventId: d.event_id,
    eventType: d.event_type,
    status: d.status,
    attempts: d.attempts,
    responseStatus: d.response_status,
    latencyMs: d.latency_ms,
    lastError: d.last_error,
    nextAttemptAt: d.status === 'pending' ? iso(d.next_attempt_at) : null,
    createdAt: iso(d.created_at)!,
    lastAttemptAt: iso(d.last_attempt_at),
    deliveredAt: iso(d.delivered_at),
  };
}

/** /api/v1/webhooks: registration, secret rotation, the delivery log and redelivery. */
export function webhookHandlers(webhooks: Webhooks): AdminHandlers<WebhookCommand> {
  return {
    'webhooks list': async (_ctx, { query }) => {
      const { rows, total } = await webhooks.list(query.page, query.pageSize);
      return { data: rows.map(webhookView), page: query.page, pageSize: query.pageSize, total };
    },
    'webhooks create': async (_ctx, { body }) => {
      const { webhook, secret } = await webhooks.create(body);
      return { ...webhookView(webhook), secret };
    },
    'webhooks get': async (_ctx, { params }) => webhookView(await webhooks.get(params.id!)),
    'webhooks update': async (_ctx, { params, body }) => webhookView(await webhooks.update(params.id!, body)),
    'webhooks delete': async (_ctx, { params }) => {
      await webhooks.remove(params.id!);
      return undefined;
    },
    'webhooks rotate-secret': async (_ctx, { params }) => ({ id: params.id!, secret: await webhooks.rotateSecret(params.id!) }),
    'webhooks deliveries': async (_ctx, { params, query }) => {
      const { rows, total } = await webhooks.deliveries(params.id!, query.page, query.pageSize);
      return { data: rows.map(deliveryView), page: query.page, pageSize: query.pageSize, total };
    },
    'webhooks redeliver': async (_ctx, { params }) => deliveryView(await webhooks.redeliver(params.id!, params.deliveryId!)),
  };
}
