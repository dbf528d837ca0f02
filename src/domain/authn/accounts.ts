import { randomUUID } from 'node:crypto';
import { AppError, isUniqueViolation } from '../errors.ts';
import type { PasswordHasher } from './passwords.ts';
import type { Knex } from 'knex';
import type { EphemeralStore } from '../../infra/ephemeral/index.ts';
import { SYSTEM_ACTOR, userActor, userPayload, type Actor, type EventRecorder } from '../events/events.ts';
import { runDetached } from '../detached.ts';
import { offerToRequest, takeFromRequest } from '../../infra/request-prefetch.ts';
import type { FactorType } from '../../repos/mfa-factors.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';

export const DEFAULT_TENANT = 'default';

/** Under which key a users row read ahead for this request waits (infra/request-prefetch.ts). */
export const prefetchedAccountKey = (id: string) => `account:${id}`;

/** Under which key an account's confirmed factors, read with it at a password check, wait (mfa.ts). */
export const prefetchedFactorsKey = (userId: string) => `mfa-factors:${userId}`;

/**
 * The sign-in failure counter of an address in the ephemeral store. Failures are counted per
 * address whether or not it has an account, so neither "locked" nor the time the answer takes
 * reveals that an account exists.
 */
export const failureKey = (tenantId: string, email: string) => `login-fail:${tenantId}:${email.trim().toLowerCase()}`;

export interface LockoutPolicy {
  threshold: number;
  durationSeconds: number;
}

/** What an operator sees of an account's lockout (GET /api/v1/users/:id). */
export interface LockState {
  /** Sign-ins (and second factors) are refused now: the account's record or its address's counter is locked. */
  locked: boolean;
  /** When every lock now in force ends (the later of the two); null when not locked. */
  lockedUntil: Date | null;
  /**
   * The account's own count of failed sign-ins (passwords and second factors) since its last
   * successful sign-in or unlock; a lock that ran out starts a new count, so it reads 0 then.
   */
  failedAttempts: number;
  /** Failures counted against the address (known or not) in the current window of LOCKOUT_DURATION_SECONDS. */
  addressFailures: number;
}

/** Whether an account record's lock (its locked_until) is still in force at `now`. */
function lockInForce(lockedUntil: Date | null | undefined, now = Date.now()): boolean {
  return Boolean(lockedUntil && lockedUntil.getTime() > now);
}

export type SignInFailure = 'invalid_credentials' | 'locked' | 'inactive';

/** Sign-in outcomes as they happen, for counting (metrics); never who or from where. */
export interface SignInObserver {
  outcome(outcome: SignInFailure | 'success' | 'invalid_second_factor'): void;
  lockedOut(): void;
}

export interface Claims {
  sub: string;
  /** The user's tenant, in every ID token and userinfo answer. */
  tenant_id: string;
  email?: string;
  email_verified?: boolean;
  name?: string;
  given_name?: string;
  family_name?: string;
  locale?: string;
}

const MAX_PASSWORD_LENGTH = 1024;

export function claimsOf(user: UserRow, scopes: ReadonlySet<string>): Claims {
  const claims: Claims = { sub: user.id, tenant_id: user.tenant_id };
  if (scopes.has('email')) {
    claims.email = user.email;
    claims.email_verified = user.email_verified;
  }
  if (scopes.has('profile')) {
    const name = [user.given_name, user.family_name].filter(Boolean).join(' ');
    if (name) claims.name = name;
    if (user.given_name) claims.given_name = user.given_name;
    if (user.family_name) claims.family_name = user.family_name;
    if (user.locale) claims.locale = user.locale;
  }
  return claims;
}

/** Who or what caused a change, for the event it records. */
export interface ChangeContext {
  /** Who acted: an admin API client, the user themself, an upstream provider; without one, see byUser/byOperator. */
  actor?: Actor | undefined;
  requestId?: string | null | undefined;
  /** The relying party a sign-in is for: named in the sign-in's events, while the actor is the user. */
  clientId?: string | undefined;
}

