import type { Knex } from 'knex';
import { AppError } from '../errors.ts';
import { assertDisplayNames } from './display-names.ts';
import { currentTimeZoneName } from './time-zones.ts';
import { byUser, DEFAULT_TENANT, type ChangeContext } from '../authn/accounts.ts';
import type { AccountLinks } from './account-links.ts';
import { passwordChangedMail } from '../mail/account-mails.ts';
import { userPayload, type EventRecorder } from '../events/events.ts';
import type { MailOutbox } from '../mail/mail.ts';
import { assertPasswordAllowed, type PasswordPolicy } from '../authn/password-policy.ts';
import type { PasswordHasher } from '../authn/passwords.ts';
import type { LockoutPolicy } from '../authn/accounts.ts';
import type { OidcPayloadsRepo, SessionRow } from '../../repos/oidc-payloads.ts';
import type { UserRow, UsersRepo } from '../../repos/users.ts';

export interface ProfileChanges {
  givenName?: string | null | undefined;
  familyName?: string | null | undefined;
  locale?: string | null | undefined;
  timezone?: string | null | undefined;
}

/** One of the user's sessions as they see it: no cookie value, only the public uid. */
export interface SessionSummary {
  id: string;
  current: boolean;
  userAgent: string | null;
  ip: string | null;
  signedInAt: Date;
  lastUsedAt: Date;
  expiresAt: Date | null;
  clients: string[];
}

/** What a signed-in user does to their own account (the account console and /api/v1/me). */
export function createSelfService(deps: {
  users: UsersRepo;
  hasher: PasswordHasher;
  passwordPolicy: PasswordPolicy;
  mail: MailOutbox;
  events: EventRecorder;
  links: AccountLinks;
  payloads: OidcPayloadsRepo;
  lockout: LockoutPolicy;
  transaction: <T>(work: (trx: Knex.Transaction) => Promise<T>) => Promise<T>;
}) {
  const { users, hasher, passwordPolicy, mail, events, links, payloads } = deps;

  async function activeUser(id: string): Promise<UserRow> {
    const user = await users.findById(id);
    // A token outliving its user's suspension must not reach the account.
    if (!user || user.status !== 'active') throw new AppError('IDENT_UNAUTHENTICATED', 'the account is not active');
    return user;
  }

  function summary(session: SessionRow, currentSessionUid: string | undefined): SessionSummary {
    const p = session.payload as { loginTs?: number; authorizations?: Record<string, unknown> };
    return {
      id: session.uid,
      current: session.uid === currentSessionUid,
      userAgent: session.userAgent,
      ip: session.ip,
      signedInAt: p.loginTs ? new Date(p.loginTs * 1000) : session.createdAt,
      lastUsedAt: session.lastUsedAt ?? session.createdAt,
      expiresAt: session.expiresAt,
      clients: Object.keys(p.authorizations ?? {}),
    };
  }

  return {
    profile: activeUser,

    async updateProfile(id: string, changes: ProfileChanges, context: ChangeContext = {}): Promise<UserRow> {
      assertDisplayNames(changes.givenName, changes.familyName);
      await activeUser(id);
      const patch = {
        ...(changes.givenName !== undefined ? { given_name: changes.givenName?.trim() || null } : {}),
        ...(changes.familyName !== undefined ? { family_name: changes.familyName?.trim() || null } : {}),
        ...(changes.locale !== undefined ? { locale: changes.locale } : {}),
        // A legacy spelling (Asia/Saigon) is stored under its current name (time-zones.ts).
        ...(changes.timezone !== undefined ? { timezone: changes.timezone === null ? null : currentTimeZoneName(changes.timezone) } : {}),
      };
      return deps.transaction(async (trx) => {
        const updated = (await users.update(id, patch, trx))!;
        await events.record({ type: 'user.updated', subjectId: id, tenantId: updated.tenant_id, ...byUser(context, id), payload: { user: userPayload(updated), changed: Object.keys(changes), by: 'self' } }, trx);
        return updated;
      });
    },

    /**
     * Needs the current password; wrong ones count toward the account's lockout like failed
     * sign-ins (a stolen session must not become a password oracle). The user's other sessions and
     * their tokens end; the current session stays.
     */
    async changePassword(id: string, current: string, next: string, currentSessionUid: string | undefined, context: ChangeContext = {}): Promise<UserRow> {
      const user = await activeUser(id);
      if (user.locked_until && user.locked_until.getTime() > Date.now()) throw new AppError('IDENT_RATE_LIMITED', 'too many wrong passwords; try again later');
      const { ok } = await hasher.verify(user.password_hash, current.slice(0, 1024));
      if (!ok) {
        await users.recordFailure(user.id, deps.lockout.threshold, deps.lockout.durationSeconds);
        throw new AppError('IDENT_CURRENT_PASSWORD_INVALID');
      }
      await assertPasswordAllowed(passwordPolicy, next, user);
      const hash = await hasher.hash(next);
      const updated = await deps.transaction(async (trx) => {
        const row = (await users.setPassword(id, hash, {}, trx))!;
        await events.record({ type: 'user.password_changed', subjectId: id, tenantId: row.tenant_id, ...byUser(context, id), payload: { user: { id }, by: 'self' } }, trx);
        await mail.enqueue(passwordChangedMail(row, links), trx);
        return row;
      });
      const sessions = await payloads.listSessions(id);
      await payloads.revokeAccountExcept(id, sessions.find((s) => s.uid === currentSessionUid)?.id);
      return updated;
    },

    async sessions(id: string, currentSessionUid?: string): Promise<SessionSummary[]> {
      await activeUser(id);
      return (await payloads.listSessions(id)).map((s) => summary(s, currentSessionUid));
    },

    /**
     * Ends one session (and what was authorized in it). Only the user's own sessions are found.
     * The event names the session by its uid (the console's handle), never by the cookie's id.
     */
    async revokeSession(id: string, sessionUid: string, context: ChangeContext = {}): Promise<void> {
      const session = (await payloads.listSessions(id)).find((s) => s.uid === sessionUid);
      if (!session) throw new AppError('IDENT_SESSION_NOT_FOUND');
      await payloads.revokeSession(session);
      const user = await users.findById(id);
      await events.record({
        type: 'user.session_revoked', subjectId: id, tenantId: user?.tenant_id ?? DEFAULT_TENANT, target: { type: 'session', id: session.uid },
        ...byUser(context, id), payload: { user: { id }, session: { uid: session.uid, createdAt: session.createdAt.toISOString() }, by: 'self' },
      });
    },

    /** Every session, grant, access and refresh token of the user. */
    async logoutAll(id: string, context: ChangeContext = {}): Promise<void> {
      const sessions = (await payloads.listSessions(id)).length;
      await payloads.revokeByAccountId(id);
      const user = await users.findById(id);
      await events.record({
        type: 'user.signed_out_everywhere', subjectId: id, tenantId: user?.tenant_id ?? DEFAULT_TENANT, ...byUser(context, id),
        payload: { user: { id }, sessions, by: 'self' },
      });
    },
  };
}

export type SelfService = ReturnType<typeof createSelfService>;
