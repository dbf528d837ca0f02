import { AppError } from '../errors.ts';
import type { Knex } from 'knex';
import { byOperator, type Accounts, type ChangeContext, type LockState } from '../authn/accounts.ts';
import type { Mfa } from '../authn/mfa.ts';
import { policyAsksSecondFactor, secondFactorsOf, type MfaPolicy } from '../authn/sign-in-flow.ts';
import type { FactorType } from '../../repos/mfa-factors.ts';
import { userPayload, type EventRecorder, type EventType } from '../events/events.ts';
import { assertInTenant, type TenantScope } from '../tenants/tenant-scope.ts';
import type { Limiter } from '../../infra/ephemeral/index.ts';
import type { PasswordHasher } from '../authn/passwords.ts';
import { assertPasswordAllowed, type PasswordPolicy } from '../authn/password-policy.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserRow, UserStatus, UsersRepo } from '../../repos/users.ts';

export interface UserChanges {
  email?: string;
  emailVerified?: boolean;
  givenName?: string | null;
  familyName?: string | null;
  locale?: string | null;
  password?: string;
}

/** A user as the help desk sees it: the row, its second factors and its lockout. */
export interface UserDetail {
  user: UserRow;
  mfa: {
    /** Confirmed factor types, in enrolment order (pending enrollments are not factors). */
    enrolled: FactorType[];
    /**
     * Whether a sign-in asks this user for a second factor now under MFA_POLICY: always when it is
     * required or phishing-resistant (one without a factor enrols one), with optional when a factor
     * other than recovery codes is confirmed.
     */
    required: boolean;
    /** Factors whose sign-in check is locked after wrong codes. */
    locked: FactorType[];
  };
  lock: LockState;
}

/** The user `id` if it is in the scope's tenant: none is 404, another tenant's user 403 IDENT_CROSS_TENANT. */
export async function userInTenant(users: Pick<UsersRepo, 'findById'>, scope: TenantScope, id: string, what = 'user'): Promise<UserRow> {
  const user = await users.findById(id);
  if (!user) throw new AppError('IDENT_USER_NOT_FOUND', `no ${what} with this id`);
  assertInTenant(scope, user.tenant_id, `the ${what}`);
  return user;
}

/** Each status an operator sets has its own event; user.updated is for the user's attributes. */
const STATUS_EVENTS: Record<UserStatus, EventType> = { active: 'user.reactivated', suspended: 'user.suspended', deactivated: 'user.deleted' };

/**
 * Sets `before`'s status and records the status's event, in `trx`. Revoking the user's sessions
 * and tokens for any status but active is the caller's, after the commit (a sign-in needs an
 * active account, so nothing new is issued meanwhile).
 */
export async function writeStatus(
  deps: { users: Pick<UsersRepo, 'setStatus'>; events: EventRecorder },
  trx: Knex.Transaction,
  before: UserRow,
  status: UserStatus,
  context: ChangeContext,
): Promise<UserRow> {
  const row = (await deps.users.setStatus(before.id, status, trx))!;
  await deps.events.record({
    type: STATUS_EVENTS[status], subjectId: before.id, tenantId: row.tenant_id, ...byOperator(context),
    payload: { user: userPayload(row), changes: { status: { from: before.status, to: status } } },
  }, trx);
  return row;
}

/**
 * What operators do to users through the admin API. Suspending or deactivating a user also
 * revokes every session, grant and token they hold, so the change takes effect at once.
 */
