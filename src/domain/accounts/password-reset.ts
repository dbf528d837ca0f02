import type { Limiter } from '../../infra/ephemeral/index.ts';
import { AppError } from '../errors.ts';
import { byUser, DEFAULT_TENANT, failureKey, type ChangeContext } from '../authn/accounts.ts';
import type { EphemeralStore } from '../../infra/ephemeral/types.ts';
import { emailIdentifier, findUserByIdentifier, parseEmailIdentifier, type FlowServices } from './account-flow.ts';
import { passwordChangedMail, resetPasswordMail } from '../mail/account-mails.ts';
import { userPayload } from '../events/events.ts';
import type { MailLocale } from '../mail/mail.ts';
import { assertPasswordAllowed, type PasswordPolicy } from '../authn/password-policy.ts';
import type { PasswordHasher } from '../authn/passwords.ts';
import type { OidcPayloadsRepo } from '../../repos/oidc-payloads.ts';
import type { UserRow } from '../../repos/users.ts';
import { runDetached } from '../detached.ts';

const NS = 'forgot-password';

/**
 * Forgot password: request (same answer whether or not the address has an account), then a code
 * or a link, then a new password. The reset ends every session and token of the user.
 */
export function createPasswordReset(deps: FlowServices & {
  hasher: PasswordHasher;
  passwordPolicy: PasswordPolicy;
  payloads: OidcPayloadsRepo;
  ephemeral: EphemeralStore;
  /** perEmail: an hour; perEmailDaily: a day, as many as the code quota (so a request within it gets its mail). */
  limits: { perEmail: Limiter; perEmailDaily: Limiter; perIp: Limiter };
  /** Whether sign-ins are locked for the account now (accounts.isLocked): a reset ending a lock records user.unlocked. */
  isLocked: (user: UserRow) => Promise<boolean>;
}) {
  const { users, hasher, passwordPolicy, codes, mail, events, links, payloads } = deps;

  /** Counts a request; false when over the limit. */
  async function consume(limiter: Limiter, key: string): Promise<boolean> {
    try {
      await limiter.consume(key);
      return true;
    } catch (limited) {
      if (limited instanceof Error) throw limited;
      return false;
    }
  }

  async function sendCode(user: UserRow, locale: MailLocale, context: ChangeContext, human: boolean): Promise<void> {
    let issued;
    try {
      issued = await codes.issue(NS, emailIdentifier(user.tenant_id, user.email), { beyondQuota: human });
    } catch (err) {
      // Cooldown, quota and lock are not told to the requester: that would say the account exists.
      if (err instanceof AppError) return;
      throw err;
    }
    const ttl = codes.settings(NS).codeTtlSeconds;
    await deps.transaction(async (trx) => {
      await mail.enqueue(resetPasswordMail(user, issued, ttl, links, locale), trx);
      await events.record(
        { type: 'user.password_reset_requested', subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id), payload: { user: userPayload(user), resetParamExpiryMillisec: ttl * 1000 } },
        trx,
      );
    });
  }

  return {
    /**
     * Limited per client IP (`opts.ip`: its limit key, an IPv6 /64 counts as one client) and per
     * address (3 an hour and the code quota a day), both counted whether or not the address has an
     * account. Anyone can use up an address's budget, so past it a request that passed a CAPTCHA
     * (`opts.human`) is still served, beyond the daily quota too: a stranger cannot keep the owner
     * from resetting (without a CAPTCHA provider, `human` undefined, the budget is a hard limit).
     * The answer does not wait for the account's work, so neither its content nor its timing says
     * whether the address is known.
     */
    async request(email: string, opts: { ip: string; locale: MailLocale; tenantId?: string; human?: boolean | undefined }, context: ChangeContext = {}): Promise<void> {
      const tenantId = opts.tenantId ?? DEFAULT_TENANT;
      if (!(await consume(deps.limits.perIp, opts.ip))) throw new AppError('IDENT_RATE_LIMITED', 'too many password reset requests; try again later');
      const human = opts.human === true;
      if (!human) {
        const id = emailIdentifier(tenantId, email);
        const within = (await consume(deps.limits.perEmail, id)) && (await consume(deps.limits.perEmailDaily, id));
        if (!within && opts.human === false) throw new AppError('IDENT_CAPTCHA_REQUIRED', 'many reset requests were made for this address; solve the CAPTCHA to ask again');
        if (!within) throw new AppError('IDENT_RATE_LIMITED', 'too many password reset requests; try again later');
      }
      const work = async () => {
        const user = await users.findByEmail(tenantId, email.trim());
        if (user?.status === 'active') await sendCode(user, opts.locale, context, human);
      };
      runDetached(work, deps.onBackgroundError);
    },

    /** The typed code for an address; answers the session token of the verified step. */
    verifyCode(email: string, code: string, tenantId = DEFAULT_TENANT): Promise<string> {
      return codes.verify(NS, emailIdentifier(tenantId, email), code);
    },

    /** Whether a reset link is still good, without using it. */
    async linkIsValid(token: string): Promise<boolean> {
      return (await codes.peekLink(NS, token)) !== undefined;
    },

    /** Whether a verified step is still open (the new-password form shows it again after a mistake). */
    async isOpen(session: string): Promise<boolean> {
      return (await codes.peekSession(NS, session)) !== undefined;
    },

    /**
     * One call for API clients: code (or link) and new password together. The password is judged
     * before the code is used, so a refused password leaves the code valid for a second try, and
     * judged on the request alone (the address typed, or the link's): an account's names would make
     * the verdict say whether the address has an account, before the code proved anything.
     */
    async confirm(proof: { email: string; code: string; tenantId?: string | undefined } | { token: string }, password: string, context: ChangeContext = {}): Promise<UserRow> {
      // A link names its account's tenant; a typed address is looked up in the flow's tenant.
      const identifier = 'token' in proof ? await codes.peekLink(NS, proof.token) : emailIdentifier(proof.tenantId ?? DEFAULT_TENANT, proof.email);
      const email = 'email' in proof ? proof.email : identifier ? parseEmailIdentifier(identifier).email : '';
      await assertPasswordAllowed(passwordPolicy, password, { email, given_name: null, family_name: null });
      const session = 'token' in proof ? (await codes.verifyLink(NS, proof.token)).session : await codes.verify(NS, identifier!, proof.code);
      return setPassword(session, password, context);
    },

    /**
     * Sets the new password for the verified step. The rules are checked before the step is used
     * up, so a refused password can be replaced on the same form. The emailed code proved the
     * address, so it is marked verified; a lockout ends too.
     */
    async complete(session: string, password: string, context: ChangeContext = {}): Promise<UserRow> {
      const identifier = await codes.peekSession(NS, session);
      if (identifier === undefined) throw new AppError('IDENT_OTP_INVALID');
      // The step is open only to whoever proved the mailbox: the account's own data may judge here.
      await assertPasswordAllowed(passwordPolicy, password, await userOf(identifier));
      return setPassword(session, password, context);
    },
  };

  /** Uses up the verified step and sets the password (already judged). */
  async function setPassword(session: string, password: string, context: ChangeContext): Promise<UserRow> {
    const identifier = await codes.takeSession(NS, session);
    if (identifier === undefined) throw new AppError('IDENT_OTP_INVALID');
    const user = await userOf(identifier);
    const hash = await hasher.hash(password);
    const wasLocked = await deps.isLocked(user);
    const updated = await deps.transaction(async (trx) => {
      const row = (await users.setPassword(user.id, hash, { verifiedEmail: true }, trx))!;
      const base = { subjectId: user.id, tenantId: user.tenant_id, ...byUser(context, user.id) };
      await events.record({ ...base, type: 'user.password_reset', payload: { user: userPayload(row) } }, trx);
      if (wasLocked) {
        await events.record({
          ...base, type: 'user.unlocked',
          payload: { user: { id: user.id }, before: { locked: true, lockedUntil: user.locked_until?.toISOString() ?? null, failedAttempts: user.failed_attempts }, by: 'password_reset' },
        }, trx);
      }
      await mail.enqueue(passwordChangedMail(row, links), trx);
      return row;
    });
    // Whoever knew the old password is signed out everywhere, refresh tokens included; a lockout ends.
    await payloads.revokeByAccountId(user.id);
    await deps.ephemeral.del(failureKey(user.tenant_id, user.email));
    return updated;
  }

  async function findUser(identifier: string): Promise<UserRow | undefined> {
    const user = await findUserByIdentifier(users, identifier);
    return user?.status === 'active' ? user : undefined;
  }

  async function userOf(identifier: string): Promise<UserRow> {
    const user = await findUser(identifier);
    if (!user) throw new AppError('IDENT_OTP_INVALID');
    return user;
  }
}

export type PasswordReset = ReturnType<typeof createPasswordReset>;
