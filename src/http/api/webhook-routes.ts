import type { Webhook, Webhooks } from '../../domain/webhooks/webhooks.ts';
import type { DeliveryRow } from '../../repos/webhooks.ts';
import type { AdminHandlers, WebhookCommand } from './admin-operations.ts';
import { tenantScope } from './auth.ts';

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
    'webhooks list': async (ctx, { query }) => {
      const { rows, total } = await webhooks.list(tenantScope(ctx), query.page, query.pageSize);
      return { data: rows.map(webhookView), page: query.page, pageSize: query.pageSize, total };
    },
    'webhooks create': async (ctx, { body }) => {
      const { webhook, secret } = await webhooks.create(tenantScope(ctx), body);
      return { ...webhookView(webhook), secret };
    },
    'webhooks get': async (ctx, { params }) => webhookView(await webhooks.get(tenantScope(ctx), params.id!)),
    'webhooks update': async (ctx, { params, body }) => webhookView(await webhooks.update(tenantScope(ctx), params.id!, body)),
    'webhooks delete': async (ctx, { params }) => {
      await webhooks.remove(tenantScope(ctx), params.id!);
      return undefined;
    },
    'webhooks rotate-secret': async (ctx, { params }) => ({ id: params.id!, secret: await webhooks.rotateSecret(tenantScope(ctx), params.id!) }),
    'webhooks deliveries': async (ctx, { params, query }) => {
      const { rows, total } = await webhooks.deliveries(tenantScope(ctx), params.id!, query.page, query.pageSize);
      return { data: rows.map(deliveryView), page: query.page, pageSize: query.pageSize, total };
    },
    'webhooks redeliver': async (ctx, { params }) => deliveryView(await webhooks.redeliver(tenantScope(ctx), params.id!, params.deliveryId!)),
  };
}
