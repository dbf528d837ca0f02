import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import { FACTOR_TYPES, type FactorType, type MfaFactorsRepo } from '../../repos/mfa-factors.ts';
import type { UsersRepo } from '../../repos/users.ts';
import type { EventRecorder } from '../events/events.ts';
import { byUser, viaClient, type Accounts, type ChangeContext } from './accounts.ts';

/**
 * The bound on guessing a second factor at sign-in, one for every factor type: wrong answers are
 * counted per user and type, the one that reaches `maxAttempts` locks that type for `lockSeconds`,
 * and each also counts toward the account lockout (accounts.ts).
 *
 * State on the EphemeralStore, after the one-time-code key scheme ({namespace}:{part}:{identifier}):
 *   mfa-{type}:attempts:{userId}   wrong answers in the current window (taken before checking)
 *   mfa-{type}:lock:{userId}       the type is refused until it expires
 */

export type SecondFactorResult = 'ok' | 'invalid' | 'locked';

export interface FactorGuardSettings {
  /** The wrong answer that reaches this count locks the factor type. */
  maxAttempts: number;
  lockSeconds: number;
}

export const factorKey = (namespace: string, part: string, id: string) => `${namespace}:${part}:${id}`;
const guardKey = (type: FactorType, part: 'attempts' | 'lock', userId: string) => factorKey(`mfa-${type}`, part, userId);

export function createFactorGuard(deps: {
  users: UsersRepo;
  repo: Pick<MfaFactorsRepo, 'touch'>;
  ephemeral: EphemeralStore;
  events: EventRecorder;
  accounts: Pick<Accounts, 'isLocked' | 'recordSecondFactorFailure'>;
  settings: FactorGuardSettings;
}) {
  const { ephemeral, events, settings } = deps;

  return {
    /**
     * One sign-in attempt at a factor of `type`, bounded: the attempt is counted before the factor
     * is checked, so concurrent guesses cannot outrun the lock. `check` answers the id of the
     * factor that matched, or undefined. A success records `user.mfa_login` (the reference
     * catalogue's User MFA Login: which factor, never the code or assertion).
     */
    async attempt(type: FactorType, userId: string, context: ChangeContext, check: () => Promise<string | undefined>): Promise<SecondFactorResult> {
      const user = await deps.users.findById(userId);
      if (!user || user.status !== 'active') return 'invalid';
      if ((await ephemeral.get(guardKey(type, 'lock', userId))) !== undefined) return 'locked';
      if (await deps.accounts.isLocked(user)) return 'locked';
      const attempts = await ephemeral.incr(guardKey(type, 'attempts', userId), settings.lockSeconds);
      if (attempts > settings.maxAttempts) {
        await ephemeral.set(guardKey(type, 'lock', userId), '1', settings.lockSeconds);
        return 'locked';
      }
      const factorId = await check();
      if (factorId !== undefined) {
        await ephemeral.del(guardKey(type, 'attempts', userId));
        await deps.repo.touch(factorId);
        await events.record({
          type: 'user.mfa_login', subjectId: userId, tenantId: user.tenant_id, ...byUser(context, userId),
          payload: { user: { id: userId }, factor: { id: factorId, type }, ...viaClient(context) },
        });
        return 'ok';
      }
      const { locked } = await deps.accounts.recordSecondFactorFailure(user, type, context);
      if (attempts >= settings.maxAttempts) {
        await ephemeral.set(guardKey(type, 'lock', userId), '1', settings.lockSeconds);
        await ephemeral.del(guardKey(type, 'attempts', userId));
        return 'locked';
      }
      return locked ? 'locked' : 'invalid';
    },

    /** The factor types whose sign-in check is locked now. */
    async lockedFactors(userId: string): Promise<FactorType[]> {
      const locked: FactorType[] = [];
      for (const type of FACTOR_TYPES) {
        if ((await ephemeral.get(guardKey(type, 'lock', userId))) !== undefined) locked.push(type);
      }
      return locked;
    },

    /** Ends the factor locks and wrong-answer counts of the user's sign-in checks (replay records stay). */
    async endFactorLocks(userId: string): Promise<void> {
      for (const type of FACTOR_TYPES) {
        await ephemeral.del(guardKey(type, 'lock', userId));
        await ephemeral.del(guardKey(type, 'attempts', userId));
      }
    },
  };
}

export type FactorGuard = ReturnType<typeof createFactorGuard>;
