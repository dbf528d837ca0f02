import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { FactorRow, FactorType, MfaFactorsRepo } from '../../repos/mfa-factors.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';
import type { AccountLinks } from '../accounts/account-links.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { mfaEnrolledMail, mfaRemovedMail, mfaResetMail } from '../mail/account-mails.ts';
import type { MailOutbox } from '../mail/mail.ts';
import type { Accounts, ChangeContext } from './accounts.ts';
import { newRecoveryCodes, normaliseRecoveryCode, recoveryCodeDigest } from './recovery-codes.ts';
import { newTotpSecret, otpauthUri, qrCodeDataUrl, totpStep, TOTP_DRIFT_STEPS, TOTP_PERIOD_SECONDS } from './totp.ts';

/**
 * Second factors: TOTP authenticators and recovery codes. The account API manages them (enroll,
 * confirm, list, remove, regenerate codes); the sign-in step checks them through `verifyTotp`,
 * `useRecoveryCode` and `enrolledFactors`.
 *
 * State on the EphemeralStore, after the one-time-code key scheme ({namespace}:{part}:{identifier}):
 *   mfa-totp:attempts:{userId}        wrong TOTP codes in the current window (taken before checking)
 *   mfa-totp:lock:{userId}            after `maxAttempts` wrong codes: TOTP refused for `lockSeconds`
 *   mfa-totp:used:{userId}:{step}     replay record: a code of that time step was accepted
 *   mfa-recovery:attempts|lock:{userId}  the same for recovery codes
 *   mfa-enroll:attempts|lock:{factorId}  wrong codes confirming one pending enrollment
 *   mfa-enroll:used:{factorId}:{step}    replay record of a confirmation (it also spends the user's step)
 * Every wrong factor at sign-in also counts toward the account lockout (accounts.ts).
 */

export type SecondFactorResult = 'ok' | 'invalid' | 'locked';

