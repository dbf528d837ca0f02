import type { Knex } from 'knex';

// WebAuthn credentials (security keys and passkeys). Each is one mfa_factors row of type webauthn
// (its name, dates, and its place in the list, removal and reset every factor shares) and one row
// here with what the ceremonies check: the public key, the signature counter, and whether it is a
// passkey (discoverable, registered with user verification) that can sign in without a password.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webauthn_credentials', (t) => {
    t.uuid('factor_id').primary().references('mfa_factors.id').onDelete('CASCADE');
    t.uuid('user_id').notNullable().references('users.id').onDelete('CASCADE');
    // base64url, as the browser reports it; a passkey sign-in finds its account by it.
    t.text('credential_id').notNullable().unique();
    // base64url of the COSE public key.
    t.text('public_key').notNullable();
    t.bigInteger('sign_count').notNullable().defaultTo(0);
    // Comma-separated hints (usb, nfc, ble, internal, hybrid) for the browser's prompt.
    t.text('transports').notNullable().defaultTo('');
    t.boolean('discoverable').notNullable().defaultTo(false);
    t.boolean('backed_up').notNullable().defaultTo(false);
    t.text('device_type').notNullable();
    t.text('aaguid').notNullable();
  });
  await knex.raw('create index webauthn_credentials_user on webauthn_credentials (user_id)');
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('webauthn_credentials');
}
