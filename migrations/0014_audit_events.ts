import type { Knex } from 'knex';

// The audit trail's shape: who acted (actor type and id), on what (target type and id), from where
// (address, user agent). `seq` orders events by insertion for cursors and stream resume; occurred_at
// alone is not unique. The old free-text `actor` column is read into the new pair and kept empty.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('events', (t) => {
    t.text('actor_type');
    t.text('actor_id');
    t.text('target_type');
    t.text('target_id');
    t.text('ip');
    t.text('user_agent');
  });
  await knex.raw('alter table events add column seq bigint generated always as identity');
  await knex.raw(
    `update events set actor_type = case when actor is null then 'system' else 'client' end,
       actor_id = actor, target_type = case when subject_id is null then null else 'user' end, target_id = subject_id`,
  );
  await knex.raw('create unique index events_seq on events (seq)');
  await knex.raw('create index events_target on events (target_type, target_id, seq) where target_id is not null');
  await knex.raw('create index events_actor on events (actor_type, actor_id, seq)');
  await knex.raw('create index events_occurred on events (occurred_at)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('drop index if exists events_occurred');
  await knex.raw('drop index if exists events_actor');
  await knex.raw('drop index if exists events_target');
  await knex.raw('drop index if exists events_seq');
  await knex.schema.alterTable('events', (t) => {
    for (const c of ['seq', 'user_agent', 'ip', 'target_id', 'target_type', 'actor_id', 'actor_type']) t.dropColumn(c);
  });
}
