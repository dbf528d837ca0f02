import type { Knex } from 'knex';

// An identity provider's alias names its URLs in our one issuer (the OIDC callback, the SAML ACS,
// metadata and single logout), which carry no tenant: two tenants' providers with one alias would
// make those URLs ambiguous. Aliases become unique across tenants, as resource server identifiers are.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('identity_providers', (t) => {
    t.dropUnique(['tenant_id', 'alias']);
    t.unique(['alias']);
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('identity_providers', (t) => {
    t.dropUnique(['alias']);
    t.unique(['tenant_id', 'alias']);
  });
}
