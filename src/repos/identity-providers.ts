import type { Knex } from 'knex';
import { hasNul, paged } from '../infra/db.ts';

export type IdentityProviderType = 'oidc' | 'oauth2' | 'saml';
export type AccountLinking = 'prove-control' | 'off';

export interface IdentityProviderRow {
  id: string;
  tenant_id: string;
  alias: string;
  type: IdentityProviderType;
  display_name: string;
  enabled: boolean;
  /** The type's settings (endpoints, client id, metadata, mappings): never a secret. */
  settings: Record<string, unknown>;
  /** SecretBox-sealed client secret (AAD names the provider); null for SAML and public clients. */
  client_secret_sealed: string | null;
  /** SAML: our SP's self-signed certificate (PEM), published in our metadata. */
  sp_certificate: string | null;
  /** SAML: our SP's private key (PKCS#8 PEM), SecretBox-sealed (AAD names the provider). */
  sp_private_key_sealed: string | null;
  allowed_domains: string[];
  jit_provisioning: boolean;
  account_linking: AccountLinking;
  /** Upstream emails count as verified (Keycloak's "Trust Email"), whatever the upstream says. */
  trust_email: boolean;
  trust_upstream_mfa: boolean;
  created_at: Date;
  updated_at: Date;
}

export type NewIdentityProvider = Omit<IdentityProviderRow, 'created_at' | 'updated_at'>;
export type IdentityProviderChanges = Partial<Omit<IdentityProviderRow, 'id' | 'tenant_id' | 'alias' | 'type' | 'created_at' | 'updated_at' | 'sp_certificate' | 'sp_private_key_sealed'>>;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// jsonb columns are written as JSON text: the pg driver would send a JS array as a PostgreSQL array.
const asJson = <T extends Partial<Pick<IdentityProviderRow, 'settings' | 'allowed_domains'>>>(row: T) => ({
  ...row,
  ...(row.settings !== undefined ? { settings: JSON.stringify(row.settings) } : {}),
  ...(row.allowed_domains !== undefined ? { allowed_domains: JSON.stringify(row.allowed_domains) } : {}),
});

/** identity_providers: each belongs to one tenant; aliases are unique across tenants (they name its URLs). */
export function createIdentityProvidersRepo(db: Knex) {
  /** Writes take `trx` so a change and its event commit together. */
  const table = (trx?: Knex.Transaction) => (trx ?? db)<IdentityProviderRow>('identity_providers');
  return {
    async insert(row: NewIdentityProvider, trx?: Knex.Transaction): Promise<IdentityProviderRow> {
      const [out] = await table(trx).insert(asJson(row) as never).returning('*');
      return out as IdentityProviderRow;
    },

    async findById(id: string): Promise<IdentityProviderRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return table().where({ id }).first();
    },

    async findByAlias(alias: string): Promise<IdentityProviderRow | undefined> {
      if (hasNul(alias)) return undefined;
      return table().where({ alias }).first();
    },

    /** Enabled providers, by display name: the login page's controls and home-realm discovery. */
    async listEnabled(): Promise<IdentityProviderRow[]> {
      return table().where({ enabled: true }).orderBy([{ column: 'display_name' }, { column: 'alias' }]);
    },

    async list(tenantId: string, offset: number, limit: number) {
      return paged<IdentityProviderRow>(() => db('identity_providers').where({ tenant_id: tenantId }), 'id', offset, limit);
    },

    async update(id: string, changes: IdentityProviderChanges, trx?: Knex.Transaction): Promise<IdentityProviderRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await table(trx).where({ id }).update({ ...asJson(changes), updated_at: db.fn.now() } as never).returning('*');
      return row as IdentityProviderRow | undefined;
    },

    /** Stores an SP key only where none is (two instances making one at once keep the first). */
    async setSpKeyIfAbsent(id: string, certificate: string, sealedKey: string): Promise<void> {
      await table().where({ id }).whereNull('sp_certificate').update({ sp_certificate: certificate, sp_private_key_sealed: sealedKey } as never);
    },

    async delete(id: string, trx?: Knex.Transaction): Promise<IdentityProviderRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await table(trx).where({ id }).delete().returning('*');
      return row as IdentityProviderRow | undefined;
    },
  };
}

export type IdentityProvidersRepo = ReturnType<typeof createIdentityProvidersRepo>;
