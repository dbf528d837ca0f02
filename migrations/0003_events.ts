import type { Knex } from 'knex';

// Domain events (user.created, user.signed_in, ...): the audit trail, and later the webhook source.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('events', (t) => {
    t.uuid('id').primary();
    t.text('type').notNullable();
    t.text('tenant_id').notNullable().defaultTo('default');
    t.text('subject_id');
    t.text('actor');
    t.text('request_id');
    t.jsonb('payload').notNullable();
    t.timestamp('occurred_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw('create index events_subject on events (subject_id, occurred_at) where subject_id is not null');
  await knex.raw('create index events_type on events (type, occurred_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('events');
}
