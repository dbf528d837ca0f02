import type { Knex } from 'knex';
import { hasNul, paged } from '../infra/db.ts';

export interface Permission {
  /** A resource server's identifier. */
  resource: string;
  /** One of the scopes it defines. */
  scope: string;
}

export interface RoleRow {
  id: string;
  tenant_id: string;
  name: string;
  description: string | null;
  permissions: Permission[];
  /** The identity service's typeId of a seeded role (admin 100, regular 001, guest 000); null otherwise. */
  type_id: string | null;
  created_at: Date;
  updated_at: Date;
}

/** Who holds roles: a user (user_roles) or a service account (service_account_roles). */
export type Holder = 'user' | 'service_account';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
export const isUuid = (id: string) => UUID.test(id);

const LINKS = {
  user: { table: 'user_roles', column: 'user_id' },
  service_account: { table: 'service_account_roles', column: 'service_account_id' },
} as const;

const parsed = (row: RoleRow): RoleRow =>
  typeof row.permissions === 'string' ? { ...row, permissions: JSON.parse(row.permissions) as Permission[] } : row;

/**
 * The roles every tenant starts with, the identity service's user types (reference 004 typeIds), as
 * migration 0016 seeds them for the tenants that existed then.
 */
export const SEEDED_ROLES = [
  { name: 'admin', type_id: '100', description: 'Administrators of the tenant (identity service typeId 100)' },
  { name: 'regular', type_id: '001', description: 'Regular users (identity service typeId 001)' },
  { name: 'guest', type_id: '000', description: 'Guests (identity service typeId 000)' },
] as const;

/** roles, and who holds them (user_roles, service_account_roles). */
export function createRolesRepo(db: Knex) {
  const roles = (trx?: Knex.Transaction) => (trx ?? db)<RoleRow>('roles');
  return {
    async list(tenantId: string, offset: number, limit: number) {
      const page = await paged<RoleRow>(() => db('roles').where({ tenant_id: tenantId }), 'id', offset, limit);
      return { ...page, rows: page.rows.map(parsed) };
    },
    async findById(id: string, trx?: Knex.Transaction): Promise<RoleRow | undefined> {
      if (!isUuid(id)) return undefined;
      const row = await roles(trx).where({ id }).first();
      return row && parsed(row);
    },
    /** The roles of these ids that exist (any tenant: the caller checks). */
    async findByIds(ids: readonly string[], trx?: Knex.Transaction): Promise<RoleRow[]> {
      const valid = ids.filter(isUuid);
      if (!valid.length) return [];
      return (await roles(trx).whereIn('id', valid)).map(parsed);
    },
    async insert(row: Pick<RoleRow, 'id' | 'tenant_id' | 'name' | 'description' | 'permissions'> & Partial<Pick<RoleRow, 'type_id'>>, trx?: Knex.Transaction): Promise<RoleRow> {
      const [out] = await roles(trx).insert({ ...row, permissions: JSON.stringify(row.permissions) as never }).returning('*');
      return parsed(out as RoleRow);
    },
    async update(id: string, changes: Partial<Pick<RoleRow, 'name' | 'description' | 'permissions'>>, trx?: Knex.Transaction): Promise<RoleRow | undefined> {
      if (!isUuid(id)) return undefined;
      const { permissions, ...rest } = changes;
      const [row] = await roles(trx)
        .where({ id })
        .update({ ...rest, ...(permissions ? { permissions: JSON.stringify(permissions) } : {}), updated_at: db.fn.now() } as never)
        .returning('*');
      return row ? parsed(row as RoleRow) : undefined;
    },
    /** A new tenant's seeded roles (admin, regular, guest), in the transaction that creates it. */
    async seed(tenantId: string, trx: Knex.Transaction): Promise<void> {
      await trx('roles')
        .insert(SEEDED_ROLES.map((role) => ({ id: crypto.randomUUID(), tenant_id: tenantId, permissions: JSON.stringify([]), ...role })))
        .onConflict(['tenant_id', 'name'])
        .ignore();
    },
    async delete(id: string, trx?: Knex.Transaction): Promise<RoleRow | undefined> {
      if (!isUuid(id)) return undefined;
      const [row] = await roles(trx).where({ id }).delete().returning('*');
      return row ? parsed(row as RoleRow) : undefined;
    },

    /** The roles a user or service account holds, by name. */
    async heldBy(holder: Holder, holderId: string, trx?: Knex.Transaction): Promise<RoleRow[]> {
      if (!isUuid(holderId)) return [];
      const link = LINKS[holder];
      const rows = await (trx ?? db)('roles')
        .join(link.table, `${link.table}.role_id`, 'roles.id')
        .where(`${link.table}.${link.column}`, holderId)
        .select('roles.*')
        .orderBy('roles.name');
      return (rows as RoleRow[]).map(parsed);
    },
    /** The names of the roles a user holds (the `roles` claim): one indexed query. */
    async namesHeldBy(holder: Holder, holderId: string): Promise<string[]> {
      if (!isUuid(holderId)) return [];
      const link = LINKS[holder];
      const rows = await db('roles')
        .join(link.table, `${link.table}.role_id`, 'roles.id')
        .where(`${link.table}.${link.column}`, holderId)
        .select('roles.name')
        .orderBy('roles.name');
      return (rows as Array<{ name: string }>).map((r) => r.name);
    },
    /** Gives roles (those already held are left as they are). */
    async assign(holder: Holder, holderId: string, roleIds: readonly string[], trx: Knex.Transaction): Promise<void> {
      if (!roleIds.length) return;
      const link = LINKS[holder];
      await trx(link.table)
        .insert(roleIds.map((roleId) => ({ [link.column]: holderId, role_id: roleId })))
        .onConflict([link.column, 'role_id'])
        .ignore();
    },
    async unassign(holder: Holder, holderId: string, roleIds: readonly string[], trx: Knex.Transaction): Promise<void> {
      if (!roleIds.length) return;
      const link = LINKS[holder];
      await trx(link.table).where(link.column, holderId).whereIn('role_id', [...roleIds]).delete();
    },
    /**
     * The scopes a holder's roles grant at one resource server: one query over the holder's roles
     * (the token endpoint asks this for resource servers with RBAC, once per token).
     */
    async scopesAt(holder: Holder, holderId: string, resource: string): Promise<string[]> {
      if (!isUuid(holderId) || hasNul(resource)) return [];
      const link = LINKS[holder];
      const { rows } = (await db.raw(
        `select distinct p->>'scope' as scope
           from ${link.table} h
           join roles r on r.id = h.role_id
           cross join lateral jsonb_array_elements(r.permissions) p
          where h.${link.column} = ? and p->>'resource' = ?`,
        [holderId, resource],
      )) as { rows: Array<{ scope: string }> };
      return rows.map((r) => r.scope);
    },
  };
}

export type RolesRepo = ReturnType<typeof createRolesRepo>;
