import type { Knex } from 'knex';

// The factor types beyond TOTP and recovery codes: WebAuthn credentials (security keys and
// passkeys), SMS to a verified phone and codes to the account's verified email address. A user
// keeps one confirmed factor of each type except WebAuthn, where every security key and passkey is
// a factor of its own (people register a spare key).
export async function up(knex: Knex): Promise<void> {
  await knex.raw('alter table mfa_factors drop constraint mfa_factors_type');
  await knex.raw(`alter table mfa_factors add constraint mfa_factors_type check (type in ('totp', 'recovery', 'webauthn', 'sms', 'email'))`);
  await knex.raw('drop index mfa_factors_one_confirmed');
  await knex.raw(`create unique index mfa_factors_one_confirmed on mfa_factors (user_id, type) where confirmed_at is not null and type <> 'webauthn'`);
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw(`delete from mfa_factors where type not in ('totp', 'recovery')`);
  await knex.raw('drop index mfa_factors_one_confirmed');
  await knex.raw('create unique index mfa_factors_one_confirmed on mfa_factors (user_id, type) where confirmed_at is not null');
  await knex.raw('alter table mfa_factors drop constraint mfa_factors_type');
  await knex.raw(`alter table mfa_factors add constraint mfa_factors_type check (type in ('totp', 'recovery'))`);
}
