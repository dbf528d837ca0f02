import type { Knex } from 'knex';

// Webhooks (Standard Webhooks): the endpoints operators register, and a durable queue of
// deliveries written in the same transaction as the event they carry, so a crash or a dead
// receiver delays a delivery but never loses it. The signing secret is sealed with the
// key-encryption key. A delivery keeps the exact body it sends (every retry signs the same bytes)
// and the outcome of its last attempt (the delivery log). OpenID Connect back-channel logout
// notifications to relying parties go through the same queue (kind backchannel_logout, no webhook).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webhooks', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.text('url').notNullable();
    t.text('description');
    // Event types, "*" or "prefix.*" patterns.
    t.jsonb('events').notNullable();
    t.boolean('enabled').notNullable().defaultTo(true);
    t.text('secret_sealed').notNullable();
    // Why the system turned it off (retries ran out); null when enabled or turned off by an operator.
    t.text('disabled_reason');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('webhook_deliveries', (t) => {
    // Also the webhook-id header: the same on every retry, so receivers can drop duplicates.
    t.uuid('id').primary();
    t.text('kind').notNullable().defaultTo('webhook');
    // Null for a back-channel logout (its body names the client, account and session).
    t.uuid('webhook_id').references('webhooks.id').onDelete('CASCADE');
    t.uuid('event_id').notNullable();
    t.text('event_type').notNullable();
    t.text('body').notNullable();
    t.text('status').notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Retries stop here (WEBHOOK_RETRY_WINDOW_SECONDS after the event or a manual redelivery).
    t.timestamp('retry_until', { useTz: true }).notNullable();
    t.timestamp('last_attempt_at', { useTz: true });
    t.integer('response_status');
    t.integer('latency_ms');
    // Class and reason of the last failure (connection refused, timeout, refused address); never the body.
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('delivered_at', { useTz: true });
  });
  await knex.raw("alter table webhook_deliveries add constraint webhook_deliveries_status check (status in ('pending', 'succeeded', 'failed'))");
  await knex.raw("alter table webhook_deliveries add constraint webhook_deliveries_kind check ((kind = 'webhook') = (webhook_id is not null) and kind in ('webhook', 'backchannel_logout'))");
  await knex.raw("create index webhook_deliveries_due on webhook_deliveries (next_attempt_at) where status = 'pending'");
  await knex.raw('create index webhook_deliveries_log on webhook_deliveries (webhook_id, created_at desc, id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('webhook_deliveries');
  await knex.schema.dropTableIfExists('webhooks');
}