export function createUserAdmin(deps: {
  users: UsersRepo;
  accounts: Accounts;
  mfa: Pick<Mfa, 'enrolledFactors' | 'lockedFactors' | 'endFactorLocks' | 'resetAll'>;
  /** MFA_POLICY, as the sign-in applies it (a client's own policy may ask more of its sign-ins). */
  mfaPolicy: MfaPolicy;
  hasher: PasswordHasher;
  payloads: OidcPayloadsRepo;
  events: EventRecorder;
  /** Passwords an operator sets follow the same rules as the ones users choose (as in Keycloak). */
  passwordPolicy: PasswordPolicy;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  /** Users created per tenant and minute (USERS_CREATE_RATE_LIMIT_PER_MINUTE), in the shared store. */
  createLimiter: Limiter;
}) {
  const { users, hasher, payloads, events, passwordPolicy } = deps;

  const existing = (scope: TenantScope, id: string) => userInTenant(users, scope, id);

  /** One more user created in the tenant this minute, or 429 IDENT_RATE_LIMITED (with when to retry). */
  async function countCreation(scope: TenantScope): Promise<void> {
    try {
      await deps.createLimiter.consume(scope.tenantId);
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      const ms = (limited as { msBeforeNext?: number }).msBeforeNext ?? 60_000;
      throw new AppError('IDENT_RATE_LIMITED', 'too many users created in this tenant this minute; retry later', { retryAfterSeconds: Math.max(1, Math.ceil(ms / 1000)) });
    }
  }

  async function setStatus(scope: TenantScope, id: string, status: UserStatus, context: ChangeContext): Promise<UserRow> {
    const before = await existing(scope, id);
    const user = await deps.transaction((trx) => writeStatus({ users, events }, trx, before, status, context));
    if (status !== 'active') await payloads.revokeByAccountId(id);
    return user;
  }

  async function detailOf(user: UserRow): Promise<UserDetail> {
    const enrolled = [...new Set((await deps.mfa.enrolledFactors(user.id)).map((f) => f.type))];
    return {
      user,
      mfa: {
        enrolled,
        // The sign-in's own rule (sign-in-flow.ts): recovery codes alone never ask for a second step.
        required: policyAsksSecondFactor(deps.mfaPolicy, secondFactorsOf(enrolled)),
        locked: await deps.mfa.lockedFactors(user.id),
      },
      lock: await deps.accounts.lockState(user),
    };
  }

  function changeable(user: UserRow, what: string): UserRow {
    if (user.status === 'deactivated') throw new AppError('IDENT_USER_DEACTIVATED', `a deactivated user cannot be ${what}`);
    return user;
  }

  return {
    /** The user with their second factors and lockout (GET /api/v1/users/:id). */
    async detail(scope: TenantScope, id: string): Promise<UserDetail> {
      return detailOf(await existing(scope, id));
    },

    /**
     * Help desk: removes every second factor of the user, ends their sessions and tokens and mails
     * them (mfa.resetAll); records user.mfa_reset with the operator as actor.
     */
    async resetMfa(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<UserDetail> {
      const user = changeable(await existing(scope, id), 'changed');
      await deps.mfa.resetAll(user, context);
      return detailOf(await existing(scope, id));
    },

    /**
     * Help desk: ends a lockout at once: the account's record, its address's failure counter and
     * the second factors' locks, so the right password (and code) works on the next try. Sessions
     * are left alone: a lockout is about guesses, not about who is signed in. Records user.unlocked
     * with what was in force before.
     */
    async unlock(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<UserDetail> {
      const user = changeable(await existing(scope, id), 'unlocked');
      const before = await detailOf(user);
      await deps.accounts.unlock(user);
      await deps.mfa.endFactorLocks(user.id);
      await events.record({
        type: 'user.unlocked', subjectId: id, tenantId: user.tenant_id, ...byOperator(context),
        payload: {
          user: { id },
          before: {
            locked: before.lock.locked,
            lockedUntil: before.lock.lockedUntil?.toISOString() ?? null,
            failedAttempts: before.lock.failedAttempts,
            addressFailures: before.lock.addressFailures,
            lockedFactors: before.mfa.locked,
          },
          by: 'admin',
        },
      });
      return detailOf(await existing(scope, id));
    },

    /** A user of the scope's tenant (the email is unique within it), counted against its per-minute limit. */
    async create(scope: TenantScope, input: Omit<Parameters<Accounts['create']>[0], 'tenantId'>, context: ChangeContext = {}): Promise<UserRow> {
      await countCreation(scope);
      if (input.password) {
        await assertPasswordAllowed(passwordPolicy, input.password, {
          email: input.email,
          given_name: input.givenName ?? null,
          family_name: input.familyName ?? null,
        });
      }
      return deps.accounts.create({ ...input, tenantId: scope.tenantId }, context);
    },
    get: existing,

    async list(scope: TenantScope, q: { page: number; pageSize: number; search?: string | undefined; status?: UserStatus | undefined }) {
      const { rows, total } = await users.list({
        tenantId: scope.tenantId,
        offset: (q.page - 1) * q.pageSize,
        limit: q.pageSize,
        ...(q.search ? { search: q.search } : {}),
        ...(q.status ? { status: q.status } : {}),
      });
      return { rows, total };
    },

    async update(scope: TenantScope, id: string, changes: UserChanges, context: ChangeContext = {}): Promise<UserRow> {
      const user = await existing(scope, id);
      if (user.status === 'deactivated') throw new AppError('IDENT_USER_DEACTIVATED', 'a deactivated user cannot be changed');
      if (changes.password !== undefined) {
        await assertPasswordAllowed(passwordPolicy, changes.password, {
          email: changes.email ?? user.email,
          given_name: changes.givenName !== undefined ? changes.givenName : user.given_name,
          family_name: changes.familyName !== undefined ? changes.familyName : user.family_name,
        });
      }
      if (changes.email && changes.email.toLowerCase() !== user.email.toLowerCase()) {
        if (await users.findByEmail(user.tenant_id, changes.email)) {
          throw new AppError('IDENT_EMAIL_DUPLICATE', 'a user with this email already exists');
        }
      }
      const passwordHash = changes.password !== undefined ? await hasher.hash(changes.password) : undefined;
      // The change and its events commit together.
      const updated = await deps.transaction(async (trx) => {
        const row = (await users.update(id, {
          ...(changes.email !== undefined ? { email: changes.email.trim() } : {}),
          // A changed email is unverified unless the operator says otherwise.
          ...(changes.email !== undefined && changes.email.toLowerCase() !== user.email.toLowerCase()
            ? { email_verified: changes.emailVerified ?? false }
            : changes.emailVerified !== undefined
              ? { email_verified: changes.emailVerified }
              : {}),
          ...(changes.givenName !== undefined ? { given_name: changes.givenName } : {}),
          ...(changes.familyName !== undefined ? { family_name: changes.familyName } : {}),
          ...(changes.locale !== undefined ? { locale: changes.locale } : {}),
          ...(passwordHash !== undefined ? { password_hash: passwordHash } : {}),
          // An operator's password, or an operator vouching for the address, ends the registrant's claim.
          ...(changes.password !== undefined || changes.emailVerified === true ? { password_unverified_owner: false } : {}),
        }, trx))!;
        const base = { subjectId: id, tenantId: row.tenant_id, ...byOperator(context) };
        // The names of what changed, never the values of secrets.
        await events.record({ ...base, type: 'user.updated', payload: { user: userPayload(row), changed: Object.keys(changes) } }, trx);
        if (changes.password !== undefined) await events.record({ ...base, type: 'user.password_changed', payload: { user: { id }, by: 'admin' } }, trx);
        return row;
      });
      // A password set by an operator ends the user's existing sessions and tokens.
      if (changes.password !== undefined) await payloads.revokeByAccountId(id);
      return updated;
    },

    /**
     * Ends every session of the user and revokes their grants and tokens (the relying parties that
     * asked are told through back-channel logout); the account stays as it is.
     */
    async signOutEverywhere(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<void> {
      const user = await existing(scope, id);
      const sessions = (await payloads.listSessions(id)).length;
      await payloads.revokeByAccountId(id);
      await events.record({
        type: 'user.signed_out_everywhere', subjectId: id, tenantId: user.tenant_id, ...byOperator(context),
        payload: { user: { id }, sessions, by: 'admin' },
      });
    },

    async suspend(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<UserRow> {
      // Deactivation is final: suspending would let reactivate bring a deleted user back.
      if ((await existing(scope, id)).status === 'deactivated') {
        throw new AppError('IDENT_USER_DEACTIVATED', 'a deactivated user cannot be suspended');
      }
      return setStatus(scope, id, 'suspended', context);
    },
    async reactivate(scope: TenantScope, id: string, context: ChangeContext = {}): Promise<UserRow> {
      const user = await existing(scope, id);
      if (user.status === 'deactivated') throw new AppError('IDENT_USER_DEACTIVATED', 'a deactivated user cannot be reactivated');
      return setStatus(scope, id, 'active', context);
    },
    /** Soft delete: the row stays (audit, email reuse rules) with status deactivated. */
    deactivate: (scope: TenantScope, id: string, context: ChangeContext = {}) => setStatus(scope, id, 'deactivated', context),
  };
}

export type UserAdmin = ReturnType<typeof createUserAdmin>;
