import type { Knex } from 'knex';
import { factorFromJson, type FactorRow } from './mfa-factors.ts';
import { hasNul, paged, runStatement, type Db, type Statement } from '../infra/db.ts';

export type UserStatus = 'active' | 'suspended' | 'deactivated';

export interface UserRow {
  id: string;
  tenant_id: string;
  email: string;
  email_verified: boolean;
  password_hash: string | null;
  /** The password was chosen at self-registration before the address was proven (pre-hijacking rule). */
  password_unverified_owner: boolean;
  given_name: string | null;
  family_name: string | null;
  locale: string | null;
  timezone: string | null;
  status: UserStatus;
  failed_attempts: number;
  locked_until: Date | null;
  last_login_at: Date | null;
  password_changed_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

export type NewUser = Pick<UserRow, 'id' | 'tenant_id' | 'email'> &
  Partial<Pick<UserRow, 'email_verified' | 'password_hash' | 'password_unverified_owner' | 'given_name' | 'family_name' | 'locale' | 'timezone' | 'status'>>;

const TIMESTAMP_COLUMNS = ['locked_until', 'last_login_at', 'password_changed_at', 'created_at', 'updated_at'] as const;

/** A users row read as JSON (to_jsonb, see repos/payload-statements.ts) with its timestamps as Dates again. */
export function userFromJson(json: Record<string, unknown>): UserRow {
  const row = { ...json } as Record<string, unknown>;
  for (const column of TIMESTAMP_COLUMNS) {
    if (typeof row[column] === 'string') row[column] = new Date(row[column] as string);
  }
  return row as unknown as UserRow;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The password step's two statements, run by name (runStatement, as the token path's): every
 * sign-in makes them, and the query builder cost about 40 µs of CPU more than a named statement
 * for each, the update 70.
 */
const findByEmailWithFactorsStatement: Statement = {
  name: 'users_find_by_email_with_factors_v1',
  text: `
    select users.*, coalesce((
      select json_agg(f order by f.confirmed_at) from mfa_factors f where f.user_id = users.id and f.confirmed_at is not null
    ), '[]') as confirmed_factors
    from users where tenant_id = $1 and lower(email) = lower($2) limit 1`,
};
const recordSuccessStatement: Statement = {
  name: 'users_record_success_v1',
  text: 'update users set failed_attempts = 0, locked_until = null, last_login_at = now() where id = $1',
};

export function createUsersRepo(db: Db) {
  const users = () => db<UserRow>('users');
  return {
    async insert(user: NewUser, trx?: Knex.Transaction): Promise<UserRow> {
      const [row] = await (trx ?? db)<UserRow>('users').insert(user).returning('*');
      return row as UserRow;
    },
    async findById(id: string): Promise<UserRow | undefined> {
      // Ids are UUIDs; anything else cannot exist and must not reach PostgreSQL as a cast error.
      if (!UUID.test(id)) return undefined;
      return users().where({ id }).first();
    },
    async findByEmail(tenantId: string, email: string): Promise<UserRow | undefined> {
      if (hasNul(email)) return undefined;
      return users().where({ tenant_id: tenantId }).whereRaw('lower(email) = lower(?)', [email]).first();
    },
    /**
     * findByEmail with the account's confirmed second factors (oldest first), read in the same
     * statement: a password sign-in asks for both, one after the other.
     */
    async findByEmailWithFactors(tenantId: string, email: string): Promise<{ user: UserRow; confirmedFactors: FactorRow[] } | undefined> {
      if (hasNul(email) || hasNul(tenantId)) return undefined;
      const row = (await runStatement(db, findByEmailWithFactorsStatement, [tenantId, email])).rows[0] as
        | (UserRow & { confirmed_factors: unknown })
        | undefined;
      if (!row) return undefined;
      const { confirmed_factors: factors, ...user } = row;
      const list = (typeof factors === 'string' ? JSON.parse(factors) : factors) as Array<Record<string, unknown>>;
      return { user: user as UserRow, confirmedFactors: list.map(factorFromJson) };
    },
    /**
     * Counts a failed sign-in and locks the account once the threshold is reached, in one
     * statement so concurrent failures cannot undercount. A lock that has run out starts a new count.
     */
    async recordFailure(id: string, threshold: number, lockSeconds: number): Promise<UserRow | undefined> {
      const attempts = 'case when locked_until is not null and locked_until <= now() then 1 else failed_attempts + 1 end';
      const [row] = await users()
        .where({ id })
        .update({
          failed_attempts: db.raw(attempts),
          locked_until: db.raw(`case when ${attempts} >= ? then now() + make_interval(secs => ?) else locked_until end`, [
            threshold,
            lockSeconds,
          ]),
          updated_at: db.fn.now(),
        } as never)
        .returning('*');
      return row as UserRow | undefined;
    },
    async recordSuccess(id: string): Promise<void> {
      await runStatement(db, recordSuccessStatement, [id]);
    },
    /** Ends the account's own lockout (an operator's unlock): no failures, no lock; the sign-in record stays. */
    async clearLockout(id: string): Promise<UserRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await users().where({ id }).update({ failed_attempts: 0, locked_until: null, updated_at: db.fn.now() } as never).returning('*');
      return row as UserRow | undefined;
    },
    async updatePasswordHash(id: string, hash: string): Promise<void> {
      await users().where({ id }).update({ password_hash: hash, updated_at: db.fn.now() } as never);
    },
    /**
     * A new password chosen by the user (reset or change): it also ends a lockout, since the user
     * has just proved who they are another way. `verifiedEmail` marks the address proven too (a
     * reset by emailed code).
     */
    async setPassword(id: string, hash: string, opts: { verifiedEmail?: boolean } = {}, trx?: Knex.Transaction): Promise<UserRow | undefined> {
      const [row] = await (trx ?? db)<UserRow>('users')
        .where({ id })
        .update({
          password_hash: hash,
          password_changed_at: db.fn.now(),
          failed_attempts: 0,
          locked_until: null,
          // Once the address is proven, the password is the owner's.
          ...(opts.verifiedEmail ? { email_verified: true, password_unverified_owner: false } : {}),
          updated_at: db.fn.now(),
        } as never)
        .returning('*');
      return row as UserRow | undefined;
    },
    /**
     * Marks the email verified when it is still `email` (the address the code was sent to) and not
     * yet verified. `discardPassword` drops what the registrant chose before the proof: the
     * password (and a lockout run up against it) and the names (text of theirs in the owner's mails).
     */
    async markEmailVerified(id: string, email: string, opts: { discardPassword?: boolean } = {}, trx?: Knex.Transaction): Promise<UserRow | undefined> {
      const discard = opts.discardPassword ? { password_hash: null, failed_attempts: 0, locked_until: null, given_name: null, family_name: null } : {};
      const [row] = await (trx ?? db)<UserRow>('users')
        .where({ id, email_verified: false })
        .whereRaw('lower(email) = lower(?)', [email])
        .update({ email_verified: true, password_unverified_owner: false, ...discard, updated_at: db.fn.now() } as never)
        .returning('*');
      return row as UserRow | undefined;
    },
    async setStatus(id: string, status: UserStatus, trx?: Knex.Transaction): Promise<UserRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await (trx ?? db)<UserRow>('users').where({ id }).update({ status, updated_at: db.fn.now() } as never).returning('*');
      return row as UserRow | undefined;
    },
    async update(
      id: string,
      changes: Partial<Pick<UserRow, 'email' | 'email_verified' | 'given_name' | 'family_name' | 'locale' | 'timezone' | 'password_hash' | 'password_unverified_owner'>>,
      trx?: Knex.Transaction,
    ): Promise<UserRow | undefined> {
      if (!UUID.test(id)) return undefined;
      const [row] = await (trx ?? db)<UserRow>('users')
        .where({ id })
        .update({ ...changes, updated_at: db.fn.now() } as never)
        .returning('*');
      return row as UserRow | undefined;
    },
    /** A page of a tenant's users, oldest first, with the total for the same filter. */
    async list(q: { tenantId: string; offset: number; limit: number; search?: string; status?: UserStatus }) {
      const filtered = () => {
        const query = db('users').where({ tenant_id: q.tenantId });
        if (q.status) query.andWhere({ status: q.status });
        if (q.search) {
          // Matched as a literal substring: % and _ in the search are not wildcards.
          const pattern = `%${q.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
          query.andWhere((w) =>
            w.whereILike('email', pattern).orWhereILike('given_name', pattern).orWhereILike('family_name', pattern),
          );
        }
        return query;
      };
      return paged<UserRow>(filtered, 'id', q.offset, q.limit);
    },
  };
}

export type UsersRepo = ReturnType<typeof createUsersRepo>;
