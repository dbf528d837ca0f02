import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { SeededRole, TenantRow, TenantsRepo } from '../../repos/tenants.ts';
import { byOperator, type ChangeContext } from '../authn/accounts.ts';
import { AppError, isUniqueViolation } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { DEFAULT_TENANT_ID } from './tenant-scope.ts';

export interface Tenant {
  id: string;
  name: string;
  slug: string;
  createdAt: Date;
  updatedAt: Date;
}

export const tenantOf = (row: TenantRow): Tenant => ({ id: row.id, name: row.name, slug: row.slug, createdAt: row.created_at, updatedAt: row.updated_at });

/**
 * The roles every tenant starts with: the identity service's user types (reference 004 typeIds),
 * as migration 0016 seeds them for the tenants that existed then. Their permissions are the
 * operator's to set.
 */
export const SEEDED_ROLES: readonly SeededRole[] = [
  { name: 'admin', type_id: '100', description: 'Administrators of the tenant (identity service typeId 100)' },
  { name: 'regular', type_id: '001', description: 'Regular users (identity service typeId 001)' },
  { name: 'guest', type_id: '000', description: 'Guests (identity service typeId 000)' },
];

/**
 * A slug names a tenant in X-Tenant-Id and the `organization` authorization parameter, next to its
 * id: lower-case letters, digits and inner hyphens, 2 to 63 characters (a DNS label), and never
 * shaped like a UUID, so an id and a slug can never be mistaken for one another.
 */
export const SLUG_PATTERN = /^[a-z0-9][a-z0-9-]{0,61}[a-z0-9]$/;
const UUID_SHAPED = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function assertSlug(slug: string): void {
  if (!SLUG_PATTERN.test(slug)) {
    throw new AppError('IDENT_VALIDATION', 'slug: 2-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit');
  }
  if (UUID_SHAPED.test(slug)) throw new AppError('IDENT_VALIDATION', 'slug: must not look like an id (a UUID)');
}

export interface TenantInput {
  name: string;
  slug: string;
}

/** The tenant as its events carry it. */
const tenantPayload = (t: Tenant) => ({ id: t.id, name: t.name, slug: t.slug });

/**
 * Tenants as the rest of the domain sees them, and the platform's operations on them (the tenants
 * API, for platform callers only). Their events are the platform's: recorded in the default tenant,
 * whose operators manage tenants, with the tenant as target.
 */
