import type { Knex } from 'knex';

// Ids are generated in JS (crypto.randomUUID) so the same migration runs on PGlite and PostgreSQL
// without extensions.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('tenants', (t) => {
    t.text('id').primary();
    t.text('name').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex('tenants').insert({ id: 'default', name: 'Default' });

  await knex.schema.createTable('users', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.text('email').notNullable();
    t.boolean('email_verified').notNullable().defaultTo(false);
    t.text('password_hash');
    t.text('given_name');
    t.text('family_name');
    t.text('locale');
    t.text('status').notNullable().defaultTo('active');
    t.integer('failed_attempts').notNullable().defaultTo(0);
    t.timestamp('locked_until', { useTz: true });
    t.timestamp('last_login_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw(`alter table users add constraint users_status_check check (status in ('active','suspended','deactivated'))`);
  // Email is unique per tenant regardless of case.
  await knex.raw('create unique index users_tenant_email_unique on users (tenant_id, lower(email))');

  await knex.schema.createTable('clients', (t) => {
    t.text('client_id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.jsonb('metadata').notNullable();
    t.text('secret_digest');
    t.text('secret_sealed');
    t.boolean('first_party').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  await knex.schema.createTable('resource_servers', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.text('identifier').notNullable().unique();
    t.text('name');
    t.jsonb('scopes').notNullable().defaultTo('[]');
    t.text('access_token_format').notNullable().defaultTo('jwt');
    t.integer('access_token_ttl');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });

  // One table for every oidc-provider model except Client; lookup keys are copied out of the
  // payload into plain columns so each adapter call is an index lookup.
  await knex.schema.createTable('oidc_payloads', (t) => {
    t.text('model').notNullable();
    t.text('id').notNullable();
    t.jsonb('payload').notNullable();
    t.text('grant_id');
    t.text('uid');
    t.text('user_code');
    t.text('account_id');
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('consumed_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.primary(['model', 'id']);
  });
  await knex.raw('create index oidc_payloads_grant on oidc_payloads (grant_id) where grant_id is not null');
  await knex.raw(`create unique index oidc_payloads_session_uid on oidc_payloads (uid) where model = 'Session'`);
  await knex.raw('create index oidc_payloads_user_code on oidc_payloads (user_code) where user_code is not null');
  await knex.raw('create index oidc_payloads_account on oidc_payloads (account_id, model) where account_id is not null');
  await knex.raw('create index oidc_payloads_expires on oidc_payloads (expires_at) where expires_at is not null');

  // Signing and cookie keys. Private parts are sealed with KEY_ENCRYPTION_KEY. A key is published
  // from created_at, signs from activates_at and disappears after retires_at.
  await knex.schema.createTable('server_keys', (t) => {
    t.text('kid').primary();
    t.text('use').notNullable();
    t.text('alg').notNullable();
    t.jsonb('public_jwk');
    t.text('private_sealed').notNullable();
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('activates_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('retires_at', { useTz: true });
  });
  await knex.raw(`alter table server_keys add constraint server_keys_use_check check (use in ('sig','cookie'))`);
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['server_keys', 'oidc_payloads', 'resource_servers', 'clients', 'users', 'tenants']) {
    await knex.schema.dropTableIfExists(table);
  }
}
