import type { Knex } from 'knex';
import { hasNul } from '../infra/db.ts';

export interface FederatedIdentityRow {
  id: string;
  tenant_id: string;
  user_id: string;
  provider_id: string;
  subject: string;
  email: string | null;
  linked_at: Date;
  last_login_at: Date | null;
}

/** A link with the provider it points at, for the account page. */
export interface LinkedProviderRow extends FederatedIdentityRow {
  alias: string;
  display_name: string;
  type: string;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** federated_identities: which upstream subject of which provider is which local user. */
export function createFederatedIdentitiesRepo(db: Knex) {
  const table = (trx?: Knex.Transaction) => (trx ?? db)<FederatedIdentityRow>('federated_identities');
  return {
    async findBySubject(providerId: string, subject: string): Promise<FederatedIdentityRow | undefined> {
      if (!UUID.test(providerId) || hasNul(subject)) return undefined;
      return table().where({ provider_id: providerId, subject }).first();
    },

    async insert(row: Pick<FederatedIdentityRow, 'id' | 'tenant_id' | 'user_id' | 'provider_id' | 'subject' | 'email'>, trx?: Knex.Transaction): Promise<FederatedIdentityRow> {
      const [out] = await table(trx).insert({ ...row, last_login_at: db.fn.now() } as never).returning('*');
      return out as FederatedIdentityRow;
    },

    /** A sign-in through the link: when, and the email the upstream gave this time (undefined: unchanged). */
    async touch(id: string, email?: string | null): Promise<void> {
      await table().where({ id }).update({ last_login_at: db.fn.now(), ...(email !== undefined ? { email } : {}) } as never);
    },

    async listForUser(userId: string): Promise<LinkedProviderRow[]> {
      if (!UUID.test(userId)) return [];
      return db('federated_identities as f')
        .join('identity_providers as p', 'p.id', 'f.provider_id')
        .where('f.user_id', userId)
        .orderBy('f.linked_at', 'asc')
        .select('f.*', 'p.alias', 'p.display_name', 'p.type');
    },

    async deleteForUser(userId: string, linkId: string, trx?: Knex.Transaction): Promise<FederatedIdentityRow | undefined> {
      if (!UUID.test(userId) || !UUID.test(linkId)) return undefined;
      const [row] = await table(trx).where({ id: linkId, user_id: userId }).delete().returning('*');
      return row as FederatedIdentityRow | undefined;
    },
  };
}

export type FederatedIdentitiesRepo = ReturnType<typeof createFederatedIdentitiesRepo>;
