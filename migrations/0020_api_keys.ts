import type { Knex } from 'knex';

// API keys: long-lived bearer credentials for the admin API, each of one tenant and with a fixed
// set of iam.* scopes. The key itself is shown once; only a keyed digest (HMAC-SHA-256 under the
// key-encryption key) is kept, so a dump of this table authenticates nothing. A rotation keeps the
// digest it replaces for an overlap (previous_digest until previous_expires_at), so callers can
// switch keys without an outage. A revoked key keeps its row (revoked_at) for the audit trail.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('api_keys', (t) => {
    t.uuid('id').primary();
    // A tenant's keys go with it (the tenants API deletes only a tenant without users or clients).
    t.text('tenant_id').notNullable().references('tenants.id').onDelete('CASCADE');
    t.text('name').notNullable();
    t.jsonb('scopes').notNullable();
    t.text('digest').notNullable();
    t.text('previous_digest');
    t.timestamp('previous_expires_at', { useTz: true });
    t.timestamp('expires_at', { useTz: true });
    t.timestamp('last_used_at', { useTz: true });
    t.timestamp('revoked_at', { useTz: true });
    // Who made it: an admin client (client id) or another API key (its id).
    t.text('created_by_type').notNullable();
    t.text('created_by_id');
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('updated_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
  });
  await knex.raw("alter table api_keys add constraint api_keys_created_by_type check (created_by_type in ('client', 'api_key', 'system'))");
  await knex.raw('create index api_keys_tenant on api_keys (tenant_id, created_at, id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('api_keys');
}
