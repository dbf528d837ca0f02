import type { Knex } from 'knex';

// Transactional outbox for mail: a mail is written in the same transaction as the change that causes
// it and sent later by the mail worker, so a crash or an SMTP outage delays mail but never loses it.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('outbox', (t) => {
    t.uuid('id').primary();
    t.text('recipient').notNullable();
    t.text('template').notNullable();
    t.text('locale').notNullable();
    // The template data (codes, links) encrypted with the key-encryption key; cleared once sent.
    t.text('payload_sealed');
    t.text('status').notNullable().defaultTo('pending');
    t.integer('attempts').notNullable().defaultTo(0);
    t.timestamp('next_attempt_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    // Error class and SMTP status of the last failure; never the payload.
    t.text('last_error');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('sent_at', { useTz: true });
  });
  await knex.raw("alter table outbox add constraint outbox_status check (status in ('pending', 'sent'))");
  await knex.raw('create index outbox_due on outbox (status, next_attempt_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('outbox');
}
