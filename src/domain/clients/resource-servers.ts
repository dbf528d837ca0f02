import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { EventRecorder } from '../events/events.ts';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import { createSharedCache } from '../../infra/shared-cache.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import type { ResourceServerRow, ResourceServersRepo } from '../../repos/resource-servers.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';

export interface ResourceServerInfo {
  identifier: string;
  /** Its tenant: only that tenant's clients are granted scopes there, and a role's permissions name
   * resource servers of its own tenant or the default one. */
  tenantId: string;
  scopes: string[];
  accessTokenFormat: 'jwt' | 'opaque';
  accessTokenTtl: number | undefined;
  /** Tokens for it carry only the scopes the user's (or service account's) roles grant there. */
  rbac: boolean;
}

function toInfo(row: ResourceServerRow): ResourceServerInfo {
  return {
    identifier: row.identifier,
    tenantId: row.tenant_id,
    scopes: row.scopes,
    accessTokenFormat: row.access_token_format,
    accessTokenTtl: row.access_token_ttl ?? undefined,
    rbac: row.rbac === true,
  };
}

/** A resource server as its events carry it. */
export function resourceServerPayload(row: ResourceServerRow) {
  return {
    id: row.id,
    identifier: row.identifier,
    name: row.name,
    scopes: row.scopes,
    accessTokenFormat: row.access_token_format,
    accessTokenTtl: row.access_token_ttl,
    rbac: row.rbac === true,
  };
}

export interface ResourceServerInput {
  identifier: string;
  name?: string | null | undefined;
  scopes: string[];
  accessTokenFormat?: 'jwt' | 'opaque' | undefined;
  accessTokenTtl?: number | null | undefined;
  rbac?: boolean | undefined;
}

/**
 * Told when a resource server stops defining scopes (an update) or is deleted (`kept` empty), so
 * grants naming what is gone are withdrawn: a scope or identifier registered again later starts
 * with no client holding it.
 */
export type ScopesWithdrawn = (identifier: string, kept: readonly string[], context: ChangeContext) => Promise<void>;

export function createResourceServers(deps: {
  repo: ResourceServersRepo;
  ephemeral: EphemeralStore;
  /** Identifiers that are not ours to register (the admin API's own audience). */
  reserved: readonly string[];
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { events } = deps;
  const target = (row: ResourceServerRow) => ({ target: { type: 'resource_server' as const, id: row.id }, tenantId: row.tenant_id });
  const reserved = new Set(deps.reserved);
  let scopesWithdrawn: ScopesWithdrawn = async () => {};
  // Read on every token request that names a resource; changes are broadcast to every instance.
  const cache = createSharedCache<ResourceServerInfo>({
    name: 'resource-servers',
    ttlMs: 10_000,
    ephemeral: deps.ephemeral,
    load: async (identifier) => {
      const row = await deps.repo.findByIdentifier(identifier);
      return row && toInfo(row);
    },
  });
  return {
    // A row under a reserved identifier (written around the API) is never honoured: token exchange
    // would otherwise mint admin tokens with whatever scopes it lists.
    async find(identifier: string): Promise<ResourceServerInfo | undefined> {
      return reserved.has(identifier) ? undefined : cache.get(identifier);
    },
    /**
     * A resource server of the scope's tenant. Identifiers stay unique across tenants (they are the
     * audiences of one issuer's tokens): a taken one is 409 whichever tenant holds it, and the
     * answer says no more.
     */
    async create(scope: TenantScope, input: ResourceServerInput, context: ChangeContext = {}): Promise<ResourceServerRow> {
      if (reserved.has(input.identifier)) {
        throw new AppError('IDENT_RESOURCE_SERVER_DUPLICATE', 'this identifier is the admin API itself');
      }
      try {
        const row = await deps.transaction(async (trx) => {
          const stored = await deps.repo.insert({
            id: randomUUID(),
            tenant_id: scope.tenantId,
            identifier: input.identifier,
            name: input.name ?? null,
            scopes: input.scopes,
            access_token_format: input.accessTokenFormat ?? 'jwt',
            access_token_ttl: input.accessTokenTtl ?? null,
            rbac: input.rbac ?? false,
          }, trx);
          await events.record({ type: 'resource_server.created', ...target(stored), ...byOperator(context), payload: { resourceServer: resourceServerPayload(stored) } }, trx);
          return stored;
        });
        await cache.invalidate(row.identifier);
        return row;
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_RESOURCE_SERVER_DUPLICATE', 'a resource server with this identifier exists');
        throw err;
      }
    },

    async list(scope: TenantScope, page: number, pageSize: number) {
      return deps.repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
    },

    /** The resource server, if it is in the scope's tenant: another tenant's is 403 IDENT_CROSS_TENANT. */
    async get(scope: TenantScope, id: string): Promise<ResourceServerRow> {
      const row = await deps.repo.findById(id);
      if (!row) throw new AppError('IDENT_RESOURCE_SERVER_NOT_FOUND', 'no resource server with this id');
      assertInTenant(scope, row.tenant_id, 'the resource server');
      return row;
    },

    async update(scope: TenantScope, id: string, changes: Partial<Omit<ResourceServerInput, 'identifier'>>, context: ChangeContext = {}): Promise<ResourceServerRow> {
      await this.get(scope, id);
      const row = await deps.transaction(async (trx) => {
        const updated = await deps.repo.update(id, {
          ...(changes.name !== undefined ? { name: changes.name } : {}),
          ...(changes.scopes !== undefined ? { scopes: changes.scopes } : {}),
          ...(changes.accessTokenFormat !== undefined ? { access_token_format: changes.accessTokenFormat } : {}),
          ...(changes.accessTokenTtl !== undefined ? { access_token_ttl: changes.accessTokenTtl } : {}),
          ...(changes.rbac !== undefined ? { rbac: changes.rbac } : {}),
        }, trx);
        if (!updated) throw new AppError('IDENT_RESOURCE_SERVER_NOT_FOUND', 'no resource server with this id');
        await events.record({
          type: 'resource_server.updated', ...target(updated), ...byOperator(context),
          payload: { resourceServer: resourceServerPayload(updated), changed: Object.keys(changes).filter((k) => changes[k as keyof typeof changes] !== undefined).sort() },
        }, trx);
        return updated;
      });
      await cache.invalidate(row.identifier);
      if (changes.scopes !== undefined) await scopesWithdrawn(row.identifier, row.scopes, context);
      return row;
    },

    async remove(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<void> {
      await this.get(scope, id);
      const row = await deps.transaction(async (trx) => {
        const deleted = await deps.repo.delete(id, trx);
        if (!deleted) throw new AppError('IDENT_RESOURCE_SERVER_NOT_FOUND', 'no resource server with this id');
        await events.record({ type: 'resource_server.deleted', ...target(deleted), ...byOperator(context), payload: { resourceServer: resourceServerPayload(deleted) } }, trx);
        return deleted;
      });
      await cache.invalidate(row.identifier);
      await scopesWithdrawn(row.identifier, [], context);
    },

    /** Set once at wiring: the client registry depends on resource servers, not the other way. */
    onScopesWithdrawn(listener: ScopesWithdrawn) {
      scopesWithdrawn = listener;
    },
  };
}

export type ResourceServers = ReturnType<typeof createResourceServers>;
