import type { Knex } from 'knex';

// Second factors of an account: TOTP authenticators and recovery-code sets. A TOTP secret is kept
// sealed with the key-encryption key (never in clear); recovery codes only as keyed digests, each
// usable once. A factor counts once confirmed; an unconfirmed TOTP enrollment expires (the domain
// ignores it after 10 minutes and the sweeper deletes it).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('mfa_factors', (t) => {
    t.uuid('id').primary();
    t.text('tenant_id').notNullable().defaultTo('default').references('tenants.id');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    t.text('type').notNullable();
    t.text('name').notNullable();
    t.text('secret_sealed');
    t.timestamp('confirmed_at', { useTz: true });
    t.timestamp('created_at', { useTz: true }).notNullable().defaultTo(knex.fn.now());
    t.timestamp('last_used_at', { useTz: true });
  });
  await knex.raw(`alter table mfa_factors add constraint mfa_factors_type check (type in ('totp', 'recovery'))`);
  await knex.raw(`alter table mfa_factors add constraint mfa_factors_totp_secret check (type <> 'totp' or secret_sealed is not null)`);
  await knex.raw('create index mfa_factors_user on mfa_factors (user_id)');
  // One confirmed factor of each type per user: a new TOTP or a new set of codes replaces the old.
  await knex.raw('create unique index mfa_factors_one_confirmed on mfa_factors (user_id, type) where confirmed_at is not null');

  await knex.schema.createTable('mfa_recovery_codes', (t) => {
    t.uuid('factor_id').notNullable().references('mfa_factors.id').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    // SecretBox.digest of the normalised code, bound to the user.
    t.text('code_digest').notNullable();
    t.timestamp('used_at', { useTz: true });
    t.primary(['factor_id', 'code_digest']);
  });
  await knex.raw('create index mfa_recovery_codes_lookup on mfa_recovery_codes (user_id, code_digest)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('mfa_recovery_codes');
  await knex.schema.dropTableIfExists('mfa_factors');
}
