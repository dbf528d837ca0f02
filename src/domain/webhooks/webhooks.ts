import { randomBytes, randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import type { DeliveryRow, EnabledWebhook, WebhookRow, WebhooksRepo } from '../../repos/webhooks.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';
import { AppError } from '../errors.ts';
import type { RecordedEvent, TransactionalSink } from '../events/events.ts';
import { checkWebhookUrl } from './addresses.ts';

/**
 * Webhooks after the Standard Webhooks specification: operators register endpoints for event types
 * through the admin API; every recorded event that an enabled webhook subscribes to is queued in
 * the event's own transaction (webhook_deliveries) and sent by the delivery worker (worker.ts).
 * The signing secret ("whsec_" + base64 of 32 random bytes) is sealed at rest and shown only in
 * the answers that create or rotate it.
 */

export interface Webhook {
  id: string;
  url: string;
  description: string | null;
  events: string[];
  enabled: boolean;
  /** Why the system turned it off (its retries ran out); null otherwise. */
  disabledReason: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export interface WebhookInput {
  url?: string | undefined;
  events?: string[] | undefined;
  description?: string | null | undefined;
  enabled?: boolean | undefined;
}

export interface WebhookSettings {
  allowPrivateNetworks: boolean;
  /** How long a delivery is retried (WEBHOOK_RETRY_WINDOW_SECONDS), in milliseconds. */
  retryWindowMs: number;
}

/** "*" (every event), an event type ("user.created") or a prefix pattern ("user.*"). */
export const EVENT_PATTERN = /^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$/;

export function subscribesTo(patterns: readonly string[], type: string): boolean {
  return patterns.some((p) => p === '*' || p === type || (p.endsWith('.*') && type.startsWith(p.slice(0, -1))));
}

/**
 * The delivered JSON, after the Standard Webhooks payload convention {type, timestamp, data}, plus
 * the event's id (the same for every webhook that receives it). `data` is the event's own data with
 * who did it, to what, and from where. Events never carry secrets, codes or tokens.
 */
export function webhookBody(event: RecordedEvent): string {
  return JSON.stringify({
    id: event.id,
    type: event.type,
    timestamp: event.occurredAt.toISOString(),
    data: {
      ...event.data,
      actor: event.actor,
      target: event.target,
      ip: event.ip,
      userAgent: event.userAgent,
      requestId: event.requestId,
    },
  });
}

const secretAad = (id: string) => `webhook-secret/v1:${id}`;
const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/**
 * The enabled webhooks' filters, which every recorded event consults: kept per instance so that
 * with no webhook enabled an event costs a comparison, dropped on every instance when any webhook
 * changes (pub/sub through the ephemeral store; the TTL bounds staleness should a message be lost).
 * Unlike the shared cache, a miss is loaded through the caller's transaction: on PGlite the one
 * connection is held by that transaction while the sink runs.
 */
function enabledWebhooksCache(repo: WebhooksRepo, ephemeral: EphemeralStore, ttlMs: number) {
  const channel = 'cache-invalidate:webhooks';
  let cached: { value: EnabledWebhook[]; expiresAt: number } | undefined;
  let generation = 0;
  const drop = () => {
    generation++;
    cached = undefined;
  };
  const ready = ephemeral.subscribe(channel, drop);
  return {
    ready,
    async get(conn?: Knex): Promise<EnabledWebhook[]> {
      if (cached && cached.expiresAt > Date.now()) return cached.value;
      const startedAt = generation;
      const value = await repo.listEnabled(conn);
      // A change broadcast while this load ran may have made it stale: don't keep it.
      if (generation === startedAt) cached = { value, expiresAt: Date.now() + ttlMs };
      return value;
    },
    async invalidate(): Promise<void> {
      drop();
      await ephemeral.publish(channel, 'enabled');
    },
  };
}

export function toWebhook(row: WebhookRow): Webhook {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    events: row.events,
    enabled: row.enabled,
    disabledReason: row.disabled_reason,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

export function createWebhooks(deps: { repo: WebhooksRepo; box: SecretBox; ephemeral: EphemeralStore; settings: WebhookSettings }) {
  const { repo, box, settings } = deps;
  const enabled = enabledWebhooksCache(repo, deps.ephemeral, 30_000);

  /** The webhook, if it is in the scope's tenant: another tenant's is 403 IDENT_CROSS_TENANT. */
  async function find(scope: TenantScope, id: string): Promise<WebhookRow> {
    const row = await repo.findById(id);
    if (!row) throw new AppError('IDENT_WEBHOOK_NOT_FOUND', 'no webhook with this id');
    assertInTenant(scope, row.tenant_id, 'the webhook');
    return row;
  }

  /** Queues one delivery per enabled webhook that subscribes to the event, in the event's transaction. */
  const sink: TransactionalSink = async (event, trx) => {
    const hooks = await enabled.get(trx);
    if (!hooks.length) return;
    // A tenant's webhooks hear its events only.
    const matching = hooks.filter((h) => h.tenant_id === event.tenantId && subscribesTo(h.events, event.type));
    if (!matching.length) return;
    const body = webhookBody(event);
    await repo.enqueue(
      matching.map((h) => ({ id: randomUUID(), webhook_id: h.id, event_id: event.id, event_type: event.type, body })),
      settings.retryWindowMs,
      trx,
    );
  };

  return {
    /** Resolves once this instance hears other instances' changes. */
    ready: enabled.ready,
    sink,

    /** Registers a webhook; the answer carries its signing secret, which is never shown again. */
    async create(scope: TenantScope, input: WebhookInput & { url: string; events: string[] }): Promise<{ webhook: Webhook; secret: string }> {
      const id = randomUUID();
      const secret = newSecret();
      const row = await repo.insert({
        id,
        tenant_id: scope.tenantId,
        url: checkWebhookUrl(input.url, settings.allowPrivateNetworks),
        description: input.description ?? null,
        events: [...new Set(input.events)],
        enabled: input.enabled ?? true,
        secret_sealed: box.encrypt(secret, secretAad(id)),
      });
      await enabled.invalidate();
      return { webhook: toWebhook(row), secret };
    },

    async list(scope: TenantScope, page: number, pageSize: number) {
      const { rows, total } = await repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
      return { rows: rows.map(toWebhook), total };
    },

    async get(scope: TenantScope, id: string): Promise<Webhook> {
      return toWebhook(await find(scope, id));
    },

    /** Changes what the input names; turning it on again clears why the system had turned it off. */
    async update(scope: TenantScope, id: string, input: WebhookInput): Promise<Webhook> {
      await find(scope, id);
      const row = await repo.update(id, {
        ...(input.url !== undefined ? { url: checkWebhookUrl(input.url, settings.allowPrivateNetworks) } : {}),
        ...(input.events !== undefined ? { events: [...new Set(input.events)] } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.enabled !== undefined ? { enabled: input.enabled, disabled_reason: null } : {}),
      });
      if (!row) throw new AppError('IDENT_WEBHOOK_NOT_FOUND', 'no webhook with this id');
      await enabled.invalidate();
      return toWebhook(row);
    },

    /** Deletes the webhook and its delivery log; queued deliveries are dropped. */
    async remove(scope: TenantScope, id: string): Promise<void> {
      await find(scope, id);
      if (!(await repo.delete(id))) throw new AppError('IDENT_WEBHOOK_NOT_FOUND', 'no webhook with this id');
      await enabled.invalidate();
    },

    /** A new signing secret; it signs every attempt from now on, queued deliveries' retries included. */
    async rotateSecret(scope: TenantScope, id: string): Promise<string> {
      await find(scope, id);
      const secret = newSecret();
      await repo.update(id, { secret_sealed: box.encrypt(secret, secretAad(id)) });
      return secret;
    },

    async deliveries(scope: TenantScope, id: string, page: number, pageSize: number): Promise<{ rows: DeliveryRow[]; total: number }> {
      await find(scope, id);
      return repo.listDeliveries(id, (page - 1) * pageSize, pageSize);
    },

    /** Sends a delivery again (same webhook-id and body), with a fresh retry window. */
    async redeliver(scope: TenantScope, id: string, deliveryId: string): Promise<DeliveryRow> {
      await find(scope, id);
      const row = await repo.redeliver(id, deliveryId, settings.retryWindowMs);
      if (!row) throw new AppError('IDENT_WEBHOOK_NOT_FOUND', 'no delivery with this id for this webhook');
      return row;
    },

    /** The signing secret, for the delivery worker only. */
    signingSecret(row: WebhookRow): string {
      return box.decrypt(row.secret_sealed, secretAad(row.id));
    },

    /** Call after the system changed a webhook (the worker turning one off). */
    changed: () => enabled.invalidate(),
  };
}

export type Webhooks = ReturnType<typeof createWebhooks>;