export interface FactorSummary {
  id: string;
  type: FactorType;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

export interface TotpEnrollment {
  factorId: string;
  /** Base32; shown once, here, never again. */
  secret: string;
  otpauthUri: string;
  /** The URI as a QR code: a data: URL of a PNG. */
  qrCode: string;
  expiresAt: Date;
}

export interface MfaSettings {
  /** The issuer shown in authenticator apps (the ISSUER's host name). */
  issuerName: string;
  /** A TOTP enrollment not confirmed within this is gone. */
  enrollmentTtlSeconds: number;
  /** The wrong code that reaches this count locks the factor. */
  maxAttempts: number;
  lockSeconds: number;
}

export const MFA_DEFAULTS = { enrollmentTtlSeconds: 10 * 60, maxAttempts: 5, lockSeconds: 15 * 60 } as const;

const TOTP_NAME = 'Authenticator app';
const RECOVERY_NAME = 'Recovery codes';
// A step's code is accepted while now is within one step of it: the record must outlive that.
const REPLAY_TTL_SECONDS = (2 * TOTP_DRIFT_STEPS + 2) * TOTP_PERIOD_SECONDS;

type Kind = 'mfa-totp' | 'mfa-recovery' | 'mfa-enroll';
const key = (kind: Kind, part: 'attempts' | 'lock' | 'used', id: string) => `${kind}:${part}:${id}`;

export const secretAad = (factorId: string) => `mfa-factor/v1:${factorId}`;

export function createMfa(deps: {
  repo: MfaFactorsRepo;
  users: UsersRepo;
  payloads: OidcPayloadsRepo;
  box: SecretBox;
  ephemeral: EphemeralStore;
  events: EventRecorder;
  mail: MailOutbox;
  links: AccountLinks;
  accounts: Pick<Accounts, 'isLocked' | 'recordSecondFactorFailure'>;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  settings: MfaSettings;
}) {
  const { repo, box, ephemeral, events, mail, links, settings } = deps;

  async function activeUser(id: string): Promise<UserRow> {
    const user = await deps.users.findById(id);
    // A token outliving its user's suspension must not reach the account.
    if (!user || user.status !== 'active') throw new AppError('IDENT_UNAUTHENTICATED', 'the account is not active');
    return user;
  }

  const summary = (row: FactorRow): FactorSummary => ({
    id: row.id,
    type: row.type,
    name: row.name,
    createdAt: row.confirmed_at ?? row.created_at,
    lastUsedAt: row.last_used_at,
  });

  const factorPayload = (row: FactorRow) => ({ id: row.id, type: row.type, name: row.name });

  /** Like a password change: every other session of the user ends with its grants and tokens; this one stays. */
  async function endOtherSessions(userId: string, currentSessionUid: string | undefined): Promise<void> {
    const sessions = await deps.payloads.listSessions(userId);
    await deps.payloads.revokeAccountExcept(userId, sessions.find((s) => s.uid === currentSessionUid)?.id);
  }

  /**
   * One attempt at a factor of `kind`, bounded: the attempt is counted before the factor is checked,
   * so concurrent guesses cannot outrun the lock. `check` answers the id of the factor that
   * matched, or undefined.
   */
  async function guarded(
    kind: 'mfa-totp' | 'mfa-recovery',
    userId: string,
    context: ChangeContext,
    check: () => Promise<string | undefined>,
  ): Promise<SecondFactorResult> {
    const user = await deps.users.findById(userId);
    if (!user || user.status !== 'active') return 'invalid';
    if ((await ephemeral.get(key(kind, 'lock', userId))) !== undefined) return 'locked';
    if (await deps.accounts.isLocked(user)) return 'locked';
    const attempts = await ephemeral.incr(key(kind, 'attempts', userId), settings.lockSeconds);
    if (attempts > settings.maxAttempts) {
      await ephemeral.set(key(kind, 'lock', userId), '1', settings.lockSeconds);
      return 'locked';
    }
    const factorId = await check();
    if (factorId !== undefined) {
      await ephemeral.del(key(kind, 'attempts', userId));
      await repo.touch(factorId);
      // The reference catalogue's User MFA Login: which factor, never the code.
      await events.record({
        type: 'user.mfa_login', subjectId: userId, tenantId: user.tenant_id, ...context,
        payload: { user: { id: userId }, factor: { id: factorId, type: kind === 'mfa-totp' ? 'totp' : 'recovery' } },
      });
      return 'ok';
    }
    const { locked } = await deps.accounts.recordSecondFactorFailure(user, kind === 'mfa-totp' ? 'totp' : 'recovery', context);
    if (attempts >= settings.maxAttempts) {
      await ephemeral.set(key(kind, 'lock', userId), '1', settings.lockSeconds);
      await ephemeral.del(key(kind, 'attempts', userId));
      return 'locked';
    }
    return locked ? 'locked' : 'invalid';
  }

  /** Whether `code` is the secret's code for a step near now, once per user and step: a code seen in its step before is refused. */
  async function acceptTotp(userId: string, secret: string, code: string): Promise<boolean> {
    const step = await totpStep(secret, code);
    if (step === undefined) return false;
    return ephemeral.setIfAbsent(key('mfa-totp', 'used', `${userId}:${step}`), '1', REPLAY_TTL_SECONDS);
  }

  /**
   * The same for confirming a new enrollment, once per enrollment and step. Its step is then also
   * spent for the user, so the code typed to confirm cannot be replayed at a sign-in; but a step an
   * older authenticator already used does not stop the new one from being confirmed.
   */
  async function acceptEnrollmentCode(userId: string, factorId: string, secret: string, code: string): Promise<boolean> {
    const step = await totpStep(secret, code);
    if (step === undefined) return false;
    if (!(await ephemeral.setIfAbsent(key('mfa-enroll', 'used', `${factorId}:${step}`), '1', REPLAY_TTL_SECONDS))) return false;
    await ephemeral.set(key('mfa-totp', 'used', `${userId}:${step}`), '1', REPLAY_TTL_SECONDS);
    return true;
  }

  /** Ends the factor locks and wrong-code counts of the user's sign-in checks (replay records stay). */
  async function endFactorLocks(userId: string): Promise<void> {
    for (const kind of ['mfa-totp', 'mfa-recovery'] as const) {
      await ephemeral.del(key(kind, 'lock', userId));
      await ephemeral.del(key(kind, 'attempts', userId));
    }
  }

  return {
    /**
     * Starts a TOTP enrollment: a new secret, sealed at rest, shown once in this answer (as text, as
     * an otpauth:// URI and as a QR code). An earlier pending enrollment is replaced; this one lasts
     * `enrollmentTtlSeconds` unless confirmed.
     */
    async enrollTotp(userId: string): Promise<TotpEnrollment> {
      const user = await activeUser(userId);
      const secret = newTotpSecret();
      const id = randomUUID();
      await deps.transaction(async (trx) => {
        await repo.deleteUnconfirmed(userId, 'totp', trx);
        await repo.insert({ id, tenant_id: user.tenant_id, user_id: userId, type: 'totp', name: TOTP_NAME, secret_sealed: box.encrypt(secret, secretAad(id)) }, trx);
      });
      const uri = otpauthUri(settings.issuerName, user.email, secret);
      return { factorId: id, secret, otpauthUri: uri, qrCode: await qrCodeDataUrl(uri), expiresAt: new Date(Date.now() + settings.enrollmentTtlSeconds * 1000) };
    },

    /**
     * Activates a pending enrollment with a code from the app. It replaces the user's earlier TOTP
     * factor, if any; the user's other sessions end and a mail says what changed. Wrong codes:
     * IDENT_OTP_INVALID, and the one that reaches `maxAttempts` locks this enrollment
     * (IDENT_OTP_LOCKED; a new enrollment starts afresh; the caller holds the secret already, so
     * there is nothing to guess and these do not count toward the account lockout).
     */
    async confirmTotp(userId: string, factorId: string, code: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<FactorSummary> {
      const user = await activeUser(userId);
      const pending = await repo.find(userId, factorId);
      const expired = pending && pending.created_at.getTime() + settings.enrollmentTtlSeconds * 1000 <= Date.now();
      if (!pending || pending.type !== 'totp' || pending.confirmed_at || expired) {
        throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND', 'no pending TOTP enrollment of yours with this id (an enrollment lasts 10 minutes)');
      }
      if ((await ephemeral.get(key('mfa-enroll', 'lock', factorId))) !== undefined) throw new AppError('IDENT_OTP_LOCKED');
      const attempts = await ephemeral.incr(key('mfa-enroll', 'attempts', factorId), settings.lockSeconds);
      const secret = box.decrypt(pending.secret_sealed!, secretAad(pending.id));
      if (attempts > settings.maxAttempts || !(await acceptEnrollmentCode(userId, factorId, secret, code))) {
        if (attempts >= settings.maxAttempts) {
          await ephemeral.set(key('mfa-enroll', 'lock', factorId), '1', settings.lockSeconds);
          throw new AppError('IDENT_OTP_LOCKED');
        }
        throw new AppError('IDENT_OTP_INVALID', 'the code does not match; check the time of the device and try the current code', { attemptsLeft: settings.maxAttempts - attempts });
      }
      await ephemeral.del(key('mfa-enroll', 'attempts', factorId));
      const confirmed = await deps.transaction(async (trx) => {
        // The old factor goes first: one confirmed TOTP per user (a unique index holds it).
        const replaced = await repo.deleteConfirmedOfType(userId, 'totp', factorId, trx);
        const row = await repo.confirm(userId, factorId, settings.enrollmentTtlSeconds, trx);
        if (!row) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND', 'no pending TOTP enrollment of yours with this id (an enrollment lasts 10 minutes)');
        const base = { subjectId: userId, tenantId: user.tenant_id, ...context };
        for (const old of replaced) {
          await events.record({ ...base, type: 'user.mfa_removed', payload: { user: { id: userId }, factor: factorPayload(old), by: 'self', replacedBy: row.id } }, trx);
        }
        await events.record({ ...base, type: 'user.mfa_enrolled', payload: { user: { id: userId }, factor: factorPayload(row), by: 'self', replaced: replaced.map((r) => r.id) } }, trx);
        await mail.enqueue(mfaEnrolledMail(user, 'totp', replaced.length > 0, links), trx);
        return row;
      });
      await endOtherSessions(userId, currentSessionUid);
      return summary(confirmed);
    },

    /**
     * A new set of recovery codes, shown once: the earlier set (used or not) stops working in the
     * same transaction. The user's other sessions end and a mail says so.
     */
    async regenerateRecoveryCodes(userId: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<string[]> {
      const user = await activeUser(userId);
      const codes = newRecoveryCodes();
      const id = randomUUID();
      await deps.transaction(async (trx) => {
        const replaced = await repo.deleteConfirmedOfType(userId, 'recovery', undefined, trx);
        const row = await repo.insert({ id, tenant_id: user.tenant_id, user_id: userId, type: 'recovery', name: RECOVERY_NAME, secret_sealed: null, confirmed_at: new Date() }, trx);
        await repo.insertRecoveryCodes(id, userId, codes.map((c) => recoveryCodeDigest(box, userId, normaliseRecoveryCode(c)!)), trx);
        const base = { subjectId: userId, tenantId: user.tenant_id, ...context };
        for (const old of replaced) {
          await events.record({ ...base, type: 'user.mfa_removed', payload: { user: { id: userId }, factor: factorPayload(old), by: 'self', replacedBy: id } }, trx);
        }
        await events.record({ ...base, type: 'user.mfa_enrolled', payload: { user: { id: userId }, factor: factorPayload(row), by: 'self', replaced: replaced.map((r) => r.id) } }, trx);
        await mail.enqueue(mfaEnrolledMail(user, 'recovery', replaced.length > 0, links), trx);
      });
      await endOtherSessions(userId, currentSessionUid);
      return codes;
    },

    /** The user's confirmed factors, oldest first. */
    async list(userId: string): Promise<FactorSummary[]> {
      await activeUser(userId);
      return (await repo.listConfirmed(userId)).map(summary);
    },

    /** Removes one confirmed factor of the user's; the other sessions end and a mail says so. */
    async remove(userId: string, factorId: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<void> {
      const user = await activeUser(userId);
      await deps.transaction(async (trx) => {
        const row = await repo.deleteConfirmed(userId, factorId, trx);
        if (!row) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
        await events.record({ type: 'user.mfa_removed', subjectId: userId, tenantId: user.tenant_id, ...context, payload: { user: { id: userId }, factor: factorPayload(row), by: 'self' } }, trx);
        await mail.enqueue(mfaRemovedMail(user, row.type, links), trx);
      });
      await endOtherSessions(userId, currentSessionUid);
    },

    // What operators call (admin API, through user-admin.ts).

    /** The factors whose sign-in check is locked now (5 wrong codes: 15 minutes). */
    async lockedFactors(userId: string): Promise<FactorType[]> {
      const locked: FactorType[] = [];
      if ((await ephemeral.get(key('mfa-totp', 'lock', userId))) !== undefined) locked.push('totp');
      if ((await ephemeral.get(key('mfa-recovery', 'lock', userId))) !== undefined) locked.push('recovery');
      return locked;
    },

    endFactorLocks,

    /**
     * An operator's reset: every factor of the user goes (TOTP, recovery codes, a pending
     * enrollment), with their locks. When a confirmed factor was removed, the user is mailed and
     * every session, grant and token of theirs ends: the reset usually follows a lost or stolen
     * device, and a session proven with it must not outlive it. The event (`user.mfa_reset`) is
     * recorded even when there was nothing to remove, so the operator's act is on record. Answers
     * the confirmed factors removed.
     */
    async resetAll(user: UserRow, context: ChangeContext = {}): Promise<FactorRow[]> {
      // Locks first: if the short-lived store is out, the reset stops (503) before anything changed.
      await endFactorLocks(user.id);
      const removed = await deps.transaction(async (trx) => {
        const rows = await repo.deleteAllOfUser(user.id, trx);
        const confirmed = rows.filter((r) => r.confirmed_at);
        await events.record({
          type: 'user.mfa_reset', subjectId: user.id, tenantId: user.tenant_id, ...context,
          payload: { user: { id: user.id }, factors: confirmed.map(factorPayload), pendingRemoved: rows.length - confirmed.length, by: 'admin' },
        }, trx);
        if (confirmed.length) await mail.enqueue(mfaResetMail(user, links), trx);
        return confirmed;
      });
      if (removed.length) await deps.payloads.revokeByAccountId(user.id);
      return removed;
    },

    // What the sign-in step calls.

    /** The confirmed factors of a user: whether, and which, second step a sign-in asks for. */
    async enrolledFactors(userId: string): Promise<FactorSummary[]> {
      return (await repo.listConfirmed(userId)).map(summary);
    },

    /**
     * Checks a TOTP code of the user's confirmed authenticator: its own step or one either side,
     * once per step (a replay is refused like a wrong code). 'locked' while the factor is locked
     * (5 wrong codes, 15 minutes) or the account is; every wrong code counts toward both.
     */
    async verifyTotp(userId: string, code: string, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guarded('mfa-totp', userId, context, async () => {
        const factor = await repo.confirmedOfType(userId, 'totp');
        if (!factor) return undefined;
        return (await acceptTotp(userId, box.decrypt(factor.secret_sealed!, secretAad(factor.id)), code)) ? factor.id : undefined;
      });
    },

    /** Uses one of the user's recovery codes, once. Wrong codes lock and count like TOTP codes. */
    async useRecoveryCode(userId: string, code: string, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guarded('mfa-recovery', userId, context, async () => {
        const normal = normaliseRecoveryCode(code);
        // A malformed code is looked up as a digest of nothing that exists, so it costs the same.
        return repo.useRecoveryCode(userId, recoveryCodeDigest(box, userId, normal ?? '\0'));
      });
    },

    /** Unused codes left in the user's recovery set (0 without one). */
    async remainingRecoveryCodes(userId: string): Promise<number> {
      const set = await repo.confirmedOfType(userId, 'recovery');
      return set ? repo.remainingRecoveryCodes(set.id) : 0;
    },
  };
}

export type Mfa = ReturnType<typeof createMfa>;
