import type { Knex } from 'knex';
import { affectedRows } from '../infra/db.ts';

export interface WebhookRow {
  id: string;
  tenant_id: string;
  url: string;
  description: string | null;
  /** Event types, "*" or "prefix.*" patterns. */
  events: string[];
  enabled: boolean;
  /** SecretBox-sealed "whsec_..." signing secret (AAD names the webhook). */
  secret_sealed: string;
  disabled_reason: string | null;
  created_at: Date;
  updated_at: Date;
}

export type NewWebhook = Pick<WebhookRow, 'id' | 'tenant_id' | 'url' | 'description' | 'events' | 'enabled' | 'secret_sealed'>;
export type WebhookChanges = Partial<Pick<WebhookRow, 'url' | 'description' | 'events' | 'enabled' | 'secret_sealed' | 'disabled_reason'>>;

/** What the event sink needs of an enabled webhook: never its URL or secret. */
export interface EnabledWebhook {
  id: string;
  /** A webhook hears only its own tenant's events. */
  tenant_id: string;
  events: string[];
}

export type DeliveryStatus = 'pending' | 'succeeded' | 'failed';
/** A webhook's event, or an OpenID Connect back-channel logout notification to a relying party. */
export type DeliveryKind = 'webhook' | 'backchannel_logout';

export interface DeliveryRow {
  id: string;
  kind: DeliveryKind;
  /** Null for a back-channel logout. */
  webhook_id: string | null;
  event_id: string;
  event_type: string;
  body: string;
  status: DeliveryStatus;
  attempts: number;
  next_attempt_at: Date;
  retry_until: Date;
  last_attempt_at: Date | null;
  response_status: number | null;
  latency_ms: number | null;
  last_error: string | null;
  created_at: Date;
  delivered_at: Date | null;
}

export type NewDelivery = Pick<DeliveryRow, 'id' | 'webhook_id' | 'event_id' | 'event_type' | 'body'> & { kind?: DeliveryKind };

/** The outcome of one attempt, for the delivery log. */
export interface AttemptOutcome {
  responseStatus: number | null;
  latencyMs: number;
  error?: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const ms = (db: Knex, value: number) => db.raw("now() + ? * interval '1 millisecond'", [value]);

/** webhooks (each of one tenant) and webhook_deliveries. */
export function createWebhooksRepo(db: Knex) {
  const hooks = () => db<WebhookRow>('webhooks');
  const deliveries = () => db<DeliveryRow>('webhook_deliveries');
  // jsonb is written as JSON text: the pg driver would send a JS array as a PostgreSQL array.
  const asJson = <T extends { events?: string[] }>(row: T) => ({ ...row, ...(row.events ? { events: JSON.stringify(row.events) } : {}) });

  return {
    async insert(row: NewWebhook): Promise<WebhookRow> {
      const [out] = await hooks().insert(asJson(row) as never).returning('*');
      return out as WebhookRow;
    },

    async findById(id: string): Promise<WebhookRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return hooks().where({ id }).first();
    },

    async findByIds(ids: string[]): Promise<WebhookRow[]> {
      return ids.length ? hooks().whereIn('id', ids) : [];
    },

    async list(tenantId: string, offset: number, limit: number): Promise<{ rows: WebhookRow[]; total: number }> {
      const [rows, counted] = await Promise.all([
        hooks().where({ tenant_id: tenantId }).orderBy([{ column: 'created_at' }, { column: 'id' }]).offset(offset).limit(limit),
        hooks().where({ tenant_id: tenantId }).count({ count: '*' }),
      ]);
      return { rows, total: Number((counted as Array<{ count: number | string }>)[0]?.count ?? 0) };
    },

    /** The enabled webhooks' ids and event filters; `conn` is the caller's transaction when it has one. */
    async listEnabled(conn: Knex = db): Promise<EnabledWebhook[]> {
      return conn('webhooks').where({ enabled: true }).select('id', 'tenant_id', 'events');
    },

    async update(id: string, changes: WebhookChanges): Promise<WebhookRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await hooks().where({ id }).update({ ...asJson(changes), updated_at: db.fn.now() } as never).returning('*');
      return row as WebhookRow | undefined;
    },

    async delete(id: string): Promise<boolean> {
      if (!UUID.test(id)) return false;
      return affectedRows(await hooks().where({ id }).delete()) > 0;
    },

    /**
     * Turns a webhook off because its retries ran out, unless something was delivered to it since
     * `since` (the receiver works again) or it is off already. True when this call turned it off:
     * exactly one instance does, and records it. Its pending deliveries fail with it.
     */
    async disableExhausted(id: string, since: Date, reason: string, trx: Knex.Transaction): Promise<boolean> {
      const changed = affectedRows(
        await trx('webhooks')
          .where({ id, enabled: true })
          .whereNotExists(
            trx('webhook_deliveries').where({ webhook_id: id, status: 'succeeded' }).where('delivered_at', '>', since).select(trx.raw('1')),
          )
          .update({ enabled: false, disabled_reason: reason, updated_at: trx.fn.now() }),
      );
      if (changed) {
        await trx('webhook_deliveries')
          .where({ webhook_id: id, status: 'pending' })
          .update({ status: 'failed', last_error: 'the webhook was disabled' });
      }
      return changed > 0;
    },

