import type { Knex } from 'knex';

// Federation: the upstream identity providers (OpenID Connect, plain OAuth 2.0, SAML 2.0) people
// sign in through, and the links between a local user and an upstream subject. A provider's
// settings are JSON (their shape depends on the type); its client secret, when it has one, is kept
// sealed with the key-encryption key and never returned. A link is unique per provider and
// upstream subject, so one upstream account maps to one local user; deleting the provider or the
// user deletes its links.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('identity_providers', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.text('alias').notNullable();
    t.text('type').notNullable();
    t.text('display_name').notNullable();
    t.boolean('enabled').notNullable().defaultTo(true);
    t.jsonb('settings').notNullable();
    t.text('client_secret_sealed');
    t.jsonb('allowed_domains').notNullable().defaultTo('[]');
    t.boolean('jit_provisioning').notNullable().defaultTo(true);
    t.text('account_linking').notNullable().defaultTo('prove-control');
    t.boolean('trust_email').notNullable().defaultTo(false);
    t.boolean('trust_upstream_mfa').notNullable().defaultTo(false);
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.unique(['tenant_id', 'alias']);
  });
  await knex.raw(`alter table identity_providers add constraint identity_providers_type check (type in ('oidc', 'oauth2', 'saml'))`);
  await knex.raw(`alter table identity_providers add constraint identity_providers_linking check (account_linking in ('prove-control', 'off'))`);

  await knex.schema.createTable('federated_identities', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.uuid('provider_id').notNullable().references('identity_providers.id').onDelete('CASCADE');
    t.text('subject').notNullable();
    // What the upstream said at the last sign-in, for the account page and the help desk.
    t.text('email');
    t.timestamp('linked_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_login_at', { useTz: true });
    t.unique(['provider_id', 'subject']);
    // One link per provider and user: a second upstream account of the same provider is not linked.
    t.unique(['provider_id', 'user_id']);
  });
  await knex.raw('create index federated_identities_user on federated_identities (user_id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('federated_identities');
  await knex.schema.dropTableIfExists('identity_providers');
}
