import type { Knex } from 'knex';

// Self-service needs a timezone on the profile, and the sessions list needs to know where and when a
// session was last used: the device columns are written for Session rows only.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.text('timezone');
    t.timestamp('password_changed_at', { useTz: true });
  });
  await knex.schema.alterTable('oidc_payloads', (t) => {
    t.text('user_agent');
    t.text('ip_address');
    t.timestamp('last_used_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('oidc_payloads', (t) => {
    t.dropColumn('user_agent');
    t.dropColumn('ip_address');
    t.dropColumn('last_used_at');
  });
  await knex.schema.alterTable('users', (t) => {
    t.dropColumn('timezone');
    t.dropColumn('password_changed_at');
  });
}
