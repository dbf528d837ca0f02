import { randomBytes, randomUUID } from 'node:crypto';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { ClientRegistry } from '../clients/clients.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import { createSharedCache } from '../../infra/shared-cache.ts';
import type { ServiceAccountRow, ServiceAccountsRepo } from '../../repos/service-accounts.ts';
import type { Role, Roles } from './roles.ts';

export interface ServiceAccount {
  id: string;
  tenantId: string;
  clientId: string;
  name: string;
  description: string | null;
  createdAt: Date;
  updatedAt: Date;
}

const accountOf = (row: ServiceAccountRow): ServiceAccount => ({
  id: row.id,
  tenantId: row.tenant_id,
  clientId: row.client_id,
  name: row.name,
  description: row.description,
  createdAt: new Date(row.created_at),
  updatedAt: new Date(row.updated_at),
});

const accountPayload = (a: ServiceAccount) => ({ id: a.id, clientId: a.clientId, name: a.name, description: a.description });

/** The client metadata of every service account: a confidential machine client, nothing else. */
function clientMetadataOf(name: string, clientId: string) {
  return {
    client_id: clientId,
    client_name: name,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  };
}

/**
 * Service accounts: a confidential client_credentials client of a tenant (in the clients table, so
 * the token endpoint, introspection and revocation treat it as any client) plus roles. Its tokens
 * carry the scopes its roles grant at the resource server asked for (oidc/configuration/tokens.ts).
 */
export function createServiceAccounts(deps: {
  repo: ServiceAccountsRepo;
  clients: Pick<ClientRegistry, 'register' | 'rotateSecret' | 'remove'>;
  roles: Pick<Roles, 'assertAssignable' | 'assignWithin' | 'heldBy'>;
  ephemeral: EphemeralStore;
  events: EventRecorder;
}) {
  const { repo, events } = deps;
  const target = (id: string) => ({ target: { type: 'service_account' as const, id } });
  // Read by the token endpoint on every client_credentials grant; changes are broadcast.
  const byClient = createSharedCache<{ id: string; tenantId: string }>({
    name: 'service-accounts',
    ttlMs: 10_000,
    ephemeral: deps.ephemeral,
    load: async (clientId) => {
      const row = await repo.findByClientId(clientId);
      return row && { id: row.id, tenantId: row.tenant_id };
    },
  });

  async function accountIn(scope: TenantScope, id: string): Promise<ServiceAccount> {
    const row = await repo.findById(id);
    if (!row) throw new AppError('IDENT_SERVICE_ACCOUNT_NOT_FOUND', 'no service account with this id');
    assertInTenant(scope, row.tenant_id, 'the service account');
    return accountOf(row);
  }

  return {
    /** The service account whose client this is, if any (cached; undefined for other clients). */
    byClientId: (clientId: string) => byClient.get(clientId),

    /** Creates the client and the account in one transaction; the secret is in this answer only. */
    async create(scope: TenantScope, input: { name: string; description?: string | undefined; roleIds?: string[] | undefined }, context: ChangeContext = {}) {
      const roleIds = input.roleIds ?? [];
      await deps.roles.assertAssignable(scope, roleIds);
      const clientId = `sa-${randomBytes(16).toString('base64url')}`;
      let account: ServiceAccount | undefined;
      let roles: Role[] = [];
      const created = await deps.clients.register(
        scope,
        { metadata: clientMetadataOf(input.name, clientId) },
        {
          also: async (trx) => {
            account = accountOf(await repo.insert({
              id: randomUUID(), tenant_id: scope.tenantId, client_id: clientId, name: input.name, description: input.description ?? null,
            }, trx));
            roles = await deps.roles.assignWithin('service_account', account.id, roleIds, trx);
            await events.record({
              type: 'service_account.created', ...target(account.id), tenantId: scope.tenantId, ...byOperator(context),
              payload: { serviceAccount: accountPayload(account), roles: roles.map((r) => ({ id: r.id, name: r.name })) },
            }, trx);
          },
        },
        context,
      );
      await byClient.invalidate(clientId);
      return { account: account!, clientSecret: created.client_secret as string, roles };
    },

    async list(scope: TenantScope, page: number, pageSize: number) {
      const { rows, total } = await repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
      return { rows: rows.map(accountOf), total };
    },

    async get(scope: TenantScope, id: string): Promise<{ account: ServiceAccount; roles: Role[] }> {
      const account = await accountIn(scope, id);
      return { account, roles: await deps.roles.heldBy(scope, 'service_account', id) };
    },

    /**
     * A new secret; the old one keeps working `overlapSeconds` more (0: stops at once), on every
     * instance, and is refused after.
     */
    async rotateSecret(scope: TenantScope, id: string, overlapSeconds: number, context: ChangeContext = {}) {
      const account = await accountIn(scope, id);
      const previousSecretExpiresAt = overlapSeconds > 0 ? new Date(Date.now() + overlapSeconds * 1000) : null;
      const clientSecret = await deps.clients.rotateSecret(scope, account.clientId, context, {
        overlapSeconds,
        also: (trx) => events.record({
          type: 'service_account.secret_rotated', ...target(account.id), tenantId: scope.tenantId, ...byOperator(context),
          payload: { serviceAccount: accountPayload(account), overlapSeconds, previousSecretExpiresAt: previousSecretExpiresAt?.toISOString() ?? null },
        }, trx),
      });
      return { account, clientSecret, previousSecretExpiresAt };
    },

    /** Deletes the account and its client, and revokes every grant and token issued to it. */
    async remove(scope: TenantScope, id: string, context: ChangeContext = {}) {
      const account = await accountIn(scope, id);
      await deps.clients.remove(scope, account.clientId, context, {
        also: (trx) => events.record({
          type: 'service_account.deleted', ...target(account.id), tenantId: scope.tenantId, ...byOperator(context),
          payload: { serviceAccount: accountPayload(account) },
        }, trx),
      });
      await byClient.invalidate(account.clientId);
    },
  };
}

export type ServiceAccounts = ReturnType<typeof createServiceAccounts>;
