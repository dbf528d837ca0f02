import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import type { ResourceServers } from '../clients/resource-servers.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { assertInTenant, DEFAULT_TENANT_ID, type TenantScope } from '../tenants/tenant-scope.ts';
import type { Holder, Permission, RoleRow, RolesRepo } from '../../repos/roles.ts';
import type { ServiceAccountsRepo } from '../../repos/service-accounts.ts';
import type { TenantsRepo } from '../../repos/tenants.ts';
import type { UsersRepo } from '../../repos/users.ts';

export type { Holder, Permission } from '../../repos/roles.ts';

/**
 * A role of a tenant: a name (in tokens' `roles` claim) and the permissions it grants, pairs of a
 * resource server's identifier and one of its scopes. The three seeded roles of every tenant carry
 * the identity service's typeId (admin 100, regular 001, guest 000).
 */
export interface Role {
  id: string;
  tenantId: string;
  name: string;
  description: string | null;
  permissions: Permission[];
  typeId: string | null;
  createdAt: Date;
  updatedAt: Date;
}

export const roleOf = (row: RoleRow): Role => ({
  id: row.id,
  tenantId: row.tenant_id,
  name: row.name,
  description: row.description,
  permissions: row.permissions,
  typeId: row.type_id,
  createdAt: new Date(row.created_at),
  updatedAt: new Date(row.updated_at),
});

/** A role as events carry it. */
export const rolePayload = (r: Role) => ({ id: r.id, name: r.name, description: r.description, permissions: r.permissions, typeId: r.typeId });
const roleRef = (r: Pick<Role, 'id' | 'name'>) => ({ id: r.id, name: r.name });

export interface RoleInput {
  name: string;
  description?: string | null | undefined;
  permissions: Permission[];
}

/** What GET /api/v1/me/access-context answers: the user's tenant, roles and what they grant. */
export interface AccessContext {
  tenant: { id: string; slug: string };
  roles: Array<{ id: string; name: string; typeId: string | null }>;
  permissions: Permission[];
  memberships: Array<{ tenant: { id: string; slug: string }; roles: string[] }>;
}

/** The union of roles' permissions, each pair once, in a stable order. */
export function permissionsOf(roles: readonly Pick<Role, 'permissions'>[]): Permission[] {
  const seen = new Map<string, Permission>();
  for (const role of roles) {
    for (const p of role.permissions) seen.set(`${p.resource}\u0000${p.scope}`, { resource: p.resource, scope: p.scope });
  }
  return [...seen.values()].sort((a, b) => a.resource.localeCompare(b.resource) || a.scope.localeCompare(b.scope));
}

