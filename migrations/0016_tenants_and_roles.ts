import type { Knex } from 'knex';

// Tenants become first-class (a slug to name them by, as Auth0 organizations and Logto do), and
// roles arrive: a role belongs to one tenant and grants permissions, pairs of a resource server's
// identifier and one of its scopes. Users and service accounts hold roles. Every tenant starts with
// three roles, the identity service's user types (reference 004 typeIds: admin 100, regular 001,
// guest 000), so callers of that contract find them; their permissions are the operator's to set.
const SEEDED_ROLES = [
  { name: 'admin', type_id: '100', description: 'Administrators of the tenant (identity service typeId 100)' },
  { name: 'regular', type_id: '001', description: 'Regular users (identity service typeId 001)' },
  { name: 'guest', type_id: '000', description: 'Guests (identity service typeId 000)' },
] as const;

export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('tenants', (t) => {
    t.text('slug');
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex('tenants').update({ slug: knex.ref('id') });
  await knex.raw('alter table tenants alter column slug set not null');
  await knex.raw('create unique index tenants_slug_unique on tenants (slug)');

  await knex.schema.createTable('roles', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().references('tenants.id');
    t.text('name').notNullable();
    t.text('description');
    // [{resource, scope}]: a resource server's identifier and a scope it defines.
    t.jsonb('permissions').notNullable().defaultTo('[]');
    // The identity service's typeId for the seeded roles; null for roles operators create.
    t.text('type_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['tenant_id', 'name']);
  });

  await knex.schema.createTable('user_roles', (t) => {
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.uuid('role_id').notNullable().references('roles.id').onDelete('CASCADE');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['user_id', 'role_id']);
  });
  await knex.raw('create index user_roles_role on user_roles (role_id)');

  // A service account is a confidential client_credentials client of its tenant, with roles.
  await knex.schema.createTable('service_accounts', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().references('tenants.id');
    t.text('client_id').notNullable().unique().references('clients.client_id').onDelete('CASCADE');
    t.text('name').notNullable();
    t.text('description');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('service_account_roles', (t) => {
    t.uuid('service_account_id').notNullable().references('service_accounts.id').onDelete('CASCADE');
    t.uuid('role_id').notNullable().references('roles.id').onDelete('CASCADE');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['service_account_id', 'role_id']);
  });
  await knex.raw('create index service_account_roles_role on service_account_roles (role_id)');

  for (const tenant of await knex('tenants').select('id')) {
    await knex('roles').insert(SEEDED_ROLES.map((role) => ({ id: crypto.randomUUID(), tenant_id: tenant.id, ...role })));
  }
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('service_account_roles');
  await knex.schema.dropTable('service_accounts');
  await knex.schema.dropTable('user_roles');
  await knex.schema.dropTable('roles');
  await knex.raw('drop index if exists tenants_slug_unique');
  await knex.schema.alterTable('tenants', (t) => {
    t.dropColumn('slug');
    t.dropColumn('updated_at');
  });
}
