import type { Knex } from 'knex';

// Account pre-hijacking: a password chosen at self-registration, before anyone proved the address,
// is the registrant's and not necessarily the address owner's. The flag marks such a password
// until the address is proven (see domain/accounts/address-proof.ts).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.boolean('password_unverified_owner').notNullable().defaultTo(false);
  });
  // Accounts registered before this migration and still unproven are treated like new ones.
  await knex.raw(`
    update users set password_unverified_owner = true
    where email_verified = false and password_hash is not null
      and id::text in (select subject_id from events where type = 'user.created' and payload->>'source' = 'self-registration')`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('users', (t) => {
    t.dropColumn('password_unverified_owner');
  });
}
