import type { Knex } from 'knex';

// The phone number (E.164) an SMS factor sends its codes to. Only SMS factors have one, and every
// SMS factor does: a factor without a number could never be proven.
export async function up(knex: Knex): Promise<void> {
  await knex.raw('alter table mfa_factors add column phone text');
  await knex.raw(`alter table mfa_factors add constraint mfa_factors_phone check ((type = 'sms') = (phone is not null))`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('alter table mfa_factors drop constraint mfa_factors_phone');
  await knex.raw('alter table mfa_factors drop column phone');
}
