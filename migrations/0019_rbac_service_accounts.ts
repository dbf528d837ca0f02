import type { Knex } from 'knex';

// Role-based access at resource servers, and secret rotation with an overlap for service accounts.
// A resource server with `rbac` gives a user's (or service account's) token only the scopes its
// roles grant there. A client's previous secret digest stays valid until its expiry, so a service
// account's callers can move to a new secret without an outage.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('resource_servers', (t) => {
    t.boolean('rbac').notNullable().defaultTo(false);
  });
  await knex.schema.alterTable('clients', (t) => {
    t.text('previous_secret_digest');
    t.timestamp('previous_secret_expires_at', { useTz: true });
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('clients', (t) => {
    t.dropColumn('previous_secret_digest');
    t.dropColumn('previous_secret_expires_at');
  });
  await knex.schema.alterTable('resource_servers', (t) => {
    t.dropColumn('rbac');
  });
}