/** The attribution of a change a user makes to their own account: the context's actor, else that user. */
export function byUser(context: ChangeContext, userId: string): { actor: Actor; requestId: string | null } {
  return { actor: context.actor ?? userActor(userId), requestId: context.requestId ?? null };
}

/** The attribution of an operator's change: the admin client of the context, else the system (a CLI command). */
export function byOperator(context: ChangeContext): { actor: Actor; requestId: string | null } {
  return { actor: context.actor ?? SYSTEM_ACTOR, requestId: context.requestId ?? null };
}

/** The relying party of a sign-in, for its events' payloads (absent outside a sign-in). */
export const viaClient = (context: ChangeContext) => (context.clientId ? { clientId: context.clientId } : {});

export function createAccounts(deps: {
  users: UsersRepo;
  hasher: PasswordHasher;
  lockout: LockoutPolicy;
  ephemeral: EphemeralStore;
  events: EventRecorder;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  /** Where the failure bookkeeping that runs after the answer reports failures. */
  onBackgroundError: (err: unknown) => void;
  /** Told each sign-in outcome and each lockout as it happens (the metrics). */
  observer?: SignInObserver;
}) {
  const { users, hasher, lockout, ephemeral, events } = deps;
  const observer = deps.observer ?? { outcome() {}, lockedOut() {} };
  const failed = (reason: SignInFailure) => {
    observer.outcome(reason);
    return { ok: false as const, reason };
  };
  // The address's counter reaching the threshold is the moment a lock begins.
  const noteFailures = (failures: number) => {
    if (failures === lockout.threshold) observer.lockedOut();
  };

  return {
    async create(input: {
      email: string;
      password?: string | undefined;
      emailVerified?: boolean;
      givenName?: string;
      familyName?: string;
      locale?: string;
      tenantId?: string;
    }, context: ChangeContext = {}, also?: (user: UserRow, trx: Knex.Transaction) => Promise<void>): Promise<UserRow> {
      const tenantId = input.tenantId ?? DEFAULT_TENANT;
      if (await users.findByEmail(tenantId, input.email)) {
        throw new AppError('IDENT_EMAIL_DUPLICATE', 'a user with this email already exists');
      }
      const passwordHash = input.password ? await hasher.hash(input.password) : null;
      try {
        // The user and its user.created event commit together.
        return await deps.transaction(async (trx) => {
          const user = await users.insert({
        id: randomUUID(),
        tenant_id: tenantId,
        email: input.email.trim(),
        email_verified: input.emailVerified ?? false,
        password_hash: passwordHash,
        given_name: input.givenName ?? null,
        family_name: input.familyName ?? null,
        locale: input.locale ?? null,
          }, trx);
          await events.record({ type: 'user.created', subjectId: user.id, tenantId, ...byOperator(context), payload: { user: userPayload(user) } }, trx);
          // What comes with the account (a federated link) commits with it, or neither exists.
          await also?.(user, trx);
          return user;
        });
      } catch (err) {
        // Two concurrent creations: the unique index decides, the loser sees the duplicate.
        if (isUniqueViolation(err)) throw new AppError('IDENT_EMAIL_DUPLICATE', 'a user with this email already exists');
        throw err;
      }
    },

    /**
     * Checks a password so that the answer, and its timing, do not tell whether the account
     * exists: unknown email, wrong password and a locked or inactive account all cost one argon2
     * verification, and every address, known or not, is counted the same way before the answer
     * (`login-fail:` in the ephemeral store: LOCKOUT_THRESHOLD failures within
     * LOCKOUT_DURATION_SECONDS lock it). The account's own record (failed_attempts, locked_until,
     * which also locks after failures spread over a longer time) and its events are written after
     * the answer (detached.ts).
     */
    async authenticate(
      email: string,
      password: string,
      tenantId = DEFAULT_TENANT,
      context: ChangeContext = {},
    ): Promise<{ ok: true; user: UserRow } | { ok: false; reason: SignInFailure }> {
      if (password.length > MAX_PASSWORD_LENGTH || email.length > 320) {
        await hasher.verify(null, 'x');
        return failed('invalid_credentials');
      }
      const failKey = failureKey(tenantId, email);
      // Two stores, asked at once.
      const [found, counted] = await Promise.all([users.findByEmailWithFactors(tenantId, email.trim()), ephemeral.get(failKey)]);
      const user = found?.user;
      const addressFailures = Number(counted ?? 0);
      const locked = addressFailures >= lockout.threshold || lockInForce(user?.locked_until);
      const { ok, needsRehash } = await hasher.verify(user && !locked ? user.password_hash : null, password);
      if (locked) return failed('locked');
      if (!user || !ok) {
        const failures = await ephemeral.incr(failKey, lockout.durationSeconds);
        noteFailures(failures);
        if (user) {
          runDetached(async () => {
            const after = await users.recordFailure(user.id, lockout.threshold, lockout.durationSeconds);
            const base = { subjectId: user.id, tenantId, ...byUser(context, user.id) };
            await events.record({ ...base, type: 'user.sign_in_failed', payload: { user: { id: user.id }, reason: 'invalid_credentials', failedAttempts: after?.failed_attempts, ...viaClient(context) } });
            if (lockInForce(after?.locked_until)) {
              await events.record({ ...base, type: 'user.locked', payload: { user: { id: user.id }, lockedUntil: after!.locked_until!.toISOString(), ...viaClient(context) } });
            }
          }, deps.onBackgroundError);
        }
        return failed(failures >= lockout.threshold ? 'locked' : 'invalid_credentials');
      }
      // Only the owner of the password learns the account is suspended.
      if (user.status !== 'active') {
        await events.record({ type: 'user.sign_in_failed', subjectId: user.id, tenantId, ...byUser(context, user.id), payload: { user: { id: user.id }, reason: 'inactive', ...viaClient(context) } });
        return failed('inactive');
      }
      await users.recordSuccess(user.id);
      // The address's counter is cleared only when it counted something: most sign-ins have none to clear.
      if (addressFailures > 0) await ephemeral.del(failKey);
      if (needsRehash) await users.updatePasswordHash(user.id, await hasher.hash(password));
      // The sign-in step asks next whether a second factor is due (mfa.ts enrolledFactors).
      offerToRequest(prefetchedFactorsKey(user.id), found!.confirmedFactors);
      return { ok: true, user };
    },

    /**
     * Records a completed sign-in (user.signed_in) with how it was made. Called when the sign-in
     * is given to the provider, not when a password checks out: a sign-in can still wait for an
     * email code after that. A token exchange of an upstream provider's token records one too,
     * with its grant type (`gty`), as it stands for a sign-in through that provider.
     */
    async recordSignIn(user: UserRow, amr: string[], context: ChangeContext = {}, provider?: string, grantType?: string): Promise<void> {
      observer.outcome('success');
      await events.record({
        type: 'user.signed_in', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id),
        payload: { user: userPayload(user), amr, ...viaClient(context), ...(provider ? { provider } : {}), ...(grantType ? { gty: grantType } : {}) },
      });
    },

    /**
     * Whether the account is locked against sign-ins: its address's failure counter is at the
     * threshold, or its own record is locked. A second factor is not checked while it is.
     */
    async isLocked(user: Pick<UserRow, 'tenant_id' | 'email' | 'locked_until'>): Promise<boolean> {
      if (lockInForce(user.locked_until)) return true;
      return Number((await ephemeral.get(failureKey(user.tenant_id, user.email))) ?? 0) >= lockout.threshold;
    },

    /**
     * A wrong second factor (TOTP or recovery code) counts toward the account lockout like a wrong
     * password: the address's failure counter and the account's record both move, and the events
     * say which factor failed. Only someone past the password (or holding the user's token) gets
     * here, so unlike password failures this is written before the answer. Answers whether the
     * account is now locked.
     */
    async recordSecondFactorFailure(user: UserRow, factor: FactorType, context: ChangeContext = {}): Promise<{ locked: boolean }> {
      const failures = await ephemeral.incr(failureKey(user.tenant_id, user.email), lockout.durationSeconds);
      noteFailures(failures);
      observer.outcome('invalid_second_factor');
      const after = await users.recordFailure(user.id, lockout.threshold, lockout.durationSeconds);
      const base = { subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id) };
      await events.record({ ...base, type: 'user.sign_in_failed', payload: { user: { id: user.id }, reason: 'invalid_second_factor', factor, failedAttempts: after?.failed_attempts, ...viaClient(context) } });
      const recordLocked = lockInForce(after?.locked_until);
      const wasLocked = lockInForce(user.locked_until);
      if (recordLocked && !wasLocked) {
        await events.record({ ...base, type: 'user.locked', payload: { user: { id: user.id }, lockedUntil: after!.locked_until!.toISOString(), ...viaClient(context) } });
      }
      return { locked: recordLocked || failures >= lockout.threshold };
    },

    /**
     * The lockout as the sign-in sees it: both records `authenticate` and `isLocked` consult, the
     * account's row (failed_attempts, locked_until) and its address's counter in the ephemeral store.
     */
    async lockState(user: Pick<UserRow, 'tenant_id' | 'email' | 'failed_attempts' | 'locked_until'>): Promise<LockState> {
      const now = Date.now();
      const key = failureKey(user.tenant_id, user.email);
      const addressFailures = Number((await ephemeral.get(key)) ?? 0);
      const ends: Date[] = [];
      if (lockInForce(user.locked_until, now)) ends.push(user.locked_until!);
      if (addressFailures >= lockout.threshold) {
        // The counter's window ends the address lock; without a readable TTL it lasts at most a duration.
        ends.push((await ephemeral.expiresAt(key)) ?? new Date(now + lockout.durationSeconds * 1000));
      }
      const lockedUntil = ends.length ? new Date(Math.max(...ends.map((d) => d.getTime()))) : null;
      const lapsed = Boolean(user.locked_until && user.locked_until.getTime() <= now);
      return { locked: lockedUntil !== null, lockedUntil, failedAttempts: lapsed ? 0 : user.failed_attempts, addressFailures };
    },

    /**
     * Ends a lockout (an operator's unlock): the account's record and its address's counter both,
     * since either alone refuses the sign-in. Answers the row after the change.
     */
    async unlock(user: Pick<UserRow, 'id' | 'tenant_id' | 'email'>): Promise<UserRow | undefined> {
      await ephemeral.del(failureKey(user.tenant_id, user.email));
      return users.clearLockout(user.id);
    },

    /**
     * Records a sign-out at the end-session endpoint (user.signed_out): the whole session ended,
     * or only the asking client's part of it when the user kept the session.
     */
    async recordSignOut(accountId: string, how: { sessionEnded: boolean }, context: ChangeContext = {}): Promise<void> {
      const user = await users.findById(accountId);
      if (!user) return;
      await events.record({
        type: 'user.signed_out', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id),
        payload: { user: { id: user.id }, reason: 'rp_initiated', sessionEnded: how.sessionEnded, ...viaClient(context) },
      });
    },

    async findActive(id: string): Promise<UserRow | undefined> {
      // A refresh token or code is read together with its account (oidc/lookup-batcher.ts).
      const user = takeFromRequest<UserRow>(prefetchedAccountKey(id)) ?? (await users.findById(id));
      return user?.status === 'active' ? user : undefined;
    },
  };
}

export type Accounts = ReturnType<typeof createAccounts>;
