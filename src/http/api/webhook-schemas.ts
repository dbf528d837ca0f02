import { z } from 'zod';
import { EVENT_PATTERN } from '../../domain/webhooks/webhooks.ts';
import { displayText } from './schemas.ts';

// /api/v1/webhooks: endpoints that receive events after Standard Webhooks, and their delivery log.

const url = z.string().max(2048).describe('An http:// or https:// URL; by default not a loopback, private or link-local address');
const events = z.array(z.string().max(200).regex(EVENT_PATTERN, 'must be an event type (user.created), a prefix pattern (user.*) or *'))
  .min(1).max(100)
  .describe('The event types to receive: names such as user.created, prefix patterns such as user.*, or ["*"] for every event');

export const webhookCreate = z.strictObject({
  url,
  events,
  description: displayText(500).optional(),
  enabled: z.boolean().optional().describe('Default true'),
});

export const webhookUpdate = z.strictObject({
  url: url.optional(),
  events: events.optional(),
  description: displayText(500).nullable().optional(),
  enabled: z.boolean().optional().describe('true also turns back on a webhook the system turned off'),
});

export const webhook = z.object({
  id: z.uuid(),
  url: z.string(),
  description: z.string().nullable(),
  events: z.array(z.string()),
  enabled: z.boolean(),
  disabledReason: z.string().nullable().describe('Why the system turned it off (its deliveries failed for the whole retry window); null otherwise'),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

export const webhookWithSecret = webhook.extend({
  secret: z.string().describe('The signing secret (whsec_...), in this answer only: verify deliveries with a Standard Webhooks library'),
});

export const webhookSecret = z.object({ id: z.uuid(), secret: z.string() });

export const delivery = z.object({
  id: z.uuid().describe('Also the webhook-id header, the same on every attempt'),
  eventId: z.uuid(),
  eventType: z.string(),
  status: z.enum(['pending', 'succeeded', 'failed']),
  attempts: z.number().int(),
  responseStatus: z.number().int().nullable().describe("The receiver's HTTP status at the last attempt; null when none came (refused, timed out)"),
  latencyMs: z.number().int().nullable().describe('How long the last attempt took'),
  lastError: z.string().nullable(),
  nextAttemptAt: z.iso.datetime().nullable().describe('When a pending delivery is tried next'),
  createdAt: z.iso.datetime(),
  lastAttemptAt: z.iso.datetime().nullable(),
  deliveredAt: z.iso.datetime().nullable(),
});
