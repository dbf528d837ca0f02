import type { Knex } from 'knex';
import { hasNul } from '../infra/db.ts';
import type { UserStatus } from './users.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export interface DirectoryUserRow {
  id: string;
  tenant_id: string;
  email: string;
  status: UserStatus;
}

export interface DirectoryServiceAccountRow {
  id: string;
  tenant_id: string;
  client_id: string;
  /** The client's metadata (its grant types decide whether it can still get tokens). */
  metadata: Record<string, unknown>;
}

/**
 * Read-only lookups for the internal endpoints (src/http/internal): a user with their role names,
 * the user an upstream identity is linked to, a service account by its client. Plain reads of
 * users, user_roles/roles, federated_identities/identity_providers and service_accounts/clients.
 */
export function createIdentityDirectoryRepo(db: Knex) {
  return {
    async user(id: string): Promise<DirectoryUserRow | undefined> {
      if (!UUID.test(id)) return undefined;
      return db('users').select('id', 'tenant_id', 'email', 'status').where({ id }).first();
    },

    /** The names of the user's roles, sorted. */
    async roleNames(userId: string): Promise<string[]> {
      if (!UUID.test(userId)) return [];
      const rows = await db('user_roles as ur').join('roles as r', 'r.id', 'ur.role_id').where('ur.user_id', userId).orderBy('r.name').select('r.name');
      return rows.map((r: { name: string }) => r.name);
    },

    /**
     * The users linked to `subject` at the identity providers named by `issuer`: an OpenID
     * Connect provider's issuer, a SAML provider's entity id, or any provider's alias. One per
     * tenant at most, since a provider belongs to one tenant and a subject links once per provider.
     */
    async usersByExternal(issuer: string, subject: string, tenantId?: string): Promise<Array<{ user_id: string; tenant_id: string }>> {
      if (hasNul(issuer) || hasNul(subject) || (tenantId !== undefined && hasNul(tenantId))) return [];
      const query = db('federated_identities as f')
        .join('identity_providers as p', 'p.id', 'f.provider_id')
        .where('f.subject', subject)
        .where((q) => q.whereRaw(`p.settings->>'issuer' = ?`, [issuer]).orWhereRaw(`p.settings->>'entityId' = ?`, [issuer]).orWhere('p.alias', issuer))
        .distinct('f.user_id', 'p.tenant_id')
        .orderBy('p.tenant_id');
      if (tenantId !== undefined) query.where('p.tenant_id', tenantId);
      return query;
    },

    async serviceAccount(clientId: string): Promise<DirectoryServiceAccountRow | undefined> {
      if (hasNul(clientId)) return undefined;
      return db('service_accounts as s')
        .join('clients as c', 'c.client_id', 's.client_id')
        .where('s.client_id', clientId)
        .select('s.id', 's.tenant_id', 's.client_id', 'c.metadata')
        .first();
    },
  };
}

export type IdentityDirectoryRepo = ReturnType<typeof createIdentityDirectoryRepo>;