export function createRoles(deps: {
  repo: RolesRepo;
  users: Pick<UsersRepo, 'findById'>;
  serviceAccounts: Pick<ServiceAccountsRepo, 'findById'>;
  tenants: Pick<TenantsRepo, 'findByIdOrSlug'>;
  resourceServers: Pick<ResourceServers, 'find'>;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { repo, events } = deps;
  const target = (id: string) => ({ target: { type: 'role' as const, id } });

  /**
   * Each permission must name a resource server registered in the role's tenant (or the default
   * tenant's, shared by every tenant) and a scope it defines: 400 otherwise. Duplicates go.
   */
  async function checkedPermissions(scope: TenantScope, permissions: readonly Permission[]): Promise<Permission[]> {
    const unique = permissionsOf([{ permissions: [...permissions] }]);
    const servers = new Map<string, Awaited<ReturnType<ResourceServers['find']>>>();
    for (const p of unique) {
      if (!servers.has(p.resource)) servers.set(p.resource, await deps.resourceServers.find(p.resource));
      const server = servers.get(p.resource);
      if (!server || (server.tenantId !== scope.tenantId && server.tenantId !== DEFAULT_TENANT_ID)) {
        throw new AppError('IDENT_VALIDATION', `permissions: ${p.resource} is not a registered resource server of this tenant`);
      }
      if (!server.scopes.includes(p.scope)) {
        throw new AppError('IDENT_VALIDATION', `permissions: ${p.resource} does not define the scope ${p.scope}`);
      }
    }
    return unique;
  }

  /** A role of the acting tenant: 404 when there is none, 403 when it is another tenant's. */
  async function roleIn(scope: TenantScope, id: string, trx?: Knex.Transaction): Promise<RoleRow> {
    const row = await repo.findById(id, trx);
    if (!row) throw new AppError('IDENT_ROLE_NOT_FOUND', 'no role with this id');
    assertInTenant(scope, row.tenant_id, 'the role');
    return row;
  }

  /** Every role named, each in the acting tenant; checked before anything changes. */
  async function rolesIn(scope: TenantScope, ids: readonly string[]): Promise<RoleRow[]> {
    const unique = [...new Set(ids)];
    const rows = await repo.findByIds(unique);
    const found = new Set(rows.map((r) => r.id));
    const missing = unique.filter((id) => !found.has(id));
    if (missing.length) throw new AppError('IDENT_ROLE_NOT_FOUND', `no role with the id ${missing[0]!.slice(0, 64)}`);
    for (const row of rows) assertInTenant(scope, row.tenant_id, `the role ${row.id}`);
    return rows;
  }

  /** The user or service account a call names, in the acting tenant (404 / 403 otherwise). */
  async function holderIn(scope: TenantScope, holder: Holder, id: string): Promise<{ id: string; ref: Record<string, string> }> {
    if (holder === 'user') {
      const user = await deps.users.findById(id);
      if (!user) throw new AppError('IDENT_USER_NOT_FOUND', 'no user with this id');
      assertInTenant(scope, user.tenant_id, 'the user');
      return { id: user.id, ref: { id: user.id } };
    }
    const account = await deps.serviceAccounts.findById(id);
    if (!account) throw new AppError('IDENT_SERVICE_ACCOUNT_NOT_FOUND', 'no service account with this id');
    assertInTenant(scope, account.tenant_id, 'the service account');
    return { id: account.id, ref: { id: account.id, clientId: account.client_id } };
  }

  /** Gives or takes roles in one transaction with its event; answers the roles held after. */
  async function changeHeld(
    scope: TenantScope, holder: Holder, holderId: string, roleIds: readonly string[], change: 'assign' | 'unassign', context: ChangeContext,
  ): Promise<Role[]> {
    const principal = await holderIn(scope, holder, holderId);
    const named = await rolesIn(scope, roleIds);
    return deps.transaction(async (trx) => {
      const before = new Set((await repo.heldBy(holder, principal.id, trx)).map((r) => r.id));
      await repo[change](holder, principal.id, named.map((r) => r.id), trx);
      const after = (await repo.heldBy(holder, principal.id, trx)).map(roleOf);
      const afterIds = new Set(after.map((r) => r.id));
      const added = after.filter((r) => !before.has(r.id));
      const removed = named.filter((r) => before.has(r.id) && !afterIds.has(r.id)).map(roleOf);
      if (added.length || removed.length) {
        await events.record({
          type: holder === 'user' ? 'user.roles_changed' : 'service_account.roles_changed',
          target: { type: holder, id: principal.id },
          tenantId: scope.tenantId,
          ...byOperator(context),
          payload: {
            [holder === 'user' ? 'user' : 'serviceAccount']: principal.ref,
            added: added.map(roleRef),
            removed: removed.map(roleRef),
            roles: after.map(roleRef),
          },
        }, trx);
      }
      return after;
    });
  }

  return {
    async list(scope: TenantScope, page: number, pageSize: number) {
      const { rows, total } = await repo.list(scope.tenantId, (page - 1) * pageSize, pageSize);
      return { rows: rows.map(roleOf), total };
    },

    async get(scope: TenantScope, id: string): Promise<Role> {
      return roleOf(await roleIn(scope, id));
    },

    async create(scope: TenantScope, input: RoleInput, context: ChangeContext = {}): Promise<Role> {
      const permissions = await checkedPermissions(scope, input.permissions);
      try {
        return await deps.transaction(async (trx) => {
          const role = roleOf(await repo.insert({
            id: randomUUID(), tenant_id: scope.tenantId, name: input.name, description: input.description ?? null, permissions,
          }, trx));
          await events.record({ type: 'role.created', ...target(role.id), tenantId: scope.tenantId, ...byOperator(context), payload: { role: rolePayload(role) } }, trx);
          return role;
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_ROLE_DUPLICATE', 'a role with this name exists in the tenant');
        throw err;
      }
    },

    /**
     * Changes a role; its holders' next tokens follow. A seeded role (typeId) keeps its name: the
     * identity service's contract finds it by that name (409 IDENT_ROLE_BUILT_IN).
     */
    async update(scope: TenantScope, id: string, changes: Partial<RoleInput>, context: ChangeContext = {}): Promise<Role> {
      const current = await roleIn(scope, id);
      if (current.type_id && changes.name !== undefined && changes.name !== current.name) {
        throw new AppError('IDENT_ROLE_BUILT_IN', `the role ${current.name} is seeded (typeId ${current.type_id}): its permissions and description may change, not its name`);
      }
      const permissions = changes.permissions !== undefined ? await checkedPermissions(scope, changes.permissions) : undefined;
      try {
        return await deps.transaction(async (trx) => {
          const updated = await repo.update(id, {
            ...(changes.name !== undefined ? { name: changes.name } : {}),
            ...(changes.description !== undefined ? { description: changes.description } : {}),
            ...(permissions !== undefined ? { permissions } : {}),
          }, trx);
          if (!updated) throw new AppError('IDENT_ROLE_NOT_FOUND', 'no role with this id');
          const role = roleOf(updated);
          const changed = (['name', 'description', 'permissions'] as const).filter((k) => changes[k] !== undefined).sort();
          await events.record({ type: 'role.updated', ...target(role.id), tenantId: scope.tenantId, ...byOperator(context), payload: { role: rolePayload(role), changed } }, trx);
          return role;
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_ROLE_DUPLICATE', 'a role with this name exists in the tenant');
        throw err;
      }
    },

    /** Deletes a role and takes it from every holder; a seeded role stays (409 IDENT_ROLE_BUILT_IN). */
    async remove(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<void> {
      const current = await roleIn(scope, id);
      if (current.type_id) {
        throw new AppError('IDENT_ROLE_BUILT_IN', `the role ${current.name} is seeded (typeId ${current.type_id}) and cannot be deleted`);
      }
      await deps.transaction(async (trx) => {
        const deleted = await repo.delete(id, trx);
        if (!deleted) throw new AppError('IDENT_ROLE_NOT_FOUND', 'no role with this id');
        await events.record({ type: 'role.deleted', ...target(id), tenantId: scope.tenantId, ...byOperator(context), payload: { role: rolePayload(roleOf(deleted)) } }, trx);
      });
    },

    /** The roles a user or service account of the acting tenant holds. */
    async heldBy(scope: TenantScope, holder: Holder, holderId: string): Promise<Role[]> {
      const principal = await holderIn(scope, holder, holderId);
      return (await repo.heldBy(holder, principal.id)).map(roleOf);
    },
    assign: (scope: TenantScope, holder: Holder, holderId: string, roleIds: readonly string[], context: ChangeContext = {}) =>
      changeHeld(scope, holder, holderId, roleIds, 'assign', context),
    unassign: (scope: TenantScope, holder: Holder, holderId: string, roleIds: readonly string[], context: ChangeContext = {}) =>
      changeHeld(scope, holder, holderId, roleIds, 'unassign', context),
    /** Checks roles named for a new holder (a service account being created): all in the tenant. */
    async assertAssignable(scope: TenantScope, roleIds: readonly string[]): Promise<void> {
      await rolesIn(scope, roleIds);
    },
    /** Gives roles inside another change's transaction (checked with assertAssignable first). */
    async assignWithin(holder: Holder, holderId: string, roleIds: readonly string[], trx: Knex.Transaction): Promise<Role[]> {
      await repo.assign(holder, holderId, [...new Set(roleIds)], trx);
      return (await repo.heldBy(holder, holderId, trx)).map(roleOf);
    },

    /** For the tenants API: a new tenant gets the seeded roles in the transaction that creates it. */
    seedTenant: (tenantId: string, trx: Knex.Transaction) => repo.seed(tenantId, trx),

    /** Token time: the scopes a holder's roles grant at a resource server (one query). */
    scopesAt: (holder: Holder, holderId: string, resource: string) => repo.scopesAt(holder, holderId, resource),
    /** The `roles` claim: the names of the roles a user holds. */
    roleNames: (userId: string) => repo.namesHeldBy('user', userId),

    /** GET /api/v1/me/access-context: the user's tenant, roles and the permissions they add up to. */
    async accessContext(userId: string): Promise<AccessContext> {
      const user = await deps.users.findById(userId);
      if (!user) throw new AppError('IDENT_USER_NOT_FOUND', 'no user with this id');
      const [tenantRow, roles] = await Promise.all([deps.tenants.findByIdOrSlug(user.tenant_id), repo.heldBy('user', userId)]);
      const tenant = { id: user.tenant_id, slug: tenantRow?.slug ?? user.tenant_id };
      const held = roles.map(roleOf);
      return {
        tenant,
        roles: held.map((r) => ({ id: r.id, name: r.name, typeId: r.typeId })),
        permissions: permissionsOf(held),
        // A user belongs to one tenant: one membership, with the names of the roles held there.
        memberships: [{ tenant, roles: held.map((r) => r.name) }],
      };
    },
  };
}

export type Roles = ReturnType<typeof createRoles>;