export function createTenants(deps: {
  repo: TenantsRepo;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { repo, transaction } = deps;
  const target = (id: string) => ({ target: { type: 'tenant' as const, id }, tenantId: DEFAULT_TENANT_ID });
  const record = (...args: Parameters<EventRecorder['record']>) => deps.events.record(...args);

  async function existing(ref: string, trx?: Knex.Transaction): Promise<TenantRow> {
    const row = await repo.findByIdOrSlug(ref, trx);
    if (!row) throw new AppError('IDENT_TENANT_NOT_FOUND', 'no tenant with this id or slug');
    return row;
  }

  return {
    /** The tenant an id or a slug names (X-Tenant-Id, the `organization` authorization parameter). */
    async resolve(ref: string): Promise<Tenant | undefined> {
      const row = await repo.findByIdOrSlug(ref);
      return row ? tenantOf(row) : undefined;
    },

    async get(ref: string): Promise<Tenant> {
      return tenantOf(await existing(ref));
    },

    async list(page: number, pageSize: number): Promise<{ rows: Tenant[]; total: number }> {
      const { rows, total } = await repo.list((page - 1) * pageSize, pageSize);
      return { rows: rows.map(tenantOf), total };
    },

    /** A new tenant (a UUID id) with its three seeded roles, all in one transaction. */
    async create(input: TenantInput, context: ChangeContext = {}): Promise<Tenant> {
      assertSlug(input.slug);
      try {
        return await transaction(async (trx) => {
          const tenant = tenantOf(await repo.insert({ id: randomUUID(), name: input.name, slug: input.slug }, SEEDED_ROLES, trx));
          await record({ type: 'tenant.created', ...target(tenant.id), ...byOperator(context), payload: { tenant: tenantPayload(tenant) } }, trx);
          return tenant;
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_TENANT_DUPLICATE', 'a tenant with this slug exists');
        throw err;
      }
    },

    /** Renames a tenant or changes its slug; the default tenant keeps its slug `default`. */
    async update(ref: string, changes: Partial<TenantInput>, context: ChangeContext = {}): Promise<Tenant> {
      if (changes.slug !== undefined) assertSlug(changes.slug);
      const before = await existing(ref);
      if (changes.slug !== undefined && changes.slug !== before.slug && before.id === DEFAULT_TENANT_ID) {
        throw new AppError('IDENT_VALIDATION', 'slug: the default tenant keeps its slug "default"');
      }
      try {
        return await transaction(async (trx) => {
          const row = await repo.update(before.id, {
            ...(changes.name !== undefined ? { name: changes.name } : {}),
            ...(changes.slug !== undefined ? { slug: changes.slug } : {}),
          }, trx);
          if (!row) throw new AppError('IDENT_TENANT_NOT_FOUND', 'no tenant with this id or slug');
          const tenant = tenantOf(row);
          const changed = (Object.keys(changes) as Array<keyof TenantInput>).filter((k) => changes[k] !== undefined && changes[k] !== before[k]).sort();
          await record({ type: 'tenant.updated', ...target(tenant.id), ...byOperator(context), payload: { tenant: tenantPayload(tenant), changed } }, trx);
          return tenant;
        });
      } catch (err) {
        if (isUniqueViolation(err)) throw new AppError('IDENT_TENANT_DUPLICATE', 'a tenant with this slug exists');
        throw err;
      }
    },

    /**
     * Deletes an empty tenant. Users and clients (service accounts are clients), resource servers,
     * identity providers and webhooks block it (409 IDENT_TENANT_NOT_EMPTY): each is removed on
     * purpose first, through its own API, so nothing an operator configured disappears as a side
     * effect. Its roles and its deactivated users go with it; its events stay, as the audit trail.
     * The default tenant is never deleted.
     */
    async remove(ref: string, context: ChangeContext = {}): Promise<void> {
      const before = await existing(ref);
      if (before.id === DEFAULT_TENANT_ID) throw new AppError('IDENT_TENANT_NOT_EMPTY', 'the default tenant cannot be deleted');
      try {
        await transaction(async (trx) => {
          // Locked for the transaction, so a user or client created meanwhile waits on the foreign key.
          await trx.raw('select 1 from tenants where id = ? for update', [before.id]);
          const contents = await repo.contents(before.id, trx);
          const left = Object.entries(contents).filter(([, n]) => n > 0).map(([kind, n]) => `${n} ${kind}`);
          if (left.length) throw new AppError('IDENT_TENANT_NOT_EMPTY', `the tenant still has ${left.join(', ')}; remove them first`);
          const row = await repo.delete(before.id, trx);
          if (!row) throw new AppError('IDENT_TENANT_NOT_FOUND', 'no tenant with this id or slug');
          await record({ type: 'tenant.deleted', ...target(row.id), ...byOperator(context), payload: { tenant: tenantPayload(tenantOf(row)) } }, trx);
        });
      } catch (err) {
        // Rows of a kind not counted above (API keys, for one) still name the tenant.
        if (isForeignKeyViolation(err)) throw new AppError('IDENT_TENANT_NOT_EMPTY', 'the tenant still has objects that belong to it; remove them first');
        throw err;
      }
    },
  };
}

/** PostgreSQL's foreign_key_violation, from pg or PGlite. */
const isForeignKeyViolation = (err: unknown) => typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23503';

export type Tenants = ReturnType<typeof createTenants>;
