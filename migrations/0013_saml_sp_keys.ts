import type { Knex } from 'knex';

// Our SAML service provider's signing identity, one per SAML provider: an RSA key and a
// self-signed certificate made when the provider is registered. The certificate is published in
// our SP metadata (the IdP checks signed AuthnRequests with it); the private key is kept sealed
// with the key-encryption key (AAD names the provider) and never returned.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('identity_providers', (t) => {
    t.text('sp_certificate');
    t.text('sp_private_key_sealed');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('identity_providers', (t) => {
    t.dropColumn('sp_private_key_sealed');
    t.dropColumn('sp_certificate');
  });
}