    /** Queues deliveries; pass `trx` to commit them with the event they carry. */
    async enqueue(rows: NewDelivery[], retryWindowMs: number, trx?: Knex.Transaction): Promise<void> {
      if (!rows.length) return;
      const conn = trx ?? db;
      await conn('webhook_deliveries').insert(rows.map((r) => ({ ...r, retry_until: ms(conn, retryWindowMs) })));
    },

    /**
     * Claims up to `limit` due deliveries of enabled webhooks, oldest first. Rows locked by another
     * instance's claim are skipped, and a claimed row is leased (its next attempt moved `leaseMs`
     * ahead) before the transaction commits: the sending happens outside any transaction, and a
     * crash mid-send only delays the row until the lease runs out (the outbox's scheme).
     */
    async claimDue(limit: number, leaseMs: number): Promise<DeliveryRow[]> {
      return db.transaction(async (trx) => {
        const rows = (await trx('webhook_deliveries as d')
          .leftJoin('webhooks as w', 'w.id', 'd.webhook_id')
          .where('d.status', 'pending')
          .where((q) => q.where('w.enabled', true).orWhere('d.kind', 'backchannel_logout'))
          .where('d.next_attempt_at', '<=', trx.fn.now())
          .orderBy([{ column: 'd.next_attempt_at' }, { column: 'd.created_at' }])
          .limit(limit)
          .select('d.*')
          .forUpdate('d')
          .skipLocked()) as DeliveryRow[];
        if (rows.length) {
          await trx('webhook_deliveries')
            .whereIn('id', rows.map((r) => r.id))
            .update({ next_attempt_at: ms(trx, leaseMs) });
        }
        return rows;
      });
    },

    async markSucceeded(id: string, outcome: AttemptOutcome): Promise<void> {
      await deliveries()
        .where({ id, status: 'pending' })
        .update({
          status: 'succeeded',
          attempts: db.raw('attempts + 1') as never,
          last_attempt_at: db.fn.now() as never,
          delivered_at: db.fn.now() as never,
          response_status: outcome.responseStatus,
          latency_ms: outcome.latencyMs,
          last_error: null,
        });
    },

    /**
     * Counts a failed attempt. The next is `baseMs` doubled per earlier failure, at most `maxMs`
     * away; one that would fall past the row's retry window fails the delivery for good instead.
     * Answers the row's new status (undefined when it was no longer pending).
     */
    async markFailed(id: string, outcome: AttemptOutcome, baseMs: number, maxMs: number): Promise<DeliveryStatus | undefined> {
      const delay = db.raw("least(?::float8, ?::float8 * power(2, least(attempts, 40))) * interval '1 millisecond'", [maxMs, baseMs]);
      const [row] = (await deliveries()
        .where({ id, status: 'pending' })
        .update({
          attempts: db.raw('attempts + 1') as never,
          last_attempt_at: db.fn.now() as never,
          response_status: outcome.responseStatus,
          latency_ms: outcome.latencyMs,
          last_error: outcome.error ?? null,
          next_attempt_at: db.raw('now() + ?', [delay]) as never,
          status: db.raw("case when now() + ? > retry_until then 'failed' else 'pending' end", [delay]) as never,
        })
        .returning(['status'])) as Array<{ status: DeliveryStatus }>;
      return row?.status;
    },

    /** Fails a delivery without retrying (there is nowhere left to send it). */
    async markAbandoned(id: string, error: string): Promise<void> {
      await deliveries()
        .where({ id, status: 'pending' })
        .update({ status: 'failed', attempts: db.raw('attempts + 1') as never, last_attempt_at: db.fn.now() as never, last_error: error });
    },

    /** Gives back claimed rows not attempted (their webhook failed earlier in the batch), due after `delayMs`. */
    async release(ids: string[], delayMs: number): Promise<void> {
      if (!ids.length) return;
      await deliveries().whereIn('id', ids).where({ status: 'pending' }).update({ next_attempt_at: ms(db, delayMs) as never });
    },

    /** A webhook's deliveries, newest first. */
    async listDeliveries(webhookId: string, offset: number, limit: number): Promise<{ rows: DeliveryRow[]; total: number }> {
      const [rows, counted] = await Promise.all([
        deliveries().where({ webhook_id: webhookId }).orderBy([{ column: 'created_at', order: 'desc' }, { column: 'id', order: 'desc' }]).offset(offset).limit(limit),
        deliveries().where({ webhook_id: webhookId }).count({ count: '*' }),
      ]);
      return { rows, total: Number((counted as Array<{ count: number | string }>)[0]?.count ?? 0) };
    },

    async findDelivery(webhookId: string, id: string): Promise<DeliveryRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return deliveries().where({ id, webhook_id: webhookId }).first();
    },

    /** Queues a delivery again, at once, with a fresh retry window (same id and body: same webhook-id). */
    async redeliver(webhookId: string, id: string, retryWindowMs: number): Promise<DeliveryRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await deliveries()
        .where({ id, webhook_id: webhookId })
        .update({ status: 'pending', attempts: 0, next_attempt_at: db.fn.now() as never, retry_until: ms(db, retryWindowMs) as never })
        .returning('*');
      return row as DeliveryRow | undefined;
    },

    /** Deletes finished deliveries older than `days` (the sweeper's schedule). */
    async sweepFinished(days: number): Promise<number> {
      return affectedRows(
        await deliveries()
          .whereIn('status', ['succeeded', 'failed'])
          .where('created_at', '<', db.raw('now() - make_interval(days => ?)', [days]))
          .delete(),
      );
    },
  };
}

export type WebhooksRepo = ReturnType<typeof createWebhooksRepo>;
