import { randomUUID } from 'node:crypto';
import type { Knex } from 'knex';
import type { SecretBox } from '../../infra/crypto.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import type { FactorRow, FactorType, MfaFactorsRepo } from '../../repos/mfa-factors.ts';
import type { UserRow } from '../../repos/users.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { AccountLinks } from '../accounts/account-links.ts';
import { AppError } from '../errors.ts';
import type { EventRecorder } from '../events/events.ts';
import { mfaResetMail } from '../mail/account-mails.ts';
import type { MailOutbox } from '../mail/mail.ts';
import { byOperator, prefetchedFactorsKey, type ChangeContext } from './accounts.ts';
import { takeFromRequest } from '../../infra/request-prefetch.ts';
import type { FactorChanges } from './factor-changes.ts';
import type { FactorGuard, SecondFactorResult } from './factor-guard.ts';
import { removalBreaksPolicy } from './mfa-policy.ts';
import type { MfaPolicy } from './sign-in-flow.ts';
import { maskPhone } from './masking.ts';
import { newRecoveryCodes, normaliseRecoveryCode, recoveryCodeDigest } from './recovery-codes.ts';
import { newTotpSecret, otpauthUri, qrCodeDataUrl, totpStep, TOTP_DRIFT_STEPS, TOTP_PERIOD_SECONDS } from './totp.ts';

/**
 * Second factors: TOTP authenticators and recovery codes, and what every factor type shares (the
 * list, removal, the operator's reset). The account API manages them (enroll, confirm, list,
 * remove, regenerate codes); the sign-in step checks them through `verifyTotp`, `useRecoveryCode`
 * and `enrolledFactors`. Wrong answers at sign-in are bounded by the factor guard (factor-guard.ts).
 *
 * State on the EphemeralStore, after the one-time-code key scheme ({namespace}:{part}:{identifier}):
 *   mfa-totp:used:{userId}:{step}     replay record: a code of that time step was accepted
 *   mfa-enroll:attempts|lock:{factorId}  wrong codes confirming one pending enrollment
 *   mfa-enroll:used:{factorId}:{step}    replay record of a confirmation (it also spends the user's step)
 */

export type { SecondFactorResult };
export { FACTOR_TYPES, type FactorType } from '../../repos/mfa-factors.ts';

export interface FactorSummary {
  id: string;
  type: FactorType;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
  /** An SMS factor's number, masked (masking.ts). */
  phone?: string;
}

/** What the owner of a factor sees of it: never a secret, a phone number only masked. */
export const factorSummary = (row: FactorRow): FactorSummary => ({
  id: row.id,
  type: row.type,
  name: row.name,
  createdAt: row.confirmed_at ?? row.created_at,
  lastUsedAt: row.last_used_at,
  ...(row.phone ? { phone: maskPhone(row.phone) } : {}),
});

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

type Kind = 'mfa-totp' | 'mfa-enroll';
const key = (kind: Kind, part: 'attempts' | 'lock' | 'used', id: string) => `${kind}:${part}:${id}`;

export const secretAad = (factorId: string) => `mfa-factor/v1:${factorId}`;

export function createMfa(deps: {
  repo: MfaFactorsRepo;
  payloads: OidcPayloadsRepo;
  box: SecretBox;
  ephemeral: EphemeralStore;
  events: EventRecorder;
  mail: MailOutbox;
  links: AccountLinks;
  guard: FactorGuard;
  changes: FactorChanges;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
  settings: MfaSettings;
  /** MFA_POLICY: what a user may not remove (the last second factor under required). */
  policy: MfaPolicy;
}) {
  const { repo, box, ephemeral, events, mail, links, guard, changes, settings } = deps;
  const activeUser = changes.owner;

  const summary = factorSummary;

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
        await changes.enrolled(user, row, replaced, context, trx);
        return row;
      });
      await changes.endOtherSessions(userId, currentSessionUid);
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
        await changes.enrolled(user, row, replaced, context, trx);
      });
      await changes.endOtherSessions(userId, currentSessionUid);
      return codes;
    },

    /** The user's confirmed factors, oldest first. */
    async list(userId: string): Promise<FactorSummary[]> {
      await activeUser(userId);
      return (await repo.listConfirmed(userId)).map(summary);
    },

    /**
     * Removes one confirmed factor of the user's; the other sessions end and a mail says so. Under
     * MFA_POLICY=required the last second factor (recovery codes are not one) stays, and under
     * phishing-resistant the last WebAuthn credential too: IDENT_MFA_LAST_FACTOR, nothing changed
     * (the user enrols another first; an operator's reset still removes everything).
     */
    async remove(userId: string, factorId: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<void> {
      const user = await activeUser(userId);
      await deps.transaction(async (trx) => {
        // Locked first, so two removals at once cannot each leave the other's factor as the last.
        const before = await repo.lockConfirmed(userId, trx);
        const row = await repo.deleteConfirmed(userId, factorId, trx);
        if (!row) throw new AppError('IDENT_MFA_FACTOR_NOT_FOUND');
        const after = before.filter((f) => f.id !== row.id);
        if (removalBreaksPolicy(deps.policy, before.map((f) => f.type), after.map((f) => f.type))) {
          throw new AppError('IDENT_MFA_LAST_FACTOR', 'this deployment requires a second factor: enrol another before removing this one');
        }
        await changes.removed(user, row, context, trx);
      });
      await changes.endOtherSessions(userId, currentSessionUid);
    },

    // What operators call (admin API, through user-admin.ts).

    /** The factor types whose sign-in check is locked now (5 wrong answers: 15 minutes). */
    lockedFactors: guard.lockedFactors,

    endFactorLocks: guard.endFactorLocks,

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
      await guard.endFactorLocks(user.id);
      const removed = await deps.transaction(async (trx) => {
        const rows = await repo.deleteAllOfUser(user.id, trx);
        const confirmed = rows.filter((r) => r.confirmed_at);
        await events.record({
          type: 'user.mfa_reset', subjectId: user.id, tenantId: user.tenant_id, ...byOperator(context),
          payload: { user: { id: user.id }, factors: confirmed.map(changes.factorPayload), pendingRemoved: rows.length - confirmed.length, by: 'admin' },
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
      // Read with the account when its password was checked in this request (accounts.ts).
      const prefetched = takeFromRequest<FactorRow[]>(prefetchedFactorsKey(userId));
      return (prefetched ?? (await repo.listConfirmed(userId))).map(summary);
    },

    /**
     * Checks a TOTP code of the user's confirmed authenticator: its own step or one either side,
     * once per step (a replay is refused like a wrong code). 'locked' while the factor is locked
     * (5 wrong codes, 15 minutes) or the account is; every wrong code counts toward both.
     */
    async verifyTotp(userId: string, code: string, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guard.attempt('totp', userId, context, async () => {
        const factor = await repo.confirmedOfType(userId, 'totp');
        if (!factor) return undefined;
        return (await acceptTotp(userId, box.decrypt(factor.secret_sealed!, secretAad(factor.id)), code)) ? factor.id : undefined;
      });
    },

    /** Uses one of the user's recovery codes, once. Wrong codes lock and count like TOTP codes. */
    async useRecoveryCode(userId: string, code: string, context: ChangeContext = {}): Promise<SecondFactorResult> {
      return guard.attempt('recovery', userId, context, async () => {
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
