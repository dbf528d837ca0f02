import type { Knex } from 'knex';

// Responses remembered for Idempotency-Key retries (24 h); swept like expired provider rows.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('idempotency_keys', (t) => {
    t.text('scope').notNullable();
    t.text('key').notNullable();
    t.text('request_hash').notNullable();
    t.integer('status');
    t.jsonb('body');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('expires_at', { useTz: true }).notNullable();
    t.primary(['scope', 'key']);
  });
  await knex.raw('create index idempotency_keys_expires on idempotency_keys (expires_at)');
  // Listing and searching users page by creation order.
  await knex.raw('create index users_tenant_created on users (tenant_id, created_at, id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop index if exists users_tenant_created');
  await knex.schema.dropTableIfExists('idempotency_keys');
}
